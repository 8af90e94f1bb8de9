"""StarCoder2 (arch ``starcoder2``): LayerNorm with biases (epsilon
``attention.layer_norm_epsilon``, required), biases on the attention output
and on a plain (non-gated) GELU feed-forward, optional q/k/v biases, NEOX
rope over whole heads; the output tied or not.
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
    Norm,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

WEIGHTS = [
    *EMBEDDING_WEIGHTS, W("output_norm.bias", ("n_embd",)),
    *ATTN_NORM, W("blk.{i}.attn_norm.bias", ("n_embd",)),
    *QKV_WEIGHTS, *QKV_BIASES, *ATTN_OUTPUT, W("blk.{i}.attn_output.bias", ("n_embd",)),
    *FFN_NORM, W("blk.{i}.ffn_norm.bias", ("n_embd",)),
    W("blk.{i}.ffn_up.weight", ("n_ff", "n_embd")), W("blk.{i}.ffn_up.bias", ("n_ff",)),
    W("blk.{i}.ffn_down.weight", ("n_embd", "n_ff")), W("blk.{i}.ffn_down.bias", ("n_embd",)),
]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "starcoder2")
    dims = hp.decoder_dims()
    context = hp.context_length()
    rope = hp.rope(context)
    cfg = TransformerConfig(
        arch="starcoder2",
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=False),
        eps=hp.float("attention.layer_norm_epsilon", 0.0, 1.0, open_lo=True),
        rope_style=RopeStyle.NEOX,
        layers=tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.GELU_TANH,
        attn_scale=default_attn_scale(dims["head_dim"]),
        norm=Norm.LAYER,
        feed_forward=FeedForward.PLAIN,
        context_length=context,
    )
    check_config(gguf, cfg)
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, dims))
