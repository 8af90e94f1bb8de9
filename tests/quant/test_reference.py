"""The numpy reference codecs against gguf-py (the oracle) and round-trip error bounds."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from kettle.errors import UnsupportedModel, WeightError
from kettle.quant import SUPPORTED_TYPES, GGMLType, dequantize, quantize, row_nbytes
from tests.quant.conftest import random_blocks

GGUF_QUANTIZES = [GGMLType[n] for n in ("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")]
K_QUANTS = [GGMLType[n] for n in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")]
# Relative RMS error of our simple quantizer on Gaussian data; ggml's are a little better.
ROUND_TRIP_RMS = {"Q2_K": 0.36, "Q3_K": 0.18, "Q4_K": 0.09, "Q5_K": 0.045, "Q6_K": 0.022}


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("ggml_type", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_dequantize_random_blocks_is_bit_exact_with_gguf(ggml_type):
    rng = np.random.default_rng(int(ggml_type))
    cols = 512
    raw = random_blocks(ggml_type, 6, cols, rng)
    ours = dequantize(raw, ggml_type, (6, cols))
    theirs = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(int(ggml_type)))
    assert ours.dtype == np.float32 and ours.shape == (6, cols)
    np.testing.assert_array_equal(bits(ours), bits(theirs))


@pytest.mark.parametrize("ggml_type", GGUF_QUANTIZES, ids=lambda t: t.name)
def test_quantize_is_bit_exact_with_gguf(ggml_type):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 256)).astype(np.float32) * np.float32(3)
    x[0, :32] = 0  # an all-zero block
    x[1, :32] = 1.5  # a constant block
    x[2, 5] = 1e4  # one outlier
    ours = quantize(x, ggml_type)
    theirs = np.asarray(gguf.quants.quantize(x, gguf.GGMLQuantizationType(int(ggml_type))))
    assert ours.dtype == np.uint8 and ours.shape == (5, row_nbytes(ggml_type, 256))
    np.testing.assert_array_equal(ours, theirs.view(np.uint8).reshape(ours.shape))


def test_bf16_quantize_keeps_nan_and_rounds_to_even():
    x = np.array([np.nan, -np.inf, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.4e38], dtype=np.float32)
    ours = quantize(x, GGMLType.BF16)
    theirs = np.asarray(gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16))
    np.testing.assert_array_equal(ours, theirs.view(np.uint8))


@pytest.mark.parametrize("ggml_type", K_QUANTS, ids=lambda t: t.name)
def test_k_quant_round_trip_error(ggml_type):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 1024)).astype(np.float32)
    x[3] *= 100  # rows of very different magnitude
    x[4, :256] = 0
    y = dequantize(quantize(x, ggml_type), ggml_type, x.shape)
    rel = np.sqrt(((y - x) ** 2).mean(axis=1) / np.maximum((x**2).mean(axis=1), 1e-30))
    assert rel.max() < ROUND_TRIP_RMS[ggml_type.name], rel
    assert np.all(y[4, :256] == 0)
    # gguf-py decodes our blocks the same way we do
    theirs = gguf.quants.dequantize(quantize(x, ggml_type), gguf.GGMLQuantizationType(int(ggml_type)))
    np.testing.assert_array_equal(bits(y), bits(theirs))


def test_float_types_round_trip():
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
    np.testing.assert_array_equal(dequantize(quantize(x, GGMLType.F32), GGMLType.F32, x.shape), x)
    np.testing.assert_array_equal(dequantize(quantize(x, GGMLType.F16), GGMLType.F16, x.shape), x.astype(np.float16))


def test_shapes_and_errors():
    raw = quantize(np.ones((3, 64), np.float32), GGMLType.Q8_0)
    assert dequantize(raw.reshape(-1), GGMLType.Q8_0, (3, 64)).shape == (3, 64)  # any byte shape
    assert dequantize(raw[0], GGMLType.Q8_0, 64).shape == (64,)  # a vector
    with pytest.raises(WeightError, match="needs 204 bytes"):
        dequantize(raw[:2], GGMLType.Q8_0, (3, 64))
    with pytest.raises(WeightError, match="uint8"):
        dequantize(raw.view(np.int8), GGMLType.Q8_0, (3, 64))
    with pytest.raises(UnsupportedModel):
        dequantize(raw, GGMLType.IQ4_NL, (3, 64))
    with pytest.raises(UnsupportedModel):
        quantize(np.ones((2, 48), np.float32), GGMLType.Q4_0)  # 48 is not a whole number of blocks
    with pytest.raises(WeightError):
        quantize(np.ones(32, np.int32), GGMLType.Q4_0)
