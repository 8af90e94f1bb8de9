"""Gemma 2 (arch ``gemma2``): local sliding-window and global layers in turn.

As llama.cpp's gemma2 graph: embeddings scaled by sqrt(n_embd); RMS norms
before and after attention and the feed-forward; GeGLU; NEOX rope
(``rope.freq_base_swa`` on the sliding layers, default the global base);
attention scores soft-capped (``attn_logit_softcapping``, default 50) and the
final logits too (``final_logit_softcapping``, default 30); layers 0, 2, 4,
... slide over ``attention.sliding_window`` positions (default 4096) unless
``attention.sliding_window_pattern`` says otherwise. The query scale is
1/sqrt(head size), except the 27B (46 layers), whose training scaled by
1/sqrt(n_embd / n_head). The output is always the token embedding matrix.
"""

from __future__ import annotations

import dataclasses
import math

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.transformer import (
    ATTN_NORM,
    ATTN_OUTPUT,
    FFN_NORM,
    GATED_FFN,
    POST_NORMS,
    QKV_BIASES,
    QKV_WEIGHTS,
    Activation,
    LayerConfig,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

WEIGHTS = [
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("output_norm.weight", ("n_embd",)),
    W("output.weight", ("n_vocab", "n_embd"), tied="token_embd.weight"),
    *ATTN_NORM, *QKV_WEIGHTS, *QKV_BIASES, *ATTN_OUTPUT, *POST_NORMS, *FFN_NORM, *GATED_FFN,
]
LAYERS_OF_27B = 46


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "gemma2")
    dims = hp.decoder_dims()
    context = hp.context_length()
    rope = hp.rope(context)
    swa_rope = dataclasses.replace(rope, base=hp.float("rope.freq_base_swa", 0.0, 1e12, rope.base, open_lo=True))
    window = hp.int("attention.sliding_window", 1, LIMITS.context, 4096)
    pattern = hp.swa_pattern(dims["n_layer"], 2)
    layers = tuple(LayerConfig(window=window, rope=swa_rope) if slides else LayerConfig(window=0, rope=rope)
                   for slides in pattern)
    scale = (1.0 / math.sqrt(dims["n_embd"] // dims["n_head"]) if dims["n_layer"] == LAYERS_OF_27B
             else default_attn_scale(dims["head_dim"]))
    cfg = TransformerConfig(
        arch="gemma2",
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=True),
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NEOX,
        layers=layers,
        activation=Activation.GELU_TANH,
        attn_scale=scale,
        embd_scale=math.sqrt(dims["n_embd"]),
        post_norms=True,
        attn_softcap=hp.float("attn_logit_softcapping", 0.0, LIMITS.multiplier, 50.0, open_lo=True),
        final_softcap=hp.float("final_logit_softcapping", 0.0, LIMITS.multiplier, 30.0, open_lo=True),
        context_length=context,
    )
    check_config(gguf, cfg)
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, dims))
