"""Nomic BERT encoders (arch ``nomic-bert``): nomic-embed-text.

Rotary position embeddings (NEOX pairs, ``{arch}.rope.freq_base``) instead of a
position table, one fused ``attn_qkv`` matrix, a SwiGLU feed-forward without
biases (llama.cpp reads no ffn bias for this architecture, so a file carrying
one is refused); the shared post-norm block is in ``encoder.py``.
"""

from __future__ import annotations

from kettle.gguf import GGUFFile
from kettle.models.base import W, bind_weights
from kettle.models.encoder import CORE_WEIGHTS, Encoder, FeedForward, read_encoder_config, weight_dims

WEIGHTS = [
    *CORE_WEIGHTS,
    W("blk.{i}.attn_qkv.weight", ("3 * n_embd", "n_embd")),
    W("blk.{i}.attn_qkv.bias", ("3 * n_embd",), optional=True),
    W("blk.{i}.ffn_gate.weight", ("n_ff", "n_embd")),
]


def load(gguf: GGUFFile) -> Encoder:
    config = read_encoder_config(gguf, FeedForward.SWIGLU, rotary=True)
    return Encoder(config, bind_weights(gguf, WEIGHTS, config.n_layer, weight_dims(config)))
