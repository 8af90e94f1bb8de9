"""numpy reference of the K-quants (256-element super-blocks): Q2_K ... Q6_K.

Byte layout of one super-block (``d``, ``dmin``: IEEE halves):

    Q2_K  scales[16] | qs[64] | d | dmin          16 groups of 16, 2-bit codes
    Q3_K  hmask[32] | qs[64] | scales[12] | d     16 groups of 16, 3-bit codes
    Q4_K  d | dmin | scales[12] | qs[128]          8 groups of 32, 4-bit codes
    Q5_K  d | dmin | scales[12] | qh[32] | qs[128] 8 groups of 32, 5-bit codes
    Q6_K  ql[128] | qh[64] | scales[16] | d       16 groups of 16, 6-bit codes

Element order. Q2_K/Q3_K: element ``128h + 32s + l`` (h 0..1, s 0..3, l 0..31)
has its 2 low bits at bits ``2s`` of ``qs[32h + l]``; Q3_K's third bit is bit
``4h + s`` of ``hmask[l]`` (a set bit means +0, a clear bit -4). Q4_K/Q5_K:
element ``64c + 32u + l`` is nibble ``u`` of ``qs[32c + l]``; Q5_K's bit 4 is
bit ``2c + u`` of ``qh[l]``. Q6_K: element ``128h + 32s + l`` has its low
nibble in nibble ``s // 2`` of ``ql[64h + 32(s % 2) + l]`` and its 2 high bits
at bits ``2s`` of ``qh[32h + l]``.

Group scales. Q2_K: byte ``g`` = scale (low nibble) | min (high nibble);
``x = d*scale * q - dmin*min``. Q3_K: 16 signed 6-bit scales (stored + 32):
low nibbles in bytes 0..7 (groups 0..7 low, 8..15 high), 2 high bits of group
``g`` at bits ``2(g // 4)`` of byte ``8 + g % 4``; ``x = d*(scale-32) * (q-4)``.
Q4_K/Q5_K: 8 6-bit scales and mins in 12 bytes (``_kq_scale_min``);
``x = d*scale * q - dmin*min``. Q6_K: int8 scales; ``x = d*scale * (q - 32)``.

The quantizers are kettle's own simple ones (per-group range, then the group
scales quantized against the super-block scale); no importance matrix.
"""

from __future__ import annotations

import numpy as np

from kettle.quant.formats import QuantFormat, field, half, half_bytes, reciprocal, round_half_away
from kettle.quant.types import K_SCALE_SIZE, QK_K, GGMLType


