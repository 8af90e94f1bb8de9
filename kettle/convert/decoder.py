"""What the Llama-shaped decoders share (Llama, Mistral, Qwen2, Qwen3): metadata and tensor plans.

Metadata as llama.cpp's converter writes it: sizes from config.json, rope base
and scaling (``rope_parameters``, or the older ``rope_theta`` + ``rope_scaling``:
linear and YaRN as keys; Llama 3's ``llama3`` type as a ``rope_freqs.weight``
tensor of per-dimension factors, computed as llama.cpp computes them),
``attention.key_length``/``value_length`` when ``head_dim`` is not
``hidden_size / num_attention_heads``, the byte-level BPE vocabulary
(``bpe.py``). Tensors renamed as gguf-py's tensor map does. For arch ``llama``
(rope on interleaved pairs), q and k rows are permuted from Hugging Face's
rotate-half order, as llama.cpp's converter does; ``qwen2``/``qwen3`` keep
Hugging Face's order (their rope is NEOX-style). ``lm_head`` is dropped when
the embeddings are tied.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from kettle.convert.bpe import bpe_vocab
from kettle.convert.checkpoint import Checkpoint
from kettle.convert.writer import TensorPlan
from kettle.errors import ConvertError

_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
LAYER_NAMES = {  # Hugging Face module in a layer -> GGUF name
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")
_DROPPED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


@dataclass(frozen=True)
class Family:
    arch: str  # general.architecture
    permute_qk: bool  # llama's rope pairs (2i, 2i+1): undo Hugging Face's rotate-half order
    qk_norm: bool = False  # qwen3: per-head RMS norms of q and k
    biases: tuple[str, ...] = ()  # Hugging Face modules that may carry biases (qwen2: q, k, v)


def _int(config: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConvertError(f"config.json: {key!r} is {value!r}; expected an integer from {lo} to {hi}")
    return value


def _float(config: dict[str, Any], key: str, lo: float, hi: float, default: float | None = None) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConvertError(f"config.json: {key!r} is {value!r}; expected a number from {lo} to {hi}")
    return float(value)


def rope_params(config: dict[str, Any]) -> dict[str, Any]:
    """transformers' ``rope_parameters`` (theta and scaling in one object), from either layout."""
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        return dict(params.get("full_attention", params))
    scaling = config.get("rope_scaling")
    params = dict(scaling) if isinstance(scaling, dict) else {}
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params["type"]
    if "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    return params


