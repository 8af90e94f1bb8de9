"""AVX2 LLVM IR for the int8 dot products of the SIMD kernels (see ``simd``).

``TILE_DOTS[type, tokens, flavour]`` is a numba intrinsic computing a tile of dot
products of weight rows (still quantized) with activation rows quantized to
int8 blocks of 32 (``xq`` codes, ``xd`` scales, ``xs`` = scale * code sum):

    tile_dot(raw, r0, xq, xd, xs, t0, out) -> None
    # raw (d, row_nbytes) uint8; r0, t0: uint64; xq (n, k) int8;
    # xd, xs (n, k // 32) float32; out (n, d) float32
    # out[t, r] ~= W[r] . x[t] for TILE_ROWS[type] rows from r0 and ``tokens`` tokens from t0

The block loop is emitted here, in IR, the way llama.cpp's
``ggml_vec_dot_*_q8`` computes it: per 32 elements, ``vpmaddubsw``
(unsigned weight codes x signed activation codes, pairs summed to int16),
``vpmaddwd`` (pairs to int32, or Q6_K's 16-element scales), ``vcvtdq2ps`` and
one fused multiply-add into eight float lanes by the product of the two
scales. Signed weight codes go through ``vpsignb`` (|w|, and x with w's sign)
first. Offsets (Q4_1's and Q5_1's ``m``) add ``offset * xs`` to a scalar.
The K-quants have their own super-block tiles (``simd_kq``), which reuse
this module's ``Emitter``.
At the end the eight lanes and the scalar are summed in a fixed order. The
scalar work is vectorized across a tile's tokens: each weight scale (and
offset) multiplies the tokens' scales (and ``xs``) in one vector op, token t
in lane t, so the per-element arithmetic is the one-token tile's.

Batch invariance: every (row, token) has its own accumulators and the same
operation sequence (no fast-math flags, explicit ``llvm.fma``) in every tile
shape, so its result does not depend on the tile, the batch or the thread.

A decoder (``DECODERS``) turns one weight block's group of 32 codes into a
``Group``; block layouts are ``types.BLOCK_FIELDS``. Weight loads are
unaligned (GGUF blocks sit at any byte offset) and prefetched ahead
(``prefetch_ahead``: 2 KB in a one-row tile's stream, some rows in a
four-row tile's). Compiling any of this for a CPU without AVX2 and FMA aborts the
process: ``kernels.select`` checks the host first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kettle.quant.types import QK, QUANT_INFO, GGMLType, offsets

I8, I16, I32, I64, F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()
V16I8, V32I8 = ir.VectorType(I8, 16), ir.VectorType(I8, 32)
V16I16, V8I32, V8F32 = ir.VectorType(I16, 16), ir.VectorType(I32, 8), ir.VectorType(F32, 8)
V32I1 = ir.VectorType(ir.IntType(1), 32)


def _splat(vtype: ir.VectorType, value: float) -> ir.Constant:
    return ir.Constant(vtype, [value] * vtype.count)


def _lanes(*indices: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(indices)), list(indices))


@dataclass
class Group:
    """One weight row's 32 codes of a block, ready to multiply by an activation block."""

    codes: ir.Value  # <32 x i8> unsigned codes (|codes| when signed)
    signs: ir.Value | None  # <32 x i8> the signed codes, whose signs the activation takes; None if unsigned
    scale: ir.Value  # float: the weight scale, multiplied by the activation block's scale
    offset: ir.Value | None  # float: added times the activation block's scale * code sum (mins)
    act: int  # which activation block of the weight block


