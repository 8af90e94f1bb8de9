"""QuantMatrix on the tensors of the two bundled real models (a few rows each)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from kettle.quant import GGMLType, QuantMatrix


def tensors_by_type(path) -> dict[GGMLType, gguf.ReaderTensor]:
    reader = gguf.GGUFReader(path)
    found: dict[GGMLType, gguf.ReaderTensor] = {}
    for tensor in reader.tensors:
        if len(tensor.shape) == 2:
            found.setdefault(GGMLType(int(tensor.tensor_type)), tensor)
    return found


def check_tensor(tensor: gguf.ReaderTensor) -> None:
    cols, rows = (int(s) for s in tensor.shape)  # GGUF lists dimensions fastest-first
    t = GGMLType(int(tensor.tensor_type))
    m = QuantMatrix(tensor.data, t, (rows, cols))
    ids = np.array([0, 1, rows // 2, rows - 1])
    expected = gguf.quants.dequantize(tensor.data[ids], tensor.tensor_type)
    np.testing.assert_array_equal(m.get_rows(ids).view(np.uint32), expected.view(np.uint32))
    top = QuantMatrix(tensor.data[:40], t, (40, cols))
    x = np.random.default_rng(0).standard_normal((3, cols)).astype(np.float32)
    ref = gguf.quants.dequantize(tensor.data[:40], tensor.tensor_type).astype(np.float64)
    np.testing.assert_allclose(top.matmul(x), x @ ref.T, rtol=1e-4, atol=1e-4 * np.abs(ref).max() * np.sqrt(cols))


def test_smollm2_tensors(smollm2_path):
    found = tensors_by_type(smollm2_path)
    assert {GGMLType.Q4_1, GGMLType.Q8_0} <= set(found)
    for tensor in found.values():
        check_tensor(tensor)


def test_gemma3_tensors(gemma3_path):
    found = tensors_by_type(gemma3_path)
    assert {GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.Q6_K, GGMLType.Q8_0} <= set(found)
    for tensor in found.values():
        check_tensor(tensor)
