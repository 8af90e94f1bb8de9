"""Speed of kettle's quantized matmul kernels, against this machine's memory bandwidth.

    python bench/kernels.py [--types Q4_1,Q8_0] [--quick] [--threads N]

For each type and weight shape (d rows, k cols) it prints:

* n=1 (decode, a matrix-vector product): GB/s of weight bytes streamed, and
  the ratio to the memory bandwidth measured in the same run;
* n=64 and n=512 (prefill): GFLOP/s (2*d*k*n / time), and the ratio to
  numpy's float32 BLAS on the same shape (dequantized weights).

Memory bandwidth ("bw") is the faster of a one-thread and an all-threads numpy
sum over a 512 MiB array (reads only). Times are the best of several runs
after a warm-up call (which also compiles the kernel). Weights are random
blocks. The machine is shared: rerun before trusting a single number.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba
import numpy as np

from kettle.quant import QK_K, QUANT_INFO, SUPPORTED_TYPES, GGMLType, QuantMatrix, quantize

# (rows, cols) of realistic weights, then an output / embedding matrix timed at
# n=1 only. K-quant rows need cols % 256 == 0: gemma3-270m's Q4_K/Q6_K shapes.
SMOLLM2 = ([(576, 576), (1536, 576), (576, 1536)], (49152, 576))
GEMMA = ([(640, 640), (2048, 640), (640, 2048)], (262144, 640))
K_QUANT = ([(640, 1024), (640, 2048), (2048, 1024)], (32768, 1024))
GEMMA_TYPES = {GGMLType.Q5_0: None, GGMLType.Q8_0: GEMMA[1]}  # gemma's output matrix is Q8_0
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


def memory_bandwidth(threads: int) -> tuple[float, float]:
    """(one thread, ``threads`` threads) GB/s of numpy sums over a 512 MiB float32 array."""
    a = np.ones(128 << 20, dtype=np.float32)
    one = a.nbytes / best_time(a.sum, 1.0) / 1e9
    parts = np.array_split(a, threads)
    with ThreadPoolExecutor(threads) as pool:  # numpy releases the GIL while summing
        many = a.nbytes / best_time(lambda: list(pool.map(np.sum, parts)), 1.0) / 1e9
    return one, many


def random_matrix(ggml_type: GGMLType, rows: int, cols: int, rng: np.random.Generator) -> QuantMatrix:
    """A (rows, cols) matrix of realistic random blocks (a quantized 64-row pattern, repeated)."""
    pattern_rows = min(rows, 64)
    pattern = quantize(rng.standard_normal((pattern_rows, cols)).astype(np.float32) * 0.05, ggml_type)
    raw = np.tile(pattern, (rows // pattern_rows + 1, 1))[:rows]
    raw.flags.writeable = False
    return QuantMatrix(raw, ggml_type, (rows, cols))


def bench_shapes(
    ggml_type: GGMLType,
    shapes: list[tuple[int, int]],
    output: tuple[int, int] | None,
    bandwidth: float,
    rng: np.random.Generator,
) -> None:
    """One line per shape; ``output`` (an output matrix) gets the n=1 test only."""
    for i, (rows, cols) in enumerate(shapes + ([output] if output else [])):
        m = random_matrix(ggml_type, rows, cols, rng)
        x1 = rng.standard_normal((1, cols)).astype(np.float32)
        out1 = np.empty((1, rows), np.float32)
        t = best_time(partial(m.matmul, x1, out1))
        gbs = m.nbytes / t / 1e9
        line = f"{ggml_type.name:5} {rows:6}x{cols:<5} n=1 {t * 1e6:7.0f} us {gbs:6.2f} GB/s ({gbs / bandwidth:4.2f} of bw)"
        if i < len(shapes):
            weights = m.dequantize()
            for n in PREFILL_N:
                x = rng.standard_normal((n, cols)).astype(np.float32)
                out = np.empty((n, rows), np.float32)
                t = best_time(partial(m.matmul, x, out), 0.3, 20)
                t_blas = best_time(partial(np.matmul, x, weights.T, out=out), 0.3, 20)
                line += f" | n={n} {2 * rows * cols * n / t / 1e9:5.1f} GFLOP/s ({t_blas / t:4.2f} of BLAS)"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", default="", help="comma-separated type names (default: all supported)")
    parser.add_argument("--quick", action="store_true", help="no gemma shapes for Q5_0/Q8_0")
    parser.add_argument("--threads", type=int, default=0, help="numba threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    types = [GGMLType[n.strip()] for n in args.types.split(",") if n.strip()] or list(SUPPORTED_TYPES)
    rng = np.random.default_rng(0)

    one, many = memory_bandwidth(numba.get_num_threads())
    bandwidth = max(one, many)
    print(
        f"threads: {numba.get_num_threads()} ({numba.threading_layer()} layer, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), cpus: {os.cpu_count()}"
    )
    print(f"memory bandwidth (numpy sum): 1 thread {one:.1f} GB/s, all threads {many:.1f} GB/s -> bw = {bandwidth:.1f}")
    print("n=1: weight bytes streamed per second; n=64/512: GFLOP/s and speed relative to numpy f32 BLAS")
    for t in types:
        if QUANT_INFO[t].block_size == QK_K:
            bench_shapes(t, *K_QUANT, bandwidth, rng)
            continue
        bench_shapes(t, *SMOLLM2, bandwidth, rng)
        if not args.quick and t in GEMMA_TYPES:
            bench_shapes(t, GEMMA[0], GEMMA_TYPES[t], bandwidth, rng)


if __name__ == "__main__":
    main()
