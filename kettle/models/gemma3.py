"""Gemma 3 (text): local sliding-window layers and global layers.

Differences from the llama block: embeddings scaled by sqrt(n_embd); per-head
RMS norms of q and k; norms after attention and after the feed-forward;
GeGLU (tanh GELU); NEOX rope; the output tied to the token embeddings. (The
converter already folded Gemma's ``1 + weight`` into the norm weights.)

As llama.cpp's gemma3 graph: with ``attention.sliding_window``, five layers in
six slide over it (``attention.sliding_window_pattern`` may say otherwise) and
rotate with ``rope.freq_base_swa`` (default 10000) unscaled, while the global
layers take ``rope.freq_base`` and the rope scaling (Gemma 3 4B-27B: linear,
factor 8); without it every layer is global. The 27B (62 layers) scales
queries by 1/sqrt(n_embd / n_head); ``final_logit_softcapping`` caps the
logits where the file has it.
"""

from __future__ import annotations

import dataclasses
import math

from kettle.gguf import GGUFFile
from kettle.models.base import bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.transformer import (
    CORE_WEIGHTS,
    HEAD_QK_NORMS,
    POST_NORMS,
    Activation,
    LayerConfig,
    QKNorm,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

LOCAL_ROPE_BASE = 10000.0  # llama.cpp's rope_freq_base_train_swa default
GLOBAL_EVERY = 6  # layers 5, 11, 17, ... attend globally
LAYERS_OF_27B = 62

WEIGHTS = [*CORE_WEIGHTS, *HEAD_QK_NORMS, *POST_NORMS]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "gemma3")
    dims = hp.decoder_dims()
    context = hp.context_length(32768)
    rope = hp.rope(context)
    window = hp.int("attention.sliding_window", 1, LIMITS.context, 0)  # absent: no sliding layers
    if window:
        local = dataclasses.replace(rope, base=hp.float("rope.freq_base_swa", 0.0, 1e12, LOCAL_ROPE_BASE, open_lo=True),
                                    freq_scale=1.0, factors=None, long_factors=None)
        layers = tuple(LayerConfig(window=window, rope=local) if slides else LayerConfig(window=0, rope=rope)
                       for slides in hp.swa_pattern(dims["n_layer"], GLOBAL_EVERY))
    else:
        layers = tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"]))
    scale = (1.0 / math.sqrt(dims["n_embd"] // dims["n_head"]) if dims["n_layer"] == LAYERS_OF_27B
             else default_attn_scale(dims["head_dim"]))
    config = TransformerConfig(
        arch="gemma3",
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=True),
        eps=hp.rms_eps(1e-6),
        rope_style=RopeStyle.NEOX,
        layers=layers,
        activation=Activation.GELU_TANH,
        attn_scale=scale,
        embd_scale=float(dims["n_embd"]) ** 0.5,
        qk_norm=QKNorm.HEAD,
        post_norms=True,
        final_softcap=hp.float("final_logit_softcapping", 0.0, LIMITS.multiplier, 0.0),
        context_length=context,
    )
    check_config(gguf, config)
    weights = bind_weights(gguf, WEIGHTS, config.n_layer, dims)
    return Transformer(config, weights)
