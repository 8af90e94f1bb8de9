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
from kettle.ops.expf import EXP_SALT, exp_f32


@kernel
def _dot(a, b, r):  # a (hd,), b (rows, hd) -> a . b[r]
    # fastmath lives here only: the attention kernel's serial and parallel builds
    # both call this one function, so a score has the same bits whichever ran
    # (with fastmath on the whole kernel they differed; tests/models checks it).
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * b[r, i]
    return acc


@kernel
def _dot4(a, b, r):  # a (hd,), b (rows, hd) -> a . b[r + 0..3], a read once
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for i in range(a.shape[0]):
        s0 += a[i] * b[r, i]
        s1 += a[i] * b[r + 1, i]
        s2 += a[i] * b[r + 2, i]
        s3 += a[i] * b[r + 3, i]
    return s0, s1, s2, s3


PARALLEL_WORK = 1 << 15  # query-key products x head size from which both threads share a call (~10 us)


def _build(salt: str = EXP_SALT):
    """The kernel; ``salt`` (a closure value) keys numba's cache on ``exp_f32``'s source."""

    @dual_kernel(min_parallel_rows=PARALLEL_WORK)
    def _attention(q, k_cache, v_cache, seq_slots, positions, window, scale, out):
        # q (n, n_head, hd); k_cache, v_cache (n_slots, n_kv, n_ctx, hd); out (n, n_head, hd)
        _ = salt
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
            quads = m - m % 4  # keys lo + j in fours from lo, then singly: the same split in every batch
            for j in range(0, quads, 4):
                s0, s1, s2, s3 = _dot4(qv, keys, lo + j)
                scores[j], scores[j + 1], scores[j + 2], scores[j + 3] = s0, s1, s2, s3
            for j in range(quads, m):
                scores[j] = _dot(qv, keys, lo + j)
            for j in range(m):
                scores[j] *= scale
                mx = max(mx, scores[j])
            for j in range(m):  # vectorized (exp_f32), then summed in order
                scores[j] = exp_f32(scores[j] - mx)
            total = np.float32(0.0)
            for j in range(m):
                total += scores[j]
            inv = np.float32(1.0) / total
            res = np.zeros(hd, dtype=np.float32)  # a local accumulator: no aliasing with the cache
            for j in range(0, quads, 4):  # four value rows per pass over res
                w0, w1, w2, w3 = scores[j] * inv, scores[j + 1] * inv, scores[j + 2] * inv, scores[j + 3] * inv
                r = lo + j  # values[r + 0..3], indexed in place: a row view per key costs refcounts
                for i in range(hd):
                    res[i] = res[i] + ((w0 * values[r, i] + w1 * values[r + 1, i])
                                       + (w2 * values[r + 2, i] + w3 * values[r + 3, i]))
            for j in range(quads, m):
                w = scores[j] * inv
                for i in range(hd):
                    res[i] += w * values[lo + j, i]
            out[t, h, :] = res

    return _attention


_attention = _build()


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
    n, n_head, hd = q.shape
    keys = int(positions.max()) + 1 if n else 0  # at most, per query
    if window > 0:
        keys = min(keys, window)
    _attention(n * n_head * hd * keys, q, k_cache, v_cache, seq_slots, positions, window, np.float32(scale), out)
    return out
