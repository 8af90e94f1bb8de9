"""Gated activations of the feed-forward block and small element-wise ops.

Both gates go through ``exp_f32`` (vectorized, 8 or 4 lanes) rather than libm's
exp or tanh one element at a time: 5-6x faster, within a few ulp.
"""

from __future__ import annotations

import math

import numpy as np

from kettle.ops._jit import dual_kernel, prange
from kettle.ops.expf import EXP_SALT, exp_f32

ONE = np.float32(1.0)
TWO_C = np.float32(2.0 * math.sqrt(2.0 / math.pi))  # 2 * sqrt(2 / pi)
GELU_A = np.float32(0.044715)


def _gates(salt: str = EXP_SALT):
    """The two gate kernels; ``salt`` (a closure value) keys numba's cache on ``exp_f32``'s source."""

    @dual_kernel()
    def _silu_mul(gate, up):  # gate, up (n, f) -> gate := silu(gate) * up
        _ = salt
        n, f = gate.shape
        for t in prange(n):
            for i in range(f):
                g = gate[t, i]
                gate[t, i] = g / (ONE + exp_f32(-g)) * up[t, i]

    @dual_kernel()
    def _gelu_tanh_mul(gate, up):  # gate, up (n, f) -> gate := gelu_tanh(gate) * up
        # 0.5 * (1 + tanh(u)) is the logistic function of 2u: gelu = g / (1 + exp(-2u))
        _ = salt
        n, f = gate.shape
        for t in prange(n):
            for i in range(f):
                g = gate[t, i]
                u2 = TWO_C * g * (ONE + GELU_A * g * g)
                gate[t, i] = g / (ONE + exp_f32(-u2)) * up[t, i]

    return _silu_mul, _gelu_tanh_mul


_silu_mul, _gelu_tanh_mul = _gates()


def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """SwiGLU: silu(gate) * up, written into gate (n, f)."""
    _silu_mul(gate.shape[0], gate, up)
    return gate


def gelu_tanh_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """GeGLU with the tanh approximation of GELU, written into gate (n, f)."""
    _gelu_tanh_mul(gate.shape[0], gate, up)
    return gate


def add_inplace(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x += y (residual connections); numpy's element-wise add is row-independent."""
    np.add(x, y, out=x)
    return x


def scale_inplace(x: np.ndarray, s: float) -> np.ndarray:
    np.multiply(x, np.float32(s), out=x)
    return x


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU with the tanh approximation (ggml_gelu), in place on x (n, f)."""
    u2 = TWO_C * x * (ONE + GELU_A * x * x)  # 2u: 0.5 * (1 + tanh(u)) is the logistic of 2u
    with np.errstate(over="ignore"):  # exp(-2u) = inf for very negative x: gelu is then -0
        np.multiply(x, ONE / (ONE + np.exp(-u2)), out=x)
    return x
