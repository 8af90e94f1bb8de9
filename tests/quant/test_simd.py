"""The AVX2 kernels (``kettle.quant.simd``) against the numpy reference.

Activations are quantized to int8 blocks, so results are within a normalized
bound of the exact product (exact when the activations are int8 codes); a
token's output is bit-for-bit independent of its batch, of the thread count
and of whether the call runs on one thread or over ``prange``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from kettle.errors import UnsupportedModel, WeightError
from kettle.quant import QUANT_INFO, GGMLType, QuantMatrix, dequantize, implementations, kernels, matmul_many, simd
from tests.quant.conftest import HALF_FIELDS, assert_thread_count_invariant, random_blocks

needs_simd = pytest.mark.skipif(
    not simd.REQUIRES <= kernels.host_features(), reason="the CPU lacks AVX2/FMA: the SIMD kernels must not compile"
)
SIMD_TYPES = sorted(simd.DECODERS)
# The flavours this CPU runs, best last: the tests compute with the best one and
# check that every other gives the same bits.
FLAVOURS_HERE = [name for name, needs in ((simd.NAME, simd.REQUIRES), (simd.VNNI_NAME, simd.VNNI_REQUIRES))
                 if needs <= kernels.host_features()]
BEST = FLAVOURS_HERE[-1] if FLAVOURS_HERE else simd.NAME
TYPES = pytest.mark.parametrize("ggml_type", SIMD_TYPES, ids=lambda t: t.name)
INT8_TOL = 1e-2  # |error| <= INT8_TOL * ||W[r]|| * ||x[t]|| with int8-quantized activations
EXACT_TOL = 1e-5  # the same bound when the activations are int8 codes (quantized exactly)


def cols_for(ggml_type: GGMLType) -> int:
    return 768 if ggml_type.name.endswith("_K") else 352


def make(ggml_type: GGMLType, rows: int, seed: int, cols: int | None = None) -> tuple[QuantMatrix, np.ndarray]:
    """A random (rows, cols) matrix computed by the SIMD kernels, and its float32 reference decode."""
    cols = cols or cols_for(ggml_type)
    raw = random_blocks(ggml_type, rows, cols, np.random.default_rng(seed))
    return QuantMatrix(raw, ggml_type, (rows, cols), kernels=BEST), dequantize(raw, ggml_type, (rows, cols))


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def assert_close(y: np.ndarray, x: np.ndarray, ref: np.ndarray, tol: float) -> None:
    exact = x.astype(np.float64) @ ref.astype(np.float64).T
    bound = tol * np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(ref, axis=1))
    assert np.all(np.abs(y - exact) <= bound + 1e-30), np.max(np.abs(y - exact) - bound)


@needs_simd
@TYPES
@pytest.mark.parametrize("rows", [1, 3, 21])  # partial tiles of 4 and 8 rows
def test_matmul_matches_reference(ggml_type, rows):
    m, ref = make(ggml_type, rows, seed=rows)
    assert m.kernel_name == BEST
    x = np.random.default_rng(2).standard_normal((5, m.cols)).astype(np.float32)
    x[3] *= 1e-3  # rows of different magnitude
    assert_close(m.matmul(x), x, ref, INT8_TOL)


@needs_simd
@TYPES
def test_int8_activations_are_exact(ggml_type):
    """Activations that are int8 codes (each block reaching +-127) quantize without error:
    only float32 rounding remains, so any misplaced code or scale shows."""
    m, ref = make(ggml_type, 13, seed=7)
    rng = np.random.default_rng(8)
    x = rng.integers(-127, 128, (3, m.cols)).astype(np.float32)
    x[:, ::32] = 127.0
    assert_close(m.matmul(x), x, ref, EXACT_TOL)
    np.testing.assert_array_equal(m.matmul(np.zeros((2, m.cols), np.float32)), 0.0)


@needs_simd
@TYPES
def test_one_block_rows(ggml_type):
    cols = 256 if ggml_type.name.endswith("_K") else 32
    m, ref = make(ggml_type, 9, seed=11, cols=cols)
    x = np.random.default_rng(12).standard_normal((2, cols)).astype(np.float32)
    assert_close(m.matmul(x), x, ref, INT8_TOL)


@needs_simd
@TYPES
def test_batch_invariance(ggml_type, monkeypatch):
    m, _ = make(ggml_type, 19, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((37, m.cols)).astype(np.float32)
    x[0] = np.nan  # whatever the other rows contain
    x[1] = 1e30
    x[2, 5] = np.inf
    single = m.matmul(x[17:18])
    batch = m.matmul(x)
    last = m.matmul(x[:18])  # token 17 as the odd one out
    np.testing.assert_array_equal(bits(batch[17]), bits(single[0]))
    np.testing.assert_array_equal(bits(last[17]), bits(single[0]))
    for n in range(1, 10):  # every tile plan: whole groups, a short group, a lone last token
        np.testing.assert_array_equal(bits(m.matmul(x[:n])), bits(batch[:n]))
    monkeypatch.setattr(simd, "SERIAL_WORK", 0)  # the prange kernel
    np.testing.assert_array_equal(bits(m.matmul(x)), bits(batch))
    np.testing.assert_array_equal(bits(m.matmul(x[17:18])), bits(single))


@needs_simd
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("ggml_type", [GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q6_K],
                         ids=lambda t: t.name)
def test_thread_count_does_not_change_results(ggml_type, monkeypatch):
    monkeypatch.setattr(simd, "SERIAL_WORK", 0)
    m, _ = make(ggml_type, 64, seed=5)
    x = np.random.default_rng(6).standard_normal((9, m.cols)).astype(np.float32)
    assert_thread_count_invariant(m, x)


@needs_simd
@pytest.mark.parametrize("ggml_type", [GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q2_K, GGMLType.Q4_K],
                         ids=lambda t: t.name)
def test_memmapped_unaligned_read_only_weights(ggml_type, tmp_path):
    rng = np.random.default_rng(9)
    rows, cols = 11, cols_for(ggml_type)
    raw = random_blocks(ggml_type, rows, cols, rng)
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * 3 + raw.tobytes())
    mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=3, shape=raw.shape)
    assert not mapped.flags.writeable and mapped.ctypes.data % 4 != 0
    m = QuantMatrix(mapped, ggml_type, (rows, cols), kernels=BEST)
    x = rng.standard_normal((3, cols)).astype(np.float32)
    np.testing.assert_array_equal(bits(m.matmul(x)), bits(QuantMatrix(raw, ggml_type, (rows, cols)).matmul(x)))
    assert_close(m.matmul(x), x, dequantize(raw, ggml_type, (rows, cols)), INT8_TOL)


@needs_simd
def test_registered_and_selected_on_this_cpu():
    for t in SIMD_TYPES:
        (k,) = [k for k in implementations(t) if k.name == simd.NAME]
        assert k.requires == frozenset({"avx2", "fma", "f16c"}) and k.priority > 0
        (v,) = [k for k in implementations(t) if k.name == simd.VNNI_NAME]
        assert v.requires == k.requires | {"avx512vnni", "avx512vl"} and v.priority > k.priority
        assert kernels.select(t).name == BEST
    # get_rows stays the portable, bit-exact decoder
    m, ref = make(GGMLType.Q4_1, 5, seed=13)
    np.testing.assert_array_equal(bits(m.dequantize()), bits(ref))


def test_never_selected_without_avx2(monkeypatch):
    """On a CPU without AVX2/FMA the portable kernels are chosen (compiling ours there would abort)."""
    monkeypatch.setattr(kernels, "host_features", lambda: frozenset({"sse2", "fma"}))
    kernels.select.cache_clear()
    try:
        for t in SIMD_TYPES:
            assert kernels.select(t).name == "portable"
            with pytest.raises(UnsupportedModel, match="no kernel named"):
                kernels.select(t, simd.NAME)
    finally:
        kernels.select.cache_clear()


@needs_simd
@pytest.mark.parametrize("ggml_type", [GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q6_K],
                         ids=lambda t: t.name)
def test_matmul_many_is_each_matmul(ggml_type, monkeypatch):
    """One fused call over several matrices (q, k, v) gives each matrix's own bits, serial or parallel."""
    mats = [make(ggml_type, rows, seed=rows)[0] for rows in (21, 5, 8)]
    x = np.random.default_rng(5).standard_normal((9, mats[0].cols)).astype(np.float32)
    for work in (1 << 40, 0):  # all serial, all parallel
        monkeypatch.setattr(simd, "SERIAL_WORK", work)
        for n in (1, 3, 4, 9):
            fused = matmul_many(mats, x[:n])
            assert [f.shape for f in fused] == [(n, m.rows) for m in mats]
            for f, m in zip(fused, mats, strict=True):
                np.testing.assert_array_equal(bits(f), bits(m.matmul(x[:n])))


