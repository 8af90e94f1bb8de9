"""IBM Granite 3.x (arch ``granite``): the llama block with four multipliers, as
llama.cpp's granite graph applies them: token embeddings times
``embedding_scale``, q.k times ``attention.scale`` (instead of 1/sqrt(head
size)), each block's attention and feed-forward output times
``residual_scale`` before its residual add, and the logits divided by
``logit_scale`` (required). ``rope.scaling.finetuned`` false means no rope at
all (llama.cpp's rope pattern).
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import bind_weights
from kettle.models.hparams import LIMITS, HParams, check_config
from kettle.models.llama import WEIGHTS
from kettle.models.transformer import (
    Activation,
    LayerConfig,
    Transformer,
    TransformerConfig,
    default_attn_scale,
    rope_factor_weights,
)
from kettle.ops import RopeStyle


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "granite")
    if hp.int("expert_count", 0, LIMITS.experts, 0):
        from kettle.errors import UnsupportedModel

        raise UnsupportedModel(f"{gguf.path}: granite files with experts ('granite.expert_count') are not supported")
    dims = hp.decoder_dims()
    n_rot = hp.rope_dims(dims["head_dim"], partial=False)
    context = hp.context_length()
    rope = hp.rope(context) if hp.bool("rope.scaling.finetuned", True) else None
    attn_scale = hp.float("attention.scale", 0.0, LIMITS.multiplier, 0.0)
    cfg = TransformerConfig(
        arch="granite",
        **dims,
        n_rot=n_rot,
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NORM,
        layers=tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=attn_scale or default_attn_scale(dims["head_dim"]),
        embd_scale=hp.float("embedding_scale", 0.0, LIMITS.multiplier, 0.0) or 1.0,
        residual_scale=hp.float("residual_scale", 0.0, LIMITS.multiplier, 0.0) or 1.0,
        logit_scale=1.0 / hp.float("logit_scale", 1.0 / LIMITS.multiplier, LIMITS.multiplier),
        context_length=context,
    )
    check_config(gguf, cfg)
    specs = [*WEIGHTS, *rope_factor_weights(cfg.layers)]
    return Transformer(cfg, bind_weights(gguf, specs, cfg.n_layer, {**dims, "n_rot_half": n_rot // 2}))
