"""Phi-3 and Phi-4 (arch ``phi3``): one fused ``attn_qkv`` matrix (or separate
q/k/v), one fused ``ffn_up`` holding the gate and up halves (SwiGLU), NEOX
rope over ``rope.dimension_count`` of each head (Phi-4-mini rotates 3/4).

LongRoPE as llama.cpp does it: the file's ``rope_factors_short.weight`` divide
the frequencies while a sequence's context (num_ctx) is within
``rope.scaling.original_context_length``, ``rope_factors_long.weight`` beyond
it, and cos/sin are scaled by ``rope.scaling.attn_factor``. The
``attention.sliding_window`` of Phi-3-mini files is not applied: llama.cpp
disables Phi's sliding window (the converters do not describe it faithfully),
and kettle agrees with llama.cpp.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import HParams, check_config
from kettle.models.transformer import (
    ATTN_NORM,
    ATTN_OUTPUT,
    EMBEDDING_WEIGHTS,
    FFN_NORM,
    QKV_BIASES,
    QKV_WEIGHTS,
    Activation,
    FeedForward,
    LayerConfig,
    Transformer,
    TransformerConfig,
    default_attn_scale,
    rope_factor_weights,
)
from kettle.ops import RopeStyle

FUSED_QKV = (
    W("blk.{i}.attn_qkv.weight", ("n_qkv", "n_embd")),
    W("blk.{i}.attn_qkv.bias", ("n_qkv",), optional=True),
)
COMMON = [
    *EMBEDDING_WEIGHTS, *ATTN_NORM, *ATTN_OUTPUT, *FFN_NORM,
    W("blk.{i}.ffn_up.weight", ("2 * n_ff", "n_embd")),
    W("blk.{i}.ffn_down.weight", ("n_embd", "n_ff")),
]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "phi3")
    dims = hp.decoder_dims()
    n_rot = hp.rope_dims(dims["head_dim"], partial=True)
    context = hp.context_length()
    rope = hp.rope(context, longrope=True)
    fused = "blk.0.attn_qkv.weight" in gguf.tensors
    cfg = TransformerConfig(
        arch="phi3",
        **dims,
        n_rot=n_rot,
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NEOX,
        layers=tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        fused_qkv=fused,
        feed_forward=FeedForward.FUSED,
        context_length=context,
    )
    check_config(gguf, cfg)
    shapes = {**dims, "n_rot_half": n_rot // 2, "n_qkv": (dims["n_head"] + 2 * dims["n_kv_head"]) * dims["head_dim"]}
    specs = [*COMMON, *(FUSED_QKV if fused else (*QKV_WEIGHTS, *QKV_BIASES)), *rope_factor_weights(cfg.layers)]
    return Transformer(cfg, bind_weights(gguf, specs, cfg.n_layer, shapes))
