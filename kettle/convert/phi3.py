"""Phi-3 and Phi-4-mini checkpoints (``Phi3ForCausalLM``) -> arch ``phi3``.

As llama.cpp's converter: the fused projections kept fused (``qkv_proj`` ->
``attn_qkv``, q then k then v rows; ``gate_up_proj`` -> ``ffn_up``, the gate
half first, which is the order kettle's phi3 reads), NEOX rope order kept,
``rope.dimension_count`` from ``partial_rotary_factor`` (Phi-4-mini rotates
3/4 of each head), ``rope.scaling.original_context_length`` from
``original_max_position_embeddings``, ``attention.sliding_window`` (0 where
the config has none). LongRoPE (``rope_scaling`` of type ``longrope``, or the
older ``su``): ``long_factor`` and ``short_factor`` as the tensors
``rope_factors_long.weight`` / ``rope_factors_short.weight`` and the cos/sin
factor as ``rope.scaling.attn_factor``, computed as transformers computes it
(``attention_factor`` where the config gives one, else
``sqrt(1 + ln(s) / ln(original))`` with ``s = factor`` or
``max_position_embeddings / original``; 1 where ``s <= 1``). ``lm_head``
becomes ``output`` unless the embeddings are tied (Phi-4-mini).

Tokenizers: a ``tokenizer_config.json`` naming ``GPT2Tokenizer`` (Phi-4) is a
byte-level BPE (``bpe.py``); otherwise the SentencePiece ``tokenizer.model``
(``spm.py``) with its added tokens.

The sliding window is written but not applied, by kettle as by llama.cpp
(which disables Phi's window); the two agree with transformers on any
sequence within the window (Phi-3-mini-4k: 2047 tokens).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kettle.convert.bpe import bpe_vocab
from kettle.convert.checkpoint import Checkpoint
from kettle.convert.decoder import _float, _int, rope_params, weight_name
from kettle.convert.spm import spm_vocab
from kettle.convert.writer import TensorPlan
from kettle.errors import ConvertError

ARCH = "phi3"
_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_LAYER = {  # Hugging Face module in a layer -> GGUF name
    "input_layernorm": "attn_norm",
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
LONGROPE_TYPES = ("longrope", "su")  # transformers reads "su" as longrope


def gguf_name(hf_name: str) -> str:
    return weight_name(hf_name, "phi3", _GLOBAL, _LAYER)


def _factors(rope: dict[str, Any], key: str, n: int) -> np.ndarray:
    values = rope.get(key)
    ok = isinstance(values, list) and len(values) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)
    if not ok:
        raise ConvertError(f"config.json: rope {key} must be a list of {n} positive numbers (rotated dimensions / 2)")
    return np.array(values, dtype=np.float32)


def _longrope(rope: dict[str, Any], n_ctx: int, n_ctx_orig: int, n_rot: int, writer: Any) -> list[TensorPlan]:
    long_, short = _factors(rope, "long_factor", n_rot // 2), _factors(rope, "short_factor", n_rot // 2)
    attn = rope.get("attention_factor")
    if attn is None:
        scale = rope.get("factor") or n_ctx / n_ctx_orig
        scale = _float({"factor": scale}, "factor", 1e-6, 1e6)
        attn = math.sqrt(1 + math.log(scale) / math.log(n_ctx_orig)) if scale > 1.0 and n_ctx_orig > 1 else 1.0
    writer.add_rope_scaling_attn_factors(_float({"attention_factor": attn}, "attention_factor", 1e-6, 1e4))
    return [TensorPlan("rope_factors_long.weight", long_.shape, lambda f=long_: f),
            TensorPlan("rope_factors_short.weight", short.shape, lambda f=short: f)]


def _vocab(ckpt: Checkpoint, n_vocab: int, writer: Any) -> None:
    config = ckpt.json_file("tokenizer_config.json") or {}
    if isinstance(config, dict) and config.get("tokenizer_class") == "GPT2Tokenizer":
        bpe_vocab(ckpt, n_vocab).write(writer)
    else:
        spm_vocab(ckpt, n_vocab).write(writer)


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    """Add the metadata to ``writer``; return the tensors to write."""
    c = ckpt.config
    act = c.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ConvertError(f"config.json: hidden_act {act!r} is not SiLU (a phi3 model's)")
    n_embd = _int(c, "hidden_size", 1, 1 << 16)
    n_head = _int(c, "num_attention_heads", 1, 1024)
    n_kv = _int(c, "num_key_value_heads", 1, n_head, n_head)
    if n_head % n_kv:
        raise ConvertError(f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv}")
    if n_embd % n_head or c.get("head_dim", n_embd // n_head) != n_embd // n_head:
        raise ConvertError(f"config.json: the head size is not hidden_size {n_embd} / num_attention_heads {n_head} "
                           "(as Phi-3's attention computes it)")
    head_dim = n_embd // n_head
    n_layer = _int(c, "num_hidden_layers", 1, 1024)
    n_vocab = _int(c, "vocab_size", 1, 1 << 22)
    rope = rope_params(c)
    pct = _float({**rope, **c}, "partial_rotary_factor", 1e-6, 1.0, 1.0)
    n_rot = int(head_dim * pct)  # transformers' rotary_ndims
    if n_rot < 2 or n_rot % 2:
        raise ConvertError(f"config.json: partial_rotary_factor {pct} rotates {n_rot} dimensions (not an even number >= 2)")
    n_ctx = _int(c, "max_position_embeddings", 1, 1 << 24, 4096)
    orig = c.get("original_max_position_embeddings", rope.get("original_max_position_embeddings", n_ctx))
    n_ctx_orig = _int({"original_max_position_embeddings": orig}, "original_max_position_embeddings", 1, 1 << 24)
    window = c.get("sliding_window")
    window = 0 if window is None else _int(c, "sliding_window", 0, 1 << 24)
    if c.get("attention_bias"):
        raise ConvertError("config.json: attention_bias is set; kettle's phi3 has no output-projection bias")

    writer.add_context_length(n_ctx)
    writer.add_rope_scaling_orig_ctx_len(n_ctx_orig)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(_int(c, "intermediate_size", 1, 1 << 20))
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(_float(c, "rms_norm_eps", 1e-12, 0.1, 1e-5))
    writer.add_rope_dimension_count(n_rot)
    writer.add_rope_freq_base(_float(rope, "rope_theta", 1.0, 1e12, 10000.0))
    writer.add_sliding_window(window)
    kind = str(rope.get("rope_type") or "default").lower()
    extra: list[TensorPlan] = []
    if kind in LONGROPE_TYPES:
        extra = _longrope(rope, n_ctx, n_ctx_orig, n_rot, writer)
    elif kind != "default":
        raise ConvertError(f"config.json: rope type {kind!r} is not converted for phi3 (longrope is)")
    _vocab(ckpt, n_vocab, writer)

    tied = bool(c.get("tie_word_embeddings", False))
    plans = []
    for hf_name in ckpt.names():
        if hf_name == "lm_head.weight" and tied:
            continue
        read = lambda hf_name=hf_name: ckpt.tensor(hf_name)  # noqa: E731
        plans.append(TensorPlan(gguf_name(hf_name), ckpt.shape(hf_name), read))
    return extra + plans