@needs_simd
def test_matmul_many_mixed_types_and_widths():
    a, _ = make(GGMLType.Q4_1, 7, seed=1)
    b, _ = make(GGMLType.Q8_0, 6, seed=2)  # another type: a call of its own
    c, _ = make(GGMLType.Q4_1, 4, seed=3, cols=64)  # another width: refused like matmul
    x = np.random.default_rng(6).standard_normal((3, a.cols)).astype(np.float32)
    a2, _ = make(GGMLType.Q4_1, 5, seed=4)
    got = matmul_many([a, b, a2], x)  # a and a2 in one call, b in another
    for m, g in zip([a, b, a2], got, strict=True):
        np.testing.assert_array_equal(bits(g), bits(m.matmul(x)))
    assert matmul_many([], x) == []
    with pytest.raises(WeightError):
        matmul_many([a, c], x)


@needs_simd
@pytest.mark.skipif(len(FLAVOURS_HERE) < 2, reason="one SIMD flavour runs on this CPU")
@TYPES
def test_flavours_agree_bit_for_bit(ggml_type):
    """vpdpbusd and vpmaddubsw + vpmaddwd sum the same integers: the same floats follow."""
    best, _ = make(ggml_type, 9, seed=21)
    x = np.random.default_rng(22).standard_normal((6, best.cols)).astype(np.float32)
    x[:, :32] = 127.0  # full-scale codes: any int16 saturation would show
    for name in FLAVOURS_HERE[:-1]:
        other = QuantMatrix(best._raw, ggml_type, best.shape, kernels=name)
        for n in (1, 6):
            np.testing.assert_array_equal(bits(other.matmul(x[:n])), bits(best.matmul(x[:n])))


