"""AVX2 LLVM IR for the int8 dot products of the SIMD kernels (see ``simd``).

Each ``row_dot_<type>`` is a numba intrinsic computing one dot product of a
weight row (still quantized) with one activation row quantized to int8
blocks of 32 (``xq`` codes, ``xd`` scales, ``xs`` = scale * sum of codes):

    row_dot_q4_1(raw, row, xq, xd, xs, t, lut) -> float32
    # raw (d, row_nbytes) uint8; row, t: uint64; xq (n, k) int8;
    # xd, xs (n, k // 32) float32; lut: the half table
    # ~= W[row] . x[t]

The block loop is emitted here, in IR, as llama.cpp's ``ggml_vec_dot_*_q8``
does it: per 32 elements, ``vpmaddubsw`` (unsigned weight codes x signed
activation codes, pairs summed to int16), ``vpmaddwd`` (pairs to int32),
``vcvtdq2ps`` and one fused multiply-add into eight float lanes by the
product of the two block scales. Signed weight codes go through
``vpsignb`` (|w| and x with w's sign) first. Per-block offsets (Q4_1's
``m``, K-quants' mins) add ``m * xs`` to a scalar sum. The eight lanes and
the scalar are summed in a fixed order at the end.

The arithmetic of a dot product depends only on the two rows: whatever
kernel, thread or batch runs it, the result is the same bits.

Compiling any of these for a CPU without AVX2 and FMA aborts the process:
callers check the host first (``kernels.select``). Loads from weights are
unaligned (GGUF blocks sit at any byte offset).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kettle.quant.types import QK, QK_K, QUANT_INFO, GGMLType

I8, I16, I32, I64, F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()
V16I8, V32I8 = ir.VectorType(I8, 16), ir.VectorType(I8, 32)
V16I16, V8I32, V8F32 = ir.VectorType(I16, 16), ir.VectorType(I32, 8), ir.VectorType(F32, 8)
V32I1 = ir.VectorType(ir.IntType(1), 32)
BLOCKS_PER_K = QK_K // QK  # activation blocks per K-quant super-block


def _splat(vtype: ir.VectorType, value: int | float) -> ir.Constant:
    return ir.Constant(vtype, [value] * vtype.count)


def _lanes(*indices: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(indices)), list(indices))


class Emitter:
    """IR building blocks for one row dot product, bound to an IR builder."""

    def __init__(self, builder: ir.IRBuilder, lut: ir.Value):
        self.b = builder
        self.lut = lut  # float* (the half table)

    def _call(self, name: str, ret: ir.Type, *args: ir.Value) -> ir.Value:
        fnty = ir.FunctionType(ret, [a.type for a in args])
        return self.b.call(cgutils.get_or_insert_function(self.b.module, fnty, name), args)

    # memory
    def load(self, base: ir.Value, offset: int | ir.Value, vtype: ir.Type) -> ir.Value:
        """An unaligned load of ``vtype`` at byte ``offset`` of the i8* ``base``."""
        at = ir.Constant(I64, offset) if isinstance(offset, int) else offset
        ptr = self.b.bitcast(self.b.gep(base, [at]), vtype.as_pointer())
        return self.b.load(ptr, align=1)

    def half(self, base: ir.Value, offset: int) -> ir.Value:
        """The IEEE half at byte ``offset`` of ``base``, as float, through the lookup table."""
        bits = self.b.zext(self.load(base, offset, I16), I64)
        return self.b.load(self.b.gep(self.lut, [bits]))

    def byte(self, base: ir.Value, offset: int) -> ir.Value:
        """The byte at ``offset``, zero-extended to i32."""
        return self.b.zext(self.load(base, offset, I8), I32)

    def act(self, xd: ir.Value, xs: ir.Value, block: int) -> tuple[ir.Value, ir.Value]:
        """(scale, scale * code sum) of activation block ``block`` (float* bases)."""
        at = ir.Constant(I64, block)
        return self.b.load(self.b.gep(xd, [at])), self.b.load(self.b.gep(xs, [at]))

    # codes
    def nibbles(self, base: ir.Value, offset: int) -> tuple[ir.Value, ir.Value]:
        """The low and high nibbles of 32 bytes at ``offset``: two <32 x i8>."""
        v = self.load(base, offset, V32I8)
        return self.b.and_(v, _splat(V32I8, 15)), self.b.and_(self.b.lshr(v, _splat(V32I8, 4)), _splat(V32I8, 15))

    def nibbles16(self, base: ir.Value, offset: int) -> ir.Value:
        """32-element block codes from 16 bytes: element i low nibble of byte i, i+16 high (<32 x i8>)."""
        v = self.load(base, offset, V16I8)
        lo = self.b.and_(v, _splat(V16I8, 15))
        hi = self.b.lshr(v, _splat(V16I8, 4))
        return self.b.shuffle_vector(lo, hi, _lanes(*range(32)))

    def bit4(self, base: ir.Value, offset: int) -> ir.Value:
        """<32 x i8>: 16 where bit i of the little-endian u32 at ``offset`` is set, else 0."""
        bits = self.b.bitcast(self.load(base, offset, I32), V32I1)
        return self.b.shl(self.b.zext(bits, V32I8), _splat(V32I8, 4))

    # dot products
    def _pairs(self, u: ir.Value, s: ir.Value) -> ir.Value:
        """vpmaddubsw: <16 x i16> of u[2i]*s[2i] + u[2i+1]*s[2i+1] (u unsigned, s signed)."""
        return self._call("llvm.x86.avx2.pmadd.ub.sw", V16I16, u, s)

    def _quads(self, p: ir.Value, weights: ir.Value) -> ir.Value:
        """vpmaddwd: <8 x i32> of p[2i]*w[2i] + p[2i+1]*w[2i+1]."""
        return self._call("llvm.x86.avx2.pmadd.wd", V8I32, p, weights)

    def _signed_pairs(self, w: ir.Value, x: ir.Value) -> ir.Value:
        """vpmaddubsw of signed w and x: |w| times x with w's sign (w may be -128, x may not)."""
        sign = "llvm.x86.avx2.psign.b"
        return self._pairs(self._call(sign, V32I8, w, w), self._call(sign, V32I8, x, w))

    def dot(self, w: ir.Value, x: ir.Value, signed: bool) -> ir.Value:
        """<8 x i32> partial sums of w . x over 32 int8 lanes (w unsigned 0..127 unless ``signed``)."""
        pairs = self._signed_pairs(w, x) if signed else self._pairs(w, x)
        return self._quads(pairs, _splat(V16I16, 1))

    def dot16(self, w: ir.Value, x: ir.Value, sc_lo: ir.Value, sc_hi: ir.Value) -> ir.Value:
        """<8 x i32> of signed w . x with elements 0..15 weighted by ``sc_lo`` and 16..31 by ``sc_hi`` (i16)."""
        lo = self.b.insert_element(ir.Constant(V16I16, None), sc_lo, ir.Constant(I32, 0))
        hi = self.b.insert_element(ir.Constant(V16I16, None), sc_hi, ir.Constant(I32, 0))
        scales = self.b.shuffle_vector(lo, hi, _lanes(*([0] * 8 + [16] * 8)))
        return self._quads(self._signed_pairs(w, x), scales)

    def fma(self, acc: ir.Value, partial: ir.Value, scale: ir.Value) -> ir.Value:
        """acc + float(partial) * scale (one fused multiply-add on 8 lanes)."""
        splat = self.b.shuffle_vector(
            self.b.insert_element(ir.Constant(V8F32, None), scale, ir.Constant(I32, 0)),
            ir.Constant(V8F32, None),
            _lanes(*([0] * 8)),
        )
        return self._call("llvm.fma.v8f32", V8F32, self.b.sitofp(partial, V8F32), splat, acc)

    def hsum(self, acc: ir.Value, extra: ir.Value) -> ir.Value:
        """The 8 lanes of ``acc`` plus ``extra``, summed in a fixed tree order."""
        b = self.b
        v = b.fadd(b.shuffle_vector(acc, acc, _lanes(0, 1, 2, 3)), b.shuffle_vector(acc, acc, _lanes(4, 5, 6, 7)))
        v = b.fadd(b.shuffle_vector(v, v, _lanes(0, 1)), b.shuffle_vector(v, v, _lanes(2, 3)))
        s = b.fadd(b.extract_element(v, ir.Constant(I32, 0)), b.extract_element(v, ir.Constant(I32, 1)))
        return b.fadd(s, extra)


