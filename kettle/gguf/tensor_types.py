"""The ggml tensor types a GGUF file may declare: id, name, block layout.

This is format knowledge (how many bytes a row of a given type occupies), so
the reader can bound every tensor before touching it. The arithmetic of each
block is written out: ``(elements per block, bytes per block)``.
Which types kettle can *compute* with is decided by ``kettle.quant``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

QK = 32  # elements per block of the simple quants
QK_K = 256  # elements per super-block of the K-quants


class GGMLType(enum.IntEnum):
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
class BlockLayout:
    block_size: int  # elements per block
    type_size: int  # bytes per block


# fp16 scale = 2 bytes; nibbles = block/2 bytes; high bits = block/8 bytes.
LAYOUTS: dict[GGMLType, BlockLayout] = {
    GGMLType.F32: BlockLayout(1, 4),
    GGMLType.F16: BlockLayout(1, 2),
    GGMLType.BF16: BlockLayout(1, 2),
    GGMLType.F64: BlockLayout(1, 8),
    GGMLType.I8: BlockLayout(1, 1),
    GGMLType.I16: BlockLayout(1, 2),
    GGMLType.I32: BlockLayout(1, 4),
    GGMLType.I64: BlockLayout(1, 8),
    GGMLType.Q4_0: BlockLayout(QK, 2 + QK // 2),
    GGMLType.Q4_1: BlockLayout(QK, 2 + 2 + QK // 2),
    GGMLType.Q5_0: BlockLayout(QK, 2 + 4 + QK // 2),
    GGMLType.Q5_1: BlockLayout(QK, 2 + 2 + 4 + QK // 2),
    GGMLType.Q8_0: BlockLayout(QK, 2 + QK),
    GGMLType.Q8_1: BlockLayout(QK, 4 + 4 + QK),
    GGMLType.Q2_K: BlockLayout(QK_K, 2 + 2 + QK_K // 16 + QK_K // 4),
    GGMLType.Q3_K: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 8 + 12),
    GGMLType.Q4_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 2),
    GGMLType.Q5_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
    GGMLType.Q6_K: BlockLayout(QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
    GGMLType.Q8_K: BlockLayout(QK_K, 4 + QK_K + QK_K // 16 * 2),
    GGMLType.IQ2_XXS: BlockLayout(QK_K, 2 + QK_K // 8 * 2),
    GGMLType.IQ2_XS: BlockLayout(QK_K, 2 + QK_K // 8 * 2 + QK_K // 32),
    GGMLType.IQ3_XXS: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 8),
    GGMLType.IQ1_S: BlockLayout(QK_K, 2 + QK_K // 8 + QK_K // 16),
    GGMLType.IQ4_NL: BlockLayout(QK, 2 + QK // 2),
    GGMLType.IQ3_S: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    GGMLType.IQ2_S: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 16),
    GGMLType.IQ4_XS: BlockLayout(QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
    GGMLType.IQ1_M: BlockLayout(QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    GGMLType.TQ1_0: BlockLayout(QK_K, 2 + 4 * 13),
    GGMLType.TQ2_0: BlockLayout(QK_K, 2 + 64),
    GGMLType.MXFP4: BlockLayout(QK, 1 + QK // 2),  # e8m0 exponent, 4-bit values
    GGMLType.NVFP4: BlockLayout(64, 4 + 64 // 2),  # 4 fp8 scales, 4-bit values
    GGMLType.Q1_0: BlockLayout(128, 2 + 128 // 8),  # f16 d, 1-bit values
}


def type_name(type_id: int) -> str:
    try:
        return GGMLType(type_id).name
    except ValueError:
        return f"type {type_id}"