class Emitter:
    """IR building blocks for one row dot product, bound to an IR builder.

    With ``vnni`` (AVX-512 VNNI and VL), a group takes one
    ``vpdpbusd`` (unsigned x signed bytes, four products summed into each int32
    lane) instead of ``vpmaddubsw`` + ``vpmaddwd``: the same exact integer sums
    (the codes never reach ``vpmaddubsw``'s int16 saturation), one instruction.
    """

    def __init__(self, builder: ir.IRBuilder, vnni: bool = False):
        self.b = builder
        self.vnni = vnni

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
        """The IEEE half at byte ``offset`` of ``base``, as float (one F16C ``vcvtph2ps``)."""
        return self.b.fpext(self.b.bitcast(self.load(base, offset, I16), ir.HalfType()), F32)

    def byte(self, base: ir.Value, offset: int) -> ir.Value:
        """The byte at ``offset``, zero-extended to i32."""
        return self.b.zext(self.load(base, offset, I8), I32)

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

    def _dpbusd(self, u: ir.Value, s: ir.Value) -> ir.Value:
        """vpdpbusd: <8 x i32> of u[4i]*s[4i] + ... + u[4i+3]*s[4i+3] (u unsigned, s signed)."""
        zero = ir.Constant(V8I32, [0] * 8)
        u32, s32 = self.b.bitcast(u, V8I32), self.b.bitcast(s, V8I32)
        return self._call("llvm.x86.avx512.vpdpbusd.256", V8I32, zero, u32, s32)

    def sign(self, v: ir.Value, signs: ir.Value) -> ir.Value:
        """vpsignb: v with the sign of ``signs`` (negated where < 0, zero where 0)."""
        return self._call("llvm.x86.avx2.psign.b", V32I8, v, signs)

    def group(self, codes: ir.Value, scale: ir.Value, act: int, *, signed: bool = False, offset=None):
        """A ``Group`` of 32 codes; signed codes (-127..127, or -128) go through the sign trick."""
        if signed:
            return Group(self.sign(codes, codes), codes, scale, offset, act)
        return Group(codes, None, scale, offset, act)

    def dot(self, g: Group, xq: ir.Value) -> ir.Value:
        """<8 x i32> partial sums of group ``g``'s codes times its activation codes
        (xq: i8* of the weight block's first activation code)."""
        x = self.load(xq, QK * g.act, V32I8)
        if g.signs is not None:
            x = self.sign(x, g.signs)
        if self.vnni:
            return self._dpbusd(g.codes, x)
        return self._quads(self._pairs(g.codes, x), _splat(V16I16, 1))

    def splat(self, value: ir.Value, count: int) -> ir.Value:
        """<count x float> of the float ``value``."""
        vtype = ir.VectorType(F32, count)
        one = self.b.insert_element(ir.Constant(vtype, None), value, ir.Constant(I32, 0))
        return self.b.shuffle_vector(one, ir.Constant(vtype, None), _lanes(*([0] * count)))

    def gather(self, pointers: list[ir.Value]) -> ir.Value:
        """<len x float> of the floats at ``pointers`` (one per token)."""
        vec = ir.Constant(ir.VectorType(F32, len(pointers)), None)
        for i, ptr in enumerate(pointers):
            vec = self.b.insert_element(vec, self.b.load(ptr), ir.Constant(I32, i))
        return vec

    def fma(self, acc: ir.Value, partial: ir.Value, scales: ir.Value, lane: int) -> ir.Value:
        """acc + float(partial) * scales[lane] (one fused multiply-add on 8 lanes)."""
        splat = self.b.shuffle_vector(scales, ir.Constant(scales.type, None), _lanes(*([lane] * 8)))
        return self._call("llvm.fma.v8f32", V8F32, self.b.sitofp(partial, V8F32), splat, acc)

    def prefetch(self, ptr: ir.Value) -> None:
        """Hint that the byte at ``ptr`` will be read soon (never faults, any address)."""
        read, keep, data = (ir.Constant(I32, v) for v in (0, 3, 1))
        self._call("llvm.prefetch.p0", ir.VoidType(), ptr, read, keep, data)

    def hsum(self, acc: ir.Value, extra: ir.Value) -> ir.Value:
        """The 8 lanes of ``acc`` plus ``extra``, summed in a fixed tree order."""
        b = self.b
        v = b.fadd(b.shuffle_vector(acc, acc, _lanes(0, 1, 2, 3)), b.shuffle_vector(acc, acc, _lanes(4, 5, 6, 7)))
        v = b.fadd(b.shuffle_vector(v, v, _lanes(0, 1)), b.shuffle_vector(v, v, _lanes(2, 3)))
        s = b.fadd(b.extract_element(v, ir.Constant(I32, 0)), b.extract_element(v, ir.Constant(I32, 1)))
        return b.fadd(s, extra)


