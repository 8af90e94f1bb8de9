"""numba encoders of the K-quants, byte-identical with llama.cpp's quantizer.

llama.cpp's ``quantize`` without an importance matrix calls ggml's
``quantize_row_q{2..6}_K_ref`` (``ggml/src/ggml-quants.c``): per group a scale
(and min) search (``make_qkx2_quants`` for Q2_K/Q4_K/Q5_K, ``make_q3_quants``
for Q3_K, ``make_qx_quants`` for Q6_K), then the group scales quantized against
the super-block scale, then every code recomputed from the stored scales. The
C code is compiled without fused multiply-adds or reassociation, so every
float32 operation here is written in the same order, with integers converted
to float32 where C converts them (numba would otherwise widen to float64).

Each kernel takes ``x`` (n_blocks, 256) float32 and fills ``out`` (n_blocks,
type_size) uint8, zeros on entry; super-blocks are independent, so blocks run
in parallel. The byte offset of each block field (``types.BLOCK_FIELDS``) is an
argument, ``<field>_at``: a run-time value, so numba's disk cache (keyed on this
file alone) can never hold a kernel built for another layout.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kettle.quant._jit import bits_to_f32, f16_table, f32_to_bits
from kettle.quant.types import QUANT_INFO, GGMLType, offsets

F32 = np.float32
QK_K = 256
GROUP_MAX_EPS = np.float32(1e-15)

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_par = numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")


@_jit
def _f32_bits(v):
    return np.int64(f32_to_bits(F32(v)))


@_jit
def fp32_to_fp16(f):
    """ggml_compute_fp32_to_fp16: round to nearest even, NaN -> 0x7E00 (sign kept)."""
    base = (abs(f) * F32(2.0**112)) * F32(2.0**-110)
    w = _f32_bits(f)
    shl1_w = (w + w) & 0xFFFFFFFF
    sign = w & 0x80000000
    bias = shl1_w & 0xFF000000
    bias = max(bias, 0x71000000)
    base = bits_to_f32(np.uint32((bias >> 1) + 0x07800000)) + base
    bits = _f32_bits(base)
    exp_bits = (bits >> 13) & 0x00007C00
    mantissa_bits = bits & 0x00000FFF
    nonsign = exp_bits + mantissa_bits
    out = (sign >> 16) | (0x7E00 if shl1_w > 0xFF000000 else nonsign)
    return np.uint16(out & 0xFFFF)


@_jit
def nearest_int(fval):
    """ggml's nearest_int: round half to even through the 1.5 * 2**23 trick (|fval| < 2**22)."""
    val = F32(fval + F32(12582912.0))
    i = _f32_bits(val)
    return np.int32((i & 0x007FFFFF) - 0x00400000)


@_jit
def _put_half(out, b, at, v):
    h = fp32_to_fp16(v)
    out[b, at] = np.uint8(h & 0xFF)
    out[b, at + 1] = np.uint8(h >> 8)


@_jit
def _half(lut, h):
    return lut[np.int64(h)]


