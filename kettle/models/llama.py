"""Llama-family decoders: Llama 2 and 3, Mistral, SmolLM2 (arch ``llama``) and
Qwen2 (arch ``qwen2``: the same block with q/k/v biases and NEOX rope).

Pre-norm RMSNorm, rotary embeddings, grouped-query attention, SwiGLU
feed-forward; the output matrix may be tied to the token embeddings.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.transformer import (
    CORE_WEIGHTS,
    Activation,
    LayerConfig,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

WEIGHTS = [
    *CORE_WEIGHTS,
    W("blk.{i}.attn_q.bias", ("n_head * head_dim",), optional=True),
    W("blk.{i}.attn_k.bias", ("n_kv_head * head_dim",), optional=True),
    W("blk.{i}.attn_v.bias", ("n_kv_head * head_dim",), optional=True),
    # Some converters store precomputed rope frequencies; llama's rope ignores them.
    W("rope_freqs.weight", ("n_rot_half",), optional=True),
]

_ROPE_STYLE = {"llama": RopeStyle.NORM, "qwen2": RopeStyle.NEOX}


def load(gguf: GGUFFile) -> Transformer:
    arch = gguf.architecture
    hp = HParams(gguf, arch)
    dims = hp.decoder_dims()
    n_rot = hp.int("rope.dimension_count", 0, LIMITS.head_dim, dims["head_dim"])
    rope_base = hp.rope_base(10000.0)
    config = TransformerConfig(
        arch=arch,
        **dims,
        n_rot=n_rot,
        eps=hp.rms_eps(1e-5),
        rope_style=_ROPE_STYLE[arch],
        layers=tuple(LayerConfig(window=0, rope_base=rope_base) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        context_length=hp.context_length(2048),
    )
    check_config(gguf, config)
    weights = bind_weights(gguf, WEIGHTS, config.n_layer, {**dims, "n_rot_half": n_rot // 2})
    return Transformer(config, weights)
