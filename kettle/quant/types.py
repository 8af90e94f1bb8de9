"""GGML tensor types: which ones kettle computes with, and row arithmetic.

The ids (``GGMLType``) and block geometry of every ggml type are format
knowledge, defined once in ``kettle.gguf.tensor_types`` (the reader bounds
tensors with them) and re-exported here.

A row of ``k`` elements of type ``t`` is ``k // block_size`` blocks laid end
to end, ``row_nbytes(t, k)`` bytes; a matrix is its rows laid end to end.

Inside a block, ``BLOCK_FIELDS`` says where each field lies: the one
description of the byte layouts, read by the numpy reference, the encoders, the
numba decoders and the SIMD IR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kettle.errors import UnsupportedModel
from kettle.gguf.tensor_types import LAYOUTS, QK, QK_K, GGMLType  # noqa: F401  (re-exported)

K_SCALE_SIZE = 12  # bytes of packed 6-bit scales: Q4_K / Q5_K scales and mins, Q3_K scales
F16_BYTES = 2  # one IEEE half: the block scales (d) and mins (m)


@dataclass(frozen=True)
class QuantInfo:
    """Geometry of one ggml type."""

    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    supported: bool  # kettle can dequantize it and multiply by it


# The types kettle can dequantize and multiply by; the geometry of every type
# (block size, bytes per block, with the arithmetic) is format knowledge and
# lives with the GGUF reader in ``kettle.gguf.tensor_types``.
_SUPPORTED = frozenset({
    GGMLType.F32, GGMLType.F16, GGMLType.BF16,
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
})

QUANT_INFO: dict[GGMLType, QuantInfo] = {
    t: QuantInfo(t.name, layout.block_size, layout.type_size, t in _SUPPORTED) for t, layout in LAYOUTS.items()
}

SUPPORTED_TYPES: tuple[GGMLType, ...] = tuple(t for t, info in QUANT_INFO.items() if info.supported)


class Field(NamedTuple):
    """Where one field of a block lies: bytes ``offset : offset + nbytes``."""

    offset: int
    nbytes: int


_H = F16_BYTES
# The fields of each quantized type's block, in byte order, named as in ggml's C structs
# (``block_q4_0`` ... ``block_q6_K`` in ggml-common.h). ``d``, ``m``, ``dmin``: IEEE halves;
# ``qh`` of the 32-element types: one little-endian u32; Q8_0's ``qs`` and Q6_K's ``scales``: int8.
# Offsets within a field (which element sits where) are element order, described in
# ``legacy`` and ``kquants``. Checked at import: each type's fields tile its block.
BLOCK_FIELDS: dict[GGMLType, dict[str, Field]] = {
    GGMLType.Q4_0: {"d": Field(0, _H), "qs": Field(2, QK // 2)},
    GGMLType.Q4_1: {"d": Field(0, _H), "m": Field(2, _H), "qs": Field(4, QK // 2)},
    GGMLType.Q5_0: {"d": Field(0, _H), "qh": Field(2, QK // 8), "qs": Field(6, QK // 2)},
    GGMLType.Q5_1: {"d": Field(0, _H), "m": Field(2, _H), "qh": Field(4, QK // 8), "qs": Field(8, QK // 2)},
    GGMLType.Q8_0: {"d": Field(0, _H), "qs": Field(2, QK)},
    GGMLType.Q2_K: {
        "scales": Field(0, QK_K // 16), "qs": Field(16, QK_K // 4), "d": Field(80, _H), "dmin": Field(82, _H),
    },
    GGMLType.Q3_K: {
        "hmask": Field(0, QK_K // 8), "qs": Field(32, QK_K // 4), "scales": Field(96, K_SCALE_SIZE),
        "d": Field(108, _H),
    },
    GGMLType.Q4_K: {
        "d": Field(0, _H), "dmin": Field(2, _H), "scales": Field(4, K_SCALE_SIZE), "qs": Field(16, QK_K // 2),
    },
    GGMLType.Q5_K: {
        "d": Field(0, _H), "dmin": Field(2, _H), "scales": Field(4, K_SCALE_SIZE), "qh": Field(16, QK_K // 8),
        "qs": Field(48, QK_K // 2),
    },
    GGMLType.Q6_K: {
        "ql": Field(0, QK_K // 2), "qh": Field(128, QK_K // 4), "scales": Field(192, QK_K // 16),
        "d": Field(208, _H),
    },
}


def offsets(t: GGMLType) -> dict[str, int]:
    """Field name -> byte offset in a block of ``t``, in byte order (``BLOCK_FIELDS``)."""
    return {name: f.offset for name, f in BLOCK_FIELDS[t].items()}


def _check_fields() -> None:
    """Each type's fields are contiguous from byte 0, without overlap, and end at its type_size."""
    for t, fields in BLOCK_FIELDS.items():
        end = 0
        for name, f in fields.items():
            if f.offset != end or f.nbytes <= 0:
                raise AssertionError(f"{t.name}.{name} at {f.offset} (+{f.nbytes}): expected at {end}")
            end += f.nbytes
        if end != LAYOUTS[t].type_size:
            raise AssertionError(f"{t.name} fields end at {end}, its blocks are {LAYOUTS[t].type_size} bytes")


_check_fields()


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