# --- decoders: (emitter, w (i8* of the weight block), j) -> Group j of the block
# Field offsets (name -> byte) from ``types.BLOCK_FIELDS``.
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = (offsets(GGMLType[n]) for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"))


def _q4_0(e, w, j):
    codes = e.b.sub(e.nibbles16(w, Q4_0["qs"]), _splat(V32I8, 8))
    return e.group(codes, e.half(w, Q4_0["d"]), 0, signed=True)


def _q4_1(e, w, j):
    return e.group(e.nibbles16(w, Q4_1["qs"]), e.half(w, Q4_1["d"]), 0, offset=e.half(w, Q4_1["m"]))


def _q5_0(e, w, j):
    codes = e.b.sub(e.b.or_(e.nibbles16(w, Q5_0["qs"]), e.bit4(w, Q5_0["qh"])), _splat(V32I8, 16))
    return e.group(codes, e.half(w, Q5_0["d"]), 0, signed=True)


def _q5_1(e, w, j):
    codes = e.b.or_(e.nibbles16(w, Q5_1["qs"]), e.bit4(w, Q5_1["qh"]))
    return e.group(codes, e.half(w, Q5_1["d"]), 0, offset=e.half(w, Q5_1["m"]))


def _q8_0(e, w, j):
    return e.group(e.load(w, Q8_0["qs"], V32I8), e.half(w, Q8_0["d"]), 0, signed=True)


DECODERS = {
    GGMLType.Q4_0: _q4_0,
    GGMLType.Q4_1: _q4_1,
    GGMLType.Q5_0: _q5_0,
    GGMLType.Q5_1: _q5_1,
    GGMLType.Q8_0: _q8_0,
}
# Weight rows of one tile_dot call. Four rows share each activation load; a
# Q8_0 row (34-byte blocks, mostly the output matrix, streamed from memory at
# decode) reads 2-3x faster alone: four interleaved unaligned streams stall.
TILE_ROWS = {ggml_type: 4 for ggml_type in DECODERS} | {GGMLType.Q8_0: 1}
TILE_TOKENS = (1, 4)  # tokens of one tile_dot call: the variants compiled


def prefetch_rows(tile_rows: int) -> int:
    """Read-ahead distance of a multi-row tile, in rows: the same block this many rows further on."""
    return max(8, 4 * tile_rows)


# Read-ahead distance of a one-row tile, in bytes. A thread's rows lie end to end, so they are one
# stream; a distance in rows (8) put 35-120 KB between the prefetched and the read lines on an 8B
# model's rows (4096-14336 columns), pushing the activations out of L1: decode on those matrices
# read 16-20 GB/s where 2 KB ahead reads 22-30 (Q4_K, Q6_K, Q8_0). Four-row tiles (four streams)
# measured better with their distance in rows.
PREFETCH_BYTES = 2048


def prefetch_ahead(builder: ir.IRBuilder, tile_rows: int, row_bytes: ir.Value) -> ir.Value:
    """i64 bytes between a block and the line its tile prefetches (see ``PREFETCH_BYTES``)."""
    if tile_rows == 1:
        return ir.Constant(I64, PREFETCH_BYTES)
    return builder.mul(row_bytes, ir.Constant(I64, prefetch_rows(tile_rows)))


def c_arrays_of(arrays, dtypes) -> bool:
    """True when the numba types ``arrays`` are C-contiguous arrays of ``dtypes`` (a tile's typer
    declines anything else)."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) and \
        tuple(a.dtype for a in arrays) == tuple(dtypes)


@dataclass
class TileArgs:
    """What a tile's codegen starts from: its rows and tokens, clamped to the last ones (a
    clamped duplicate stores the same value again), and pointers to their data."""

    rows: list[ir.Value]  # i64 row indices
    toks: list[ir.Value]  # i64 token indices
    w_rows: list[ir.Value]  # i8* of each row's first block
    x_rows: list[tuple[ir.Value, ir.Value, ir.Value]]  # per token: i8* codes, float* scales, i8* of the third array
    n_blocks: ir.Value  # i64 blocks per row
    row_bytes: ir.Value  # i64
    out: Callable[[ir.Value, ir.Value], ir.Value]  # (row, token) -> float* of out[token, row]


def tile_args(context, builder: ir.IRBuilder, arrays, values, tile_rows: int, tokens: int, type_size: int) -> TileArgs:
    """``TileArgs`` of ``tile_dot(raw, r0, xq, xd, x3, t0, out)`` (``arrays``: the five array
    types, ``values``: the seven arguments)."""
    raw_v, r0_v, xq_v, xd_v, x3_v, t0_v, out_v = values
    raw_a, xq_a, xd_a, x3_a, out_a = (
        context.make_array(ty)(context, builder, v)
        for ty, v in zip(arrays, (raw_v, xq_v, xd_v, x3_v, out_v), strict=True)
    )
    b = builder
    i8p, fp = I8.as_pointer(), F32.as_pointer()

    def clamped(first, i, count):
        index = b.add(first, ir.Constant(I64, i))
        last = b.sub(count, ir.Constant(I64, 1))
        return b.select(b.icmp_unsigned("<", index, last), index, last)

    def row_ptr(ary, index, ptype=i8p):
        stride = cgutils.unpack_tuple(b, ary.strides, 2)[0]
        return b.bitcast(b.gep(b.bitcast(ary.data, i8p), [b.mul(index, stride)]), ptype)

    d_rows, row_bytes = cgutils.unpack_tuple(b, raw_a.shape, 2)
    n = cgutils.unpack_tuple(b, xq_a.shape, 2)[0]
    rows = [clamped(r0_v, i, d_rows) for i in range(tile_rows)]
    toks = [clamped(t0_v, j, n) for j in range(tokens)]
    return TileArgs(
        rows, toks, [row_ptr(raw_a, r) for r in rows],
        [(row_ptr(xq_a, t), row_ptr(xd_a, t, fp), row_ptr(x3_a, t)) for t in toks],
        b.udiv(row_bytes, ir.Constant(I64, type_size)), row_bytes,
        lambda r, t: b.gep(row_ptr(out_a, t, fp), [r]),
    )


def _tile_dot(ggml_type: GGMLType, tokens: int, vnni: bool):
    """The intrinsic ``tile_dot(raw, r0, xq, xd, xs, t0, out)`` of one type.

    Computes ``out[t, r] = W[r] . x[t]`` for the ``TILE_ROWS[ggml_type]`` rows from ``r0`` and
    the ``tokens`` tokens from ``t0``, each clamped to the last row / token
    (a clamped duplicate stores the same value again). Each (r, t) has its own
    accumulators and the same operation sequence in every variant.
    """
    decode = DECODERS[ggml_type]
    tile_rows = TILE_ROWS[ggml_type]
    info = QUANT_INFO[ggml_type]
    groups = info.block_size // QK

    def typer(typingctx, raw, r0, xq, xd, xs, t0, out):
        arrays = (raw, xq, xd, xs, out)
        if not c_arrays_of(arrays, (types.uint8, types.int8, types.float32, types.float32, types.float32)):
            return None

        def codegen(context, builder, signature, args):
            tile = tile_args(context, builder, arrays, args, tile_rows, tokens, info.type_size)
            rows, toks, w_rows, row_bytes, n_blocks = tile.rows, tile.toks, tile.w_rows, tile.row_bytes, tile.n_blocks
            fp = F32.as_pointer()
            x_rows = [(q, sd, builder.bitcast(ss, fp)) for q, sd, ss in tile.x_rows]
            emit = Emitter(builder, vnni)
            vt = ir.VectorType(F32, tokens)  # one lane per token
            acc_slots = [[cgutils.alloca_once_value(builder, ir.Constant(V8F32, [0.0] * 8)) for _ in toks] for _ in rows]
            extra_slots = [cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * tokens)) for _ in rows]
            ahead = prefetch_ahead(builder, tile_rows, row_bytes)
            with cgutils.for_range(builder, n_blocks) as loop:
                i = loop.index
                ws = [builder.gep(w, [builder.mul(i, ir.Constant(I64, info.type_size))]) for w in w_rows]
                for w in ws:
                    emit.prefetch(builder.gep(w, [ahead]))
                first = builder.mul(i, ir.Constant(I64, groups))
                xs_blk = [
                    (
                        builder.gep(q, [builder.mul(first, ir.Constant(I64, QK))]),
                        builder.gep(sd, [first]),
                        builder.gep(ss, [first]),
                    )
                    for q, sd, ss in x_rows
                ]
                accs = [[builder.load(a) for a in row] for row in acc_slots]
                extras = [builder.load(x) for x in extra_slots]
                for j in range(groups):
                    decoded = [decode(emit, w, j) for w in ws]
                    act = ir.Constant(I64, decoded[0].act)  # the activation block: alike for every row
                    # the tokens' scales (and scale * code sums) side by side: each weight
                    # scale multiplies them in one vector op, lane t for token t
                    dx = emit.gather([builder.gep(sd, [act]) for _, sd, _ in xs_blk])
                    sx = emit.gather([builder.gep(ss, [act]) for _, _, ss in xs_blk]) if decoded[0].offset else None
                    for ri, g in enumerate(decoded):
                        scales = builder.fmul(emit.splat(g.scale, tokens), dx)
                        if g.offset is not None:
                            extras[ri] = builder.fadd(extras[ri], builder.fmul(emit.splat(g.offset, tokens), sx))
                        for ti, (q, _, _) in enumerate(xs_blk):
                            accs[ri][ti] = emit.fma(accs[ri][ti], emit.dot(g, q), scales, ti)
                for row_slots, row_accs, x_slot, extra in zip(acc_slots, accs, extra_slots, extras, strict=True):
                    for a_slot, acc in zip(row_slots, row_accs, strict=True):
                        builder.store(acc, a_slot)
                    builder.store(extra, x_slot)
            for r, row_slots, x_slot in zip(rows, acc_slots, extra_slots, strict=True):
                extra = builder.load(x_slot)
                for ti, (t, a_slot) in enumerate(zip(toks, row_slots, strict=True)):
                    value = emit.hsum(builder.load(a_slot), builder.extract_element(extra, ir.Constant(I32, ti)))
                    builder.store(value, tile.out(r, t))
            return context.get_dummy_value()

        return types.void(raw, types.uint64, xq, xd, xs, types.uint64, out), codegen

    typer.__name__ = f"tile_dot_{ggml_type.name.lower()}_{tile_rows}x{tokens}{'_vnni' if vnni else ''}"
    return intrinsic(typer)


FLAVOURS = ("avx2", "avx512vnni")  # the instruction sets a tile can be emitted for
TILE_DOTS = {(t, k, f): _tile_dot(t, k, f == "avx512vnni") for t in DECODERS for k in TILE_TOKENS for f in FLAVOURS}
