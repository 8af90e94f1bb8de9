"""GGML tensor types: which ones kettle computes with, and row arithmetic.

The ids (``GGMLType``) and block geometry of every ggml type are format
knowledge, defined once in ``kettle.gguf.tensor_types`` (the reader bounds
tensors with them) and re-exported here.

A row of ``k`` elements of type ``t`` is ``k // block_size`` blocks laid end
to end, ``row_nbytes(t, k)`` bytes; a matrix is its rows laid end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

from kettle.errors import UnsupportedModel
from kettle.gguf.tensor_types import LAYOUTS, QK, QK_K, GGMLType  # noqa: F401  (re-exported)

K_SCALE_SIZE = 12  # bytes of packed 6-bit scales and mins in Q4_K / Q5_K
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
