"""Block decoders in numba, one per supported type: the kernels' inner step.

A decoder turns the same blocks of ``ROWS`` rows into float32 at once:

    unpack(raw, rows, blk0, nblk, lut, w, unit)
    # raw (d, row_nbytes) uint8; rows (ROWS,) int64: the rows to decode (repeats allowed)
    # writes w[r*CHUNK + e] = element blk0*block_size + e of row rows[r],
    #   for r < ROWS and e < nblk*block_size  (nblk*block_size <= CHUNK)
    # lut (65536,) float32: half -> float table; unit: the integer 1 at run time

Decoding ROWS rows in one loop shares the loop overhead of each short block.
Each decoder performs the same float32 operations in the same order as the
numpy reference in ``legacy.py`` / ``kquants.py`` / ``formats.py`` (layouts
are described there; field offsets are ``types.BLOCK_FIELDS``'s). Kernels
reach them through ``unpack_blocks(type_id, ...)``, which picks the decoder
while compiling. Decoders are inlined at numba-IR level: inside a kernel
compiled without ``fastmath`` they are bit-exact with numpy; inside a matmul
kernel they may fuse multiply-adds.

Integer expressions are cast back to int32 (``I32(...)``) before they become
floats: numba computes small integers in 64 bits, and LLVM narrows them back
(to 16 lanes per AVX-512 register, not 8) only when told the result fits.
See ``_jit`` for why indices are ``uint64`` and inner loops run to ``n * unit``.
"""

from __future__ import annotations

import numpy as np
from numba import int8 as I8
from numba import int32 as I32
from numba import types
from numba import uint32 as U32
from numba.extending import overload

from kettle.quant._jit import (
    U,
    bits_to_f32,
    byte_at,
    f16_at,
    helper_jit,
    inline_jit,
    load_u16,
    load_u32,
    shr32,
    stack_empty,
)
from kettle.quant.types import QUANT_INFO, GGMLType, offsets

F32 = np.float32
ROWS = 8  # rows decoded together (a matmul tile)
CHUNK = 512  # elements per row decoded at a time at most: 2 K super-blocks, 16 simple blocks
ROWS_X8, ROWS_X16 = (ROWS * 8, ROWS * 16)  # sizes of per-group scale scratch (literals for stack_empty)

