"""AVX2 LLVM IR for the K-quant dot products: whole 256-element super-blocks in integers.

The 32-element types (``simd_ir``) pay a float multiply-add per block. A
K-quant super-block holds 8 (Q4_K, Q5_K) or 16 (Q2_K, Q3_K, Q6_K) small integer scales
under one half-float ``d``, so, as llama.cpp's ``ggml_vec_dot_q4_K_q8_K``
does, the activations are quantized per super-block instead (``xq`` int8
codes, one scale ``xd`` per 256, and ``xb``: the sums of each 16 codes), and a
super-block's dot product stays integer until its end:

    sumi = sum_g  sc_g * (codes_g . x_g)          integer, exact (below)
    msum = sum_16 m_16 * xb_16                    one vpmaddwd
    acc += float(sumi) * (d * xd) - float(msum) * (dmin * xd)

Q4_K/Q5_K: ``m`` is the group's 6-bit min (``dmin`` its scale); Q2_K: its
4-bit min, per 16 elements. Q6_K's codes are stored with +32, Q3_K's with +4
(``q - 4`` is ``2 low bits + 4 * hmask bit - 4``): they multiply unsigned and
``msum`` takes ``32 * sc`` (``4 * sc``, with Q3_K's signed ``sc - 32``),
subtracted from ``sumi`` before the one conversion.

``sumi`` per flavour (``_dot``), the same eight int32 lanes from both:

* ``avx512vnni``: one ``vpdpbusd`` per group of 32 (four-element sums, at most
  4 * 63 * 127 < 2^15), two groups packed to int16 by ``vpackssdw`` (exact)
  and scaled by one ``vpdpwssd``: 12 multiplies per super-block where
  vpmaddubsw + vpdpwssd per group took 16 (+10-30% at prefill).
* ``avx2``: ``vpmaddubsw`` + ``vpmaddwd`` by ``sc_g`` per group (codes are at
  most 6 bits, so the int16 pairs never saturate: 63 * 127 * 2 < 2^15), the
  even and the odd groups summed apart and joined by one ``vphaddd``, which
  puts every sum in the lane vnni's packing gives it.

Every integer sum is exact, so the flavours agree bit for bit.

``tile_dot(raw, r0, xq, xd, xb, t0, out)``: as ``simd_ir``'s tiles, with
``xd`` (n, k // 256) float32 and ``xb`` (n, k // 16) int16. Each (row, token)
has its own accumulator and the same operation sequence in every tile shape
(batch invariance); a row's codes and scales are decoded once per super-block
for all of a tile's tokens: 4, or ``WIDE_TOKENS`` (8) under vnni, whose 32
vector registers hold eight tokens' accumulators beside the decoded row (the
decoding per token halves; with 16 registers avx2 would spill).
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kettle.quant.simd_ir import (
    F32, I8, I32, I64, V8F32, V8I32, V16I16, V32I8, Emitter, _lanes, _splat, c_arrays_of, prefetch_ahead, tile_args,
)
from kettle.quant.types import QK, QK_K, QUANT_INFO, GGMLType, offsets

V8I8, V8I16, V16I8 = ir.VectorType(I8, 8), ir.VectorType(ir.IntType(16), 8), ir.VectorType(I8, 16)
V2I32, V4I32 = ir.VectorType(I32, 2), ir.VectorType(I32, 4)
SUMS = 16  # activation code sums per super-block (one per 16 elements)
# Field offsets of the decoders (name -> byte) from ``types.BLOCK_FIELDS``.
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (offsets(GGMLType[n]) for n in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"))
WIDE_TOKENS = 8  # tokens of the widest tile (vnni: 32 vector registers hold 8 tokens' accumulators)


@dataclass
class SuperBlock:
    """One weight row's super-block, decoded for the integer dot product."""

    codes: list[ir.Value]  # 8 x <32 x i8> unsigned codes, group g = elements 32g..32g+31
    scales16: ir.Value  # <16 x i16>: the scale of each 16 elements
    sum_weights: ir.Value  # <16 x i16>: multiplier of each activation sum (mins; Q3_K, Q6_K: offset * scale)
    d: ir.Value  # float: the scale of sumi
    dmin: ir.Value | None  # float: the scale of msum; None: msum is subtracted from sumi (same scale)


def _i32(value: int) -> ir.Constant:
    return ir.Constant(I32, value)


