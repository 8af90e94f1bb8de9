"""Llama-family decoders: Llama 2 and 3.x, Mistral, Mixtral, SmolLM2 (arch ``llama``)
and Qwen2 (arch ``qwen2``: the same block with q/k/v biases and NEOX rope).

Pre-norm RMSNorm, rotary embeddings, grouped-query attention, SwiGLU
feed-forward (or, with ``llama.expert_count``, Mixtral's routed experts); the
output matrix may be tied to the token embeddings.

Rope as llama.cpp applies it: ``rope_freqs.weight`` (Llama 3.1+'s frequency
factors) where the file has it, ``rope.scaling.*`` linear / YaRN / LongRoPE
(``hparams.HParams.rope``). ``llama.attention.sliding_window`` (Mistral 7B
v0.1's 4096, written by some converters) makes every layer attend to that many
positions, as the model was trained; llama.cpp's ``llama`` graph ignores the
key, so the two differ past the window.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.moe import EXPERT_WEIGHTS
from kettle.models.transformer import (
    ATTN_NORM,
    ATTN_OUTPUT,
    EMBEDDING_WEIGHTS,
    FFN_NORM,
    GATED_FFN,
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

# What llama.cpp's llama graph (and granite's, smollm3's) may find besides the core.
OPTIONAL_BIASES = (
    *QKV_BIASES,
    W("blk.{i}.attn_output.bias", ("n_embd",), optional=True),
    W("blk.{i}.ffn_gate.bias", ("n_ff",), optional=True),
    W("blk.{i}.ffn_up.bias", ("n_ff",), optional=True),
    W("blk.{i}.ffn_down.bias", ("n_embd",), optional=True),
)
ATTENTION = (*ATTN_NORM, *QKV_WEIGHTS, *OPTIONAL_BIASES[:4], *ATTN_OUTPUT, *FFN_NORM)
WEIGHTS = [*EMBEDDING_WEIGHTS, *ATTENTION, *GATED_FFN, *OPTIONAL_BIASES[4:]]
MOE_WEIGHTS = [*EMBEDDING_WEIGHTS, *ATTENTION, *EXPERT_WEIGHTS]
QWEN2_WEIGHTS = [*EMBEDDING_WEIGHTS, *ATTN_NORM, *QKV_WEIGHTS, *QKV_BIASES, *ATTN_OUTPUT, *FFN_NORM, *GATED_FFN]

_ROPE_STYLE = {"llama": RopeStyle.NORM, "qwen2": RopeStyle.NEOX}


def load(gguf: GGUFFile) -> Transformer:
    arch = gguf.architecture
    hp = HParams(gguf, arch)
    experts = hp.int("expert_count", 0, LIMITS.experts, 0) > 0
    dims = hp.decoder_dims()
    n_rot = hp.rope_dims(dims["head_dim"], partial=True)
    context = hp.context_length(2048)
    rope = hp.rope(context)
    window = hp.int("attention.sliding_window", 0, LIMITS.context, 0) if arch == "llama" else 0
    moe = hp.moe(norm_weights=True, shared=False, n_ff=dims["n_ff"], n_ff_exp=dims["n_ff"]) if experts else None
    config = TransformerConfig(
        arch=arch,
        **dims,
        n_rot=n_rot,
        eps=hp.rms_eps(1e-5),
        rope_style=_ROPE_STYLE[arch],
        layers=tuple(LayerConfig(window=window, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        feed_forward=FeedForward.EXPERTS if moe else FeedForward.GATED,
        moe=moe,
        context_length=context,
    )
    check_config(gguf, config)
    shapes = {**dims, "n_rot_half": n_rot // 2}
    if moe:
        shapes.update(n_expert=moe.n_expert, n_ff_exp=moe.n_ff_exp)
    specs = [*(QWEN2_WEIGHTS if arch == "qwen2" else MOE_WEIGHTS if moe else WEIGHTS),
             *rope_factor_weights(config.layers)]
    weights = bind_weights(gguf, specs, config.n_layer, shapes)
    return Transformer(config, weights)
