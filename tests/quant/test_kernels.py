"""QuantMatrix and its numba kernels against the numpy reference.

Decoding is bit-exact; matmul is within a normalized bound; a token's output
row is bit-for-bit independent of the batch it is computed in and of the
thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from kettle.errors import TokenizerError, UnsupportedModel, WeightError
from kettle.quant import QUANT_INFO, SUPPORTED_TYPES, GGMLType, QuantMatrix, dequantize, implementations, row_nbytes
from tests.quant.conftest import assert_thread_count_invariant, random_blocks

TYPES = pytest.mark.parametrize("ggml_type", SUPPORTED_TYPES, ids=lambda t: t.name)
MATMUL_TOL = 1e-5  # |error| <= MATMUL_TOL * ||W[r]|| * ||x[t]||


def cols_for(ggml_type: GGMLType) -> int:
    """A row length that leaves a partial decode chunk where the type allows one."""
    return {1: 296, 32: 352}.get(QUANT_INFO[ggml_type].block_size, 768)


def make(ggml_type: GGMLType, rows: int, seed: int = 0) -> tuple[QuantMatrix, np.ndarray]:
    """A random (rows, cols) matrix on the portable kernels, and its float32 reference decode.

    (The SIMD kernels, which quantize activations to int8, are tested in test_simd.py.)
    """
    cols = cols_for(ggml_type)
    raw = random_blocks(ggml_type, rows, cols, np.random.default_rng(seed))
    return QuantMatrix(raw, ggml_type, (rows, cols), kernels="portable"), dequantize(raw, ggml_type, (rows, cols))


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


@TYPES
def test_decode_is_bit_exact(ggml_type):
    m, ref = make(ggml_type, 13)  # 13 rows: one full tile of 8 and a partial one
    np.testing.assert_array_equal(bits(m.dequantize()), bits(ref))
    ids = np.array([12, 0, 5, 5, 12, 3, 7, 8, 11, 1])  # repeats, unordered, more than one tile
    np.testing.assert_array_equal(bits(m.get_rows(ids)), bits(ref[ids]))
    assert m.get_rows(np.array([], dtype=np.int64)).shape == (0, m.cols)


@TYPES
def test_matmul_matches_reference(ggml_type):
    m, ref = make(ggml_type, 21, seed=1)
    x = np.random.default_rng(2).standard_normal((5, m.cols)).astype(np.float32)
    y = m.matmul(x)
    assert y.shape == (5, 21) and y.dtype == np.float32
    exact = x.astype(np.float64) @ ref.astype(np.float64).T
    bound = MATMUL_TOL * np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(ref, axis=1))
    assert np.all(np.abs(y - exact) <= bound + 1e-30)
    np.testing.assert_array_equal(m.matmul(x[2]), y[2])  # a vector gives a vector


@TYPES
def test_batch_invariance(ggml_type):
    m, _ = make(ggml_type, 19, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((37, m.cols)).astype(np.float32)
    x[0] = np.nan  # whatever the other rows contain
    x[1] = 1e30
    single = m.matmul(x[17:18])
    batch = m.matmul(x)
    np.testing.assert_array_equal(bits(batch[17]), bits(single[0]))
    pair = m.matmul(np.stack([x[17], rng.standard_normal(m.cols).astype(np.float32)]))
    np.testing.assert_array_equal(bits(pair[0]), bits(single[0]))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize(
    "ggml_type", [GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K], ids=lambda t: t.name
)
def test_thread_count_does_not_change_results(ggml_type):
    m, _ = make(ggml_type, 64, seed=5)
    x = np.random.default_rng(6).standard_normal((9, m.cols)).astype(np.float32)
    assert_thread_count_invariant(m, x)


def test_memmapped_unaligned_read_only_input(tmp_path):
    """The usual input: a read-only view into a mapped file, at an odd offset."""
    rng = np.random.default_rng(8)
    raw = random_blocks(GGMLType.F32, 10, 40, rng)  # F32 rows: 4-byte values at odd addresses
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" + raw.tobytes())
    mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=1, shape=raw.shape)
    assert not mapped.flags.writeable and mapped.ctypes.data % 4 != 0
    m = QuantMatrix(mapped, GGMLType.F32, (10, 40))
    ref = raw.view(np.float32)
    np.testing.assert_array_equal(m.dequantize(), ref)
    x = rng.standard_normal((3, 40)).astype(np.float32)
    np.testing.assert_allclose(m.matmul(x), x @ ref.T, rtol=1e-5, atol=1e-3)
    assert m.nbytes == raw.nbytes and m.shape == (10, 40)


def test_out_argument_and_odd_inputs():
    m, _ = make(GGMLType.Q8_0, 9, seed=9)
    x = np.random.default_rng(10).standard_normal((4, m.cols))  # float64, converted
    out = np.full((4, 9), np.nan, np.float32)
    assert m.matmul(x, out=out) is out
    np.testing.assert_array_equal(out, m.matmul(x.astype(np.float32)))
    np.testing.assert_array_equal(m.matmul(np.asfortranarray(x)), out)  # non-contiguous input
    assert m.matmul(np.zeros((0, m.cols), np.float32)).shape == (0, 9)


def test_rejects_bad_input_with_typed_errors():
    m, _ = make(GGMLType.Q4_0, 8)
    with pytest.raises(WeightError, match="does not fit"):
        m.matmul(np.zeros((2, m.cols + 32), np.float32))
    with pytest.raises(WeightError, match="out must be"):
        m.matmul(np.zeros((2, m.cols), np.float32), out=np.zeros((2, 7), np.float32))
    x = np.zeros((8, m.cols), np.float32)
    with pytest.raises(WeightError, match="overlap"):
        QuantMatrix(
            np.zeros((m.cols, row_nbytes(GGMLType.F32, m.cols)), np.uint8), GGMLType.F32, (m.cols, m.cols)
        ).matmul(x[:, : m.cols], out=x[:, : m.cols])
    with pytest.raises(TokenizerError, match="out of range"):
        m.get_rows(np.array([0, 8]))
    with pytest.raises(TokenizerError):
        m.get_rows(np.array([-1]))
    with pytest.raises(TokenizerError):
        m.get_rows(np.array([0.5]))
    with pytest.raises(WeightError, match="needs"):
        QuantMatrix(np.zeros(100, np.uint8), GGMLType.Q4_0, (8, m.cols))
    with pytest.raises(WeightError, match="uint8"):
        QuantMatrix(np.zeros((8, m.cols), np.float32), GGMLType.Q4_0, (8, m.cols))
    with pytest.raises(UnsupportedModel):
        QuantMatrix(np.zeros((1, 66), np.uint8), GGMLType.IQ2_XXS, (1, 256))
    with pytest.raises(UnsupportedModel):
        QuantMatrix(np.zeros((1, 18), np.uint8), GGMLType.Q4_0, (1, 31))


def test_registry_offers_a_portable_kernel_for_every_supported_type():
    for t in SUPPORTED_TYPES:
        names = [k.name for k in implementations(t)]
        assert "portable" in names and not next(k for k in implementations(t) if k.name == "portable").requires
    # F16 has no SIMD kernels: the portable one is chosen on every CPU
    assert QuantMatrix(np.zeros((1, 512), np.uint8), GGMLType.F16, (1, 256)).kernel_name == "portable"
    with pytest.raises(UnsupportedModel, match="no kernel named"):
        QuantMatrix(np.zeros((1, 34), np.uint8), GGMLType.Q8_0, (1, 32), kernels="nonexistent")
