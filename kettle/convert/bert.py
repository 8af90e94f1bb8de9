"""BERT checkpoints (``BertModel``, ``BertForMaskedLM``; sentence-transformers folders) -> arch ``bert``.

Metadata as llama.cpp's converter writes it (``conversion/bert.py``): sizes from
config.json, ``bert.attention.causal = false``, ``bert.pooling_type`` from the
sentence-transformers pooling module (``modules.json`` -> ``1_Pooling/config.json``;
mean when the folder has none), the WordPiece vocabulary (``vocab.py``) and
``tokenizer.ggml.token_type_count``. Tensors renamed as gguf-py's tensor map
does; the pooler and the masked-LM head are dropped (embeddings only).
"""

from __future__ import annotations

import re
from typing import Any

from kettle.convert.checkpoint import Checkpoint
from kettle.convert.vocab import wordpiece_vocab
from kettle.convert.writer import TensorPlan
from kettle.errors import ConvertError
from kettle.models.encoder import Pooling

ARCH = "bert"

# Hugging Face name -> GGUF name ({i}: layer)
_GLOBAL = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.LayerNorm": "token_embd_norm",
}
_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_LAYER_NAME = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_DROPPED = re.compile(r"(embeddings\.position_ids|pooler\..*|cls\..*)")


def _int(config: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConvertError(f"config.json: {key!r} is {value!r}; expected an integer from {lo} to {hi}")
    return value


def pooling_of(ckpt: Checkpoint) -> Pooling:
    """The sentence-transformers pooling mode, as llama.cpp's ``_try_set_pooling_type`` reads it."""
    modules = ckpt.json_file("modules.json")
    if modules is None:
        return Pooling.MEAN
    path = None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            path = module.get("path")
            break
    if not isinstance(path, str):
        return Pooling.MEAN
    pooling = ckpt.json_file(f"{path}/config.json") if path else None
    if not isinstance(pooling, dict):
        raise ConvertError(f"{ckpt.path}: the pooling module {path!r} has no config.json")
    if pooling.get("pooling_mode_mean_tokens"):
        return Pooling.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return Pooling.CLS
    if pooling.get("pooling_mode_lasttoken"):
        return Pooling.LAST
    modes = {"mean": Pooling.MEAN, "cls": Pooling.CLS, "lasttoken": Pooling.LAST}
    if pooling.get("pooling_mode") in modes:
        return modes[pooling["pooling_mode"]]
    raise ConvertError(f"{ckpt.path}: pooling {pooling!r} is not mean, cls or last token")


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of a checkpoint tensor; None for one that is dropped."""
    name = hf_name.removeprefix("bert.")
    name = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))
    if _DROPPED.fullmatch(name):
        return None
    base, _, kind = name.rpartition(".")
    if base in _GLOBAL and kind in ("weight", "bias"):
        return f"{_GLOBAL[base]}.{kind}"
    m = _LAYER_NAME.fullmatch(name)
    if m and m.group(2) in _LAYER:
        return f"blk.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}"
    raise ConvertError(f"checkpoint tensor {hf_name!r} has no place in a BERT GGUF")


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    """Add the metadata to ``writer``; return the tensors to write."""
    c = ckpt.config
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise ConvertError(f"config.json: position_embedding_type {c['position_embedding_type']!r} "
                           "(only absolute positions are BERT's)")
    if c.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ConvertError(f"config.json: hidden_act {c['hidden_act']!r} is not GELU")
    n_embd = _int(c, "hidden_size", 1, 1 << 16)
    n_head = _int(c, "num_attention_heads", 1, 1024)
    if n_embd % n_head:
        raise ConvertError(f"config.json: hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}")
    n_vocab = _int(c, "vocab_size", 1, 1 << 22)
    writer.add_context_length(_int(c, "max_position_embeddings", 1, 1 << 24))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(_int(c, "intermediate_size", 1, 1 << 20))
    writer.add_block_count(_int(c, "num_hidden_layers", 1, 1024))
    writer.add_head_count(n_head)
    eps = c.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ConvertError(f"config.json: layer_norm_eps {eps!r} is not a number between 0 and 1")
    writer.add_layer_norm_eps(float(eps))
    writer.add_causal_attention(False)
    writer.add_uint32(f"{ARCH}.pooling_type", int(pooling_of(ckpt)))
    writer.add_uint32("tokenizer.ggml.token_type_count", _int(c, "type_vocab_size", 1, 1024))
    wordpiece_vocab(ckpt, n_vocab).write(writer)

    plans = []
    for hf_name in ckpt.names():
        name = gguf_name(hf_name)
        if name is None:
            continue
        plans.append(TensorPlan(name, ckpt.shape(hf_name), lambda hf_name=hf_name: ckpt.tensor(hf_name),
                                keep_f32=name == "token_types.weight"))
    return plans