@_jit
def make_qx_quants_rmse1(n, nmax, x, L):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL): weights x*x, scale search -9..9."""
    mx = F32(0)
    amax = F32(0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return F32(0)
    iscale = F32(-nmax) / mx
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(n):
        l = nearest_int(iscale * x[i])
        l = max(-nmax, min(nmax - 1, l))
        L[i] = l + nmax
        w = x[i] * x[i]
        fl = F32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    scale = sumlx / suml2 if suml2 != 0 else F32(0)
    best = scale * sumlx
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = -(F32(nmax) + F32(0.1) * F32(is_)) / mx
        sumlx = F32(0)
        suml2 = F32(0)
        for i in range(n):
            l = nearest_int(iscale * x[i])
            l = max(-nmax, min(nmax - 1, l))
            w = x[i] * x[i]
            fl = F32(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                l = nearest_int(iscale * x[i])
                L[i] = nmax + max(-nmax, min(nmax - 1, l))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@_jit
def make_q3_quants(n, nmax, x, L):
    """make_q3_quants(n, nmax, x, L, do_rmse=true)."""
    mx = F32(0)
    amax = F32(0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return F32(0)
    iscale = F32(-nmax) / mx
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(n):
        l = nearest_int(iscale * x[i])
        l = max(-nmax, min(nmax - 1, l))
        L[i] = l
        w = x[i] * x[i]
        fl = F32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = x[i] * x[i]
            li = F32(L[i])
            slx = sumlx - w * x[i] * li
            if slx > 0:
                sl2 = suml2 - w * li * li
                new_l = nearest_int(x[i] * sl2 / slx)
                new_l = max(-nmax, min(nmax - 1, new_l))
                if new_l != L[i]:
                    fn = F32(new_l)
                    slx += w * x[i] * fn
                    sl2 += w * fn * fn
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > 0 else F32(0)


@_jit
def make_qkx2_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants: returns (scale, the_min) with the_min = -min >= 0."""
    mn = x[0]
    mx = x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        mn = min(mn, x[i])
        mx = max(mx, x[i])
        w = weights[i]
        sum_w += w
        sum_x += w * x[i]
    if mn > 0:
        mn = F32(0)
    if mx == mn:
        for i in range(n):
            L[i] = 0
        return F32(0), -mn
    iscale = F32(nmax) / (mx - mn)
    scale = F32(1) / iscale
    best_error = F32(0)
    for i in range(n):
        l = nearest_int(iscale * (x[i] - mn))
        L[i] = max(0, min(nmax, l))
        diff = scale * F32(L[i]) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best_error += weights[i] * diff
    for is_ in range(nstep + 1):
        iscale = (rmin + rdelta * F32(is_) + F32(nmax)) / (mx - mn)
        sum_l = F32(0)
        sum_l2 = F32(0)
        sum_xl = F32(0)
        for i in range(n):
            l = nearest_int(iscale * (x[i] - mn))
            l = max(0, min(nmax, l))
            Laux[i] = l
            w = weights[i]
            fl = F32(l)
            sum_l += w * fl
            sum_l2 += w * fl * fl
            sum_xl += w * fl * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = F32(0)
                this_scale = sum_xl / sum_l2
            cur_error = F32(0)
            for i in range(n):
                diff = this_scale * F32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                cur_error += weights[i] * diff
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return scale, -mn


@_jit
def _pack_2bit(out, b, at, L):
    """qs[j/4 + l] = L[j+l] | L[j+l+32] << 2 | L[j+l+64] << 4 | L[j+l+96] << 6 (Q2_K, Q3_K)."""
    for j in range(0, QK_K, 128):
        for l in range(32):
            out[b, at + j // 4 + l] = np.uint8(
                L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)
            )


@_par
def quantize_q2_k(x, lut, out, scales_at, qs_at, d_at, dmin_at):
    nb = x.shape[0]
    for b in prange(nb):
        xb = x[b]
        L = np.zeros(QK_K, np.int32)
        Laux = np.zeros(16, np.int32)
        weights = np.zeros(16, np.float32)
        scales = np.zeros(16, np.float32)
        mins = np.zeros(16, np.float32)
        max_scale = F32(0)
        max_min = F32(0)
        for j in range(16):
            for l in range(16):
                weights[l] = abs(xb[16 * j + l])
            s, m = make_qkx2_quants(16, 3, xb[16 * j : 16 * j + 16], weights, L[16 * j : 16 * j + 16], Laux,
                                    F32(-0.5), F32(0.1), 15, True)
            scales[j] = s
            mins[j] = m
            max_scale = max(max_scale, s)
            max_min = max(max_min, m)
        if max_scale > 0:
            iscale = F32(15) / max_scale
            for j in range(16):
                out[b, scales_at + j] = np.uint8(nearest_int(iscale * scales[j]) & 0xFF)
            _put_half(out, b, d_at, max_scale / F32(15))
        if max_min > 0:
            iscale = F32(15) / max_min
            for j in range(16):
                sm = np.int32(out[b, scales_at + j]) | (nearest_int(iscale * mins[j]) << 4)  # scale | min << 4
                out[b, scales_at + j] = np.uint8(sm & 0xFF)
            _put_half(out, b, dmin_at, max_min / F32(15))
        d_all = _half(lut, np.int64(out[b, d_at]) | (np.int64(out[b, d_at + 1]) << 8))
        m_all = _half(lut, np.int64(out[b, dmin_at]) | (np.int64(out[b, dmin_at + 1]) << 8))
        for j in range(16):
            d = d_all * F32(out[b, scales_at + j] & 0xF)
            if d == 0:
                continue
            dm = m_all * F32(out[b, scales_at + j] >> 4)
            for ii in range(16):
                l = nearest_int((xb[16 * j + ii] + dm) / d)
                L[16 * j + ii] = max(0, min(3, l))
        _pack_2bit(out, b, qs_at, L)


