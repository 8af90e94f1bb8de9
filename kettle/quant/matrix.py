"""``QuantMatrix``: a weight matrix kept in its quantized form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kettle.errors import TokenizerError, WeightError
from kettle.quant._jit import f16_table
from kettle.quant.kernels import KernelSet, select
from kettle.quant.types import GGMLType, row_nbytes, supported_type


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only plain-ndarray view of ``a`` (one numba type for every caller)."""
    view = a.view(np.ndarray)
    view.flags.writeable = False
    return view


class QuantMatrix:
    """A (rows, cols) matrix ``W`` stored as ggml blocks, row after row.

    The bytes are never expanded to float32 as a whole: ``matmul`` and
    ``get_rows`` decode blocks as they go. ``raw`` is typically a read-only,
    unaligned view into a memory-mapped GGUF file; it is kept as a view.
    """

    def __init__(self, raw: np.ndarray, ggml_type: int, shape: tuple[int, int], *, kernels: str | None = None):
        """``raw``: uint8, ``rows * row_nbytes(t, cols)`` bytes (any shape, e.g.
        (rows, row_nbytes)). ``shape``: (rows d, cols k) in math order (GGUF lists
        dimensions fastest-first; the caller has reversed them). ``kernels``:
        an implementation name to force (tests, benchmarks); default the best.

        Raises ``UnsupportedModel`` for a type kettle cannot compute with and
        ``WeightError`` when the bytes do not fit the shape.
        """
        self.ggml_type: GGMLType = supported_type(ggml_type)
        try:
            rows, cols = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise WeightError(f"a QuantMatrix shape is (rows, cols), got {shape!r}") from None
        if rows < 0 or cols < 0:
            raise WeightError(f"a QuantMatrix shape is (rows, cols), got {shape!r}")
        self.row_nbytes = row_nbytes(self.ggml_type, cols)
        data = np.asarray(raw)
        if data.dtype != np.uint8:
            raise WeightError(f"{self.ggml_type.name} matrix data must be uint8 bytes, got {data.dtype}")
        if data.size != rows * self.row_nbytes:
            raise WeightError(
                f"{self.ggml_type.name} matrix of shape {(rows, cols)} needs {rows * self.row_nbytes} bytes, "
                f"got {data.size}"
            )
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        self._raw = _read_only(data.reshape(rows, self.row_nbytes))  # (rows, row_nbytes) uint8
        self.rows, self.cols = rows, cols
        self.nbytes = self._raw.nbytes
        self._kernels: KernelSet = select(self.ggml_type, kernels)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def kernel_name(self) -> str:
        """Which registered implementation this matrix computes with."""
        return self._kernels.name

    def __repr__(self) -> str:
        return f"QuantMatrix({self.ggml_type.name}, shape={self.shape}, kernels={self.kernel_name!r})"

    def matmul(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``x @ W.T``: x (n, k) float32 -> (n, d) float32 (a 1-D x (k,) gives (d,)).

        Row t of the result depends on ``x[t]`` only, bit for bit, whatever n,
        the other rows and the thread count (see ``kernels``). ``out``, when
        given, must be a writable C-contiguous float32 (n, d) array not
        overlapping ``x``; it is filled and returned.
        """
        vector = np.ndim(x) == 1
        x = self._prepare(x)
        n = x.shape[0]
        if out is None:
            out = np.empty((n, self.rows), dtype=np.float32)
        else:
            want = (self.rows,) if vector else (n, self.rows)
            if out.shape != want or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
                raise WeightError(f"matmul out must be a writable C-contiguous float32 array of shape {want}")
            if np.may_share_memory(out, x):
                raise WeightError("matmul out must not overlap its input")
        if n and self.rows:
            self._kernels.matmul(self._raw, x, out.reshape(n, self.rows), f16_table(), 1)
        return out[0] if vector and out.ndim == 2 else out

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """x as a read-only C-contiguous float32 (n, cols) array (1-D x is one row)."""
        if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == self.cols \
                and x.flags.c_contiguous:  # the model's own activations: the quick way
            return _read_only(x)
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.cols:
            raise WeightError(
                f"matmul input of shape {x.shape} does not fit a {self.shape} matrix (needs (n, {self.cols}))"
            )
        return _read_only(np.ascontiguousarray(x, dtype=np.float32))

    def get_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` of W as float32 (len(ids), k) (the embedding lookup).

        Decodes only those rows, bit-exact with ``dequantize``. Raises
        ``TokenizerError`` for an id outside ``0..rows-1``.
        """
        idx = np.asarray(ids)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TokenizerError(f"row ids must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        out = np.empty((idx.size, self.cols), dtype=np.float32)
        if idx.size:
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.rows:
                bad = lo if lo < 0 else hi
                raise TokenizerError(f"row id {bad} is out of range for a matrix of {self.rows} rows")
            self._kernels.rows(self._raw, _read_only(idx), f16_table(), out, 1)
        return out

    def dequantize(self) -> np.ndarray:
        """The whole matrix as float32 (rows, cols): for tests and small tensors only."""
        return self.get_rows(np.arange(self.rows, dtype=np.int64))


class LoraMatrix:
    """``W`` with low-rank adapters beside it, never merged into W's blocks:
    ``x @ W.T + sum(scale * (x @ A.T) @ B.T)``, as llama.cpp's ``--lora`` computes it,
    so one base in memory serves several adapted models.

    ``deltas``: (A (rank, cols), B (rows, rank), scale) triples; A and B are
    QuantMatrix of any supported type (adapters are usually F16/F32).
    """

    def __init__(self, base: QuantMatrix, deltas: Sequence[tuple[QuantMatrix, QuantMatrix, float]]) -> None:
        for a, b, _ in deltas:
            if a.cols != base.cols or b.rows != base.rows or a.rows != b.cols:
                raise WeightError(
                    f"a LoRA pair A {a.shape}, B {b.shape} does not fit a {base.shape} matrix "
                    f"(needs A (rank, {base.cols}) and B ({base.rows}, rank))"
                )
        self.base = base
        self.deltas = tuple((a, b, float(scale)) for a, b, scale in deltas)
        self.rows, self.cols, self.ggml_type = base.rows, base.cols, base.ggml_type
        self.nbytes = base.nbytes + sum(a.nbytes + b.nbytes for a, b, _ in self.deltas)

    @property
    def shape(self) -> tuple[int, int]:
        return self.base.shape

    def __repr__(self) -> str:
        ranks = ", ".join(str(a.rows) for a, _, _ in self.deltas)
        return f"LoraMatrix({self.base!r}, ranks=[{ranks}])"

    def matmul(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """As ``QuantMatrix.matmul``, plus the adapters' products."""
        result = self.base.matmul(x, out)
        self.add_deltas(self.base._prepare(x), result)
        return result

    def add_deltas(self, x: np.ndarray, result: np.ndarray) -> None:
        """``result += scale * (x @ A.T) @ B.T`` for each adapter; x (n, cols), result (n, rows) or (rows,)."""
        target = result.reshape(x.shape[0], self.rows)
        for a, b, scale in self.deltas:
            ab = b.matmul(a.matmul(x))  # (n, rows)
            ab *= np.float32(scale)
            target += ab

    def get_rows(self, ids: np.ndarray) -> np.ndarray:
        raise WeightError("a LoRA adapter on an embedding matrix is not supported")

    def dequantize(self) -> np.ndarray:
        """W + sum(scale * B @ A) as float32 (rows, cols): the merged matrix (tests, merging)."""
        w = self.base.dequantize()
        for a, b, scale in self.deltas:
            w += np.float32(scale) * (b.dequantize() @ a.dequantize())
        return w


Linear = QuantMatrix | LoraMatrix


class MatmulGroup:
    """Several matrices taking one input (a layer's q, k and v): ``group(x)`` is
    ``[x @ W.T for W in mats]``, x (n, k) float32 -> a list of (n, d_W) arrays.

    Matrices of one type, width and kernel set go through one kernel call: x is
    prepared once and every matrix's rows share one thread team, so small
    matrices are worth the second thread together. Mixed types make one call per
    type (gemma3's q and k apart from its Q8_0 v); kernels that cannot fuse, one
    call per matrix. The results are the same bits as ``W.matmul(x)`` for each W
    (see ``QuantMatrix.matmul``). The grouping is worked out once, here.
    """

    def __init__(self, mats: Sequence[Linear]) -> None:
        self.mats = tuple(m.base if isinstance(m, LoraMatrix) else m for m in mats)
        self._lora = tuple((i, m) for i, m in enumerate(mats) if isinstance(m, LoraMatrix))
        by_kind: dict[tuple[int, int], list[int]] = {}  # (kernel set, width) -> indices into mats
        for i, m in enumerate(self.mats):
            by_kind.setdefault((id(m._kernels), m.cols), []).append(i)
        # (indices, raws, the kernel set's matmul_many or None: one call per matrix)
        self._calls = [
            (tuple(members), tuple(self.mats[i]._raw for i in members),
             self.mats[members[0]]._kernels.matmul_many if len(members) > 1 else None)
            for members in by_kind.values()
        ]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if not self.mats:
            return []
        x = self.mats[0]._prepare(x)
        n = x.shape[0]
        results: list[np.ndarray] = [None] * len(self.mats)  # type: ignore[list-item]
        for members, raws, fuse in self._calls:
            if fuse is None or n == 0:
                for i in members:
                    results[i] = self.mats[i].matmul(x)
                continue
            outs = tuple(np.empty((n, raw.shape[0]), dtype=np.float32) for raw in raws)
            fuse(raws, x, outs, f16_table(), 1)
            for i, out in zip(members, outs, strict=True):
                results[i] = out
        for i, m in self._lora:
            m.add_deltas(x, results[i])
        return results


def matmul_many(mats: Sequence[Linear], x: np.ndarray) -> list[np.ndarray]:
    """``[x @ W.T for W in mats]`` in as few kernel calls as the types allow (see ``MatmulGroup``)."""
    return MatmulGroup(mats)(x)
