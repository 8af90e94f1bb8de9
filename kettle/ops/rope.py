"""Rotary position embeddings, in ggml's two pairings.

NORM pairs neighbours (x[2i], x[2i+1]) (llama files: the converter permuted
q/k for it); NEOX pairs halves (x[i], x[i + n_rot/2]) (gemma, qwen2).
theta_i = pos * base^(-2i / n_rot), computed in double, rotated in float.
"""

from __future__ import annotations

import enum

import numpy as np

from kettle.ops._jit import dual_kernel, prange


class RopeStyle(enum.IntEnum):
    NORM = 0
    NEOX = 2


def rope_table(positions: np.ndarray, n_rot: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (n, n_rot/2) float32 of theta_i = pos * base^(-2i/n_rot), in double.

    Computed once per forward pass and rope base, shared by every layer's q and k.
    """
    inv_freq = base ** (-2.0 * np.arange(n_rot // 2, dtype=np.float64) / n_rot)  # (half,)
    theta = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # (n, half)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


@dual_kernel()
def _rope(x, cos, sin, n_heads, head_dim, neox):  # x (n, n_heads*head_dim) in place; cos, sin (n, half)
    n = x.shape[0]
    half = cos.shape[1]
    for t in prange(n):
        for h in range(n_heads):
            o = h * head_dim
            for i in range(half):
                c = cos[t, i]
                s = sin[t, i]
                if neox:
                    a = o + i
                    b = o + i + half
                else:
                    a = o + 2 * i
                    b = a + 1
                x0 = x[t, a]
                x1 = x[t, b]
                x[t, a] = x0 * c - x1 * s
                x[t, b] = x0 * s + x1 * c


def rope_inplace(
    x: np.ndarray, table: tuple[np.ndarray, np.ndarray], n_heads: int, head_dim: int, style: RopeStyle
) -> np.ndarray:
    """x (n, n_heads * head_dim): rotate the first n_rot dims of each head by ``rope_table``'s angles."""
    cos, sin = table
    # The kernel writes x[t, h * head_dim + i + n_rot/2]: n_rot must lie within the head.
    if (x.ndim != 2 or x.shape[1] != n_heads * head_dim or cos.shape != sin.shape
            or cos.shape[0] != x.shape[0] or 2 * cos.shape[1] > head_dim):
        raise ValueError(f"rope: x {x.shape} with {n_heads} heads of {head_dim} and angles {cos.shape} do not fit")
    _rope(x.shape[0], x, cos, sin, n_heads, head_dim, style == RopeStyle.NEOX)
    return x