# --- one weight block each: (emitter, w (i8* block), xq (i8* its activation codes),
#     xd, xs (float* its activation blocks), acc <8 x float>, extra float) -> (acc, extra)


def _block_q4_0(e, w, xq, xd, xs, acc, extra):
    dx, _ = e.act(xd, xs, 0)
    codes = e.b.sub(e.nibbles16(w, 2), _splat(V32I8, 8))
    return e.fma(acc, e.dot(codes, e.load(xq, 0, V32I8), True), e.b.fmul(e.half(w, 0), dx)), extra


def _block_q4_1(e, w, xq, xd, xs, acc, extra):
    dx, sx = e.act(xd, xs, 0)
    acc = e.fma(acc, e.dot(e.nibbles16(w, 4), e.load(xq, 0, V32I8), False), e.b.fmul(e.half(w, 0), dx))
    return acc, e.b.fadd(extra, e.b.fmul(e.half(w, 2), sx))


def _block_q5_0(e, w, xq, xd, xs, acc, extra):
    dx, _ = e.act(xd, xs, 0)
    codes = e.b.sub(e.b.or_(e.nibbles16(w, 6), e.bit4(w, 2)), _splat(V32I8, 16))
    return e.fma(acc, e.dot(codes, e.load(xq, 0, V32I8), True), e.b.fmul(e.half(w, 0), dx)), extra


