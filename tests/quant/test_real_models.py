"""QuantMatrix on tensors of the two bundled real models (a few rows each),
read through kettle's GGUF reader (read-only memory-mapped views), checked
against gguf-py's dequantization."""

from __future__ import annotations

import gguf
import numpy as np

from kettle.gguf import GGUFFile
from kettle.quant import GGMLType, QuantMatrix


def one_matrix_per_type(f: GGUFFile) -> dict[GGMLType, str]:
    found: dict[GGMLType, str] = {}
    for name, info in f.tensors.items():
        if len(info.shape) == 2:
            found.setdefault(GGMLType(int(info.ggml_type)), name)
    return found


def check_tensor(f: GGUFFile, name: str) -> None:
    info = f.tensors[name]
    rows, cols = info.shape  # math order
    raw = f.tensor(name)
    assert not raw.flags.writeable
    oracle = gguf.GGMLQuantizationType(int(info.ggml_type))
    m = QuantMatrix(raw, info.ggml_type, (rows, cols))
    ids = np.array([0, 1, rows // 2, rows - 1])
    expected = gguf.quants.dequantize(np.asarray(raw)[ids], oracle)
    np.testing.assert_array_equal(m.get_rows(ids).view(np.uint32), expected.view(np.uint32))
    x = np.random.default_rng(0).standard_normal((3, cols)).astype(np.float32)
    ref = gguf.quants.dequantize(np.asarray(raw)[:40], oracle).astype(np.float64)
    norms = np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(ref, axis=1))
    for kernels in ("portable", None):  # None: the default (SIMD kernels quantize x to int8: 1e-2)
        top = QuantMatrix(raw[:40], info.ggml_type, (40, cols), kernels=kernels)
        tol = 1e-5 if top.kernel_name == "portable" else 1e-2
        assert np.all(np.abs(top.matmul(x) - x @ ref.T) <= tol * norms)


def test_smollm2_tensors(smollm2_path):
    with GGUFFile(smollm2_path) as f:
        found = one_matrix_per_type(f)
        assert {GGMLType.Q4_1, GGMLType.Q8_0} <= set(found)
        for name in found.values():
            check_tensor(f, name)


def test_gemma3_tensors(gemma3_path):
    with GGUFFile(gemma3_path) as f:
        found = one_matrix_per_type(f)
        assert {GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.Q6_K, GGMLType.Q8_0} <= set(found)
        for name in found.values():
            check_tensor(f, name)