_TS = {t: info.type_size for t, info in QUANT_INFO.items()}
TS_Q4_0, TS_Q4_1, TS_Q5_0, TS_Q5_1, TS_Q8_0 = (_TS[GGMLType[n]] for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"))
TS_Q2_K, TS_Q3_K, TS_Q4_K, TS_Q5_K, TS_Q6_K = (_TS[GGMLType[n]] for n in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"))
# Byte offset of each block field (``BLOCK_FIELDS``, byte order): globals, so numba compiles them as constants
Q4_0_D, Q4_0_QS = offsets(GGMLType.Q4_0).values()
Q4_1_D, Q4_1_M, Q4_1_QS = offsets(GGMLType.Q4_1).values()
Q5_0_D, Q5_0_QH, Q5_0_QS = offsets(GGMLType.Q5_0).values()
Q5_1_D, Q5_1_M, Q5_1_QH, Q5_1_QS = offsets(GGMLType.Q5_1).values()
Q8_0_D, Q8_0_QS = offsets(GGMLType.Q8_0).values()
Q2_K_SCALES, Q2_K_QS, Q2_K_D, Q2_K_DMIN = offsets(GGMLType.Q2_K).values()
Q3_K_HMASK, Q3_K_QS, Q3_K_SCALES, Q3_K_D = offsets(GGMLType.Q3_K).values()
Q4_K_D, Q4_K_DMIN, Q4_K_SCALES, Q4_K_QS = offsets(GGMLType.Q4_K).values()
Q5_K_D, Q5_K_DMIN, Q5_K_SCALES, Q5_K_QH, Q5_K_QS = offsets(GGMLType.Q5_K).values()
Q6_K_QL, Q6_K_QH, Q6_K_SCALES, Q6_K_D = offsets(GGMLType.Q6_K).values()


@helper_jit
def _at(r, e):
    """Index in ``w`` of element ``e`` of tile row ``r``."""
    return U(r * CHUNK) + U(e)


# --- float types (one element per block) --------------------------------------------


@inline_jit
def unpack_f32(raw, rows, blk0, nblk, lut, w, unit):
    for i in range(nblk):
        for r in range(ROWS):
            w[_at(r, i)] = bits_to_f32(load_u32(raw, U(rows[r]), U(blk0 + i) * U(4)))


@inline_jit
def unpack_f16(raw, rows, blk0, nblk, lut, w, unit):
    for i in range(nblk):
        for r in range(ROWS):
            w[_at(r, i)] = f16_at(raw, U(rows[r]), U(blk0 + i) * U(2), lut)


@inline_jit
def unpack_bf16(raw, rows, blk0, nblk, lut, w, unit):
    for i in range(nblk):
        for r in range(ROWS):
            w[_at(r, i)] = bits_to_f32(load_u16(raw, U(rows[r]), U(blk0 + i) * U(2)) << U32(16))


# --- 32-element blocks -------------------------------------------------------------


@inline_jit
def _halves(raw, rows, d_at, m_at, lut, d, m):
    """Per tile row, the half at byte ``d_at`` into ``d`` and the one at ``m_at`` into ``m``."""
    for r in range(ROWS):
        d[r] = f16_at(raw, U(rows[r]), d_at, lut)
        m[r] = f16_at(raw, U(rows[r]), m_at, lut)


@inline_jit
def unpack_q4_0(raw, rows, blk0, nblk, lut, w, unit):
    d = stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q4_0)
        for r in range(ROWS):
            d[r] = f16_at(raw, U(rows[r]), o + U(Q4_0_D), lut)
        for j in range(16 * unit):
            for r in range(ROWS):
                q = byte_at(raw, U(rows[r]), o + U(Q4_0_QS + j))
                w[_at(r, 32 * b + j)] = d[r] * F32(I32((q & 15) - 8))
                w[_at(r, 32 * b + 16 + j)] = d[r] * F32(I32((q >> 4) - 8))


@inline_jit
def unpack_q4_1(raw, rows, blk0, nblk, lut, w, unit):
    d = stack_empty(ROWS, np.float32)
    m = stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q4_1)
        _halves(raw, rows, o + U(Q4_1_D), o + U(Q4_1_M), lut, d, m)
        for j in range(16 * unit):
            for r in range(ROWS):
                q = byte_at(raw, U(rows[r]), o + U(Q4_1_QS + j))
                w[_at(r, 32 * b + j)] = d[r] * F32(I32(q & 15)) + m[r]
                w[_at(r, 32 * b + 16 + j)] = d[r] * F32(I32(q >> 4)) + m[r]


@helper_jit
def _q5_codes(q, high, j):
    """5-bit codes of elements j and j + 16 (j < 16): the nibbles of byte ``q``
    plus bits j and j + 16 of ``high``, from one shift."""
    h = shr32(high, j)
    return I32((q & 15) | ((h & 1) << 4)), I32((q >> 4) | ((h >> 12) & 16))


@inline_jit
def unpack_q5_0(raw, rows, blk0, nblk, lut, w, unit):
    d = stack_empty(ROWS, np.float32)
    high = stack_empty(ROWS, np.int32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q5_0)
        for r in range(ROWS):
            d[r] = f16_at(raw, U(rows[r]), o + U(Q5_0_D), lut)
            high[r] = I32(load_u32(raw, U(rows[r]), o + U(Q5_0_QH)))
        for j in range(16 * unit):
            for r in range(ROWS):
                lo, hi = _q5_codes(byte_at(raw, U(rows[r]), o + U(Q5_0_QS + j)), high[r], j)
                w[_at(r, 32 * b + j)] = d[r] * F32(I32(lo - 16))
                w[_at(r, 32 * b + 16 + j)] = d[r] * F32(I32(hi - 16))


@inline_jit
def unpack_q5_1(raw, rows, blk0, nblk, lut, w, unit):
    d = stack_empty(ROWS, np.float32)
    m = stack_empty(ROWS, np.float32)
    high = stack_empty(ROWS, np.int32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q5_1)
        _halves(raw, rows, o + U(Q5_1_D), o + U(Q5_1_M), lut, d, m)
        for r in range(ROWS):
            high[r] = I32(load_u32(raw, U(rows[r]), o + U(Q5_1_QH)))
        for j in range(16 * unit):
            for r in range(ROWS):
                lo, hi = _q5_codes(byte_at(raw, U(rows[r]), o + U(Q5_1_QS + j)), high[r], j)
                w[_at(r, 32 * b + j)] = d[r] * F32(lo) + m[r]
                w[_at(r, 32 * b + 16 + j)] = d[r] * F32(hi) + m[r]


