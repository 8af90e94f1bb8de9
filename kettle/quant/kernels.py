"""Compute kernels on quantized rows, and the registry that picks one per type.

Matmul: ``out (n, d) = x (n, k) @ W.T`` with ``W`` (d, k) kept quantized.
The d weight rows are cut into tiles of ``ROWS`` rows, spread over threads with
``prange``; a tile is computed entirely by one thread. For each ``CHUNK``
columns the thread decodes the tile's blocks once into a stack scratch of
``ROWS x CHUNK`` floats and uses them for all n tokens: for each token it
accumulates ``ROWS`` dot products over the chunk, sharing each activation
load, and adds them to ``out``.

Batch invariance: the value of ``out[t, r]`` depends only on ``x[t]`` and
``W[r]``. Its operations (decode, the chunk dot product, the order of the
chunk sums) are fixed by k, d and r; n, the other tokens and the thread count
only decide how often and where that same code runs. So a token's logits are
bit-for-bit the same alone or in a batch of any size.

Several implementations of one type may be registered (the portable numba
one always; others may need CPU features, such as a SIMD one); ``select``
picks the best one this CPU can run. Nothing compiles at import: each
kernel compiles (or loads from numba's on-disk cache) on its first call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from numba import prange

from kettle.errors import UnsupportedModel
from kettle.quant._jit import exact_jit, inline_jit, matmul_jit, stack_empty
from kettle.quant.types import QUANT_INFO, GGMLType, supported_type
from kettle.quant.unpack import CHUNK, ROWS, UNPACKERS, unpack_blocks

SCRATCH = ROWS * CHUNK  # floats of per-thread decoded scratch (8 KiB)


def _source_salt() -> str:
    """A digest of the sources compiled into the kernels.

    numba's disk cache only notices edits to the file defining a kernel (this
    one); the kernels also inline ``unpack`` and ``_jit``. Each kernel captures
    this digest, and numba hashes captured values into its cache key.
    """
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("_jit.py", "unpack.py", "types.py", "kernels.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


SOURCE_SALT = _source_salt()


@inline_jit
def _dot_tile(w, x, out, r0, nr, c0, length, acc):
    """out[t, r0+r] += w[r*CHUNK : r*CHUNK+length] . x[t, c0 : c0+length] for every token t, r < nr.

    The ROWS dot products share each load of x; ``acc`` is (ROWS,) float32 scratch.
    """
    for t in range(x.shape[0]):
        xt = x[t, c0 : c0 + length]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0)
        for j in range(length):
            xv = xt[j]
            s0 += w[j] * xv
            s1 += w[CHUNK + j] * xv
            s2 += w[2 * CHUNK + j] * xv
            s3 += w[3 * CHUNK + j] * xv
            s4 += w[4 * CHUNK + j] * xv
            s5 += w[5 * CHUNK + j] * xv
            s6 += w[6 * CHUNK + j] * xv
            s7 += w[7 * CHUNK + j] * xv
        acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7] = s0, s1, s2, s3, s4, s5, s6, s7
        for r in range(nr):
            out[t, r0 + r] += acc[r]


def make_matmul(ggml_type: GGMLType) -> Callable:
    """A parallel matmul kernel for ``ggml_type``.

    ``kernel(raw, x, out, lut, unit)``: raw (d, row_nbytes) uint8 read-only,
    x (n, k) float32 read-only C-contiguous, out (n, d) float32 (overwritten),
    lut the half table, unit = 1. Computes out = x @ W.T.
    """
    type_id, salt = int(ggml_type), SOURCE_SALT
    block_size = QUANT_INFO[ggml_type].block_size
    chunk_blocks = CHUNK // block_size

    @matmul_jit
    def matmul(raw, x, out, lut, unit):
        _ = salt  # part of numba's cache key: see SOURCE_SALT
        d = raw.shape[0]
        n_blocks = x.shape[1] // block_size
        for tile in prange((d + ROWS - 1) // ROWS):
            w = stack_empty(SCRATCH, np.float32)  # (ROWS * CHUNK,) the tile's decoded chunk
            rows = stack_empty(ROWS, np.int64)  # the tile's rows; a short last tile repeats its last row
            acc = stack_empty(ROWS, np.float32)
            r0 = tile * ROWS
            nr = min(ROWS, d - r0)
            for r in range(ROWS):
                rows[r] = r0 + min(r, nr - 1)
            for t in range(x.shape[0]):
                for r in range(nr):
                    out[t, r0 + r] = 0
            for b0 in range(0, n_blocks, chunk_blocks):
                nbc = min(chunk_blocks, n_blocks - b0)
                unpack_blocks(type_id, raw, rows, b0, nbc, lut, w, unit)
                _dot_tile(w, x, out, r0, nr, b0 * block_size, nbc * block_size, acc)

    return matmul


def make_rows(ggml_type: GGMLType) -> Callable:
    """A serial, bit-exact kernel decoding selected rows of a ``ggml_type`` matrix.

    ``kernel(raw, ids, lut, out, unit)``: out[i] = row ``ids[i]`` of W, float32
    (len(ids), k). ``ids`` must already be range-checked.
    """
    type_id, salt = int(ggml_type), SOURCE_SALT
    block_size = QUANT_INFO[ggml_type].block_size
    chunk_blocks = CHUNK // block_size

    @exact_jit
    def rows(raw, ids, lut, out, unit):
        _ = salt
        w = stack_empty(SCRATCH, np.float32)
        tile = stack_empty(ROWS, np.int64)
        n_blocks = out.shape[1] // block_size
        for i0 in range(0, ids.shape[0], ROWS):
            nr = min(ROWS, ids.shape[0] - i0)
            for r in range(ROWS):
                tile[r] = ids[i0 + min(r, nr - 1)]
            for b0 in range(0, n_blocks, chunk_blocks):
                length = min(chunk_blocks, n_blocks - b0) * block_size
                unpack_blocks(type_id, raw, tile, b0, length // block_size, lut, w, unit)
                for r in range(nr):
                    out[i0 + r, b0 * block_size : b0 * block_size + length] = w[r * CHUNK : r * CHUNK + length]

    return rows


@dataclass(frozen=True)
class KernelSet:
    """One implementation of the kernels of one type."""

    name: str  # "portable", "avx2", ...
    ggml_type: GGMLType
    matmul: Callable  # (raw, x, out, lut, unit) -> None, see make_matmul
    rows: Callable  # (raw, ids, lut, out, unit) -> None, see make_rows
    requires: frozenset[str] = field(default_factory=frozenset)  # host CPU features needed
    priority: int = 0  # the highest runnable priority wins


_REGISTRY: dict[GGMLType, list[KernelSet]] = {}


def register(kernels: KernelSet) -> None:
    """Add an implementation; ``select`` considers it from then on."""
    _REGISTRY.setdefault(kernels.ggml_type, []).append(kernels)
    select.cache_clear()


@lru_cache(maxsize=1)
def host_features() -> frozenset[str]:
    """The CPU features LLVM reports for this machine (``avx2``, ``fma``, ``neon``...)."""
    from llvmlite import binding

    return frozenset(name for name, on in binding.get_host_cpu_features().items() if on)


def implementations(ggml_type: int) -> list[KernelSet]:
    """Every registered implementation of a type, runnable here or not."""
    return list(_REGISTRY.get(supported_type(ggml_type), []))


@lru_cache(maxsize=None)
def select(ggml_type: GGMLType, name: str | None = None) -> KernelSet:
    """The best implementation of ``ggml_type`` this CPU can run (or the one called ``name``).

    Never returns one whose ``requires`` the host lacks: compiling a target
    intrinsic on a CPU without it aborts the process.
    """
    have = host_features()
    runnable = [k for k in implementations(ggml_type) if k.requires <= have and (name is None or k.name == name)]
    if not runnable:
        wanted = f" named {name!r}" if name else ""
        raise UnsupportedModel(f"no kernel{wanted} for {GGMLType(ggml_type).name} runs on this CPU")
    return max(runnable, key=lambda k: k.priority)


def _register_portable() -> None:
    for ggml_type in UNPACKERS:
        register(KernelSet("portable", ggml_type, make_matmul(ggml_type), make_rows(ggml_type)))


_register_portable()