def _k4_scales_mins(e: Emitter, w: ir.Value, at: dict[str, int]) -> tuple[ir.Value, ir.Value]:
    """Q4_K/Q5_K (``at``: its field offsets): the 12 scales bytes -> (scales, mins), each <8 x i16> of
    6-bit values.

    Bytes 0..3 hold scales 0..3 (low 6 bits) and bits 4-5 of scales 4..7 (top 2);
    bytes 4..7 the same for the mins; bytes 8..11 the low nibbles of scales 4..7
    and (high nibbles) mins 4..7. Done on three little-endian u32 at once.
    """
    b = e.b
    u0, u1, u2 = (e.load(w, at["scales"] + 4 * i, I32) for i in range(3))
    low6, low4, low2 = _i32(0x3F3F3F3F), _i32(0x0F0F0F0F), _i32(0x03030303)
    top = lambda u: b.shl(b.and_(b.lshr(u, _i32(6)), low2), _i32(4))  # noqa: E731
    sc = (b.and_(u0, low6), b.or_(b.and_(u2, low4), top(u0)))
    mn = (b.and_(u1, low6), b.or_(b.and_(b.lshr(u2, _i32(4)), low4), top(u1)))

    def widen(pair):
        v = b.insert_element(b.insert_element(ir.Constant(V2I32, None), pair[0], _i32(0)), pair[1], _i32(1))
        return b.zext(b.bitcast(v, V8I8), V8I16)

    return widen(sc), widen(mn)


