"""Causal attention of a batch of tokens against the KV cache.

Each token attends to the cached keys of its own sequence at positions
``lo..pos`` (``lo = pos - window + 1`` for sliding-window layers, else 0).
Grouped-query: query head h reads kv head h // (n_head / n_kv_head).
Softmax in float32 with the maximum subtracted; one (token, head) per task,
in a fixed order, so the result is independent of the batch. Where three or
more query heads share a kv head (gemma3: 4, SmolLM2: 3), a task takes a token
and four of them, so each key and value row is read once for four heads (1.5x
faster prefill at gemma3's sizes); which kernel runs depends on the model only.
"""

from __future__ import annotations

import numpy as np

from kettle.ops._jit import dual_kernel, inline, kernel, prange
from kettle.ops.expf import EXP_SALT, exp_f32
from kettle.ops.kv_elements import load


@kernel
def _dot(a, b, bs, r):  # a (hd,), b (rows, hd) -> a . b[r]
    # fastmath lives here only: the attention kernel's serial and parallel builds
    # both call this one function, so a score has the same bits whichever ran
    # (with fastmath on the whole kernel they differed; tests/models checks it).
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * load(b, bs, r, i)
    return acc


@kernel
def _dot4(a, b, bs, r):  # a (hd,), b (rows, hd) -> a . b[r + 0..3], a read once
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for i in range(a.shape[0]):
        s0 += a[i] * load(b, bs, r, i)
        s1 += a[i] * load(b, bs, r + 1, i)
        s2 += a[i] * load(b, bs, r + 2, i)
        s3 += a[i] * load(b, bs, r + 3, i)
    return s0, s1, s2, s3


@kernel
def _dots16(q, h0, h1, h2, h3, k, ks, r):  # q (n_head, hd), k (rows, hd) -> heads h0..h3 x keys r..r+3
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.float32(0.0)
    for i in range(q.shape[1]):
        k0, k1, k2, k3 = load(k, ks, r, i), load(k, ks, r + 1, i), load(k, ks, r + 2, i), load(k, ks, r + 3, i)
        a, b, c, d = q[h0, i], q[h1, i], q[h2, i], q[h3, i]
        s00 += a * k0
        s01 += a * k1
        s02 += a * k2
        s03 += a * k3
        s10 += b * k0
        s11 += b * k1
        s12 += b * k2
        s13 += b * k3
        s20 += c * k0
        s21 += c * k1
        s22 += c * k2
        s23 += c * k3
        s30 += d * k0
        s31 += d * k1
        s32 += d * k2
        s33 += d * k3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@kernel
def _dots4(q, h0, h1, h2, h3, k, ks, r):  # q (n_head, hd), k (rows, hd) -> heads h0..h3 x key r
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for i in range(q.shape[1]):
        x = load(k, ks, r, i)
        s0 += q[h0, i] * x
        s1 += q[h1, i] * x
        s2 += q[h2, i] * x
        s3 += q[h3, i] * x
    return s0, s1, s2, s3


@inline
def _span(pos, window):  # -> (lo, m): a query at pos attends to the cached positions lo .. lo + m - 1
    lo = 0
    if window > 0 and pos - window + 1 > 0:
        lo = pos - window + 1
    return lo, pos + 1 - lo


@inline
def _softmax(scores, scale, softcap):  # scores (m,) q.k -> exp(scale * s - max), in place; returns 1 / their sum
    # softcap > 0 (gemma2): each scaled score s becomes softcap * tanh(s / softcap) first
    mx = np.float32(-np.inf)
    for j in range(scores.shape[0]):
        scores[j] *= scale
        if softcap > 0:
            scores[j] = softcap * np.tanh(scores[j] / softcap)
        mx = max(mx, scores[j])
    for j in range(scores.shape[0]):  # vectorized (exp_f32), then summed in order
        scores[j] = exp_f32(scores[j] - mx)
    total = np.float32(0.0)
    for j in range(scores.shape[0]):
        total += scores[j]
    return np.float32(1.0) / total


PARALLEL_WORK = 1 << 15  # query-key products x head size from which both threads share a call (~10 us)


