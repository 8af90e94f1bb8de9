"""Gemma 3 (text): local sliding-window layers and global layers.

Differences from the llama block: embeddings scaled by sqrt(n_embd); per-head
RMS norms of q and k; norms after attention and after the feed-forward;
GeGLU (tanh GELU); NEOX rope with base 10000 on local layers and
``rope.freq_base`` on global ones; five local layers, then one global, in
turn; the output tied to the token embeddings. (The converter already folded
Gemma's ``1 + weight`` into the norm weights.)
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.transformer import (
    CORE_WEIGHTS,
    Activation,
    LayerConfig,
    QKNorm,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import Rope, RopeStyle

LOCAL_ROPE_BASE = 10000.0
GLOBAL_EVERY = 6  # layers 5, 11, 17, ... attend globally

WEIGHTS = [
    *CORE_WEIGHTS,
    W("blk.{i}.attn_q_norm.weight", ("head_dim",)),
    W("blk.{i}.attn_k_norm.weight", ("head_dim",)),
    W("blk.{i}.post_attention_norm.weight", ("n_embd",)),
    W("blk.{i}.post_ffw_norm.weight", ("n_embd",)),
]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "gemma3")
    dims = hp.decoder_dims()
    window = hp.int("attention.sliding_window", 1, LIMITS.context, 512)
    global_base = hp.rope_base(1_000_000.0)
    layers = tuple(
        LayerConfig(window=0, rope=Rope(global_base))
        if (i + 1) % GLOBAL_EVERY == 0
        else LayerConfig(window=window, rope=Rope(LOCAL_ROPE_BASE))
        for i in range(dims["n_layer"])
    )
    config = TransformerConfig(
        arch="gemma3",
        **dims,
        n_rot=dims["head_dim"],
        eps=hp.rms_eps(1e-6),
        rope_style=RopeStyle.NEOX,
        layers=layers,
        activation=Activation.GELU_TANH,
        attn_scale=default_attn_scale(dims["head_dim"]),
        embd_scale=float(dims["n_embd"]) ** 0.5,
        qk_norm=QKNorm.HEAD,
        post_norms=True,
        context_length=hp.context_length(32768),
    )
    check_config(gguf, config)
    weights = bind_weights(gguf, WEIGHTS, config.n_layer, dims)
    return Transformer(config, weights)
