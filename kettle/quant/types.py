"""GGML tensor types: ids, block geometry, and which ones kettle computes with.

Every ggml type id is listed so that a reader can name a type it cannot run.
Geometry is ``(elements per block, bytes per block)`` with the byte arithmetic
written out; the ids and sizes follow ggml (gguf-py ``GGML_QUANT_SIZES``).

A row of ``k`` elements of type ``t`` is ``k // block_size`` blocks laid end
to end, ``row_nbytes(t, k)`` bytes; a matrix is its rows laid end to end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kettle.errors import UnsupportedModel

QK = 32  # elements per block of the simple quants (Q4_0 ... Q8_1)
QK_K = 256  # elements per super-block of the K-quants
K_SCALE_SIZE = 12  # bytes of packed 6-bit scales and mins in Q4_K / Q5_K
F16_BYTES = 2  # one IEEE half: the block scales (d) and mins (m)


class GGMLType(enum.IntEnum):
    """ggml's type ids (``enum ggml_type``); gaps are ids ggml has retired."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


@dataclass(frozen=True)
class QuantInfo:
    """Geometry of one ggml type."""

    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    supported: bool  # kettle can dequantize it and multiply by it


T = GGMLType
_H = F16_BYTES

# (block_size, type_size, supported)
_GEOMETRY: dict[GGMLType, tuple[int, int, bool]] = {
    T.F32: (1, 4, True),
    T.F16: (1, _H, True),
    T.BF16: (1, 2, True),
    # d, then QK 4-bit values, two per byte
    T.Q4_0: (QK, _H + QK // 2, True),
    # d, m, 4-bit values
    T.Q4_1: (QK, _H + _H + QK // 2, True),
    # d, 32 high bits, low nibbles
    T.Q5_0: (QK, _H + 4 + QK // 2, True),
    # d, m, 32 high bits, low nibbles
    T.Q5_1: (QK, _H + _H + 4 + QK // 2, True),
    # d, QK int8 values
    T.Q8_0: (QK, _H + QK, True),
    # f32 d, f32 d*sum(q), int8 values
    T.Q8_1: (QK, 4 + 4 + QK, False),
    # 16 (scale|min) nibble pairs, 2-bit values, d, dmin
    T.Q2_K: (QK_K, QK_K // 16 + QK_K // 4 + _H + _H, True),
    # high-bit mask, 2-bit low values, 12 bytes of 6-bit scales, d
    T.Q3_K: (QK_K, QK_K // 8 + QK_K // 4 + 12 + _H, True),
    # d, dmin, packed 6-bit scales and mins, 4-bit values
    T.Q4_K: (QK_K, _H + _H + K_SCALE_SIZE + QK_K // 2, True),
    # d, dmin, packed scales and mins, high bits, low nibbles
    T.Q5_K: (QK_K, _H + _H + K_SCALE_SIZE + QK_K // 8 + QK_K // 2, True),
    # low nibbles, 2-bit high parts, 16 int8 scales, d
    T.Q6_K: (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + _H, True),
    # f32 d, int8 values, 16 int16 group sums
    T.Q8_K: (QK_K, 4 + QK_K + QK_K // 16 * 2, False),
    T.IQ2_XXS: (QK_K, _H + QK_K // 4, False),
    T.IQ2_XS: (QK_K, _H + QK_K // 4 + QK_K // 32, False),
    T.IQ3_XXS: (QK_K, _H + QK_K // 4 + QK_K // 8, False),
    T.IQ1_S: (QK_K, _H + QK_K // 8 + QK_K // 16, False),
    T.IQ4_NL: (QK, _H + QK // 2, False),
    T.IQ3_S: (QK_K, _H + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4, False),
    T.IQ2_S: (QK_K, _H + QK_K // 4 + QK_K // 16, False),
    T.IQ4_XS: (QK_K, _H + 2 + QK_K // 2 + QK_K // 64, False),
    T.I8: (1, 1, False),
    T.I16: (1, 2, False),
    T.I32: (1, 4, False),
    T.I64: (1, 8, False),
    T.F64: (1, 8, False),
    T.IQ1_M: (QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32, False),
    T.TQ1_0: (QK_K, _H + 4 * 13, False),
    T.TQ2_0: (QK_K, _H + QK_K // 4, False),
    # e8m0 shared exponent, 4-bit values
    T.MXFP4: (QK, 1 + QK // 2, False),
    # 4 fp8 scales, 4-bit values
    T.NVFP4: (64, 4 + 64 // 2, False),
    # f16 d, 1-bit values
    T.Q1_0: (128, _H + 128 // 8, False),
}

QUANT_INFO: dict[GGMLType, QuantInfo] = {
    t: QuantInfo(t.name, bs, ts, ok) for t, (bs, ts, ok) in _GEOMETRY.items()
}

SUPPORTED_TYPES: tuple[GGMLType, ...] = tuple(t for t, info in QUANT_INFO.items() if info.supported)


def ggml_type(type_id: int) -> GGMLType:
    """``type_id`` (any int-like, another module's enum included) as a ``GGMLType``.

    Raises ``UnsupportedModel`` for an id ggml does not define.
    """
    try:
        return GGMLType(int(type_id))
    except (ValueError, TypeError):
        raise UnsupportedModel(f"unknown ggml tensor type id {type_id!r}") from None


def supported_type(type_id: int) -> GGMLType:
    """``type_id`` as a ``GGMLType`` kettle can compute with, else ``UnsupportedModel``."""
    t = ggml_type(type_id)
    if not QUANT_INFO[t].supported:
        names = ", ".join(s.name for s in SUPPORTED_TYPES)
        raise UnsupportedModel(f"tensor type {t.name} is not supported (supported: {names})")
    return t


def row_nbytes(type_id: int, n_cols: int) -> int:
    """Bytes of one row of ``n_cols`` elements of any known ggml type.

    Raises ``UnsupportedModel`` for an unknown type id, a negative count, or a
    count that is not a whole number of blocks.
    """
    info = QUANT_INFO[ggml_type(type_id)]
    if isinstance(n_cols, bool) or not isinstance(n_cols, int) and not hasattr(n_cols, "__index__"):
        raise UnsupportedModel(f"row length {n_cols!r} is not an integer")
    n = int(n_cols)
    if n < 0 or n % info.block_size:
        raise UnsupportedModel(
            f"a {info.name} row of {n} elements is not a whole number of {info.block_size}-element blocks"
        )
    return n // info.block_size * info.type_size