@_par
def quantize_q3_k(x, lut, out, hmask_at, qs_at, scales_at, d_at):
    nb = x.shape[0]
    for b in prange(nb):
        xb = x[b]
        L = np.zeros(QK_K, np.int32)
        scales = np.zeros(16, np.float32)
        max_scale = F32(0)
        amax = F32(0)
        for j in range(16):
            s = make_q3_quants(16, 4, xb[16 * j : 16 * j + 16], L[16 * j : 16 * j + 16])
            scales[j] = s
            a = abs(s)
            if a > amax:
                amax = a
                max_scale = s
        if max_scale != 0:
            iscale = F32(-32) / max_scale
            for j in range(16):
                l = np.int32(np.int8(nearest_int(iscale * scales[j]) & 0xFF))
                l = max(-32, min(31, l)) + 32
                if j < 8:
                    out[b, scales_at + j] = np.uint8(l & 0xF)
                else:
                    out[b, scales_at + j - 8] |= np.uint8((l & 0xF) << 4)
                l >>= 4
                out[b, scales_at + j % 4 + 8] |= np.uint8(l << (2 * (j // 4)))
            _put_half(out, b, d_at, F32(1) / iscale)
        d_all = _half(lut, np.int64(out[b, d_at]) | (np.int64(out[b, d_at + 1]) << 8))
        for j in range(16):
            sc = np.int32(out[b, scales_at + j] & 0xF) if j < 8 else np.int32(out[b, scales_at + j - 8] >> 4)
            sc = (sc | (((np.int32(out[b, scales_at + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
            d = d_all * F32(sc)
            if d == 0:
                continue
            for ii in range(16):
                l = nearest_int(xb[16 * j + ii] / d)
                L[16 * j + ii] = max(-4, min(3, l)) + 4
        m = 0
        hm = 1
        for j in range(QK_K):
            if L[j] > 3:
                out[b, hmask_at + m] |= np.uint8(hm)
                L[j] -= 4
            m += 1
            if m == 32:
                m = 0
                hm <<= 1
        _pack_2bit(out, b, qs_at, L)


@_jit
def _kq_scales(out, b, d_at, dmin_at, sc_at, scales, mins, nmax, L, xb, lut, rmin, rdelta, nstep, weights, Laux):
    """Q4_K / Q5_K: per-32 search, 6-bit scales and mins (12 bytes at ``sc_at``), d and dmin,
    then codes from the stored scales."""
    max_scale = F32(0)
    max_min = F32(0)
    for j in range(8):
        sum_x2 = F32(0)
        for l in range(32):
            sum_x2 += xb[32 * j + l] * xb[32 * j + l]
        av_x = F32(np.sqrt(sum_x2 / F32(32)))
        for l in range(32):
            weights[l] = av_x + abs(xb[32 * j + l])
        s, m = make_qkx2_quants(32, nmax, xb[32 * j : 32 * j + 32], weights, L[32 * j : 32 * j + 32], Laux,
                                rmin, rdelta, nstep, False)
        scales[j] = s
        mins[j] = m
        max_scale = max(max_scale, s)
        max_min = max(max_min, m)
    inv_scale = F32(63) / max_scale if max_scale > 0 else F32(0)
    inv_min = F32(63) / max_min if max_min > 0 else F32(0)
    for j in range(8):
        ls = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
        lm = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
        if j < 4:
            out[b, sc_at + j] = np.uint8(ls)
            out[b, sc_at + j + 4] = np.uint8(lm)
        else:
            out[b, sc_at + j + 4] = np.uint8((ls & 0xF) | ((lm & 0xF) << 4))
            out[b, sc_at + j - 4] |= np.uint8((ls >> 4) << 6)
            out[b, sc_at + j] |= np.uint8((lm >> 4) << 6)
    _put_half(out, b, d_at, max_scale / F32(63))
    _put_half(out, b, dmin_at, max_min / F32(63))
    d_all = _half(lut, np.int64(out[b, d_at]) | (np.int64(out[b, d_at + 1]) << 8))
    m_all = _half(lut, np.int64(out[b, dmin_at]) | (np.int64(out[b, dmin_at + 1]) << 8))
    for j in range(8):
        if j < 4:
            sc = np.int32(out[b, sc_at + j] & 63)
            m = np.int32(out[b, sc_at + j + 4] & 63)
        else:
            sc = np.int32(out[b, sc_at + j + 4] & 0xF) | ((np.int32(out[b, sc_at + j - 4]) >> 6) << 4)
            m = np.int32(out[b, sc_at + j + 4] >> 4) | ((np.int32(out[b, sc_at + j]) >> 6) << 4)
        d = d_all * F32(sc)
        if d == 0:
            continue
        dm = m_all * F32(m)
        for ii in range(32):
            l = nearest_int((xb[32 * j + ii] + dm) / d)
            L[32 * j + ii] = max(0, min(nmax, l))


@_par
def quantize_q4_k(x, lut, out, d_at, dmin_at, scales_at, qs_at):
    nb = x.shape[0]
    for b in prange(nb):
        L = np.zeros(QK_K, np.int32)
        Laux = np.zeros(32, np.int32)
        weights = np.zeros(32, np.float32)
        scales = np.zeros(8, np.float32)
        mins = np.zeros(8, np.float32)
        _kq_scales(out, b, d_at, dmin_at, scales_at, scales, mins, 15, L, x[b], lut, F32(-1.0), F32(0.1), 20,
                   weights, Laux)
        q = qs_at
        for j in range(0, QK_K, 64):
            for l in range(32):
                out[b, q + l] = np.uint8(L[j + l] | (L[j + l + 32] << 4))
            q += 32


@_par
def quantize_q5_k(x, lut, out, d_at, dmin_at, scales_at, qh_at, qs_at):
    nb = x.shape[0]
    for b in prange(nb):
        L = np.zeros(QK_K, np.int32)
        Laux = np.zeros(32, np.int32)
        weights = np.zeros(32, np.float32)
        scales = np.zeros(8, np.float32)
        mins = np.zeros(8, np.float32)
        _kq_scales(out, b, d_at, dmin_at, scales_at, scales, mins, 31, L, x[b], lut, F32(-0.5), F32(0.1), 15,
                   weights, Laux)
        m1 = 1
        m2 = 2
        ql = qs_at
        for n in range(0, QK_K, 64):
            for j in range(32):
                l1 = L[n + j]
                if l1 > 15:
                    l1 -= 16
                    out[b, qh_at + j] |= np.uint8(m1)
                l2 = L[n + j + 32]
                if l2 > 15:
                    l2 -= 16
                    out[b, qh_at + j] |= np.uint8(m2)
                out[b, ql + j] = np.uint8(l1 | (l2 << 4))
            m1 <<= 2
            m2 <<= 2
            ql += 32


@_par
def quantize_q6_k(x, lut, out, ql_at, qh_at, scales_at, d_at):
    nb = x.shape[0]
    for b in prange(nb):
        xb = x[b]
        L = np.zeros(QK_K, np.int32)
        scales = np.zeros(16, np.float32)
        max_scale = F32(0)
        max_abs_scale = F32(0)
        for ib in range(16):
            s = make_qx_quants_rmse1(16, 32, xb[16 * ib : 16 * ib + 16], L[16 * ib : 16 * ib + 16])
            scales[ib] = s
            a = abs(s)
            if a > max_abs_scale:
                max_abs_scale = a
                max_scale = s
        if max_abs_scale < GROUP_MAX_EPS:
            continue  # an all-zero block, d = 0
        iscale = F32(-128) / max_scale
        _put_half(out, b, d_at, F32(1) / iscale)
        for ib in range(16):
            out[b, scales_at + ib] = np.uint8(min(127, nearest_int(iscale * scales[ib])) & 0xFF)
        d_all = _half(lut, np.int64(out[b, d_at]) | (np.int64(out[b, d_at + 1]) << 8))
        for j in range(16):
            d = d_all * F32(np.int8(out[b, scales_at + j]))
            if d == 0:
                continue
            for ii in range(16):
                l = nearest_int(xb[16 * j + ii] / d)
                L[16 * j + ii] = max(-32, min(31, l)) + 32
        ql = ql_at
        qh = qh_at
        for j in range(0, QK_K, 128):
            for l in range(32):
                q1 = L[j + l] & 0xF
                q2 = L[j + l + 32] & 0xF
                q3 = L[j + l + 64] & 0xF
                q4 = L[j + l + 96] & 0xF
                out[b, ql + l] = np.uint8(q1 | (q3 << 4))
                out[b, ql + l + 32] = np.uint8(q2 | (q4 << 4))
                out[b, qh + l] = np.uint8(
                    (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6)
                )
            ql += 64
            qh += 32


ENCODERS = {"Q2_K": quantize_q2_k, "Q3_K": quantize_q3_k, "Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}


def encode_k(name: str, blocks: np.ndarray) -> np.ndarray:
    """(n_blocks, 256) float32 -> (n_blocks, type_size) uint8 with llama.cpp's bytes."""
    x = np.ascontiguousarray(blocks, dtype=np.float32)
    t = GGMLType[name]
    out = np.zeros((x.shape[0], QUANT_INFO[t].type_size), np.uint8)
    ENCODERS[name](x, f16_table(), out, *offsets(t).values())  # the field offsets, in the kernel's argument order
    return out
