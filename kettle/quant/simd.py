"""x86 SIMD matmul kernels: int8 dot products on the packed blocks, as llama.cpp does.

Two registered flavours of the same kernels: ``avx2`` (AVX2, FMA, F16C) and
``avx512vnni`` (the same with ``vpdpbusd``, where the CPU has AVX-512 VNNI/VL;
identical results, fewer instructions).

``matmul(raw, x, out, lut, unit)`` (the ``KernelSet.matmul`` contract) first
quantizes each activation row ``x[t]`` to int8 codes, ``q = round(x / d)`` with
``d = max|x| / 127``: for the 32-element types per block of 32 (Q8_0 style, kept
with ``d`` and ``d * sum(q)``), for the K-quants per super-block of 256 (Q8_K
style, kept with ``d`` and the sum of each 16 codes). It then computes ``out``
with the tile dot products of ``simd_ir`` or ``simd_kq``:
``prange`` over tiles of ``ROWS`` weight rows; in a tile, ``TILE_ROWS[type]``
rows times ``TOKENS`` tokens per call (each weight block decoded once for those
tokens; the K-quants under vnni take ``simd_kq.WIDE_TOKENS`` while that many
remain). A last group of 2 or 3 tokens takes the 4-token call (its missing
tokens repeat the last one), a last single token a one-token call.

Numerics: the weights are exact; the activations carry int8 rounding (a
relative error of about 0.4% per element, as in llama.cpp), so results differ
slightly from the float32 ``portable`` kernels.

Batch invariance: ``out[t, r]`` is computed by the same operations on
``x[t]``'s quantized blocks and ``W[r]`` in every tile shape (see
``simd_ir``, ``simd_kq``), whatever n, the other rows or the thread count. Calls with little work (a decode step on a small matrix) run on
the calling thread, larger ones over ``prange`` tiles; both compile the same
per-element code (the dot product is fixed IR, the quantizer is compiled
without ``fastmath``), so the choice does not change a bit.

Registered for the types ``simd_ir`` and ``simd_kq`` implement, each flavour with the CPU
features it needs; ``kernels.select`` never picks one elsewhere (compiling it
there would abort the process), and nothing here compiles before a first call.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from numba import int8 as I8
from numba import int16 as I16
from numba import int32 as I32
from numba import prange
from numba.extending import overload

from kettle.quant import simd_ir, simd_kq
from kettle.quant._jit import U, source_salt
from kettle.quant.kernels import KernelSet, implementations, register
from kettle.quant.simd_ir import FLAVOURS, TILE_TOKENS
from kettle.quant.types import QK, QK_K, GGMLType

# The 32-element types compute per block (simd_ir), the K-quants per super-block in integers (simd_kq).
SUPERBLOCK_TYPES = frozenset(simd_kq.DECODERS)
DECODERS = simd_ir.DECODERS | simd_kq.DECODERS
TILE_ROWS = simd_ir.TILE_ROWS | simd_kq.TILE_ROWS
TILE_DOTS = simd_ir.TILE_DOTS | simd_kq.tile_dots(TILE_TOKENS + (simd_kq.WIDE_TOKENS,), FLAVOURS)

NAME, VNNI_NAME = FLAVOURS  # "avx2"; "avx512vnni": the same kernels, vpdpbusd for vpmaddubsw + vpmaddwd
REQUIRES = frozenset({"avx2", "fma", "f16c"})
PRIORITY = 1  # above the portable kernels
VNNI_REQUIRES = REQUIRES | {"avx512vnni", "avx512vl"}
VNNI_PRIORITY = 2
ROWS = 8  # weight rows per parallel tile
TOKENS = TILE_TOKENS[-1]  # tokens per tile_dot call
CODE_MAX = 127  # activation codes lie in -127..127 (never -128: see simd_ir's sign trick)
# Weight blocks x tokens below which a call stays on the calling thread (~20 us:
# less than a second thread saves). Whether a step's calls get a second thread
# at all is the runner's choice (kettle.engine.threads), made by measuring.
SERIAL_WORK = 1 << 14


SOURCE_SALT = source_salt("quant/_jit.py", "quant/types.py", "quant/simd_ir.py", "quant/simd_kq.py", "quant/simd.py")


def tile_dot(type_id, tokens, flavour, raw, r0, xq, xd, xs, t0, out):
    """``simd_ir``'s tile dot product of type ``type_id`` over ``tokens`` tokens, emitted
    for ``FLAVOURS[flavour]`` (all three compile-time constants)."""
    raise NotImplementedError("tile_dot runs inside numba kernels only")


@overload(tile_dot, inline="always")
def _tile_dot_typing(type_id, tokens, flavour, raw, r0, xq, xd, xs, t0, out):
    if not all(isinstance(a, numba.types.IntegerLiteral) for a in (type_id, tokens, flavour)):
        return None
    dot = TILE_DOTS[GGMLType(type_id.literal_value), tokens.literal_value, FLAVOURS[flavour.literal_value]]

    def impl(type_id, tokens, flavour, raw, r0, xq, xd, xs, t0, out):
        dot(raw, r0, xq, xd, xs, t0, out)

    return impl


@numba.njit(inline="always")
def quantize_row(x, t, xq, xd, xs):
    """Quantize ``x[t]`` (k,) float32 into ``xq[t]`` (k,) int8, ``xd[t]`` / ``xs[t]`` (k // 32,) float32.

    Per block of 32: ``d = max|x| / 127``, ``q = round(x / d)`` clamped to
    -127..127 (0 when d is 0), ``xd = d``, ``xs = d * sum(q)``. NaN or infinite
    inputs give garbage codes for that row only.
    """
    for b in range(x.shape[1] // QK):
        at = U(b * QK)
        amax = np.float32(0)
        for j in range(QK):
            amax = max(amax, abs(x[t, at + U(j)]))
        d = amax / np.float32(CODE_MAX)
        inv = np.float32(CODE_MAX) / amax if amax > 0 else np.float32(0)
        total = I32(0)
        for j in range(QK):
            q = I32(min(max(round(x[t, at + U(j)] * inv), -CODE_MAX), CODE_MAX))
            xq[t, at + U(j)] = I8(q)
            total += q
        xd[t, b] = d
        xs[t, b] = d * np.float32(total)


@numba.njit(inline="always")
def quantize_superblocks(x, t, xq, xd, xb):
    """Quantize ``x[t]`` (k,) per 256-element super-block (llama.cpp's Q8_K): ``xq[t]``
    (k,) int8 codes, ``xd[t]`` (k // 256,) float32 scales, ``xb[t]`` (k // 16,) int16
    sums of each 16 codes. ``d = max|x| / 127``, ``q = round(x / d)`` clamped to
    -127..127 (0 when d is 0), as ``quantize_row`` per 32."""
    for b in range(x.shape[1] // QK_K):
        at = U(b * QK_K)
        amax = np.float32(0)
        for j in range(QK_K):
            amax = max(amax, abs(x[t, at + U(j)]))
        inv = np.float32(CODE_MAX) / amax if amax > 0 else np.float32(0)
        for g in range(QK_K // simd_kq.SUMS):
            total = I32(0)
            for j in range(simd_kq.SUMS):
                i = at + U(g * simd_kq.SUMS + j)
                q = I32(min(max(round(x[t, i] * inv), -CODE_MAX), CODE_MAX))
                xq[t, i] = I8(q)
                total += q
            xb[t, U(b * simd_kq.SUMS + g)] = I16(total)
        xd[t, b] = amax / np.float32(CODE_MAX)


@numba.njit(inline="always")
def blocks(x):
    """Activation buffers of ``quantize_row``: codes (n, k) int8, scales and scale * code
    sums (n, k // 32) float32."""
    n, k = x.shape
    return np.empty(x.shape, np.int8), np.empty((n, k // QK), np.float32), np.empty((n, k // QK), np.float32)


@numba.njit(inline="always")
def superblocks(x):
    """Activation buffers of ``quantize_superblocks``: codes (n, k) int8, scales (n, k // 256)
    float32, code sums (n, k // 16) int16."""
    n, k = x.shape
    return (np.empty(x.shape, np.int8), np.empty((n, k // QK_K), np.float32),
            np.empty((n, k // simd_kq.SUMS), np.int16))


def _make_kernel(ggml_type: GGMLType, parallel: bool, flavour: str) -> Callable:
    """``kernel(raws, x, outs, lut)``: quantize x once, then outs[m] = x @ W_m.T for
    every matrix of the tuple ``raws`` (all of this type and width; see module doc)."""
    # closure values key numba's cache
    type_id, salt, mode, isa = int(ggml_type), SOURCE_SALT, parallel, FLAVOURS.index(flavour)
    step = TILE_ROWS[ggml_type]
    # tokens of the wide call: the K-quants under vnni (32 vector registers) take 8 tokens at a time while
    # 8 remain, which halves the decoding per token; the rest as everywhere (4, then a last lone token)
    wide = simd_kq.WIDE_TOKENS if ggml_type in SUPERBLOCK_TYPES and flavour == VNNI_NAME else TOKENS
    buffers, quantize = (superblocks, quantize_superblocks) if ggml_type in SUPERBLOCK_TYPES else (blocks, quantize_row)

    @numba.njit(parallel=parallel, cache=True, nogil=True, error_model="numpy")
    def kernel(raws, x, outs, lut):
        # W_m (d_m, k) as raws[m] (d_m, row_nbytes) uint8, x (n, k) float32 -> outs[m] (n, d_m) = x @ W_m.T
        _ = (salt, mode, isa)
        n = x.shape[0]
        xq, xd, xs = buffers(x)  # the activations' codes, scales, and scale * code sums or code sums
        for t in prange(n):
            quantize(x, t, xq, xd, xs)
        first = np.zeros(len(raws) + 1, np.int64)  # first tile of each matrix, then the total
        for m in range(len(raws)):
            first[m + 1] = first[m] + (raws[m].shape[0] + ROWS - 1) // ROWS
        wide_end = n - n % wide
        last = n - 1 if (n - wide_end) % TOKENS == 1 else n  # a last lone token takes the one-token call
        for tile in prange(first[len(raws)]):
            m = 0
            while tile >= first[m + 1]:
                m += 1
            raw, out = raws[m], outs[m]
            r0 = (tile - first[m]) * ROWS
            r1 = min(r0 + ROWS, raw.shape[0])
            for t in range(0, wide_end, wide):
                for r in range(r0, r1, step):
                    tile_dot(type_id, wide, isa, raw, U(r), xq, xd, xs, U(t), out)
            for t in range(wide_end, last, TOKENS):  # a short last group repeats its last token
                for r in range(r0, r1, step):
                    tile_dot(type_id, TOKENS, isa, raw, U(r), xq, xd, xs, U(t), out)
            if last < n:
                for r in range(r0, r1, step):
                    tile_dot(type_id, 1, isa, raw, U(r), xq, xd, xs, U(last), out)

    return kernel


def make_matmul(ggml_type: GGMLType, flavour: str) -> tuple[Callable, Callable]:
    """The ``KernelSet.matmul`` and ``matmul_many`` of ``ggml_type`` (one kernel behind both)."""
    serial, parallel = _make_kernel(ggml_type, False, flavour), _make_kernel(ggml_type, True, flavour)

    def matmul_many(raws: tuple[np.ndarray, ...], x: np.ndarray, outs: tuple[np.ndarray, ...],
                    lut: np.ndarray, unit: int) -> None:
        n, k = x.shape
        work = sum(map(len, raws)) * (k // QK) * n
        (serial if work < SERIAL_WORK else parallel)(raws, x, outs, lut)

    def matmul(raw: np.ndarray, x: np.ndarray, out: np.ndarray, lut: np.ndarray, unit: int) -> None:
        matmul_many((raw,), x, (out,), lut, unit)

    return matmul, matmul_many


def register_simd() -> None:
    """Register the AVX2 and AVX-512 VNNI kernels (``kernels.select`` picks one only on a
    CPU that has what it requires)."""
    for ggml_type in DECODERS:
        rows = next(k.rows for k in implementations(ggml_type) if k.name == "portable")
        for name, requires, priority in ((NAME, REQUIRES, PRIORITY), (VNNI_NAME, VNNI_REQUIRES, VNNI_PRIORITY)):
            matmul, matmul_many = make_matmul(ggml_type, name)
            register(KernelSet(name, ggml_type, matmul, rows, requires, priority, matmul_many))


register_simd()