@needs_simd
@TYPES
@pytest.mark.parametrize("fill", [0x00, 0xFF], ids=["zeros", "ones"])
def test_extreme_codes_are_exact(ggml_type, fill):
    """Every code and scale byte at its lowest or highest (Q3_K: scales -32 or 31, Q2_K: scale
    and min 15, Q6_K: codes 63) times full-scale int8 activations: the largest integer sums
    any tile forms, exact in every flavour (no int16 saturation anywhere)."""
    rows, cols = 5, cols_for(ggml_type)
    raw = random_blocks(ggml_type, rows, cols, np.random.default_rng(31))
    blocks = raw.reshape(-1, QUANT_INFO[ggml_type].type_size)
    keep = np.zeros(blocks.shape[1], bool)
    for at in HALF_FIELDS[ggml_type]:
        keep[at : at + 2] = True
    blocks[:, ~keep] = fill
    x = np.full((3, cols), 127.0, np.float32)
    x[1] = -127.0
    x[2, 1::2] = -127.0
    ref = dequantize(raw, ggml_type, (rows, cols))
    results = [QuantMatrix(raw, ggml_type, (rows, cols), kernels=name).matmul(x) for name in FLAVOURS_HERE]
    assert_close(results[-1], x, ref, EXACT_TOL)
    for other in results[:-1]:
        np.testing.assert_array_equal(bits(other), bits(results[-1]))
