"""A bounded, validating GGUF reader.

The file is memory-mapped read-only; tensors are zero-copy numpy views into
the map. Every count, length, offset, alignment and shape is checked against
the file size *before* anything is allocated, so a truncated or hostile file
raises ``GGUFError`` (naming the file and the problem) in bounded time and
memory, never reads outside the file, and never crashes the process.

Layout (little-endian)::

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x       (key: string, value_type u32, value)
    n_tensors x  (name: string, n_dims u32, dims u64[n_dims], type u32, offset u64)
    padding to general.alignment (default 32)
    tensor data; each tensor's offset is relative to the start of this section

A string is ``u64 length`` + UTF-8 bytes. GGUF lists tensor dimensions
fastest-varying first (``ne[0]`` is the row length); ``TensorInfo.shape``
gives them in numpy (math) order, slowest first: a matrix with ``ne = [k, d]``
has ``shape == (d, k)``, ``d`` rows of ``k`` elements.
"""

from __future__ import annotations

import mmap
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kettle.errors import GGUFError
from kettle.gguf.constants import (
    DEFAULT_ALIGNMENT,
    MAGIC,
    MAX_ALIGNMENT,
    MAX_ARRAY_DEPTH,
    MAX_DIMS,
    MAX_KEY_BYTES,
    MAX_STRING_BYTES,
    SCALAR_FORMATS,
    SCALAR_SIZES,
    SUPPORTED_VERSIONS,
    ValueType,
)
from kettle.gguf.tensor_types import LAYOUTS, GGMLType, type_name

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# dtype of a tensor whose elements are plain numbers (block size 1).
_PLAIN_DTYPES: dict[GGMLType, str] = {
    GGMLType.F32: "<f4",
    GGMLType.F16: "<f2",
    GGMLType.F64: "<f8",
    GGMLType.I8: "<i1",
    GGMLType.I16: "<i2",
    GGMLType.I32: "<i4",
    GGMLType.I64: "<i8",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order, slowest dimension first
    ggml_type: GGMLType
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row (the last, fastest dimension)."""
        layout = LAYOUTS[self.ggml_type]
        return self.shape[-1] // layout.block_size * layout.type_size

    @property
    def n_rows(self) -> int:
        n = 1
        for d in self.shape[:-1]:
            n *= d
        return n


class _Cursor:
    """Reads little-endian values from a buffer, never past its end."""

    def __init__(self, gguf: GGUFFile, buf: memoryview) -> None:
        self.gguf = gguf
        self.buf = buf
        self.size = len(buf)
        self.pos = 0

    def fail(self, message: str) -> GGUFError:
        return GGUFError(self.gguf.path, message)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file ends at {self.size}"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        n = self.u64(f"length of {what}")
        if n > limit:
            raise self.fail(f"{what} claims {n} bytes, more than the limit of {limit}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None

    def value_type(self, what: str) -> ValueType:
        t = self.u32(f"type of {what}")
        try:
            return ValueType(t)
        except ValueError:
            raise self.fail(f"{what} has unknown value type {t}") from None

    def value(self, vtype: ValueType, what: str, depth: int = 0) -> Any:
        if vtype == ValueType.STRING:
            return self.string(what)
        if vtype == ValueType.ARRAY:
            return self.array(what, depth + 1)
        fmt, _ = SCALAR_FORMATS[vtype]
        size = SCALAR_SIZES[vtype]
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return bool(v) if vtype == ValueType.BOOL else v

    def array(self, what: str, depth: int) -> Any:
        if depth > MAX_ARRAY_DEPTH:
            raise self.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        etype = self.value_type(f"elements of {what}")
        count = self.u64(f"length of {what}")
        if etype in SCALAR_SIZES:
            size = SCALAR_SIZES[etype]
            if count > (self.size - self.pos) // size:
                raise self.fail(f"{what} claims {count} elements, more than the file holds")
            _, dtype = SCALAR_FORMATS[etype]
            arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            self.pos += count * size
            return arr.astype(bool) if etype == ValueType.BOOL else arr
        # Strings and arrays take at least 8 bytes (a length) each.
        if count > (self.size - self.pos) // 8:
            raise self.fail(f"{what} claims {count} elements, more than the file holds")
        return [self.value(etype, f"{what}[{i}]", depth) for i in range(count)]


class GGUFFile:
    """An open, validated GGUF file.

    ``metadata`` maps each key to a Python value: int, float, bool or str for
    scalars, ``list[str]`` (or a list of arrays) for arrays of strings, and a
    1-D numpy array for numeric arrays. ``tensors`` maps names to ``TensorInfo``
    in file order. Use ``tensor(name)`` for a zero-copy view.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            if not self.path.is_file():
                raise GGUFError(self.path, "not a regular file")
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 24:
                    raise GGUFError(self.path, f"too small to be a GGUF file ({size} bytes)")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise GGUFError(self.path, f"cannot open: {e.strerror}") from None
        self.size = size
        self._views: list[weakref.ref[np.ndarray]] = []  # the tensor views handed out
        self.metadata: dict[str, Any] = {}
        # key -> (value type, element type of an array or None), in file order
        self.value_types: dict[str, tuple[ValueType, ValueType | None]] = {}
        self.tensors: dict[str, TensorInfo] = {}
        try:
            self._parse()
        except GGUFError:
            self.close()
            raise

    # -- parsing --------------------------------------------------------------

    def _parse(self) -> None:
        cur = _Cursor(self, memoryview(self._mmap))
        magic = bytes(cur.buf[0:4])
        if magic != MAGIC:
            raise cur.fail(f"not a GGUF file (magic {magic!r}, expected {MAGIC!r})")
        cur.pos = 4
        version = cur.u32("version")
        if version not in SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
                raise cur.fail("big-endian GGUF files are not supported")
            raise cur.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
        self.version = version
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # Each metadata entry takes >= 8 (key length) + 4 (type) + 1 bytes,
        # each tensor entry >= 8 + 4 + 4 + 8 bytes: bound the counts by the file.
        if n_kv > (self.size - cur.pos) // 13:
            raise cur.fail(f"metadata count {n_kv} is larger than the file can hold")
        if n_tensors > (self.size - cur.pos) // 24:
            raise cur.fail(f"tensor count {n_tensors} is larger than the file can hold")

        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}", MAX_KEY_BYTES)
            vtype = cur.value_type(f"metadata '{key}'")
            etype = None
            if vtype == ValueType.ARRAY:  # peek at the element type (the array reader checks it)
                cur.need(4, f"elements of metadata '{key}'")
                etype = _U32.unpack_from(cur.buf, cur.pos)[0]
            value = cur.value(vtype, f"metadata '{key}'")
            self.value_types[key] = (vtype, None if etype is None else ValueType(etype))
            if key in self.metadata:
                raise cur.fail(f"duplicate metadata key '{key}'")
            self.metadata[key] = value

        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if (
            not isinstance(alignment, int)
            or isinstance(alignment, bool)
            or alignment <= 0
            or alignment > MAX_ALIGNMENT
            or alignment & (alignment - 1)
        ):
            raise cur.fail(f"general.alignment {alignment!r} is not a power of two up to {MAX_ALIGNMENT}")
        self.alignment = alignment

        raw_infos = []
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}", MAX_KEY_BYTES)
            n_dims = cur.u32(f"dimension count of tensor '{name}'")
            if not 1 <= n_dims <= MAX_DIMS:
                raise cur.fail(f"tensor '{name}' has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
            ne = [cur.u64(f"dimension {d} of tensor '{name}'") for d in range(n_dims)]
            type_id = cur.u32(f"type of tensor '{name}'")
            offset = cur.u64(f"offset of tensor '{name}'")
            raw_infos.append((name, ne, type_id, offset))

        data_start = -(-cur.pos // alignment) * alignment
        if data_start > self.size:
            raise cur.fail("the tensor data section starts past the end of the file")
        self.data_offset = data_start
        data_size = self.size - data_start
        spans = []
        for name, ne, type_id, offset in raw_infos:
            info = self._check_tensor(name, ne, type_id, offset, data_size)
            if name in self.tensors:
                raise cur.fail(f"duplicate tensor name '{name}'")
            self.tensors[name] = info
            spans.append((offset, offset + info.nbytes, name))
        spans.sort()
        for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:]):
            if start_b < end_a:
                raise cur.fail(f"tensors '{name_a}' and '{name_b}' overlap")

    def _check_tensor(self, name: str, ne: list[int], type_id: int, offset: int, data_size: int) -> TensorInfo:
        fail = lambda msg: GGUFError(self.path, f"tensor '{name}': {msg}")  # noqa: E731
        try:
            ggml_type = GGMLType(type_id)
        except ValueError:
            raise fail(f"unknown tensor type {type_id}") from None
        layout = LAYOUTS[ggml_type]
        if any(d == 0 for d in ne):
            raise fail(f"has a zero dimension {ne}")
        if ne[0] % layout.block_size:
            raise fail(
                f"row length {ne[0]} is not a whole number of {ggml_type.name} blocks "
                f"({layout.block_size} elements each)"
            )
        nbytes = ne[0] // layout.block_size * layout.type_size
        for d in ne[1:]:
            nbytes *= d
            if nbytes > data_size:
                break
        if nbytes > data_size or offset > data_size - nbytes:
            raise fail(
                f"data (offset {offset}, {nbytes} bytes) lies past the end of the file "
                f"(data section holds {data_size} bytes)"
            )
        if offset % self.alignment:
            raise fail(f"offset {offset} is not a multiple of the alignment {self.alignment}")
        return TensorInfo(name, tuple(reversed(ne)), ggml_type, self.data_offset + offset, nbytes)

    # -- access ---------------------------------------------------------------

    def tensor(self, name: str) -> np.ndarray:
        """A read-only, zero-copy view of a tensor's bytes.

        Plain types (F32, F16, I32...) come as arrays of that dtype with
        ``info.shape``; block types as ``uint8`` of shape ``(n_rows, row_nbytes)``.
        """
        info = self.tensors.get(name)
        if info is None:
            raise GGUFError(self.path, f"no tensor named '{name}'")
        dtype = _PLAIN_DTYPES.get(info.ggml_type)
        if dtype is not None:
            view = np.ndarray(info.shape, dtype=np.dtype(dtype), buffer=self._mmap, offset=info.offset)
        else:
            view = np.ndarray((info.n_rows, info.row_nbytes), dtype=np.uint8, buffer=self._mmap, offset=info.offset)
        self._views.append(weakref.ref(view))  # ``close`` must not unmap under it
        return view

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFError(self.path, "metadata 'general.architecture' is missing or not a string")
        return arch

    def close(self) -> None:
        """Unmap the file, unless tensor views still live: numpy keeps only a reference to the
        map (no buffer export), so unmapping under a live view would make reading it crash the
        process. Then the map goes when the last view is collected (the views hold it)."""
        mm = getattr(self, "_mmap", None)
        if mm is not None and not any(ref() is not None for ref in getattr(self, "_views", ())):
            try:
                mm.close()
            except BufferError:
                pass  # a parse-time memoryview still alive: the map closes when it is collected

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.metadata)} keys, {len(self.tensors)} tensors)"


def describe_type(type_id: int) -> str:
    return type_name(type_id)
