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
