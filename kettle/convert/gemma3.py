"""Gemma 3 text checkpoints (``Gemma3ForCausalLM``) -> arch ``gemma3``.

As llama.cpp's converter: every RMS norm weight gets Gemma's ``1 +`` folded in
(``Gemma3RMSNorm`` multiplies by ``1 + weight``), the SentencePiece vocabulary
(``spm.py``) with ``add_space_prefix = false``, key/value lengths from
``head_dim``, the global layers' rope base as ``rope.freq_base`` and the local
layers' as ``rope.freq_base_swa``, the sliding window, linear rope scaling of
the global layers when the config has it. kettle's gemma3 computes what Gemma 3
computes: a global layer every sixth, queries scaled by ``1/sqrt(head_dim)``,
local layers at rope base 10000, no logit soft-capping; a config that differs
is refused rather than converted into a file that would run differently.
"""

from __future__ import annotations

from typing import Any

from kettle.convert.checkpoint import Checkpoint
from kettle.convert.decoder import LAYER_NAMES, _float, _int, gemma_plans, rope_params, weight_name
from kettle.convert.spm import spm_vocab
from kettle.convert.writer import TensorPlan
from kettle.errors import ConvertError

ARCH = "gemma3"
GLOBAL_EVERY = 6  # kettle/models/gemma3.py: layers 5, 11, ... attend globally
LOCAL_ROPE_BASE = 10000.0

_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm"}
# the Llama block's names, with Gemma's four norms per layer
_LAYER = {
    **{k: v for k, v in LAYER_NAMES.items() if k != "post_attention_layernorm"},
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of a checkpoint tensor; None for one that is dropped (the tied lm_head)."""
    name = hf_name.removeprefix("model.language_model.").replace("language_model.model.", "model.")
    if name == "lm_head.weight":
        return None
    return weight_name(name, ARCH, _GLOBAL, _LAYER)


def _check(c: dict[str, Any], n_layer: int, head_dim: int) -> None:
    types = c.get("layer_types")
    expected = ["full_attention" if (i + 1) % GLOBAL_EVERY == 0 else "sliding_attention" for i in range(n_layer)]
    if types is not None and types != expected:
        raise ConvertError("config.json: layer_types is not Gemma 3's pattern (a global layer every sixth)")
    if c.get("sliding_window_pattern", GLOBAL_EVERY) != GLOBAL_EVERY:
        raise ConvertError(f"config.json: sliding_window_pattern {c['sliding_window_pattern']!r} is not {GLOBAL_EVERY}")
    if c.get("query_pre_attn_scalar", head_dim) != head_dim:
        raise ConvertError(f"config.json: query_pre_attn_scalar {c['query_pre_attn_scalar']!r} differs from "
                           f"head_dim {head_dim} (kettle's gemma3 scales queries by 1/sqrt(head_dim))")
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if c.get(key) is not None:
            raise ConvertError(f"config.json: {key} is set; kettle's gemma3 has no soft-capping")
    if c.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise ConvertError(f"config.json: hidden_activation {c['hidden_activation']!r} is not tanh GELU")
    if c.get("use_bidirectional_attention"):
        raise ConvertError("config.json: bidirectional attention (an embedding Gemma) is not converted")


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    """Add the metadata to ``writer``; return the tensors to write."""
    c = ckpt.config
    c = {**c, **c["text_config"]} if isinstance(c.get("text_config"), dict) else c
    n_embd = _int(c, "hidden_size", 1, 1 << 16)
    n_head = _int(c, "num_attention_heads", 1, 1024, 8)
    n_kv = _int(c, "num_key_value_heads", 1, n_head, 4)
    head_dim = _int(c, "head_dim", 2, 1024, 256)
    n_layer = _int(c, "num_hidden_layers", 1, 1024)
    n_vocab = _int(c, "vocab_size", 1, 1 << 22)
    if n_head % n_kv:
        raise ConvertError(f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv}")
    _check(c, n_layer, head_dim)
    params = c.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params:
        full, local = dict(params["full_attention"]), dict(params.get("sliding_attention") or {})
    else:
        full, local = rope_params(c), {"rope_theta": c.get("rope_local_base_freq", LOCAL_ROPE_BASE)}
    local_base = _float(local, "rope_theta", 1.0, 1e12, LOCAL_ROPE_BASE)
    if local_base != LOCAL_ROPE_BASE:
        raise ConvertError(f"config.json: the local layers' rope base {local_base} is not {LOCAL_ROPE_BASE}")
    writer.add_context_length(_int(c, "max_position_embeddings", 1, 1 << 24, 131072))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(_int(c, "intermediate_size", 1, 1 << 20))
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(_float(c, "rms_norm_eps", 1e-12, 0.1, 1e-6))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_float(full, "rope_theta", 1.0, 1e12, 1_000_000.0))
    writer.add_rope_freq_base_swa(local_base)
    writer.add_sliding_window(_int(c, "sliding_window", 1, 1 << 24, 4096))
    kind = str(full.get("rope_type") or full.get("type") or "default").lower()
    if kind == "linear":
        import gguf

        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(_float(full, "factor", 1e-6, 1e6))
    elif kind != "default":
        raise ConvertError(f"config.json: rope type {kind!r} of the global layers is not converted (linear is)")
    spm_vocab(ckpt, n_vocab).write(writer, add_space_prefix=False)

    return gemma_plans(ckpt, gguf_name)