def _block_q5_1(e, w, xq, xd, xs, acc, extra):
    dx, sx = e.act(xd, xs, 0)
    codes = e.b.or_(e.nibbles16(w, 8), e.bit4(w, 4))
    acc = e.fma(acc, e.dot(codes, e.load(xq, 0, V32I8), False), e.b.fmul(e.half(w, 0), dx))
    return acc, e.b.fadd(extra, e.b.fmul(e.half(w, 2), sx))


def _block_q8_0(e, w, xq, xd, xs, acc, extra):
    dx, _ = e.act(xd, xs, 0)
    return e.fma(acc, e.dot(e.load(w, 2, V32I8), e.load(xq, 0, V32I8), True), e.b.fmul(e.half(w, 0), dx)), extra


def _q4_k_scale_min(e, w, g):
    """Q4_K group ``g``'s 6-bit (scale, min) as floats, from the 12 bytes at 4."""
    b = e.b
    if g < 4:
        sc = b.and_(e.byte(w, 4 + g), ir.Constant(I32, 63))
        mn = b.and_(e.byte(w, 8 + g), ir.Constant(I32, 63))
    else:
        tail = e.byte(w, 12 + g - 4)
        top_sc = b.shl(b.lshr(e.byte(w, g), ir.Constant(I32, 6)), ir.Constant(I32, 4))
        top_mn = b.shl(b.lshr(e.byte(w, 4 + g), ir.Constant(I32, 6)), ir.Constant(I32, 4))
        sc = b.or_(b.and_(tail, ir.Constant(I32, 15)), top_sc)
        mn = b.or_(b.lshr(tail, ir.Constant(I32, 4)), top_mn)
    return b.uitofp(sc, F32), b.uitofp(mn, F32)


def _block_q4_k(e, w, xq, xd, xs, acc, extra):
    b = e.b
    d, dmin = e.half(w, 0), e.half(w, 2)
    for c in range(4):  # 32 bytes of codes: group 2c in the low nibbles, 2c + 1 in the high ones
        for g, codes in zip((2 * c, 2 * c + 1), e.nibbles(w, 16 + 32 * c), strict=True):
            dx, sx = e.act(xd, xs, g)
            sc, mn = _q4_k_scale_min(e, w, g)
            acc = e.fma(acc, e.dot(codes, e.load(xq, QK * g, V32I8), False), b.fmul(b.fmul(d, sc), dx))
            extra = b.fsub(extra, b.fmul(b.fmul(dmin, mn), sx))
    return acc, extra


