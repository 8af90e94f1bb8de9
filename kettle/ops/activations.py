"""Gated activations of the feed-forward block and small element-wise ops."""

from __future__ import annotations

import math

import numpy as np

from kettle.ops._jit import dual_kernel, prange

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_COEF_A = 0.044715


@dual_kernel()
def _silu_mul(gate, up):  # gate, up (n, f) -> gate := silu(gate) * up
    n, f = gate.shape
    for t in prange(n):
        for i in range(f):
            g = gate[t, i]
            gate[t, i] = g / (np.float32(1.0) + np.exp(-g)) * up[t, i]


@dual_kernel()
def _gelu_tanh_mul(gate, up):  # gate, up (n, f) -> gate := gelu_tanh(gate) * up
    n, f = gate.shape
    a = np.float32(_GELU_COEF_A)
    c = np.float32(_SQRT_2_OVER_PI)
    for t in prange(n):
        for i in range(f):
            g = gate[t, i]
            inner = c * g * (np.float32(1.0) + a * g * g)
            gate[t, i] = np.float32(0.5) * g * (np.float32(1.0) + np.tanh(inner)) * up[t, i]


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
