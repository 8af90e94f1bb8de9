"""numba plumbing shared by the quant kernels: compile flags, a stack scratch
array, a bit cast, byte readers and the half-float lookup table.

Everything here is portable LLVM IR (no target intrinsics), so it compiles on
any CPU numba supports.

Two rules the kernels follow so that LLVM vectorizes them well:

* Array indices are ``uint64``: numba adds a negative-index wraparound check
  to signed indices, which defeats the loop vectorizer.
* Short inner loops run ``range(n * unit)`` where ``unit`` is a run-time 1.
  A loop with a constant trip count is unrolled before the loop vectorizer
  runs, and numba leaves LLVM's SLP vectorizer off, so an unrolled body stays
  scalar; with a run-time count the loop vectorizer takes it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

U = numba.uint64  # index type of every kernel (see module docstring)

# error_model="numpy" everywhere: no ZeroDivisionError check per float division
# (see kettle/ops/_jit.py). Matmul kernels: fused multiply-add and reassociated
# reductions allowed.
matmul_jit = numba.njit(parallel=True, fastmath=True, cache=True, nogil=True, error_model="numpy")
# Dequantizing kernels: IEEE arithmetic, bit-exact with the numpy reference.
exact_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
# Helpers inlined at numba-IR level take the flags of the kernel that calls them
# (the decoders: bit-exact in one kernel, fused multiply-adds in another).
inline_jit = numba.njit(inline="always")
# Small integer helpers: ordinary calls that LLVM inlines. Inlining them at
# numba-IR level instead re-types every call site and triples compile time.
helper_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@intrinsic
def stack_empty(typingctx, size, dtype):
    """A 1-D array of ``size`` (a compile-time constant) items on the stack.

    It lives in the calling function's frame and is never zeroed. LLVM knows it
    aliases no other array, which keeps loops writing to it vectorizable.
    """
    if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.DTypeSpec):
        return None
    count = size.literal_value
    arr_type = types.Array(dtype.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        item_type = context.get_data_type(dtype.dtype)
        buf = cgutils.alloca_once(builder, item_type, size=count)
        ary = context.make_array(arr_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(item_type))
        context.populate_array(
            ary,
            data=buf,
            shape=cgutils.pack_array(builder, [context.get_constant(types.intp, count)]),
            strides=cgutils.pack_array(builder, [itemsize]),
            itemsize=itemsize,
            meminfo=None,
        )
        return ary._getvalue()

    return arr_type(size, dtype), codegen


@intrinsic
def bits_to_f32(typingctx, bits):
    """The float32 whose IEEE bit pattern is the low 32 bits of the integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], llvm_ir.IntType(32)) if bits.bitwidth > 32 else args[0]
        if bits.bitwidth < 32:
            low = builder.zext(low, llvm_ir.IntType(32))
        return builder.bitcast(low, llvm_ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def f32_to_bits(typingctx, value):
    """The IEEE bit pattern of the float32 ``value`` as uint32 (the inverse of ``bits_to_f32``)."""
    if not isinstance(value, types.Float) or value.bitwidth != 32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))

    return types.uint32(value), codegen


def _load_le(typingctx, raw, row, at, width):
    """Shared typing/codegen of ``load_u16`` / ``load_u32``."""
    if not (isinstance(raw, types.Array) and raw.dtype == types.uint8 and raw.ndim == 2 and raw.layout == "C"):
        return None
    int_type = llvm_ir.IntType(width)

    def codegen(context, builder, signature, args):
        ary = context.make_array(raw)(context, builder, args[0])
        row_stride = cgutils.unpack_tuple(builder, ary.strides, 2)[0]
        offset = builder.add(builder.mul(args[1], row_stride), args[2])
        ptr = builder.gep(ary.data, [offset])
        value = builder.load(builder.bitcast(ptr, int_type.as_pointer()), align=1)
        if sys.byteorder == "big":  # the GGUF format is little-endian
            value = builder.call(builder.module.declare_intrinsic("llvm.bswap", [int_type]), [value])
        return builder.zext(value, llvm_ir.IntType(32)) if width < 32 else value

    return types.uint32(raw, types.uint64, types.uint64), codegen


@intrinsic
def load_u16(typingctx, raw, row, at):
    """Little-endian uint16 at byte ``at`` of row ``row`` (both uint64) of the 2-D uint8 array ``raw``.

    One unaligned load (the caller guarantees the bounds), returned as uint32.
    """
    return _load_le(typingctx, raw, row, at, 16)


@intrinsic
def load_u32(typingctx, raw, row, at):
    """Little-endian uint32 at byte ``at`` of row ``row`` of ``raw`` (one unaligned load)."""
    return _load_le(typingctx, raw, row, at, 32)


@intrinsic
def shr32(typingctx, value, amount):
    """``value >> amount`` on the low 32 bits (logical shift; ``amount`` in 0..31), as int32.

    numba widens integer arithmetic to 64 bits; with a shift amount only known
    at run time LLVM cannot narrow it back, and vector code runs at half width.
    """
    if not (isinstance(value, types.Integer) and isinstance(amount, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        i32 = llvm_ir.IntType(32)

        def narrow(v, ty):
            if ty.bitwidth > 32:
                return builder.trunc(v, i32)
            if ty.bitwidth < 32:
                return builder.sext(v, i32) if ty.signed else builder.zext(v, i32)
            return v

        return builder.lshr(narrow(args[0], value), narrow(args[1], amount))

    return types.int32(value, amount), codegen


@helper_jit
def byte_at(raw, row, at):
    """Byte ``at`` of row ``row`` (both uint64) of the 2-D uint8 array ``raw``, as int32."""
    return numba.int32(raw[row, at])


@helper_jit
def f16_at(raw, row, at, lut):
    """The IEEE half at byte ``at`` of row ``row`` of ``raw`` as float32, through ``lut``."""
    return lut[U(load_u16(raw, row, at))]


_F16_LUT: np.ndarray | None = None


def f16_table() -> np.ndarray:
    """(65536,) float32, read-only: entry ``b`` is the half whose bits are ``b``.

    numba has little float16 support; a table lookup converts exactly.
    """
    global _F16_LUT
    if _F16_LUT is None:
        table = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
        table.flags.writeable = False
        _F16_LUT = table
    return _F16_LUT


def source_salt(*names: str) -> str:
    """A digest of the named source files (paths relative to the ``kettle`` package).

    numba's disk cache only notices edits to the file that defines a kernel, but
    kernels also inline code from other files. A kernel that captures this digest
    as a closure value gets it hashed into its cache key, so any edit recompiles.
    """
    package = Path(__file__).parent.parent
    digest = hashlib.sha256()
    for name in names:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]
