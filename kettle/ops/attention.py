"""Causal attention of a batch of tokens against the KV cache.

Each token attends to the cached keys of its own sequence at positions
``lo..pos`` (``lo = pos - window + 1`` for sliding-window layers, else 0).
Grouped-query: query head h reads kv head h // (n_head / n_kv_head).
Softmax in float32 with the maximum subtracted; one (token, head) per task,
in a fixed order, so the result is independent of the batch.
"""

from __future__ import annotations

import numpy as np

from kettle.ops._jit import dual_kernel, kernel, prange


@kernel
def _dot(a, b):  # a, b (hd,) -> a . b
    # fastmath lives here only: the attention kernel's serial and parallel builds
    # both call this one function, so a score has the same bits whichever ran
    # (with fastmath on the whole kernel they differed; tests/models checks it).
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


@dual_kernel(min_parallel_rows=4)
def _attention(q, k_cache, v_cache, seq_slots, positions, window, scale, out):
    # q (n, n_head, hd); k_cache, v_cache (n_slots, n_kv, n_ctx, hd); out (n, n_head, hd)
    n, n_head, hd = q.shape
    n_kv = k_cache.shape[1]
    group = n_head // n_kv
    for task in prange(n * n_head):
        t = task // n_head
        h = task % n_head
        keys = k_cache[seq_slots[t], h // group]  # (n_ctx, hd)
        values = v_cache[seq_slots[t], h // group]  # (n_ctx, hd)
        qv = q[t, h]  # (hd,)
        pos = positions[t]
        lo = 0
        if window > 0 and pos - window + 1 > 0:
            lo = pos - window + 1
        m = pos + 1 - lo
        scores = np.empty(m, dtype=np.float32)
        mx = np.float32(-np.inf)
        for j in range(m):
            acc = _dot(qv, keys[lo + j])
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
        res = np.zeros(hd, dtype=np.float32)  # a local accumulator: no aliasing with the cache
        for j in range(m):
            w = scores[j] * inv
            vrow = values[lo + j]
            for i in range(hd):
                res[i] += w * vrow[i]
        out[t, h, :] = res


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