@inline_jit
def unpack_q8_0(raw, rows, blk0, nblk, lut, w, unit):
    d = stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q8_0)
        for r in range(ROWS):
            d[r] = f16_at(raw, U(rows[r]), o + U(Q8_0_D), lut)
        for j in range(32 * unit):
            for r in range(ROWS):
                w[_at(r, 32 * b + j)] = F32(I8(raw[U(rows[r]), o + U(Q8_0_QS + j)])) * d[r]


# --- K-quants (256-element super-blocks) ---------------------------------------------
# Q2_K, Q3_K, Q6_K: group g = 8h + 2s + hf holds elements 128h + 32s + 16hf + l
# (l < 16; see kquants.py for the bit positions). For each (h, hf), two loops
# write the four groups s = 0..3 whose codes share bytes; a loop writing more
# than two output streams defeats LLVM's dependence analysis (no vectorizing).


@inline_jit
def _group_scales(table, g, s0, s1, s2, s3):
    """s<i>[r] = table[r*16 + g + 2i]: the four groups one (h, hf) pass writes, per row."""
    for r in range(ROWS):
        s0[r] = table[r * 16 + g]
        s1[r] = table[r * 16 + g + 2]
        s2[r] = table[r * 16 + g + 4]
        s3[r] = table[r * 16 + g + 6]


@inline_jit
def unpack_q2_k(raw, rows, blk0, nblk, lut, w, unit):
    dl = stack_empty(ROWS_X16, np.float32)  # [r*16 + g]: d * scale
    ml = stack_empty(ROWS_X16, np.float32)  # [r*16 + g]: dmin * min
    d0, d1 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    d2, d3 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    m0, m1 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    m2, m3 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q2_K)
        for r in range(ROWS):
            d = f16_at(raw, U(rows[r]), o + U(Q2_K_D), lut)
            dmin = f16_at(raw, U(rows[r]), o + U(Q2_K_DMIN), lut)
            for g in range(16 * unit):
                sc = byte_at(raw, U(rows[r]), o + U(Q2_K_SCALES + g))
                dl[r * 16 + g] = d * F32(I32(sc & 15))
                ml[r * 16 + g] = dmin * F32(I32(sc >> 4))
        for hh in range(4 * unit):  # (h, hf): byte l holds the codes of groups g, g+2, g+4, g+6
            g = 8 * (hh // 2) + hh % 2
            _group_scales(dl, g, d0, d1, d2, d3)
            _group_scales(ml, g, m0, m1, m2, m3)
            src = o + U(Q2_K_QS + 16 * hh)
            e = 256 * b + 16 * g
            for l in range(16 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), src + U(l))
                    w[_at(r, e + l)] = d0[r] * F32(I32(q & 3)) - m0[r]
                    w[_at(r, e + 32 + l)] = d1[r] * F32(I32((q >> 2) & 3)) - m1[r]
            for l in range(16 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), src + U(l))
                    w[_at(r, e + 64 + l)] = d2[r] * F32(I32((q >> 4) & 3)) - m2[r]
                    w[_at(r, e + 96 + l)] = d3[r] * F32(I32(q >> 6)) - m3[r]