def _block_q6_k(e, w, xq, xd, xs, acc, extra):
    b = e.b
    d = e.half(w, 208)
    for h in range(2):
        high = e.load(w, 128 + 32 * h, V32I8)
        for s in range(4):  # elements 128h + 32s + l: groups 8h + 2s (l < 16) and 8h + 2s + 1
            nib = e.nibbles(w, 64 * h + 32 * (s % 2))[s // 2]
            top = b.shl(b.and_(b.lshr(high, _splat(V32I8, 2 * s)), _splat(V32I8, 3)), _splat(V32I8, 4))
            codes = b.sub(b.or_(nib, top), _splat(V32I8, 32))
            sc_lo, sc_hi = (b.sext(e.load(w, 192 + 8 * h + 2 * s + i, I8), I16) for i in range(2))
            dx, _ = e.act(xd, xs, 4 * h + s)
            partial = e.dot16(codes, e.load(xq, QK * (4 * h + s), V32I8), sc_lo, sc_hi)
            acc = e.fma(acc, partial, b.fmul(d, dx))
    return acc, extra


BLOCKS = {
    GGMLType.Q4_0: _block_q4_0,
    GGMLType.Q4_1: _block_q4_1,
    GGMLType.Q5_0: _block_q5_0,
    GGMLType.Q5_1: _block_q5_1,
    GGMLType.Q8_0: _block_q8_0,
    GGMLType.Q4_K: _block_q4_k,
    GGMLType.Q6_K: _block_q6_k,
}


def _row_dot(ggml_type: GGMLType):
    """The intrinsic ``row_dot(raw, row, xq, xd, xs, t, lut) -> float32`` of one type."""
    block = BLOCKS[ggml_type]
    info = QUANT_INFO[ggml_type]
    acts_per_block = info.block_size // QK

    def typer(typingctx, raw, row, xq, xd, xs, t, lut):
        arrays = (raw, xq, xd, xs, lut)
        if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
            return None
        if (raw.dtype, xq.dtype, xd.dtype, xs.dtype, lut.dtype) != (
            types.uint8,
            types.int8,
            types.float32,
            types.float32,
            types.float32,
        ):
            return None

        def codegen(context, builder, signature, args):
            raw_v, row_v, xq_v, xd_v, xs_v, t_v, lut_v = args
            raw_a, xq_a, xd_a, xs_a, lut_a = (
                context.make_array(ty)(context, builder, v)
                for ty, v in zip(arrays, (raw_v, xq_v, xd_v, xs_v, lut_v), strict=True)
            )
            i8p = I8.as_pointer()

            def row_ptr(ary, index):
                stride = cgutils.unpack_tuple(builder, ary.strides, 2)[0]
                return builder.gep(builder.bitcast(ary.data, i8p), [builder.mul(index, stride)])

            w_row = row_ptr(raw_a, row_v)
            xq_row = row_ptr(xq_a, t_v)
            xd_row = builder.bitcast(row_ptr(xd_a, t_v), F32.as_pointer())
            xs_row = builder.bitcast(row_ptr(xs_a, t_v), F32.as_pointer())
            row_bytes = cgutils.unpack_tuple(builder, raw_a.shape, 2)[1]
            n_blocks = builder.udiv(row_bytes, ir.Constant(I64, info.type_size))
            emit = Emitter(builder, lut_a.data)
            acc_slot = cgutils.alloca_once_value(builder, ir.Constant(V8F32, [0.0] * 8))
            extra_slot = cgutils.alloca_once_value(builder, ir.Constant(F32, 0.0))
            with cgutils.for_range(builder, n_blocks) as loop:
                i = loop.index
                w = builder.gep(w_row, [builder.mul(i, ir.Constant(I64, info.type_size))])
                xq = builder.gep(xq_row, [builder.mul(i, ir.Constant(I64, info.block_size))])
                first_act = builder.mul(i, ir.Constant(I64, acts_per_block))
                xd = builder.gep(xd_row, [first_act])
                xs = builder.gep(xs_row, [first_act])
                acc, extra = block(emit, w, xq, xd, xs, builder.load(acc_slot), builder.load(extra_slot))
                builder.store(acc, acc_slot)
                builder.store(extra, extra_slot)
            return emit.hsum(builder.load(acc_slot), builder.load(extra_slot))

        return types.float32(raw, types.uint64, xq, xd, xs, types.uint64, lut), codegen

    typer.__name__ = f"row_dot_{ggml_type.name.lower()}"
    return intrinsic(typer)


row_dot_q4_0 = _row_dot(GGMLType.Q4_0)
row_dot_q4_1 = _row_dot(GGMLType.Q4_1)
row_dot_q5_0 = _row_dot(GGMLType.Q5_0)
row_dot_q5_1 = _row_dot(GGMLType.Q5_1)
row_dot_q8_0 = _row_dot(GGMLType.Q8_0)
row_dot_q4_k = _row_dot(GGMLType.Q4_K)
row_dot_q6_k = _row_dot(GGMLType.Q6_K)

ROW_DOTS = {
    GGMLType.Q4_0: row_dot_q4_0,
    GGMLType.Q4_1: row_dot_q4_1,
    GGMLType.Q5_0: row_dot_q5_0,
    GGMLType.Q5_1: row_dot_q5_1,
    GGMLType.Q8_0: row_dot_q8_0,
    GGMLType.Q4_K: row_dot_q4_k,
    GGMLType.Q6_K: row_dot_q6_k,
}
