"""Random test data for the quant tests."""

from __future__ import annotations

import numba
import numpy as np

from kettle.quant import QUANT_INFO, GGMLType, QuantMatrix, row_nbytes

# Byte offsets of the IEEE-half scales in each block (random bytes there could be NaN/inf).
HALF_FIELDS = {
    GGMLType.Q4_0: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82),
    GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}


def random_blocks(ggml_type: GGMLType, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, row_nbytes) uint8 of uniformly random codes with finite scales (some zero, some subnormal)."""
    nbytes = row_nbytes(ggml_type, cols)
    if ggml_type in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
        values = (rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-6, 4, (rows, cols))).astype(np.float32)
        if ggml_type == GGMLType.F32:
            return values.view(np.uint8).reshape(rows, nbytes)
        if ggml_type == GGMLType.F16:
            return values.astype(np.float16).view(np.uint8).reshape(rows, nbytes)
        return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, nbytes)
    raw = rng.integers(0, 256, (rows, nbytes), dtype=np.uint8)
    blocks = raw.reshape(-1, QUANT_INFO[ggml_type].type_size)
    for at in HALF_FIELDS[ggml_type]:
        scales = rng.uniform(-2.0, 2.0, blocks.shape[0]) * 10.0 ** rng.integers(-6, 1, blocks.shape[0])
        scales[::7] = 0.0
        blocks[:, at : at + 2] = scales.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return raw


def assert_thread_count_invariant(m: QuantMatrix, x: np.ndarray) -> None:
    """m.matmul(x) has the same bits on one numba thread as on two."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = m.matmul(x)
        numba.set_num_threads(2)
        two = m.matmul(x)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.view(np.uint32), two.view(np.uint32))
