"""exp_f32 (the vectorizable exponential) and the gated activations built on it."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from kettle.ops import gelu_tanh_mul, silu_mul
from kettle.ops.expf import exp_f32


@numba.njit(cache=False)
def _loop(x, out):  # a loop LLVM vectorizes (8 or 4 lanes, then a scalar tail)
    for i in range(x.shape[0]):
        out[i] = exp_f32(x[i])


@numba.njit(cache=False)
def _one(v):
    return exp_f32(v)


def _exp(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _loop(x, out)
    return out


def test_within_two_ulp_over_the_range():
    x = np.linspace(-87, 88, 1_000_003, dtype=np.float32)
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(_exp(x) - ref) / np.spacing(ref.astype(np.float32))
    assert ulps.max() <= 2.0


def test_special_values():
    x = np.array([-np.inf, np.inf, np.nan, -1e4, 1e4, 0.0, -0.0, -87.5, 88.5, 1e-30], np.float32)
    got = _exp(x)
    np.testing.assert_array_equal(got[[0, 3, 7]], 0.0)
    np.testing.assert_array_equal(got[[1, 4, 8]], np.inf)
    assert np.isnan(got[2])
    np.testing.assert_array_equal(got[[5, 6, 9]], 1.0)


def test_vector_lanes_and_scalar_tail_round_alike():
    """The kernels' serial and parallel builds must agree: vector and scalar code give the same bits."""
    x = np.random.default_rng(0).uniform(-30, 30, 1003).astype(np.float32)
    vector = _exp(x)
    scalar = np.array([_one(v) for v in x], dtype=np.float32)
    np.testing.assert_array_equal(vector.view(np.uint32), scalar.view(np.uint32))


@pytest.mark.parametrize("n", [1, 9])  # the serial and the parallel build
def test_gates_match_their_definitions(n):
    rng = np.random.default_rng(1)
    gate = rng.standard_normal((n, 300)).astype(np.float32) * 4
    gate[0, :4] = [-100.0, 100.0, 0.0, -1e-6]
    up = rng.standard_normal((n, 300)).astype(np.float32)
    g, u = gate.astype(np.float64), up.astype(np.float64)
    silu = g / (1 + np.exp(-g)) * u
    tanh_inner = np.tanh(math.sqrt(2 / math.pi) * g * (1 + 0.044715 * g * g))
    gelu = 0.5 * g * (1 + tanh_inner) * u
    np.testing.assert_allclose(silu_mul(gate.copy(), up), silu, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(gelu_tanh_mul(gate.copy(), up), gelu, rtol=2e-6, atol=1e-6)
