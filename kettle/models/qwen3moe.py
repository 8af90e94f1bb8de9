"""Qwen3-MoE (arch ``qwen3moe``): the qwen3 attention block (``qwen3.py``) with a
routed mixture of experts in place of the feed-forward (``moe.py``): softmax
router, top ``expert_used_count`` of ``expert_count``, their weights
renormalised to sum 1, no shared expert.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models import qwen3
from kettle.models.base import bind_weights
from kettle.models.hparams import HParams
from kettle.models.moe import EXPERT_WEIGHTS
from kettle.models.transformer import EMBEDDING_WEIGHTS, Transformer

WEIGHTS = [*EMBEDDING_WEIGHTS, *qwen3.ATTENTION, *EXPERT_WEIGHTS]


def load(gguf: GGUFFile) -> Transformer:
    moe = HParams(gguf, "qwen3moe").moe(norm_weights=True, shared=False, n_ff=0)
    cfg, dims = qwen3.config(gguf, "qwen3moe", moe, n_ff_default=moe.n_ff_exp * moe.n_expert_used)
    shapes = {**dims, "n_expert": moe.n_expert, "n_ff_exp": moe.n_ff_exp}
    return Transformer(cfg, bind_weights(gguf, WEIGHTS, cfg.n_layer, shapes))
