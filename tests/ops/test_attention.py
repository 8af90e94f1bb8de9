"""The attention kernel gives a token the same bits alone (serial build) as in a
long batch (parallel build), at real model sizes, with and without a window."""

from __future__ import annotations

import numpy as np
import pytest

from kettle.ops import attention


@pytest.mark.parametrize("head_dim,n_head,n_kv,window", [(64, 9, 3, 0), (256, 4, 1, 0), (256, 4, 1, 100)])
def test_batch_equals_one_at_a_time(head_dim, n_head, n_kv, window):
    rng = np.random.default_rng(0)
    n = 300
    q = rng.standard_normal((n, n_head, head_dim)).astype(np.float32)
    k = rng.standard_normal((1, n_kv, 512, head_dim)).astype(np.float32)
    v = rng.standard_normal((1, n_kv, 512, head_dim)).astype(np.float32)
    slots = np.zeros(n, np.int32)
    pos = np.arange(n, dtype=np.int32)
    batch = np.empty_like(q)
    attention(q, k, v, slots, pos, window, 0.125, batch)
    for t in range(0, n, 37):
        one = np.empty_like(q[t : t + 1])
        attention(q[t : t + 1], k, v, slots[t : t + 1], pos[t : t + 1], window, 0.125, one)
        np.testing.assert_array_equal(one[0], batch[t])


def _reference(q, k, v, pos, window, scale):  # float64 softmax attention of each token, slot 0
    n, n_head, hd = q.shape
    group = n_head // k.shape[1]
    out = np.empty((n, n_head, hd))
    for t in range(n):
        lo = max(0, pos[t] - window + 1) if window else 0
        for h in range(n_head):
            keys, values = k[0, h // group, lo : pos[t] + 1], v[0, h // group, lo : pos[t] + 1]
            s = keys.astype(np.float64) @ q[t, h] * scale
            w = np.exp(s - s.max())
            out[t, h] = (w / w.sum()) @ values
    return out


@pytest.mark.parametrize("n_head,n_kv", [(4, 4), (4, 2), (6, 2), (8, 2), (4, 1), (12, 1)])
@pytest.mark.parametrize("window", [0, 5])
def test_matches_softmax_reference(n_head, n_kv, window):
    """Every grouping (one, two, three, four, eight and twelve heads per kv head) and window."""
    rng = np.random.default_rng(n_head * 10 + n_kv)
    n, hd = 23, 16
    q = rng.standard_normal((n, n_head, hd)).astype(np.float32)
    k = rng.standard_normal((1, n_kv, 32, hd)).astype(np.float32)
    v = rng.standard_normal((1, n_kv, 32, hd)).astype(np.float32)
    pos = np.arange(n, dtype=np.int32)
    out = np.empty_like(q)
    attention(q, k, v, np.zeros(n, np.int32), pos, window, 0.25, out)
    np.testing.assert_allclose(out, _reference(q, k, v, pos, window, 0.25), rtol=1e-4, atol=1e-5)
