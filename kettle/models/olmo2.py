"""OLMo 2 (arch ``olmo2``): no norms before attention or the feed-forward; RMS
norms of the whole q and k vectors (before rope) and after attention and the
feed-forward; NEOX rope; SwiGLU; the output untied.

With ``attention.sliding_window`` (OLMo 3), three layers in four slide
(``attention.sliding_window_pattern`` may say otherwise) and rotate without
the rope scaling (``rope.freq_base_swa``, default the global base), as
llama.cpp's olmo2 graph does.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.transformer import (
    ATTN_OUTPUT,
    GATED_FFN,
    POST_NORMS,
    QKV_BIASES,
    QKV_WEIGHTS,
    Activation,
    LayerConfig,
    QKNorm,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import Rope, RopeStyle

WEIGHTS = [
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("output_norm.weight", ("n_embd",)),
    W("output.weight", ("n_vocab", "n_embd")),
    *QKV_WEIGHTS, *QKV_BIASES, *ATTN_OUTPUT,
    W("blk.{i}.attn_q_norm.weight", ("n_head * head_dim",)),
    W("blk.{i}.attn_k_norm.weight", ("n_kv_head * head_dim",)),
    *POST_NORMS, *GATED_FFN,
]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "olmo2")
    dims = hp.decoder_dims()
    context = hp.context_length()
    rope = hp.rope(context)
    window = hp.int("attention.sliding_window", 0, LIMITS.context, 0)
    if window:
        swa_rope = Rope(hp.float("rope.freq_base_swa", 0.0, 1e12, rope.base, open_lo=True))
        layers = tuple(LayerConfig(window=window, rope=swa_rope) if slides else LayerConfig(window=0, rope=rope)
                       for slides in hp.swa_pattern(dims["n_layer"], 4))
    else:
        layers = tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"]))
    cfg = TransformerConfig(
        arch="olmo2",
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=False),
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NEOX,
        layers=layers,
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        qk_norm=QKNorm.FULL,
        post_norms=True,
        pre_norms=False,
        context_length=context,
    )
    check_config(gguf, cfg)
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, dims))
