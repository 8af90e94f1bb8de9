"""Causal attention of a batch of tokens against the KV cache.

Each token attends to the cached keys of its own sequence at positions
``lo..pos`` (``lo = pos - window + 1`` for sliding-window layers, else 0).
Grouped-query: query head h reads kv head h // (n_head / n_kv_head).
Softmax in float32 with the maximum subtracted; one (token, head) per task,
in a fixed order, so the result is independent of the batch.
"""

from __future__ import annotations

import numpy as np

from kettle.ops._jit import dual_kernel, prange


@dual_kernel(min_parallel_rows=4)
def _attention(q, k_cache, v_cache, seq_slots, positions, window, scale, out):
    # q (n, n_head, hd); k_cache, v_cache (n_slots, n_kv, n_ctx, hd); out (n, n_head, hd)
    n, n_head, hd = q.shape
    n_kv = k_cache.shape[1]
    group = n_head // n_kv
    for task in prange(n * n_head):
        t = task // n_head
        h = task % n_head
        s = seq_slots[t]
        g = h // group
        pos = positions[t]
        lo = 0
        if window > 0 and pos - window + 1 > 0:
            lo = pos - window + 1
        m = pos + 1 - lo
        scores = np.empty(m, dtype=np.float32)
        mx = np.float32(-np.inf)
        for j in range(m):
            acc = np.float32(0.0)
            for i in range(hd):
                acc += q[t, h, i] * k_cache[s, g, lo + j, i]
            acc *= scale
            scores[j] = acc
            if acc > mx:
                mx = acc
        total = np.float32(0.0)
        for j in range(m):
            e = np.exp(scores[j] - mx)
            scores[j] = e
            total += e
        inv = np.float32(1.0) / total
        for i in range(hd):
            out[t, h, i] = 0.0
        for j in range(m):
            w = scores[j] * inv
            for i in range(hd):
                out[t, h, i] += w * v_cache[s, g, lo + j, i]


def attention(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    seq_slots: np.ndarray,
    positions: np.ndarray,
    window: int,
    scale: float,
    out: np.ndarray,
) -> np.ndarray:
    """q (n, n_head, hd) -> out (n, n_head, hd); caches (n_slots, n_kv, n_ctx, hd)."""
    _attention(q.shape[0], q, k_cache, v_cache, seq_slots, positions, window, np.float32(scale), out)
    return out
