"""Qwen2-MoE (arch ``qwen2moe``, Qwen1.5-MoE / Qwen2-57B-A14B): the qwen2 block
(q/k/v biases, NEOX rope) with routed experts whose weights are not
renormalised, plus a shared expert on every token, scaled by
sigmoid(h . ffn_gate_inp_shexp) (``moe.py``). The output is untied.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.hparams import HParams, check_config
from kettle.models.moe import EXPERT_WEIGHTS, SHARED_EXPERT_GATE, SHARED_EXPERT_WEIGHTS
from kettle.models.transformer import (
    ATTN_NORM,
    ATTN_OUTPUT,
    FFN_NORM,
    QKV_BIASES,
    QKV_WEIGHTS,
    Activation,
    FeedForward,
    LayerConfig,
    Transformer,
    TransformerConfig,
    default_attn_scale,
)
from kettle.ops import RopeStyle

WEIGHTS = [
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("output_norm.weight", ("n_embd",)),
    W("output.weight", ("n_vocab", "n_embd")),
    *ATTN_NORM, *QKV_WEIGHTS, *QKV_BIASES, *ATTN_OUTPUT, *FFN_NORM,
    *EXPERT_WEIGHTS, *SHARED_EXPERT_WEIGHTS, SHARED_EXPERT_GATE,
]


def load(gguf: GGUFFile) -> Transformer:
    hp = HParams(gguf, "qwen2moe")
    dims = hp.decoder_dims()
    moe = hp.moe(norm_weights=False, shared=True, n_ff=dims["n_ff"])
    context = hp.context_length()
    rope = hp.rope(context)
    cfg = TransformerConfig(
        arch="qwen2moe",
        **dims,
        n_rot=hp.rope_dims(dims["head_dim"], partial=True),
        eps=hp.rms_eps(),
        rope_style=RopeStyle.NEOX,
        layers=tuple(LayerConfig(window=0, rope=rope) for _ in range(dims["n_layer"])),
        activation=Activation.SILU,
        attn_scale=default_attn_scale(dims["head_dim"]),
        feed_forward=FeedForward.EXPERTS,
        moe=moe,
        context_length=context,
    )
    check_config(gguf, cfg)
    shapes = {**dims, "n_expert": moe.n_expert, "n_ff_exp": moe.n_ff_exp, "n_ff_shexp": moe.n_ff_shexp}
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, shapes))
