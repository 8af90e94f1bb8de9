"""RMS normalisation, as ggml computes it (sum of squares in double)."""

from __future__ import annotations

import numpy as np

from kettle.ops._jit import exact_kernel


@exact_kernel
def _rms_norm(x, w, eps, out):  # x (n, d), w (d,) -> out (n, d)
    n, d = x.shape
    for t in range(n):
        ss = 0.0
        for i in range(d):
            v = np.float64(x[t, i])
            ss += v * v
        mean = np.float32(ss / d)
        scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
        for i in range(d):
            out[t, i] = x[t, i] * scale * w[i]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray | None = None) -> np.ndarray:
    """x (n, d) f32, w (d,) f32 -> (n, d): x / sqrt(mean(x^2) + eps) * w."""
    if x.ndim != 2 or w.shape != (x.shape[1],) or (out is not None and out.shape != x.shape):
        raise ValueError(f"rms_norm: x {x.shape} and weight {w.shape} do not fit")
    if out is None:
        out = np.empty_like(x)
    _rms_norm(x, w, np.float32(eps), out)
    return out


def rms_norm_heads(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """Per-head norm (gemma's q/k norms): x (n, heads * hd) in place, w (hd,)."""
    n = x.shape[0]
    hd = w.shape[0]
    if x.ndim != 2 or x.shape[1] % hd:
        raise ValueError(f"rms_norm_heads: x {x.shape} is not whole heads of {hd}")
    flat = x.reshape(n * (x.shape[1] // hd), hd)
    _rms_norm(flat, w, np.float32(eps), flat)
    return x


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """x (n, d) f32, w, b (d,) f32 -> (n, d): (x - mean) / sqrt(var + eps) * w + b (ggml_norm, then
    the scale and shift; mean and variance per row, in double)."""
    if x.ndim != 2 or w.shape != (x.shape[1],) or b.shape != w.shape:
        raise ValueError(f"layer_norm: x {x.shape}, weight {w.shape} and bias {b.shape} do not fit")
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=1, keepdims=True)  # (n, d)
    var = (centred * centred).mean(axis=1, keepdims=True)
    out = (centred / np.sqrt(var + eps)).astype(np.float32)
    out *= w
    out += b
    return out
