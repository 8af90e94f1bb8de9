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


@dual_kernel()
def _rope(x, positions, n_heads, head_dim, n_rot, base, neox):  # x (n, n_heads*head_dim) in place
    n = x.shape[0]
    half = n_rot // 2
    for t in prange(n):
        pos = np.float64(positions[t])
        for i in range(half):
            theta = pos * base ** (-2.0 * i / n_rot)
            c = np.float32(np.cos(theta))
            s = np.float32(np.sin(theta))
            for h in range(n_heads):
                o = h * head_dim
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
    x: np.ndarray, positions: np.ndarray, n_heads: int, head_dim: int, n_rot: int, base: float, style: RopeStyle
) -> np.ndarray:
    """x (n, n_heads * head_dim), positions (n,) int32: rotate the first n_rot dims of each head."""
    _rope(x.shape[0], x, positions, n_heads, head_dim, n_rot, np.float64(base), style == RopeStyle.NEOX)
    return x
