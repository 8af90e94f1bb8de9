"""The numpy reference of every supported type: one class per type.

Each class converts whole blocks: ``dequantize_blocks`` takes
``(n_blocks, type_size)`` uint8 and returns ``(n_blocks, block_size)`` float32;
``quantize_blocks`` is its inverse up to rounding. Dequantization is bit-exact
with ggml and gguf-py (same float32 operations in the same order); the numba
kernels are tested against these classes. Subclasses register themselves by
their ``ggml_type``; ``dequantize`` and ``quantize`` below dispatch on it.

Float types are the one-element-block case:

    F32   4 bytes  IEEE single, little-endian
    F16   2 bytes  IEEE half
    BF16  2 bytes  the high half of an IEEE single
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from kettle.errors import UnsupportedModel, WeightError
from kettle.quant.types import BLOCK_FIELDS, QUANT_INFO, Field, GGMLType, row_nbytes, supported_type

FORMATS: dict[GGMLType, type[QuantFormat]] = {}


class QuantFormat:
    """Block layout and numpy reference conversions of one ggml type."""

    ggml_type: ClassVar[GGMLType]
    block_size: ClassVar[int]
    type_size: ClassVar[int]
    fields: ClassVar[dict[str, Field]]  # the block's fields (``BLOCK_FIELDS``); empty for the float types

    def __init_subclass__(cls, ggml_type: GGMLType, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        info = QUANT_INFO[ggml_type]
        cls.ggml_type, cls.block_size, cls.type_size = (ggml_type, info.block_size, info.type_size)
        cls.fields = BLOCK_FIELDS.get(ggml_type, {})
        if ggml_type in FORMATS:
            raise TypeError(f"two formats registered for {ggml_type.name}")
        FORMATS[ggml_type] = cls

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        """(n_blocks, type_size) uint8 -> (n_blocks, block_size) float32."""
        raise NotImplementedError

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        """(n_blocks, block_size) float32 -> (n_blocks, type_size) uint8."""
        raise NotImplementedError

    @classmethod
    def field(cls, blocks: np.ndarray, name: str, dtype: type = np.uint8) -> np.ndarray:
        """Field ``name`` of every block viewed as ``dtype``: (n_blocks, nbytes/itemsize)."""
        return field(blocks, *cls.fields[name], dtype)

    @classmethod
    def half(cls, blocks: np.ndarray, name: str) -> np.ndarray:
        """The IEEE half field ``name`` of every block as float32: (n_blocks, 1)."""
        return cls.field(blocks, name, np.float16).astype(np.float32)

    @classmethod
    def pack(cls, **parts: np.ndarray) -> np.ndarray:
        """Blocks from every field's bytes, by name, each (n_blocks, nbytes) uint8: (n_blocks, type_size)."""
        if parts.keys() != cls.fields.keys():
            raise ValueError(f"{cls.ggml_type.name} blocks are {list(cls.fields)}, not {list(parts)}")
        n = len(next(iter(parts.values())))
        out = np.empty((n, cls.type_size), np.uint8)
        for name, (at, nbytes) in cls.fields.items():
            if parts[name].shape != (n, nbytes):
                raise ValueError(f"{cls.ggml_type.name}.{name} is ({n}, {nbytes}) bytes, not {parts[name].shape}")
            out[:, at : at + nbytes] = parts[name]
        return out


# --- byte-field helpers shared by the block classes ---------------------------------


def field(blocks: np.ndarray, start: int, nbytes: int, dtype: type = np.uint8) -> np.ndarray:
    """Bytes ``start:start+nbytes`` of every block, viewed as ``dtype``: (n_blocks, nbytes/itemsize)."""
    return np.ascontiguousarray(blocks[:, start : start + nbytes]).view(dtype)


def half(blocks: np.ndarray, start: int) -> np.ndarray:
    """The IEEE half at byte ``start`` of every block as float32: (n_blocks, 1)."""
    return field(blocks, start, 2, np.float16).astype(np.float32)


def half_bytes(values: np.ndarray) -> np.ndarray:
    """float32 (n_blocks, 1) rounded to IEEE halves: (n_blocks, 2) uint8."""
    return values.astype(np.float16).view(np.uint8)