def _k4_block(e: Emitter, w: ir.Value, codes: list[ir.Value], at: dict[str, int]) -> SuperBlock:
    scales, mins = _k4_scales_mins(e, w, at)
    sum_weights = e.b.shuffle_vector(mins, mins, _lanes(*[g // 2 for g in range(16)]))
    scales16 = e.b.shuffle_vector(scales, scales, _lanes(*[g // 2 for g in range(16)]))
    return SuperBlock(codes, scales16, sum_weights, e.half(w, at["d"]), e.half(w, at["dmin"]))


def _q4_k(e: Emitter, w: ir.Value) -> SuperBlock:
    """Group 2c + u: nibble u of the 32 bytes qs[32c:32c + 32]."""
    codes = [v for c in range(4) for v in e.nibbles(w, Q4_K["qs"] + 32 * c)]
    return _k4_block(e, w, codes, Q4_K)


def _q5_k(e: Emitter, w: ir.Value) -> SuperBlock:
    """As Q4_K; bit 4 of group g's element l is bit g of qh[l] (32 bytes)."""
    b = e.b
    qh = e.load(w, Q5_K["qh"], V32I8)
    codes = []
    for g, low in enumerate(v for c in range(4) for v in e.nibbles(w, Q5_K["qs"] + 32 * c)):
        top = b.shl(b.and_(b.lshr(qh, _splat(V32I8, g)), _splat(V32I8, 1)), _splat(V32I8, 4))
        codes.append(b.or_(low, top))
    return _k4_block(e, w, codes, Q5_K)


def _per16(e: Emitter, scales: ir.Value) -> list[ir.Value]:
    """<16 x i16> scales of 16 elements -> 8 x <16 x i16>: code group j's 16 pairs take scale 2j
    (its first 16 elements), then 2j + 1."""
    return [e.b.shuffle_vector(scales, scales, _lanes(*([2 * j] * 8 + [2 * j + 1] * 8))) for j in range(8)]


def _crumbs(e: Emitter, w: ir.Value, offset: int) -> list[ir.Value]:
    """Q2_K/Q3_K low 2 bits: group j = 4h + s (elements 128h + 32s + l) is bits 2s..2s+1 of
    the 32 bytes at ``offset + 32h`` (8 x <32 x i8>)."""
    b = e.b
    codes = []
    for h in range(2):
        packed = e.load(w, offset + 32 * h, V32I8)
        codes += [b.and_(b.lshr(packed, _splat(V32I8, 2 * s)), _splat(V32I8, 3)) for s in range(4)]
    return codes


def _q2_k(e: Emitter, w: ir.Value) -> SuperBlock:
    """Codes: ``_crumbs`` of qs[64]; byte g of scales[16]: the scale (low nibble) and
    min (high nibble) of elements 16g..16g+15; d, dmin."""
    b = e.b
    packed = e.load(w, Q2_K["scales"], V16I8)
    scales = b.zext(b.and_(packed, _splat(V16I8, 15)), V16I16)
    mins = b.zext(b.lshr(packed, _splat(V16I8, 4)), V16I16)
    return SuperBlock(_crumbs(e, w, Q2_K["qs"]), scales, mins, e.half(w, Q2_K["d"]), e.half(w, Q2_K["dmin"]))


def _vector(b: ir.IRBuilder, values: list[ir.Value]) -> ir.Value:
    """<len x T> of the scalars ``values``."""
    v = ir.Constant(ir.VectorType(values[0].type, len(values)), None)
    for i, value in enumerate(values):
        v = b.insert_element(v, value, _i32(i))
    return v


def _q3_scales(e: Emitter, w: ir.Value) -> ir.Value:
    """Q3_K: the 12 bytes of scales -> <16 x i16> signed scales (stored + 32, returned - 32).

    Scale g: low nibble of byte g (g < 8) or high nibble of byte g - 8, and bits
    2(g // 4)..+1 of byte 8 + g % 4 on top. Four scales per u32 lane: lane c holds
    scales 4c..4c+3, from u32 c % 2 of bytes 0..7 shifted by 4(c // 2) and the u32 of
    bytes 8..11 shifted by 2c.
    """
    b = e.b
    lo = [e.load(w, Q3_K["scales"] + 4 * i, I32) for i in range(2)]
    hi = e.load(w, Q3_K["scales"] + 8, I32)
    low = b.and_(b.lshr(_vector(b, [lo[0], lo[1], lo[0], lo[1]]), ir.Constant(V4I32, [0, 0, 4, 4])),
                 _splat(V4I32, 0x0F0F0F0F))
    top = b.and_(b.lshr(_vector(b, [hi] * 4), ir.Constant(V4I32, [0, 2, 4, 6])), _splat(V4I32, 0x03030303))
    packed = b.bitcast(b.or_(low, b.shl(top, _splat(V4I32, 4))), V16I8)
    return b.sub(b.zext(packed, V16I16), _splat(V16I16, 32))


def _q3_k(e: Emitter, w: ir.Value) -> SuperBlock:
    """Codes q + 4 (0..7): ``_crumbs`` of qs[64], and bit 4h + s of hmask[l] (32 bytes;
    set: +4) as bit 2; signed scales of 16 elements (``_q3_scales``), d."""
    b = e.b
    hmask = e.load(w, Q3_K["hmask"], V32I8)
    codes = [b.or_(low, b.shl(b.and_(b.lshr(hmask, _splat(V32I8, j)), _splat(V32I8, 1)), _splat(V32I8, 2)))
             for j, low in enumerate(_crumbs(e, w, Q3_K["qs"]))]
    scales = _q3_scales(e, w)
    sum_weights = b.shl(scales, _splat(V16I16, 2))  # 4 * scale: the stored codes' offset
    return SuperBlock(codes, scales, sum_weights, e.half(w, Q3_K["d"]), None)


def _q6_k(e: Emitter, w: ir.Value) -> SuperBlock:
    """Group j = 4h + s: elements 128h + 32s + l, low nibble s // 2 of ql[64h + 32(s % 2) + l],
    bits 2s..2s+1 of qh[32h + l] on top; int8 scales of 16 elements, d."""
    b = e.b
    codes = []
    for j in range(8):
        h, s = divmod(j, 4)
        low = e.nibbles(w, Q6_K["ql"] + 64 * h + 32 * (s % 2))[s // 2]
        high = e.load(w, Q6_K["qh"] + 32 * h, V32I8)
        codes.append(b.or_(low, b.shl(b.and_(b.lshr(high, _splat(V32I8, 2 * s)), _splat(V32I8, 3)), _splat(V32I8, 4))))
    scales = b.sext(e.load(w, Q6_K["scales"], V16I8), V16I16)  # (16,) one per 16 elements
    sum_weights = b.shl(scales, _splat(V16I16, 5))  # 32 * scale: the stored codes' offset
    return SuperBlock(codes, scales, sum_weights, e.half(w, Q6_K["d"]), None)


DECODERS = {GGMLType.Q2_K: _q2_k, GGMLType.Q3_K: _q3_k, GGMLType.Q4_K: _q4_k, GGMLType.Q5_K: _q5_k,
            GGMLType.Q6_K: _q6_k}
# One weight row per call: a super-block is decoded once for the tile's tokens anyway, and one
# stream per row reads from memory faster than four interleaved (decode: 38-40 GB/s for Q4_K
# where four rows gave 27-30; prefill alike).
TILE_ROWS = {t: 1 for t in DECODERS}


def _dot(e: Emitter, sb: SuperBlock, x: ir.Value) -> ir.Value:
    """<8 x i32> partial sums of sum_g sc_g * (codes_g . x_g); x: i8* of the super-block's codes.

    Lane layout (both flavours): in 128-bit half h, lanes 0-1 sum the even groups' elements
    and lanes 2-3 the odd groups', 8 elements a lane. vnni: vpdpbusd per group (4-element
    sums, < 2^15), two groups packed to int16 (vpackssdw, exact) and scaled by one vpdpwssd:
    12 multiplies per super-block instead of 16. avx2: vpmaddubsw + vpmaddwd per group into
    an even and an odd accumulator, joined by one vphaddd (the same sums, integer-exact).
    """
    b = e.b
    xs = [e.load(x, QK * g, V32I8) for g in range(len(sb.codes))]
    if e.vnni:
        acc = None
        for j in range(len(sb.codes) // 2):
            v0, v1 = e._dpbusd(sb.codes[2 * j], xs[2 * j]), e._dpbusd(sb.codes[2 * j + 1], xs[2 * j + 1])
            packed = e._call("llvm.x86.avx2.packssdw", V16I16, v0, v1)
            lanes = [4 * j] * 4 + [4 * j + 2] * 4 + [4 * j + 1] * 4 + [4 * j + 3] * 4
            weights = b.shuffle_vector(sb.scales16, sb.scales16, _lanes(*lanes))
            if acc is None:
                acc = e._quads(packed, weights)
            else:
                acc = e._call("llvm.x86.avx512.vpdpwssd.256", V8I32, acc, packed, weights)
        return acc
    sides = [None, None]
    for g, (codes, weights) in enumerate(zip(sb.codes, _per16(e, sb.scales16), strict=True)):
        quads = e._quads(e._pairs(codes, xs[g]), weights)
        sides[g % 2] = quads if sides[g % 2] is None else b.add(sides[g % 2], quads)
    return e._call("llvm.x86.avx2.phadd.d", V8I32, sides[0], sides[1])


def _tile_dot(ggml_type: GGMLType, tokens: int, vnni: bool):
    """The intrinsic ``tile_dot(raw, r0, xq, xd, xb, t0, out)`` of one K-quant type
    (contract as ``simd_ir._tile_dot``'s, activations per super-block)."""
    decode = DECODERS[ggml_type]
    tile_rows = TILE_ROWS[ggml_type]
    info = QUANT_INFO[ggml_type]
    lines = -(-info.type_size // 64)  # prefetches per super-block: every 64-byte line it advances over

    def typer(typingctx, raw, r0, xq, xd, xb, t0, out):
        arrays = (raw, xq, xd, xb, out)
        if not c_arrays_of(arrays, (types.uint8, types.int8, types.float32, types.int16, types.float32)):
            return None

        def codegen(context, builder, signature, args):
            b = builder
            tile = tile_args(context, b, arrays, args, tile_rows, tokens, info.type_size)
            e = Emitter(b, vnni)
            acc_slots = [[cgutils.alloca_once_value(b, ir.Constant(V8F32, [0.0] * 8)) for _ in tile.toks]
                         for _ in tile.rows]
            ahead = prefetch_ahead(b, tile_rows, tile.row_bytes)
            with cgutils.for_range(b, tile.n_blocks) as loop:
                i = loop.index
                ws = [b.gep(w, [b.mul(i, ir.Constant(I64, info.type_size))]) for w in tile.w_rows]
                for w in ws:
                    for line in range(lines):
                        e.prefetch(b.gep(w, [b.add(ahead, ir.Constant(I64, 64 * line))]))
                xs_blk = [
                    (b.gep(q, [b.mul(i, ir.Constant(I64, QK_K))]), b.gep(sd, [i]),
                     b.gep(sb, [b.mul(i, ir.Constant(I64, 2 * SUMS))]))
                    for q, sd, sb in tile.x_rows
                ]
                dx = e.gather([sd for _, sd, _ in xs_blk])  # the tokens' super-block scales, lane t
                sums = [e.load(sb, 0, V16I16) for _, _, sb in xs_blk]
                for ri, w in enumerate(ws):
                    blk = decode(e, w)
                    dd = b.fmul(e.splat(blk.d, tokens), dx)  # d * xd per token
                    dm = None if blk.dmin is None else b.fmul(e.splat(b.fneg(blk.dmin), tokens), dx)
                    for ti, (q, _, _) in enumerate(xs_blk):
                        sumi = _dot(e, blk, q)
                        msum = e._quads(sums[ti], blk.sum_weights)
                        acc = b.load(acc_slots[ri][ti])
                        if dm is None:
                            acc = e.fma(acc, b.sub(sumi, msum), dd, ti)
                        else:
                            acc = e.fma(e.fma(acc, sumi, dd, ti), msum, dm, ti)
                        b.store(acc, acc_slots[ri][ti])
            zero = ir.Constant(F32, 0.0)
            for r, row_slots in zip(tile.rows, acc_slots, strict=True):
                for t, slot in zip(tile.toks, row_slots, strict=True):
                    b.store(e.hsum(b.load(slot), zero), tile.out(r, t))
            return context.get_dummy_value()

        return types.void(raw, types.uint64, xq, xd, xb, types.uint64, out), codegen

    typer.__name__ = f"ktile_dot_{ggml_type.name.lower()}_{tile_rows}x{tokens}{'_vnni' if vnni else ''}"
    return intrinsic(typer)


def tile_dots(token_counts: tuple[int, ...], flavours: tuple[str, ...]) -> dict:
    """``(type, tokens, flavour) -> intrinsic`` for the K-quant types."""
    return {(t, k, f): _tile_dot(t, k, f == flavours[1]) for t in DECODERS for k in token_counts for f in flavours}

