"""GGUF format constants: magic, versions, metadata value types, limits."""

from __future__ import annotations

import enum
import struct

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# Limits that bound a hostile file before anything is allocated.
MAX_KEY_BYTES = 65_536  # a metadata key or tensor name
MAX_STRING_BYTES = 64 * 1024 * 1024  # one string value (chat templates are a few KB)
MAX_ARRAY_DEPTH = 2  # an array of arrays, no deeper
MAX_ALIGNMENT = 1 << 20


class ValueType(enum.IntEnum):
    """Metadata value types, as stored in the file (``gguf_type``)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# Fixed-size scalar types: (struct format, numpy dtype string), little-endian.
SCALAR_FORMATS: dict[ValueType, tuple[str, str]] = {
    ValueType.UINT8: ("<B", "<u1"),
    ValueType.INT8: ("<b", "<i1"),
    ValueType.UINT16: ("<H", "<u2"),
    ValueType.INT16: ("<h", "<i2"),
    ValueType.UINT32: ("<I", "<u4"),
    ValueType.INT32: ("<i", "<i4"),
    ValueType.FLOAT32: ("<f", "<f4"),
    ValueType.BOOL: ("<?", "<u1"),
    ValueType.UINT64: ("<Q", "<u8"),
    ValueType.INT64: ("<q", "<i8"),
    ValueType.FLOAT64: ("<d", "<f8"),
}
SCALAR_SIZES: dict[ValueType, int] = {t: struct.calcsize(f) for t, (f, _) in SCALAR_FORMATS.items()}
