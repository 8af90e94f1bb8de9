"""SmolLM3 (arch ``smollm3``): the llama block (NORM rope) where every fourth
layer (3, 7, 11, ...) has no rope at all (NoPE), as llama.cpp's smollm3 graph.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import bind_weights
from kettle.models.hparams import HParams, check_config
from kettle.models.llama import OPTIONAL_BIASES
from kettle.models.transformer import CORE_WEIGHTS
from kettle.models.transformer import Activation, LayerConfig, Transformer, TransformerConfig, default_attn_scale
from kettle.ops import RopeStyle

NO_ROPE_EVERY = 4  # llama.cpp's n_no_rope_layer_step
WEIGHTS = [*CORE_WEIGHTS, *OPTIONAL_BIASES]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "smollm3")
    dims = hp.decoder_dims()
    n_rot = hp.rope_dims(dims["head_dim"], partial=False)
    context = hp.context_length()
    rope = hp.rope(context)
    cfg = TransformerConfig(
        arch="smollm3",
        **dims,
        n_rot=n_rot,
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NORM,
        layers=tuple(LayerConfig(window=0, rope=None if (i + 1) % NO_ROPE_EVERY == 0 else rope)
                     for i in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        context_length=context,
    )
    check_config(gguf, cfg)
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, dims))
