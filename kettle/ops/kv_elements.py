"""How the attention kernels read and write one element of a KV cache, whatever its type.

The cache types are llama.cpp's ``-ctk/-ctv`` (ollama's ``OLLAMA_KV_CACHE_TYPE``):

=======  ==================  ==================================================  ==============
type     element storage     value                                               bytes / value
=======  ==================  ==================================================  ==============
f32      float32             itself                                              4
f16      uint16 (IEEE half)  the half, widened (F16C ``vcvtph2ps``)              2
q8_0     int8 + uint16 scale ``q * d``, one half ``d`` per 32 values of a row    1.0625
=======  ==================  ==================================================  ==============

q8_0 is ggml's Q8_0 block split in two arrays: ``d = absmax / 127`` (stored as a half),
``q = round_half_away(x / d)``, the same bits as ``kettle.quant.legacy.Q8_0``. An f16 value
is the float32 rounded to nearest even, as ggml's ``GGML_FP32_TO_FP16`` gives.

``load(cache, scales, r, i)`` is one function overloaded on the cache's dtype, so one
attention kernel source serves the three types (numba compiles each apart); ``scales`` is
the q8_0 scale array and a (1, 1) placeholder for the others. LLVM vectorizes the widening
of halves into ``vcvtph2ps`` in the kernels' inner loops.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from kettle.ops._jit import inline

Q8_BLOCK = 32
KV_TYPES = ("f32", "f16", "q8_0")
BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "q8_0": (Q8_BLOCK + 2) / Q8_BLOCK}


@intrinsic
def half_to_f32(typingctx, h):
    """The IEEE half whose bits are ``h`` (uint16), as float32."""
    if h != types.uint16:
        return None

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def f32_to_half(typingctx, x):
    """``x`` (float32) rounded to the nearest IEEE half (ties to even), as its uint16 bits."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


def load(cache, scales, r, i):  # noqa: ARG001 - the overloads below are what runs
    raise NotImplementedError


@overload(load, inline="always")
def _load(cache, scales, r, i):
    if cache.dtype == types.float32:
        return lambda cache, scales, r, i: cache[r, i]
    if cache.dtype == types.uint16:
        return lambda cache, scales, r, i: half_to_f32(cache[r, i])
    if cache.dtype == types.int8:
        return lambda cache, scales, r, i: np.float32(cache[r, i]) * half_to_f32(scales[r, i >> 5])
    return None


@inline
def round_half_away(x):
    return np.float32(np.floor(x + np.float32(0.5))) if x >= 0 else -np.float32(np.floor(-x + np.float32(0.5)))


def store_row(cache, scales, row, src):  # noqa: ARG001 - the overloads below are what runs
    raise NotImplementedError


@overload(store_row, inline="always")
def _store_row(cache, scales, row, src):
    """``cache[row, :] = src`` (float32 (hd,)) in the cache's type; q8_0 writes its scales too."""
    if cache.dtype == types.float32:
        def f32(cache, scales, row, src):
            for i in range(src.shape[0]):
                cache[row, i] = src[i]
        return f32
    if cache.dtype == types.uint16:
        def f16(cache, scales, row, src):
            for i in range(src.shape[0]):
                cache[row, i] = f32_to_half(src[i])
        return f16
    if cache.dtype == types.int8:
        def q8_0(cache, scales, row, src):
            for b in range(src.shape[0] // 32):
                amax = np.float32(0.0)
                for i in range(b * 32, b * 32 + 32):
                    amax = max(amax, abs(src[i]))
                d = amax / np.float32(127.0)
                inv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
                scales[row, b] = f32_to_half(d)
                for i in range(b * 32, b * 32 + 32):
                    cache[row, i] = np.int8(round_half_away(src[i] * inv))
        return q8_0
    return None


def storage(kind: str) -> tuple[np.dtype, int]:
    """(element dtype, values per scale: 0 for none) of cache type ``kind``."""
    if kind == "f32":
        return np.dtype(np.float32), 0
    if kind == "f16":
        return np.dtype(np.uint16), 0
    if kind == "q8_0":
        return np.dtype(np.int8), Q8_BLOCK
    raise ValueError(f"unknown KV cache type {kind!r}: expected one of {', '.join(KV_TYPES)}")
