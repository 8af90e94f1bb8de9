"""Rotary position embeddings as ggml's ``rope_ext`` computes them.

NORM pairs neighbours (x[2i], x[2i+1]) (llama files: the converter permuted
q/k for it); NEOX pairs halves (x[i], x[i + n_rot/2]) (gemma, qwen, phi3).
Only the first ``n_rot`` dimensions of a head rotate (partial rotary: the
rest pass through).

The angle of pair i at position p (``Rope`` holds the parameters, llama.cpp's
names in brackets):

    theta_extrap = p * base^(-2i / n_rot) / factor_i     (rope_freqs / LongRoPE factors)
    theta_interp = freq_scale * theta_extrap              (freq_scale = 1 / rope.scaling.factor)
    theta        = theta_interp                           (linear)
                 = theta_interp * (1 - r_i) + theta_extrap * r_i,   r_i = ramp_i * ext_factor   (YaRN)
    cos, sin     = cos(theta) * m, sin(theta) * m,   m = attn_factor (* (1 + 0.1 ln(1/freq_scale)) with YaRN)

where YaRN's ramp_i = 1 - clamp((i - low) / max(0.001, high - low), 0, 1) and
low/high are the correction dimensions of ``beta_fast``/``beta_slow`` over
``n_ctx_orig`` (ggml_rope_yarn_corr_dims). Angles are computed in double and
rotated in float.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from kettle.ops._jit import dual_kernel, prange


class RopeStyle(enum.IntEnum):
    NORM = 0
    NEOX = 2


@dataclass(frozen=True)
class Rope:
    """One layer's rope parameters (ggml_rope_ext's arguments). Hashable: a forward pass
    computes one table per distinct ``Rope``."""

    base: float  # rope.freq_base
    freq_scale: float = 1.0  # 1 / rope.scaling.factor (linear and YaRN); 1 = no scaling
    ext_factor: float = 0.0  # YaRN's extrapolation mix: 1 with YaRN, else 0
    attn_factor: float = 1.0  # multiplies cos and sin (YaRN's magnitude, LongRoPE's attention factor)
    n_ctx_orig: int = 0  # rope.scaling.original_context_length (YaRN's correction dims; LongRoPE's switch)
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    factors: str | None = None  # a tensor of n_rot/2 frequency divisors (rope_freqs.weight, rope_factors_short)
    long_factors: str | None = None  # LongRoPE: the divisors used when the context exceeds n_ctx_orig

    def factor_name(self, n_ctx: int) -> str | None:
        """The factors tensor a context of ``n_ctx`` positions per sequence uses (llama.cpp's
        get_rope_factors: the long ones past the original context)."""
        if self.long_factors is not None and n_ctx > self.n_ctx_orig:
            return self.long_factors
        return self.factors


def _corr_dims(n_rot: int, rope: Rope) -> tuple[float, float]:
    """ggml_rope_yarn_corr_dims, in float32 as ggml computes it."""
    f32 = np.float32

    def dim(beta: float) -> np.float32:
        return f32(n_rot) * f32(math.log(f32(rope.n_ctx_orig) / (f32(beta) * f32(2.0) * f32(math.pi)))) / (
            f32(2.0) * f32(math.log(f32(rope.base))))

    low = max(0.0, math.floor(dim(rope.beta_fast)))
    high = min(n_rot - 1.0, math.ceil(dim(rope.beta_slow)))
    return low, high


def rope_table(positions: np.ndarray, n_rot: int, rope: Rope | float,
               factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (n, n_rot/2) float32 of each position's angles (see the module doc);
    ``rope`` a ``Rope`` or just a base; ``factors`` (n_rot/2,) the divisors ``rope`` names.

    Computed once per forward pass and distinct rope, shared by every layer's q and k.
    """
    if not isinstance(rope, Rope):
        rope = Rope(float(rope))
    half = n_rot // 2
    inv_freq = rope.base ** (-2.0 * np.arange(half, dtype=np.float64) / n_rot)  # (half,)
    if factors is not None:
        if factors.shape != (half,):
            raise ValueError(f"rope: {factors.shape} factors for {half} dimension pairs")
        inv_freq = inv_freq / factors.astype(np.float64)
    extrap = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # (n, half)
    theta = extrap * rope.freq_scale
    mscale = rope.attn_factor
    if rope.ext_factor != 0.0:
        low, high = _corr_dims(n_rot, rope)
        i = np.arange(half, dtype=np.float64)
        ramp = 1.0 - np.clip((i - low) / max(0.001, high - low), 0.0, 1.0)  # (half,)
        mix = ramp * rope.ext_factor
        theta = theta * (1.0 - mix) + extrap * mix
        mscale *= 1.0 + 0.1 * math.log(1.0 / rope.freq_scale)
    return (np.cos(theta) * mscale).astype(np.float32), (np.sin(theta) * mscale).astype(np.float32)


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