def reciprocal(d: np.ndarray) -> np.ndarray:
    """float32 ``1 / d``, with 0 where ``d`` is 0 (an all-zero block)."""
    out = np.zeros_like(d)
    np.divide(np.float32(1), d, out=out, where=d != 0)
    return out


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C ``roundf``), in float32."""
    whole = np.trunc(v)
    return whole + np.trunc(2 * (v - whole))


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(n, 2m) values 0..15 -> (n, m) bytes: low nibble element j, high nibble element j + m."""
    m = q.shape[1] // 2
    return (q[:, :m] & 0x0F) | (q[:, m:] << 4)


def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_nibbles``: (n, m) bytes -> (n, 2m) values 0..15 (uint8)."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1)


# --- float types ---------------------------------------------------------------


class F32(QuantFormat, ggml_type=GGMLType.F32):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return field(blocks, 0, 4, np.dtype("<f4")).astype(np.float32)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return values.astype("<f4").view(np.uint8)


class F16(QuantFormat, ggml_type=GGMLType.F16):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return half(blocks, 0)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        return half_bytes(values)


class BF16(QuantFormat, ggml_type=GGMLType.BF16):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return (field(blocks, 0, 2, np.uint16).astype(np.uint32) << 16).view(np.float32)

    @classmethod
    def quantize_blocks(cls, values: np.ndarray) -> np.ndarray:
        bits = values.view(np.uint32).astype(np.uint64)
        is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # to nearest, ties to even
        quiet = (bits >> 16) | 0x40  # NaN stays NaN: keep the sign and set the quiet bit
        return np.where(is_nan, quiet, rounded).astype(np.uint16).view(np.uint8)


# --- the public reference entry points ---------------------------------------------


def _format(type_id: int) -> type[QuantFormat]:
    t = supported_type(type_id)
    fmt = FORMATS.get(t)
    if fmt is None:  # supported in the table but no class: a kettle bug, say so plainly
        raise UnsupportedModel(f"tensor type {t.name} has no reference implementation")
    return fmt


def _shape_tuple(shape: object) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        out = tuple(int(s) for s in dims)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise WeightError(f"tensor shape {shape!r} is not a tuple of integers") from None
    if not out or any(s < 0 for s in out):
        raise WeightError(f"tensor shape {shape!r} must have at least one non-negative dimension")
    return out


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...] | int) -> np.ndarray:
    """Decode ``raw`` (uint8, any shape, ``prod(shape[:-1]) * row_nbytes(t, shape[-1])``
    bytes) into a float32 array of ``shape`` (math order, last dimension = row).

    Bit-exact with ``gguf.quants.dequantize``. Raises ``UnsupportedModel`` for a
    type kettle cannot decode and ``WeightError`` when the byte count is wrong.
    """
    fmt = _format(ggml_type)
    dims = _shape_tuple(shape)
    data = np.asarray(raw)
    if data.dtype != np.uint8:
        raise WeightError(f"{fmt.ggml_type.name} data must be uint8 bytes, got {data.dtype}")
    expected = math.prod(dims[:-1]) * row_nbytes(fmt.ggml_type, dims[-1])
    if data.size != expected:
        raise WeightError(f"{fmt.ggml_type.name} tensor of shape {dims} needs {expected} bytes, got {data.size}")
    blocks = np.ascontiguousarray(data).reshape(-1, fmt.type_size)
    return fmt.dequantize_blocks(blocks).reshape(dims)


def quantize(values: np.ndarray, ggml_type: int) -> np.ndarray:
    """Encode float32 ``values`` (..., k) as ``ggml_type``: uint8 (..., row_nbytes(t, k)).

    Byte-identical with llama.cpp's quantizer without an importance matrix
    (ggml's ``quantize_row_*_ref``) for every supported type, and with
    ``gguf.quants.quantize`` where gguf-py has one (F16, BF16, Q4_0 ... Q8_0).
    """
    fmt = _format(ggml_type)
    x = np.asarray(values)
    if x.ndim == 0 or not np.issubdtype(x.dtype, np.floating):
        raise WeightError(f"quantize needs a float array with at least one dimension, got {x.dtype} {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    out_shape = (*x.shape[:-1], row_nbytes(fmt.ggml_type, x.shape[-1]))
    blocks = x.reshape(-1, fmt.block_size)
    return fmt.quantize_blocks(blocks).reshape(out_shape)
