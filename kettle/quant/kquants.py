"""numpy reference of the K-quants (256-element super-blocks): Q2_K ... Q6_K.

Byte layout of one super-block (``d``, ``dmin``: IEEE halves; offsets in
``types.BLOCK_FIELDS``):

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

The quantizers are llama.cpp's (no importance matrix), byte for byte: the
numba kernels in ``encode``.
"""

from __future__ import annotations

import numpy as np

from kettle.quant.encode import encode_k
from kettle.quant.formats import QuantFormat
from kettle.quant.types import QK_K, GGMLType


def _crumbs(packed: np.ndarray, shifts: int) -> np.ndarray:
    """(n, 32*m) bytes -> (n, shifts*32*m) values: for each 32-byte row, the
    field at bits ``bits*s`` for s in 0..shifts-1 (bits = 8 // shifts)."""
    n, width = packed.shape
    bits = 8 // shifts
    rows = packed.reshape(n, width // 32, 1, 32)
    out = (rows >> (np.arange(shifts, dtype=np.uint8) * bits).reshape(1, 1, shifts, 1)) & ((1 << bits) - 1)
    return out.reshape(n, -1)


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


def _q3_scales(packed: np.ndarray) -> np.ndarray:
    """Q3_K: 12 bytes -> 16 signed group scales as float32 (n, 16)."""
    low = np.concatenate([packed[:, 0:8] & 0x0F, packed[:, 0:8] >> 4], axis=1)
    high = ((packed[:, 8:12].reshape(-1, 1, 4) >> (np.arange(4, dtype=np.uint8) * 2).reshape(1, 4, 1)) & 3).reshape(
        -1, 16
    )
    return ((low | (high << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)


class Q2_K(QuantFormat, ggml_type=GGMLType.Q2_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc = cls.field(blocks, "scales")
        dl = (cls.half(blocks, "d") * (sc & 0x0F).astype(np.float32))[..., None]  # (n, 16, 1)
        ml = (cls.half(blocks, "dmin") * (sc >> 4).astype(np.float32))[..., None]
        q = _groups(_crumbs(cls.field(blocks, "qs"), 4), 16).astype(np.float32)
        return (dl * q - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return encode_k("Q2_K", values)


class Q3_K(QuantFormat, ggml_type=GGMLType.Q3_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        dl = (cls.half(blocks, "d") * _q3_scales(cls.field(blocks, "scales")))[..., None]  # (n, 16, 1)
        low = _crumbs(cls.field(blocks, "qs"), 4).astype(np.int8)
        high = _crumbs(cls.field(blocks, "hmask"), 8)  # bit 4h+s of hmask[l], in element order
        q = low - ((high ^ 1) << 2).astype(np.int8)
        return (dl * _groups(q, 16).astype(np.float32)).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return encode_k("Q3_K", values)


def _k_nibbles(packed: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K low nibbles in element order: (n, 128) bytes -> (n, 256)."""
    return _crumbs(packed, 2)


class Q4_K(QuantFormat, ggml_type=GGMLType.Q4_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc, m = _kq_scale_min(cls.field(blocks, "scales"))
        dl = (cls.half(blocks, "d") * sc.astype(np.float32))[..., None]  # (n, 8, 1)
        ml = (cls.half(blocks, "dmin") * m.astype(np.float32))[..., None]
        q = _groups(_k_nibbles(cls.field(blocks, "qs")), 32).astype(np.float32)
        return (dl * q - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return encode_k("Q4_K", values)


class Q5_K(QuantFormat, ggml_type=GGMLType.Q5_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        sc, m = _kq_scale_min(cls.field(blocks, "scales"))
        dl = (cls.half(blocks, "d") * sc.astype(np.float32))[..., None]  # (n, 8, 1)
        ml = (cls.half(blocks, "dmin") * m.astype(np.float32))[..., None]
        q = _k_nibbles(cls.field(blocks, "qs")) | (_crumbs(cls.field(blocks, "qh"), 8) << 4)
        return (dl * _groups(q, 32).astype(np.float32) - ml).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return encode_k("Q5_K", values)


def _q6_low_order(low: np.ndarray) -> np.ndarray:
    """Q6_K ql nibbles: (n, 128) bytes -> (n, 256) in element order."""
    n = low.shape[0]
    halves = low.reshape(n, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    return (halves & 0x0F).reshape(n, -1)


class Q6_K(QuantFormat, ggml_type=GGMLType.Q6_K):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        dl = (cls.half(blocks, "d") * cls.field(blocks, "scales", np.int8).astype(np.float32))[..., None]  # (n, 16, 1)
        q = (_q6_low_order(cls.field(blocks, "ql")) | (_crumbs(cls.field(blocks, "qh"), 4) << 4)).astype(np.int8)
        q = q - np.int8(32)
        return (dl * _groups(q, 16).astype(np.float32)).reshape(-1, QK_K)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return encode_k("Q6_K", values)