def _build(salt: str = EXP_SALT):
    """The kernel; ``salt`` (a closure value) keys numba's cache on ``exp_f32``'s source."""

    @dual_kernel(min_parallel_rows=PARALLEL_WORK)
    def _attention(q, k_cache, v_cache, k_scales, v_scales, seq_slots, positions, window, scale, softcap, out):
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
            kd = k_scales[seq_slots[t], h // group]  # q8_0: (n_ctx, hd / 32); else a placeholder
            vd = v_scales[seq_slots[t], h // group]
            qv = q[t, h]  # (hd,)
            lo, m = _span(positions[t], window)
            scores = np.empty(m, dtype=np.float32)
            quads = m - m % 4  # keys lo + j in fours from lo, then singly: the same split in every batch
            for j in range(0, quads, 4):
                s0, s1, s2, s3 = _dot4(qv, keys, kd, lo + j)
                scores[j], scores[j + 1], scores[j + 2], scores[j + 3] = s0, s1, s2, s3
            for j in range(quads, m):
                scores[j] = _dot(qv, keys, kd, lo + j)
            inv = _softmax(scores, scale, softcap)
            res = np.zeros(hd, dtype=np.float32)  # a local accumulator: no aliasing with the cache
            for j in range(0, quads, 4):  # four value rows per pass over res
                w0, w1, w2, w3 = scores[j] * inv, scores[j + 1] * inv, scores[j + 2] * inv, scores[j + 3] * inv
                r = lo + j  # values[r + 0..3], indexed in place: a row view per key costs refcounts
                for i in range(hd):
                    res[i] = res[i] + ((w0 * load(values, vd, r, i) + w1 * load(values, vd, r + 1, i))
                                       + (w2 * load(values, vd, r + 2, i) + w3 * load(values, vd, r + 3, i)))
            for j in range(quads, m):
                w = scores[j] * inv
                for i in range(hd):
                    res[i] += w * load(values, vd, lo + j, i)
            out[t, h, :] = res

    return _attention


_attention = _build()


def _build_grouped(salt: str = EXP_SALT):
    """The kernel for kv heads shared by 3 or more query heads; ``salt`` as in ``_build``."""

    @dual_kernel(min_parallel_rows=PARALLEL_WORK)
    def _attention_grouped(q, k_cache, v_cache, k_scales, v_scales, seq_slots, positions, window, scale, softcap,
                           out):
        # q (n, n_head, hd); caches (n_slots, n_kv, n_ctx, hd); out (n, n_head, hd).
        # One task per (token, four heads of one kv head): each key and value row
        # read once for the four; a group of 3 repeats its last head.
        _ = salt
        n, n_head, hd = q.shape
        n_kv = k_cache.shape[1]
        group = n_head // n_kv
        chunks = (group + 3) // 4
        for task in prange(n * n_kv * chunks):
            t = task // (n_kv * chunks)
            rest = task % (n_kv * chunks)
            kvh = rest // chunks
            first = kvh * group + (rest % chunks) * 4
            last = kvh * group + group - 1
            h0, h1, h2, h3 = first, min(first + 1, last), min(first + 2, last), min(first + 3, last)
            keys = k_cache[seq_slots[t], kvh]
            values = v_cache[seq_slots[t], kvh]
            kd = k_scales[seq_slots[t], kvh]
            vd = v_scales[seq_slots[t], kvh]
            qt = q[t]
            lo, m = _span(positions[t], window)
            sc = np.empty((4, m), dtype=np.float32)
            quads = m - m % 4
            for j in range(0, quads, 4):
                s = _dots16(qt, h0, h1, h2, h3, keys, kd, lo + j)
                sc[0, j], sc[0, j + 1], sc[0, j + 2], sc[0, j + 3] = s[0], s[1], s[2], s[3]
                sc[1, j], sc[1, j + 1], sc[1, j + 2], sc[1, j + 3] = s[4], s[5], s[6], s[7]
                sc[2, j], sc[2, j + 1], sc[2, j + 2], sc[2, j + 3] = s[8], s[9], s[10], s[11]
                sc[3, j], sc[3, j + 1], sc[3, j + 2], sc[3, j + 3] = s[12], s[13], s[14], s[15]
            for j in range(quads, m):
                sc[0, j], sc[1, j], sc[2, j], sc[3, j] = _dots4(qt, h0, h1, h2, h3, keys, kd, lo + j)
            inv = np.empty(4, dtype=np.float32)
            for a in range(4):
                inv[a] = _softmax(sc[a], scale, softcap)
            r0 = np.zeros(hd, dtype=np.float32)  # the four heads' outputs
            r1 = np.zeros(hd, dtype=np.float32)
            r2 = np.zeros(hd, dtype=np.float32)
            r3 = np.zeros(hd, dtype=np.float32)
            for j in range(0, quads, 4):
                r = lo + j
                a0, a1, a2, a3 = sc[0, j] * inv[0], sc[0, j + 1] * inv[0], sc[0, j + 2] * inv[0], sc[0, j + 3] * inv[0]
                b0, b1, b2, b3 = sc[1, j] * inv[1], sc[1, j + 1] * inv[1], sc[1, j + 2] * inv[1], sc[1, j + 3] * inv[1]
                c0, c1, c2, c3 = sc[2, j] * inv[2], sc[2, j + 1] * inv[2], sc[2, j + 2] * inv[2], sc[2, j + 3] * inv[2]
                d0, d1, d2, d3 = sc[3, j] * inv[3], sc[3, j + 1] * inv[3], sc[3, j + 2] * inv[3], sc[3, j + 3] * inv[3]
                for i in range(hd):
                    v0, v1 = load(values, vd, r, i), load(values, vd, r + 1, i)
                    v2, v3 = load(values, vd, r + 2, i), load(values, vd, r + 3, i)
                    r0[i] = r0[i] + ((a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3))
                    r1[i] = r1[i] + ((b0 * v0 + b1 * v1) + (b2 * v2 + b3 * v3))
                    r2[i] = r2[i] + ((c0 * v0 + c1 * v1) + (c2 * v2 + c3 * v3))
                    r3[i] = r3[i] + ((d0 * v0 + d1 * v1) + (d2 * v2 + d3 * v3))
            for j in range(quads, m):
                a, b, c, d = sc[0, j] * inv[0], sc[1, j] * inv[1], sc[2, j] * inv[2], sc[3, j] * inv[3]
                for i in range(hd):
                    v = load(values, vd, lo + j, i)
                    r0[i] += a * v
                    r1[i] += b * v
                    r2[i] += c * v
                    r3[i] += d * v
            out[t, h0, :] = r0  # a repeated head writes the same bits again
            out[t, h1, :] = r1
            out[t, h2, :] = r2
            out[t, h3, :] = r3

    return _attention_grouped


_attention_grouped = _build_grouped()
GROUPED_FROM = 3  # query heads per kv head from which the grouped kernel runs (fewer: it would repeat heads)


def attention(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    seq_slots: np.ndarray,
    positions: np.ndarray,
    window: int,
    scale: float,
    out: np.ndarray,
    softcap: float = 0.0,
    k_scales: np.ndarray | None = None,
    v_scales: np.ndarray | None = None,
) -> np.ndarray:
    """q (n, n_head, hd) -> out (n, n_head, hd); caches (n_slots, n_kv, n_ctx, hd) of float32,
    f16 bits (uint16) or q8_0 codes (int8, with ``k_scales``/``v_scales`` (n_slots, n_kv,
    n_ctx, hd / 32) of f16 bits; see ``kv_elements``). ``softcap`` > 0 caps each scaled score
    at +-softcap by tanh (gemma2); 0 is off.

    The kernels check no bounds: the sizes they index by are checked here, against
    each other (slots and positions against the cache are the runner's check).
    """
    n, n_head, hd = q.shape
    n_slots, n_kv, n_ctx = k_cache.shape[0], k_cache.shape[1], k_cache.shape[2]
    if (k_cache.shape != v_cache.shape or k_cache.dtype != v_cache.dtype or k_cache.shape[3] != hd
            or out.shape != q.shape or n_kv < 1 or n_head % n_kv or seq_slots.shape != (n,) or positions.shape != (n,)):
        raise ValueError(f"attention: q {q.shape}, caches {k_cache.shape} / {v_cache.shape}, out {out.shape}, "
                         f"{seq_slots.shape[0]} slots and {positions.shape[0]} positions do not fit together")
    if k_cache.dtype == np.int8:
        want = (n_slots, n_kv, n_ctx, hd // 32)
        if hd % 32 or k_scales is None or v_scales is None or k_scales.shape != want or v_scales.shape != want \
                or k_scales.dtype != np.uint16 or v_scales.dtype != np.uint16:
            raise ValueError(f"attention: a q8_0 cache {k_cache.shape} needs uint16 scales of shape {want}")
    elif k_scales is None or v_scales is None or k_scales.dtype != np.uint16 or v_scales.dtype != np.uint16:
        k_scales = v_scales = np.zeros((n_slots, n_kv, 1, 1), dtype=np.uint16)  # never read (KVCache passes its own)
    keys = int(positions.max()) + 1 if n else 0  # at most, per query
    if keys > n_ctx:
        raise ValueError(f"attention: position {keys - 1} outside the cache of {n_ctx}")
    if window > 0:
        keys = min(keys, window)
    run = _attention_grouped if n_head // k_cache.shape[1] >= GROUPED_FROM else _attention
    run(n * n_head * hd * keys, q, k_cache, v_cache, k_scales, v_scales, seq_slots, positions, window,
        np.float32(scale), np.float32(softcap), out)
    return out
