"""Numba kernels for the non-matmul parts of a transformer step.

Every kernel computes each output row from its own input row only, in a fixed
order, so a row's result never depends on which other rows share the batch
(batch invariance: the same logits at any concurrency).
"""

from kettle.ops.activations import add_inplace, gelu_tanh, gelu_tanh_mul, scale_inplace, silu_mul
from kettle.ops.attention import attention
from kettle.ops.norm import layer_norm, rms_norm, rms_norm_heads
from kettle.ops.rope import Rope, RopeStyle, rope_inplace, rope_table

__all__ = [
    "add_inplace",
    "attention",
    "gelu_tanh",
    "gelu_tanh_mul",
    "layer_norm",
    "rms_norm",
    "rms_norm_heads",
    "Rope",
    "rope_inplace",
    "RopeStyle",
    "rope_table",
    "scale_inplace",
    "silu_mul",
]