@helper_jit
def _q3_scale(raw, row, at, g):
    """Signed 6-bit scale of Q3_K group g from the 12 scale bytes at ``at``."""
    low = shr32(byte_at(raw, row, at + U(g % 8)), 4 * (g // 8)) & 15
    high = shr32(byte_at(raw, row, at + U(8 + g % 4)), 2 * (g // 4)) & 3
    return I32((low | (high << 4)) - 32)


@helper_jit
def _q3_code(q, keep):
    """Q3_K 3-bit code from its 2 low bits and its "no -4" bit, as float32."""
    return F32(I32((q & 3) - ((keep & 1) ^ 1) * 4))


@inline_jit
def unpack_q3_k(raw, rows, blk0, nblk, lut, w, unit):
    dl = stack_empty(ROWS_X16, np.float32)  # [r*16 + g]: d * scale
    s0, s1 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    s2, s3 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q3_K)
        for r in range(ROWS):
            d = f16_at(raw, U(rows[r]), o + U(Q3_K_D), lut)
            for g in range(16 * unit):
                dl[r * 16 + g] = d * F32(_q3_scale(raw, U(rows[r]), o + U(Q3_K_SCALES), g))
        for hh in range(4 * unit):  # (h, hf) as in Q2_K; the hmask bit of group 8h+2s+hf is 4h + s
            h, hf = hh // 2, hh % 2
            g = 8 * h + hf
            _group_scales(dl, g, s0, s1, s2, s3)
            low_at = o + U(Q3_K_QS + 16 * hh)
            mask_at = o + U(Q3_K_HMASK + 16 * hf)
            e = 256 * b + 16 * g
            for l in range(16 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), low_at + U(l))
                    keep = shr32(byte_at(raw, U(rows[r]), mask_at + U(l)), 4 * h)
                    w[_at(r, e + l)] = s0[r] * _q3_code(q, keep)
                    w[_at(r, e + 32 + l)] = s1[r] * _q3_code(q >> 2, keep >> 1)
            for l in range(16 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), low_at + U(l))
                    keep = shr32(byte_at(raw, U(rows[r]), mask_at + U(l)), 4 * h)
                    w[_at(r, e + 64 + l)] = s2[r] * _q3_code(q >> 4, keep >> 2)
                    w[_at(r, e + 96 + l)] = s3[r] * _q3_code(q >> 6, keep >> 3)


@inline_jit
def _kq_scales(raw, rows, d_at, dmin_at, sc_at, lut, dl, ml):
    """Q4_K/Q5_K: per tile row r and group g (0..7), d*scale into dl[r*8+g], dmin*min into ml[r*8+g].

    ``d``, ``dmin``: the halves at bytes ``d_at``, ``dmin_at``. The 12 bytes at
    ``sc_at`` hold 6-bit values: groups 0..3 in the low 6 bits of bytes 0..3
    (scales) and 4..7 (mins); groups 4..7 in the nibbles of bytes 8..11 plus
    the top 2 bits of bytes 0..3 (scales) and 4..7 (mins).
    """
    for r in range(ROWS):
        row = U(rows[r])
        d = f16_at(raw, row, d_at, lut)
        dmin = f16_at(raw, row, dmin_at, lut)
        for g in range(4):
            sc_lo = byte_at(raw, row, sc_at + U(g))
            m_lo = byte_at(raw, row, sc_at + U(4 + g))
            tail = byte_at(raw, row, sc_at + U(8 + g))
            dl[r * 8 + g] = d * F32(I32(sc_lo & 63))
            ml[r * 8 + g] = dmin * F32(I32(m_lo & 63))
            dl[r * 8 + 4 + g] = d * F32(I32((tail & 15) | ((sc_lo >> 6) << 4)))
            ml[r * 8 + 4 + g] = dmin * F32(I32((tail >> 4) | ((m_lo >> 6) << 4)))


@inline_jit
def unpack_q4_k(raw, rows, blk0, nblk, lut, w, unit):
    dl = stack_empty(ROWS_X8, np.float32)
    ml = stack_empty(ROWS_X8, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q4_K)
        _kq_scales(raw, rows, o + U(Q4_K_D), o + U(Q4_K_DMIN), o + U(Q4_K_SCALES), lut, dl, ml)
        for c in range(4 * unit):  # 32 bytes of qs -> groups 2c (low nibbles) and 2c+1 (high)
            src = o + U(Q4_K_QS + 32 * c)
            for l in range(32 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), src + U(l))
                    e = 256 * b + 64 * c + l
                    w[_at(r, e)] = dl[r * 8 + 2 * c] * F32(I32(q & 15)) - ml[r * 8 + 2 * c]
                    w[_at(r, e + 32)] = dl[r * 8 + 2 * c + 1] * F32(I32(q >> 4)) - ml[r * 8 + 2 * c + 1]


@inline_jit
def unpack_q5_k(raw, rows, blk0, nblk, lut, w, unit):
    dl = stack_empty(ROWS_X8, np.float32)
    ml = stack_empty(ROWS_X8, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q5_K)
        _kq_scales(raw, rows, o + U(Q5_K_D), o + U(Q5_K_DMIN), o + U(Q5_K_SCALES), lut, dl, ml)
        for c in range(4 * unit):
            src = o + U(Q5_K_QS + 32 * c)
            for l in range(32 * unit):
                for r in range(ROWS):
                    q = byte_at(raw, U(rows[r]), src + U(l))
                    high = shr32(byte_at(raw, U(rows[r]), o + U(Q5_K_QH + l)), 2 * c)
                    e = 256 * b + 64 * c + l
                    w[_at(r, e)] = dl[r * 8 + 2 * c] * F32(I32((q & 15) | ((high & 1) << 4))) - ml[r * 8 + 2 * c]
                    w[_at(r, e + 32)] = (
                        dl[r * 8 + 2 * c + 1] * F32(I32((q >> 4) | ((high & 2) << 3))) - ml[r * 8 + 2 * c + 1]
                    )


