"""BERT encoders (arch ``bert``): all-MiniLM, bge, mxbai-embed-large and the like.

Absolute position embeddings (``position_embd.weight``, one row per trained
position), separate q/k/v matrices with biases, a GELU feed-forward with biases;
the shared post-norm block is in ``encoder.py``.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.encoder import CORE_WEIGHTS, Encoder, FeedForward, read_encoder_config, weight_dims

WEIGHTS = [
    *CORE_WEIGHTS,
    W("position_embd.weight", ("context_length", "n_embd")),
    W("blk.{i}.attn_q.weight", ("n_embd", "n_embd")),
    W("blk.{i}.attn_k.weight", ("n_embd", "n_embd")),
    W("blk.{i}.attn_v.weight", ("n_embd", "n_embd")),
    W("blk.{i}.attn_q.bias", ("n_embd",), optional=True),
    W("blk.{i}.attn_k.bias", ("n_embd",), optional=True),
    W("blk.{i}.attn_v.bias", ("n_embd",), optional=True),
    W("blk.{i}.ffn_up.bias", ("n_ff",), optional=True),
    W("blk.{i}.ffn_down.bias", ("n_embd",), optional=True),
]


def load(gguf: GGUFFile) -> Encoder:
    config = read_encoder_config(gguf, FeedForward.GELU, rotary=False)
    return Encoder(config, bind_weights(gguf, WEIGHTS, config.n_layer, weight_dims(config)))