def llama3_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """Llama 3.1's per-frequency rope factors (``rope_freqs.weight``, (head_dim / 2,) float32)."""
    base = _float(rope, "rope_theta", 1.0, 1e12, 10000.0)
    factor = _float(rope, "factor", 1.0, 1e6, 8.0)
    low = _float(rope, "low_freq_factor", 1e-6, 1e6, 1.0)
    high = _float(rope, "high_freq_factor", 1e-6, 1e6, 4.0)
    old_ctx = _float(rope, "original_max_position_embeddings", 1.0, 1 << 24, 8192)
    if high == low:
        raise ConvertError("config.json: rope low_freq_factor equals high_freq_factor")
    freqs = 1.0 / (np.float32(base) ** (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs.astype(np.float32):
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q or k projection from rotate-half order to interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_WEIGHT_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")


def weight_name(hf_name: str, arch: str, global_names: dict[str, str], layer_names: dict[str, str]) -> str:
    """The GGUF name of a checkpoint weight (``model.embed_tokens.weight``, ``model.layers.3.
    mlp.up_proj.weight``...) through an architecture's two tables: module -> GGUF name for the
    model-wide tensors and for a layer's. ``ConvertError`` for one that has no place."""
    base = hf_name.removesuffix(".weight")
    if base in global_names and hf_name.endswith(".weight"):
        return f"{global_names[base]}.weight"
    m = _WEIGHT_NAME.fullmatch(hf_name)
    if m and m.group(2) in layer_names:
        return f"blk.{m.group(1)}.{layer_names[m.group(2)]}.weight"
    raise ConvertError(f"checkpoint tensor {hf_name!r} has no place in a {arch} GGUF")


def gemma_plans(ckpt: Checkpoint, gguf_name: Any) -> list[TensorPlan]:
    """The tensors of a Gemma checkpoint, renamed by ``gguf_name`` (None: dropped), each norm
    weight stored plus one: Gemma's RMSNorm multiplies by (1 + w), llama.cpp's by w."""
    plans = []
    for hf_name in ckpt.names():
        name = gguf_name(hf_name)
        if name is None:
            continue
        read = lambda hf_name=hf_name: ckpt.tensor(hf_name)  # noqa: E731
        if name.endswith("norm.weight"):
            read = lambda hf_name=hf_name: ckpt.tensor(hf_name) + 1.0  # noqa: E731
        plans.append(TensorPlan(name, ckpt.shape(hf_name), read))
    return plans


def gguf_name(hf_name: str, family: Family) -> str | None:
    """The GGUF name of a checkpoint tensor; None for one that is dropped."""
    if _DROPPED.fullmatch(hf_name):
        return None
    base, _, kind = hf_name.rpartition(".")
    if base in _GLOBAL and kind == "weight":
        return f"{_GLOBAL[base]}.weight"
    m = _LAYER_NAME.fullmatch(hf_name)
    if m and m.group(2) in LAYER_NAMES:
        module, kind = m.group(2), m.group(3)
        if (module.endswith("_norm") and "self_attn" in module) and not family.qk_norm:
            raise ConvertError(f"checkpoint tensor {hf_name!r}: q/k norms are not part of a {family.arch} model")
        if kind == "bias" and module not in family.biases:
            raise ConvertError(f"checkpoint tensor {hf_name!r}: a bias {family.arch} does not have")
        return f"blk.{m.group(1)}.{LAYER_NAMES[module]}.{kind}"
    raise ConvertError(f"checkpoint tensor {hf_name!r} has no place in a {family.arch} GGUF")


def prepare(ckpt: Checkpoint, writer: Any, family: Family) -> list[TensorPlan]:
    """Add the metadata to ``writer``; return the tensors to write."""
    c = ckpt.config
    act = c.get("hidden_act", c.get("hidden_activation", "silu"))
    if act not in ("silu", "swish"):
        raise ConvertError(f"config.json: hidden_act {act!r} is not SiLU (a {family.arch} model's)")
    n_embd = _int(c, "hidden_size", 1, 1 << 16)
    n_head = _int(c, "num_attention_heads", 1, 1024)
    n_kv = _int(c, "num_key_value_heads", 1, n_head, n_head)
    if n_head % n_kv:
        raise ConvertError(f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv}")
    head_dim = c.get("head_dim") or (n_embd // n_head if n_embd % n_head == 0 else None)
    if head_dim is None:
        raise ConvertError(f"config.json: hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}")
    head_dim = _int({"head_dim": head_dim}, "head_dim", 2, 1024)
    if head_dim % 2:
        raise ConvertError(f"config.json: head_dim {head_dim} is odd (rope rotates pairs)")
    n_layer = _int(c, "num_hidden_layers", 1, 1024)
    n_vocab = _int(c, "vocab_size", 1, 1 << 22)
    writer.add_context_length(_int(c, "max_position_embeddings", 1, 1 << 24, 4096))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(_int(c, "intermediate_size", 1, 1 << 20))
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(_float(c, "rms_norm_eps", 1e-12, 0.1, 1e-6))
    writer.add_vocab_size(n_vocab)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != n_embd // n_head or n_embd % n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = rope_params(c)
    writer.add_rope_freq_base(_float(rope, "rope_theta", 1.0, 1e12, 10000.0))
    extra: list[TensorPlan] = []
    kind = str(rope.get("rope_type") or "default").lower()
    if kind == "linear":
        writer.add_rope_scaling_type(_scaling_type("LINEAR"))
        writer.add_rope_scaling_factor(_float(rope, "factor", 1e-6, 1e6))
    elif kind == "yarn":
        writer.add_rope_scaling_type(_scaling_type("YARN"))
        writer.add_rope_scaling_factor(_float(rope, "factor", 1e-6, 1e6))
        writer.add_rope_scaling_orig_ctx_len(_int(rope, "original_max_position_embeddings", 1, 1 << 24))
    elif kind == "llama3":
        factors = llama3_factors(rope, head_dim)
        extra.append(TensorPlan("rope_freqs.weight", factors.shape, lambda f=factors: f))
    elif kind != "default":
        raise ConvertError(f"config.json: rope type {kind!r} is not converted (linear, yarn, llama3 are)")
    bpe_vocab(ckpt, n_vocab).write(writer)

    tied = bool(c.get("tie_word_embeddings", False))
    plans = []
    for hf_name in ckpt.names():
        if tied and hf_name == "lm_head.weight":
            continue
        name = gguf_name(hf_name, family)
        if name is None:
            continue
        shape = ckpt.shape(hf_name)
        read = lambda hf_name=hf_name: ckpt.tensor(hf_name)  # noqa: E731
        if family.permute_qk and name.endswith(("attn_q.weight", "attn_k.weight", "attn_q.bias", "attn_k.bias")):
            heads = n_head if ".attn_q." in name else n_kv
            read = lambda hf_name=hf_name, heads=heads: permute(ckpt.tensor(hf_name), heads)  # noqa: E731
        plans.append(TensorPlan(name, shape, read))
    return extra + plans


def _scaling_type(name: str) -> Any:
    import gguf

    return gguf.RopeScalingType[name]
