"""Qwen3 (arch ``qwen3``): the llama block with per-head RMS norms of q and k
(before rope), NEOX rope over whole heads, no q/k/v biases in the releases
(llama.cpp allows them), the output tied or not.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import bind_weights
from kettle.models.hparams import HParams, check_config
from kettle.models.transformer import (
    ATTN_NORM,
    ATTN_OUTPUT,
    EMBEDDING_WEIGHTS,
    FFN_NORM,
    GATED_FFN,
    HEAD_QK_NORMS,
    QKV_BIASES,
    QKV_WEIGHTS,
    Activation,
    FeedForward,
    LayerConfig,
    MoEConfig,
    QKNorm,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

ATTENTION = (*ATTN_NORM, *QKV_WEIGHTS, *QKV_BIASES, *HEAD_QK_NORMS, *ATTN_OUTPUT, *FFN_NORM)
WEIGHTS = [*EMBEDDING_WEIGHTS, *ATTENTION, *GATED_FFN]


def config(gguf: GGUFFile, arch: str, moe: MoEConfig | None = None, n_ff_default: int | None = None,
           ) -> tuple[TransformerConfig, dict[str, int]]:
    """The qwen3 block's config (``moe``: its experts, for qwen3moe) and the shape names."""
    hp = HParams(gguf, arch)
    dims = hp.decoder_dims(n_ff_default) if n_ff_default is not None else hp.decoder_dims()
    context = hp.context_length()
    rope = hp.rope(context)
    cfg = TransformerConfig(
        arch=arch,
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=False),
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NEOX,
        layers=tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        qk_norm=QKNorm.HEAD,
        feed_forward=FeedForward.EXPERTS if moe else FeedForward.GATED,
        moe=moe,
        context_length=context,
    )
    check_config(gguf, cfg)
    return cfg, dims


def load(gguf: GGUFFile) -> Transformer:
    cfg, dims = config(gguf, "qwen3")
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, dims))