@inline_jit
def unpack_q6_k(raw, rows, blk0, nblk, lut, w, unit):
    dl = stack_empty(ROWS_X16, np.float32)  # [r*16 + g]: d * scale
    s0, s1 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    s2, s3 = stack_empty(ROWS, np.float32), stack_empty(ROWS, np.float32)
    for b in range(nblk):
        o = U(blk0 + b) * U(TS_Q6_K)
        for r in range(ROWS):
            d = f16_at(raw, U(rows[r]), o + U(Q6_K_D), lut)
            for g in range(16 * unit):
                dl[r * 16 + g] = d * F32(I8(raw[U(rows[r]), o + U(Q6_K_SCALES + g)]))
        for hh in range(4 * unit):  # (h, hf): ql bytes l, l+32 and qh byte l give groups g + 2s
            h, hf = hh // 2, hh % 2
            g = 8 * h + hf
            _group_scales(dl, g, s0, s1, s2, s3)
            low_at = o + U(Q6_K_QL + 64 * h + 16 * hf)
            high_at = o + U(Q6_K_QH + 16 * hh)
            e = 256 * b + 16 * g
            for l in range(16 * unit):  # groups g (low nibbles of ql[l]) and g + 4 (high)
                for r in range(ROWS):
                    a = byte_at(raw, U(rows[r]), low_at + U(l))
                    hi = byte_at(raw, U(rows[r]), high_at + U(l))
                    w[_at(r, e + l)] = s0[r] * F32(I32(((a & 15) | ((hi & 3) << 4)) - 32))
                    w[_at(r, e + 64 + l)] = s2[r] * F32(I32(((a >> 4) | (hi & 48)) - 32))
            for l in range(16 * unit):  # groups g + 2 (low nibbles of ql[l + 32]) and g + 6 (high)
                for r in range(ROWS):
                    c = byte_at(raw, U(rows[r]), low_at + U(32 + l))
                    hi = byte_at(raw, U(rows[r]), high_at + U(l))
                    w[_at(r, e + 32 + l)] = s1[r] * F32(I32(((c & 15) | ((hi & 12) << 2)) - 32))
                    w[_at(r, e + 96 + l)] = s3[r] * F32(I32(((c >> 4) | ((hi >> 2) & 48)) - 32))


UNPACKERS = {
    GGMLType.F32: unpack_f32,
    GGMLType.F16: unpack_f16,
    GGMLType.BF16: unpack_bf16,
    GGMLType.Q4_0: unpack_q4_0,
    GGMLType.Q4_1: unpack_q4_1,
    GGMLType.Q5_0: unpack_q5_0,
    GGMLType.Q5_1: unpack_q5_1,
    GGMLType.Q8_0: unpack_q8_0,
    GGMLType.Q2_K: unpack_q2_k,
    GGMLType.Q3_K: unpack_q3_k,
    GGMLType.Q4_K: unpack_q4_k,
    GGMLType.Q5_K: unpack_q5_k,
    GGMLType.Q6_K: unpack_q6_k,
}


def unpack_blocks(type_id, raw, rows, blk0, nblk, lut, w, unit):
    """``unpack`` of the type ``type_id``, chosen while compiling: inside a kernel
    ``type_id`` must be a compile-time constant (a closure or global int)."""
    raise NotImplementedError("unpack_blocks runs inside numba kernels only")


@overload(unpack_blocks, inline="always")
def _unpack_blocks_typing(type_id, raw, rows, blk0, nblk, lut, w, unit):
    if not isinstance(type_id, types.IntegerLiteral):
        return None  # numba retries with the literal value
    decode = UNPACKERS[GGMLType(type_id.literal_value)]

    def impl(type_id, raw, rows, blk0, nblk, lut, w, unit):
        decode(raw, rows, blk0, nblk, lut, w, unit)

    return impl