def _crumbs(packed: np.ndarray, shifts: int) -> np.ndarray:
    """(n, 32*m) bytes -> (n, shifts*32*m) values: for each 32-byte row, the
    field at bits ``bits*s`` for s in 0..shifts-1 (bits = 8 // shifts)."""
    n, width = packed.shape
    bits = 8 // shifts
    rows = packed.reshape(n, width // 32, 1, 32)
    out = (rows >> (np.arange(shifts, dtype=np.uint8) * bits).reshape(1, 1, shifts, 1)) & ((1 << bits) - 1)
    return out.reshape(n, -1)


def _merge_crumbs(values: np.ndarray, shifts: int) -> np.ndarray:
    """Inverse of ``_crumbs``."""
    n = values.shape[0]
    bits = 8 // shifts
    parts = values.reshape(n, -1, shifts, 32).astype(np.uint8) << (np.arange(shifts, dtype=np.uint8) * bits).reshape(
        1, 1, shifts, 1
    )
    return np.bitwise_or.reduce(parts, axis=2).reshape(n, -1)


def _groups(values: np.ndarray, size: int) -> np.ndarray:
    return values.reshape(values.shape[0], -1, size)


def _kq_scale_min(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> 8 scales and 8 mins (6 bits each), each (n, 8) uint8.

    Groups 0..3: low 6 bits of bytes 0..3 (scales) and 4..7 (mins). Groups
    4..7: low/high nibble of bytes 8..11 plus the top 2 bits of bytes 0..3
    (scales) and 4..7 (mins).
    """
    lo_sc, lo_m, tail = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate([lo_sc & 0x3F, (tail & 0x0F) | ((lo_sc >> 6) << 4)], axis=1)
    mins = np.concatenate([lo_m & 0x3F, (tail >> 4) | ((lo_m >> 6) << 4)], axis=1)
    return scales, mins


def _kq_pack_scale_min(scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Inverse of ``_kq_scale_min``: (n, 8) + (n, 8) values 0..63 -> (n, 12) bytes."""
    sc, m = scales.astype(np.uint8), mins.astype(np.uint8)
    first = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    second = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    tail = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    return np.concatenate([first, second, tail], axis=1)


def _q3_scales(packed: np.ndarray) -> np.ndarray:
    """Q3_K: 12 bytes -> 16 signed group scales as float32 (n, 16)."""
    low = np.concatenate([packed[:, 0:8] & 0x0F, packed[:, 0:8] >> 4], axis=1)
    high = ((packed[:, 8:12].reshape(-1, 1, 4) >> (np.arange(4, dtype=np.uint8) * 2).reshape(1, 4, 1)) & 3).reshape(
        -1, 16
    )
    return ((low | (high << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)


def _q3_pack_scales(stored: np.ndarray) -> np.ndarray:
    """Inverse of ``_q3_scales`` on the stored values (scale + 32, 0..63): (n, 16) -> (n, 12)."""
    s = stored.astype(np.uint8)
    low = (s[:, :8] & 0x0F) | ((s[:, 8:] & 0x0F) << 4)
    high = np.bitwise_or.reduce(
        (s >> 4).reshape(-1, 4, 4) << (np.arange(4, dtype=np.uint8) * 2).reshape(1, 4, 1), axis=1
    )
    return np.concatenate([low, high], axis=1)


def _scaled_codes(values: np.ndarray, step: np.ndarray, offset: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """round((x + offset) / step) clipped to lo..hi, per group; a zero step gives code ``max(lo, 0)``."""
    return np.clip(round_half_away((values + offset) * reciprocal(step)), lo, hi)


def _affine_quantize(values: np.ndarray, group: int, levels: int, scale_levels: int):
    """Shared by Q2_K/Q4_K/Q5_K: x ~ d*sc*q - dmin*m with q in 0..levels-1, sc, m in 0..scale_levels.

    Returns (d, dmin) float32 (n, 1), sc, m (n, groups) and codes (n, 256).
    """
    g = _groups(values, group)
    lo = np.minimum(g.min(axis=2), 0)  # (n, groups): mins never positive, so m >= 0
    step = (g.max(axis=2) - lo) / np.float32(levels - 1)
    d = half(half_bytes(step.max(axis=1, keepdims=True) / np.float32(scale_levels)), 0)
    dmin = half(half_bytes(-lo.min(axis=1, keepdims=True) / np.float32(scale_levels)), 0)
    sc = np.clip(round_half_away(step * reciprocal(d)), 0, scale_levels)
    m = np.clip(round_half_away(-lo * reciprocal(dmin)), 0, scale_levels)
    codes = _scaled_codes(g, (d * sc)[..., None], (dmin * m)[..., None], 0, levels - 1)
    return (d, dmin, sc.astype(np.uint8), m.astype(np.uint8), codes.reshape(values.shape).astype(np.uint8))


def _symmetric_quantize(values: np.ndarray, group: int, code_max: int, scale_max: int):
    """Shared by Q3_K/Q6_K: x ~ d*sc*q with q in -code_max..code_max-1, sc in -scale_max..scale_max-1.

    Returns d float32 (n, 1), sc int (n, groups), codes int (n, 256).
    """
    g = _groups(values, group)
    at = np.abs(g).argmax(axis=2)[..., None]
    step = np.take_along_axis(g, at, axis=2)[..., 0] / np.float32(-code_max)  # (n, groups)
    d = half(half_bytes(np.abs(step).max(axis=1, keepdims=True) / np.float32(scale_max)), 0)
    sc = np.clip(round_half_away(step * reciprocal(d)), -scale_max, scale_max - 1)
    codes = _scaled_codes(g, (d * sc)[..., None], np.float32(0), -code_max, code_max - 1)
    return d, sc.astype(np.int32), codes.reshape(values.shape).astype(np.int32)


class Q2_K(QuantFormat, ggml_type=GGMLType.Q2_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc = field(blocks, 0, 16)
        dl = (half(blocks, 80) * (sc & 0x0F).astype(np.float32))[..., None]  # (n, 16, 1)
        ml = (half(blocks, 82) * (sc >> 4).astype(np.float32))[..., None]
        q = _groups(_crumbs(field(blocks, 16, 64), 4), 16).astype(np.float32)
        return (dl * q - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, dmin, sc, m, codes = _affine_quantize(values, 16, 4, 15)
        parts = [sc | (m << 4), _merge_crumbs(codes, 4), half_bytes(d), half_bytes(dmin)]
        return np.concatenate(parts, axis=1)


class Q3_K(QuantFormat, ggml_type=GGMLType.Q3_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        dl = (half(blocks, 108) * _q3_scales(field(blocks, 96, 12)))[..., None]  # (n, 16, 1)
        low = _crumbs(field(blocks, 32, 64), 4).astype(np.int8)
        high = _crumbs(field(blocks, 0, 32), 8)  # bit 4h+s of hmask[l], in element order
        q = low - ((high ^ 1) << 2).astype(np.int8)
        return (dl * _groups(q, 16).astype(np.float32)).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, sc, codes = _symmetric_quantize(values, 16, 4, 32)
        biased = (codes + 4).astype(np.uint8)  # 0..7: low 2 bits, then the "no -4" bit
        parts = [_merge_crumbs(biased >> 2, 8), _merge_crumbs(biased & 3, 4), _q3_pack_scales(sc + 32), half_bytes(d)]
        return np.concatenate(parts, axis=1)


def _k_nibbles(packed: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K low nibbles in element order: (n, 128) bytes -> (n, 256)."""
    return _crumbs(packed, 2)


class Q4_K(QuantFormat, ggml_type=GGMLType.Q4_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc, m = _kq_scale_min(field(blocks, 4, K_SCALE_SIZE))
        dl = (half(blocks, 0) * sc.astype(np.float32))[..., None]  # (n, 8, 1)
        ml = (half(blocks, 2) * m.astype(np.float32))[..., None]
        q = _groups(_k_nibbles(field(blocks, 16, 128)), 32).astype(np.float32)
        return (dl * q - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, dmin, sc, m, codes = _affine_quantize(values, 32, 16, 63)
        parts = [half_bytes(d), half_bytes(dmin), _kq_pack_scale_min(sc, m), _merge_crumbs(codes, 2)]
        return np.concatenate(parts, axis=1)


class Q5_K(QuantFormat, ggml_type=GGMLType.Q5_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc, m = _kq_scale_min(field(blocks, 4, K_SCALE_SIZE))
        dl = (half(blocks, 0) * sc.astype(np.float32))[..., None]  # (n, 8, 1)
        ml = (half(blocks, 2) * m.astype(np.float32))[..., None]
        q = _k_nibbles(field(blocks, 48, 128)) | (_crumbs(field(blocks, 16, 32), 8) << 4)
        return (dl * _groups(q, 32).astype(np.float32) - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, dmin, sc, m, codes = _affine_quantize(values, 32, 32, 63)
        parts = [
            half_bytes(d),
            half_bytes(dmin),
            _kq_pack_scale_min(sc, m),
            _merge_crumbs(codes >> 4, 8),
            _merge_crumbs(codes & 0x0F, 2),
        ]
        return np.concatenate(parts, axis=1)


def _q6_low_order(low: np.ndarray) -> np.ndarray:
    """Q6_K ql nibbles: (n, 128) bytes -> (n, 256) in element order."""
    n = low.shape[0]
    halves = low.reshape(n, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    return (halves & 0x0F).reshape(n, -1)


class Q6_K(QuantFormat, ggml_type=GGMLType.Q6_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        dl = (half(blocks, 208) * field(blocks, 192, 16, np.int8).astype(np.float32))[..., None]  # (n, 16, 1)
        q = (_q6_low_order(field(blocks, 0, 128)) | (_crumbs(field(blocks, 128, 64), 4) << 4)).astype(np.int8)
        q = q - np.int8(32)
        return (dl * _groups(q, 16).astype(np.float32)).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, sc, codes = _symmetric_quantize(values, 16, 32, 128)
        biased = (codes + 32).astype(np.uint8)  # 0..63
        n = values.shape[0]
        low = (biased & 0x0F).reshape(n, 2, 2, 64)
        ql = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(n, 128)
        parts = [ql, _merge_crumbs(biased >> 4, 4), sc.astype(np.int8).view(np.uint8), half_bytes(d)]
        return np.concatenate(parts, axis=1)
