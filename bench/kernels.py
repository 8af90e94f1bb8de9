"""Speed of kettle's quantized matmul kernels, against this machine's memory bandwidth.

    python bench/kernels.py [--types Q4_1,Q8_0] [--quick] [--threads N]

For each type and weight shape (d rows, k cols) it prints:

* n=1 (decode, a matrix-vector product): GB/s of weight bytes streamed, and
  the ratio to the memory bandwidth measured in the same run;
* n=64 and n=512 (prefill): GFLOP/s (2*d*k*n / time), and the ratio to
  numpy's float32 BLAS on the same shape (dequantized weights).

Memory bandwidth is the faster of a numpy sum and a parallel numba sum over a
512 MiB array (reads only). Times are the best of several runs after a
warm-up call (which also compiles the kernel). Weights are random blocks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from kettle.quant import SUPPORTED_TYPES, GGMLType, QuantMatrix, quantize  # noqa: E402

import numba  # noqa: E402  (after kettle.quant: it sets OMP_WAIT_POLICY first)

SMOLLM2_SHAPES = [(576, 576), (1536, 576), (576, 1536)]
SMOLLM2_EMBED = (49152, 576)
GEMMA_SHAPES = [(640, 640), (2048, 640), (640, 2048)]
GEMMA_EMBED = (262144, 640)
GEMMA_TYPES = {GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.Q6_K, GGMLType.Q8_0}
PREFILL_N = (64, 512)


def best_time(fn: Callable[[], object], min_seconds: float = 0.25, max_runs: int = 200) -> float:
    """Best wall time of ``fn`` over repeated runs (at least 3, about ``min_seconds`` in all)."""
    fn()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or (spent < min_seconds and runs < max_runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


@numba.njit(parallel=True, cache=True, fastmath=True)
def _parallel_sum(a):
    chunks = 64
    step = (a.size + chunks - 1) // chunks
    partial = np.zeros(chunks, dtype=np.float32)
    for c in numba.prange(chunks):
        s = np.float32(0)
        for i in range(c * step, min(a.size, (c + 1) * step)):
            s += a[i]
        partial[c] = s
    return partial.sum()


def memory_bandwidth() -> tuple[float, float]:
    """(numpy sum GB/s, numba parallel sum GB/s) over a 512 MiB float32 array."""
    a = np.ones(128 << 20, dtype=np.float32)
    numpy_gbs = a.nbytes / best_time(a.sum, 1.0) / 1e9
    numba_gbs = a.nbytes / best_time(lambda: _parallel_sum(a), 1.0) / 1e9
    return numpy_gbs, numba_gbs


def random_matrix(ggml_type: GGMLType, rows: int, cols: int, rng: np.random.Generator) -> QuantMatrix:
    """A (rows, cols) matrix of realistic random blocks (a quantized 64-row pattern, repeated)."""
    pattern_rows = min(rows, 64)
    pattern = quantize(rng.standard_normal((pattern_rows, cols)).astype(np.float32) * 0.05, ggml_type)
    raw = np.tile(pattern, (rows // pattern_rows + 1, 1))[:rows]
    raw.flags.writeable = False
    return QuantMatrix(raw, ggml_type, (rows, cols))


def bench_type(ggml_type: GGMLType, shapes: list[tuple[int, int]], embed: tuple[int, int] | None,
               bandwidth: float, rng: np.random.Generator) -> None:
    """Print one line per shape; ``embed`` (an output/embedding matrix) gets the n=1 test only."""
    for rows, cols in [*shapes, embed] if embed else shapes:
        m = random_matrix(ggml_type, rows, cols, rng)
        x1 = rng.standard_normal((1, cols)).astype(np.float32)
        out1 = np.empty((1, rows), np.float32)
        t = best_time(lambda: m.matmul(x1, out1))
        gbs = m.nbytes / t / 1e9
        line = f"{ggml_type.name:5} {rows:6}x{cols:<5} n=1 {t * 1e6:8.0f} us {gbs:6.2f} GB/s ({gbs / bandwidth:4.2f} of bw)"
        if (rows, cols) != embed:
            weights = m.dequantize()
            for n in PREFILL_N:
                x = rng.standard_normal((n, cols)).astype(np.float32)
                out = np.empty((n, rows), np.float32)
                t = best_time(lambda: m.matmul(x, out), 0.3, 20)
                t_blas = best_time(lambda: np.matmul(x, weights.T, out=out), 0.3, 20)
                gflops = 2 * rows * cols * n / t / 1e9
                line += f" | n={n} {gflops:6.1f} GFLOP/s ({t_blas / t:4.2f} of f32 BLAS)"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", default="", help="comma-separated type names (default: all supported)")
    parser.add_argument("--quick", action="store_true", help="smollm2 shapes only, no gemma shapes")
    parser.add_argument("--threads", type=int, default=0, help="numba threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    types = [GGMLType[n.strip()] for n in args.types.split(",") if n.strip()] or list(SUPPORTED_TYPES)
    rng = np.random.default_rng(0)

    numpy_gbs, numba_gbs = memory_bandwidth()
    bandwidth = max(numpy_gbs, numba_gbs)
    print(f"threads: {numba.get_num_threads()} ({numba.threading_layer()} layer, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), cpus: {os.cpu_count()}")
    print(f"memory bandwidth: numpy sum {numpy_gbs:.1f} GB/s, numba parallel sum {numba_gbs:.1f} GB/s "
          f"-> reference {bandwidth:.1f} GB/s")
    for t in types:
        bench_type(t, SMOLLM2_SHAPES, SMOLLM2_EMBED, bandwidth, rng)
        if not args.quick and t in GEMMA_TYPES:
            bench_type(t, GEMMA_SHAPES, GEMMA_EMBED if t == GGMLType.Q8_0 else None, bandwidth, rng)


if __name__ == "__main__":
    main()
