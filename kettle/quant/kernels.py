"""Compute kernels on quantized rows, and the registry that picks one per type.

Matmul: ``out (n, d) = x (n, k) @ W.T`` with ``W`` (d, k) kept quantized.
The d weight rows are cut into tiles of ``ROWS`` rows, spread over threads with
``prange``; a tile is computed entirely by one thread. For each ``CHUNK``
columns the thread decodes the tile's blocks once into a stack scratch of
``ROWS x CHUNK`` floats and uses them for all n tokens: for each pair of
tokens it accumulates 2 x ``ROWS`` dot products over the chunk (each weight
load feeds two tokens, each activation load ``ROWS`` rows) and adds them to
``out``.

Batch invariance: the value of ``out[t, r]`` depends only on ``x[t]`` and
``W[r]``. Its operations (decode, the chunk dot product, the order of the
chunk sums) are fixed by k, d and r; n, the other tokens and the thread count
only decide how often and where that same code runs (a token is always in a
pair, with itself when odd; both slots of a pair compute alike). So a token's
logits are bit-for-bit the same alone or in a batch of any size.

Several implementations of one type may be registered (the portable numba
one always; others may need CPU features, such as a SIMD one); ``select``
picks the best one this CPU can run. Nothing compiles at import: each
kernel compiles (or loads from numba's on-disk cache) on its first call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np
from numba import prange

from kettle.errors import UnsupportedModel
from kettle.quant._jit import exact_jit, inline_jit, matmul_jit, source_salt, stack_empty
from kettle.quant.types import QUANT_INFO, GGMLType, supported_type
from kettle.quant.unpack import CHUNK, ROWS, UNPACKERS, unpack_blocks

SCRATCH = ROWS * CHUNK  # floats of per-thread decoded scratch (16 KiB)
ACC = 2 * ROWS  # chunk sums of a token pair


SOURCE_SALT = source_salt("quant/_jit.py", "quant/unpack.py", "quant/types.py", "quant/kernels.py")


@inline_jit
def _dot_pair(w, x, out, r0, nr, c0, length, acc, ta, tb):
    """out[t, r0+r] += w[r*CHUNK : r*CHUNK+length] . x[t, c0 : c0+length] for t in (ta, tb), r < nr.

    Each load of w feeds both tokens and each load of x all ROWS rows. When
    ``tb == ta`` (an odd token out) it is computed twice and added once, so
    every token runs through this same code: its sums never depend on the
    other slot. ``acc`` is (2 * ROWS,) float32 scratch.
    """
    xa = x[ta, c0 : c0 + length]
    xb = x[tb, c0 : c0 + length]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
    for j in range(length):
        u = xa[j]
        v = xb[j]
        w0 = w[j]
        w1 = w[CHUNK + j]
        w2 = w[2 * CHUNK + j]
        w3 = w[3 * CHUNK + j]
        w4 = w[4 * CHUNK + j]
        w5 = w[5 * CHUNK + j]
        w6 = w[6 * CHUNK + j]
        w7 = w[7 * CHUNK + j]
        a0 += w0 * u
        a1 += w1 * u
        a2 += w2 * u
        a3 += w3 * u
        a4 += w4 * u
        a5 += w5 * u
        a6 += w6 * u
        a7 += w7 * u
        b0 += w0 * v
        b1 += w1 * v
        b2 += w2 * v
        b3 += w3 * v
        b4 += w4 * v
        b5 += w5 * v
        b6 += w6 * v
        b7 += w7 * v
    acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7] = (a0, a1, a2, a3, a4, a5, a6, a7)
    acc[8], acc[9], acc[10], acc[11], acc[12], acc[13], acc[14], acc[15] = (b0, b1, b2, b3, b4, b5, b6, b7)
    for r in range(nr):
        out[ta, r0 + r] += acc[r]
    if tb != ta:
        for r in range(nr):
            out[tb, r0 + r] += acc[ROWS + r]


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
        d, n = raw.shape[0], x.shape[0]
        n_blocks = x.shape[1] // block_size
        for tile in prange((d + ROWS - 1) // ROWS):
            w = stack_empty(SCRATCH, np.float32)  # (ROWS * CHUNK,) the tile's decoded chunk
            rows = stack_empty(ROWS, np.int64)  # the tile's rows; a short last tile repeats its last row
            acc = stack_empty(ACC, np.float32)
            r0 = tile * ROWS
            nr = min(ROWS, d - r0)
            for r in range(ROWS):
                rows[r] = r0 + min(r, nr - 1)
            for t in range(n):
                for r in range(nr):
                    out[t, r0 + r] = 0
            for b0 in range(0, n_blocks, chunk_blocks):
                nbc = min(chunk_blocks, n_blocks - b0)
                unpack_blocks(type_id, raw, rows, b0, nbc, lut, w, unit)
                for t in range(0, n, 2):  # tokens in pairs; an odd last one pairs with itself
                    _dot_pair(w, x, out, r0, nr, b0 * block_size, nbc * block_size, acc, t, min(t + 1, n - 1))

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
    # (raws, x, outs, lut, unit) -> None: several matrices of this type and width
    # times one x in one call (one thread team, x prepared once); None: one by one
    matmul_many: Callable | None = None


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


@cache
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
