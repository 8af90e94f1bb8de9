"""numpy reference of the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).

Byte layout of one block (``d``, ``m``: IEEE halves; element ``j`` of 0..31;
offsets in ``types.BLOCK_FIELDS``):

    Q4_0  d | qs[16]              x[j] = d * (q[j] - 8)
    Q4_1  d | m | qs[16]          x[j] = d * q[j] + m
    Q5_0  d | qh[4] | qs[16]      x[j] = d * (q[j] - 16)
    Q5_1  d | m | qh[4] | qs[16]  x[j] = d * q[j] + m
    Q8_0  d | qs[32] (int8)       x[j] = qs[j] * d

``qs[i]`` holds element ``i`` in its low nibble and element ``i + 16`` in its
high nibble; for the 5-bit types bit ``j`` of the little-endian uint32 ``qh``
is bit 4 of element ``j``. The quantizers reproduce ggml's reference
(``quantize_row_*_ref``) bit for bit, as gguf-py does.
"""

from __future__ import annotations

import numpy as np

from kettle.quant.formats import (
    QuantFormat,
    half_bytes,
    pack_nibbles,
    reciprocal,
    round_half_away,
    unpack_nibbles,
)
from kettle.quant.types import QK, GGMLType


def _signed_absmax(values: np.ndarray) -> np.ndarray:
    """Per block, the element of largest magnitude (first one on ties), sign kept: (n, 1)."""
    at = np.abs(values).argmax(axis=1)[:, None]
    return np.take_along_axis(values, at, axis=1)


def _symmetric_codes(values: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0/Q5_0 rule: ``d = absmax / -(levels/2)``, codes ``trunc(x/d + levels/2 + 0.5)``.

    Returns (d float32 (n, 1), codes uint8 (n, block) in 0..levels-1).
    """
    d = _signed_absmax(values) / np.float32(-(levels // 2))
    codes = np.trunc(values * reciprocal(d) + np.float32(levels // 2 + 0.5))
    return d, codes.astype(np.uint8).clip(0, levels - 1)


def _affine_codes(values: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1/Q5_1 rule: ``d = (max - min) / (levels - 1)``, codes ``trunc((x - min)/d + 0.5)``.

    Returns (d (n, 1), min (n, 1), codes uint8 (n, block) in 0..levels-1).
    """
    lo = values.min(axis=1, keepdims=True)
    d = (values.max(axis=1, keepdims=True) - lo) / np.float32(levels - 1)
    codes = np.trunc((values - lo) * reciprocal(d) + np.float32(0.5))
    return d, lo, codes.astype(np.uint8).clip(0, levels - 1)


def _high_bits(codes: np.ndarray) -> np.ndarray:
    """Bit 4 of each of the 32 codes as a little-endian uint32: (n, 4) bytes."""
    return np.packbits((codes >> 4) & 1, axis=1, bitorder="little")


def _with_high_bits(fmt: type[QuantFormat], blocks: np.ndarray) -> np.ndarray:
    """5-bit codes of a Q5 block (``fmt``: Q5_0 or Q5_1): (n, 32) uint8 in 0..31."""
    qh = fmt.field(blocks, "qh", np.dtype("<u4")).astype(np.uint32)  # (n, 1)
    high = ((qh >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.uint8)  # (n, 32)
    return unpack_nibbles(fmt.field(blocks, "qs")) | (high << 4)


class Q4_0(QuantFormat, ggml_type=GGMLType.Q4_0):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = unpack_nibbles(cls.field(blocks, "qs")).astype(np.int8) - np.int8(8)
        return cls.half(blocks, "d") * q.astype(np.float32)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, codes = _symmetric_codes(values, 16)
        return cls.pack(d=half_bytes(d), qs=pack_nibbles(codes))


class Q4_1(QuantFormat, ggml_type=GGMLType.Q4_1):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = unpack_nibbles(cls.field(blocks, "qs")).astype(np.float32)
        return cls.half(blocks, "d") * q + cls.half(blocks, "m")

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, lo, codes = _affine_codes(values, 16)
        return cls.pack(d=half_bytes(d), m=half_bytes(lo), qs=pack_nibbles(codes))


class Q5_0(QuantFormat, ggml_type=GGMLType.Q5_0):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = _with_high_bits(cls, blocks).astype(np.int8) - np.int8(16)
        return cls.half(blocks, "d") * q.astype(np.float32)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, codes = _symmetric_codes(values, 32)
        return cls.pack(d=half_bytes(d), qh=_high_bits(codes), qs=pack_nibbles(codes))


class Q5_1(QuantFormat, ggml_type=GGMLType.Q5_1):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        q = _with_high_bits(cls, blocks).astype(np.float32)
        return cls.half(blocks, "d") * q + cls.half(blocks, "m")

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d, lo, codes = _affine_codes(values, 32)
        return cls.pack(d=half_bytes(d), m=half_bytes(lo), qh=_high_bits(codes), qs=pack_nibbles(codes))


class Q8_0(QuantFormat, ggml_type=GGMLType.Q8_0):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return cls.field(blocks, "qs", np.int8).astype(np.float32) * cls.half(blocks, "d")

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        d = np.abs(values).max(axis=1, keepdims=True) / np.float32(127)
        codes = round_half_away(values * reciprocal(d)).astype(np.int8)
        return cls.pack(d=half_bytes(d), qs=codes.view(np.uint8))
