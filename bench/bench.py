"""Prefill and decode speed of kettle on the bundled models, against references
measured in the same run: this machine's memory bandwidth, and llama.cpp
(through llama-cpp-python, when installed) on the same GGUF file.

    python bench/bench.py [--models smollm2,gemma3] [--threads 2] [--reps 3]

pp64 / pp512: one forward over 64 / 512 prompt tokens from an empty cache.
tg128: 128 single-token decode steps after a one-token prompt (no sampling,
as llama-bench measures). Medians of ``--reps`` runs, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def memory_bandwidth(threads: int) -> float:
    """Read bandwidth in GB/s: a parallel sum over 1 GiB (median of 5)."""
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def _sum(a):  # a (n,) f32 -> sum
        total = 0.0
        for i in numba.prange(a.shape[0]):
            total += a[i]
        return total

    numba.set_num_threads(threads)
    a = np.ones(1 << 28, dtype=np.float32)
    _sum(a[:1024])
    times = []
    for _ in range(5):
        t = time.perf_counter()
        _sum(a)
        times.append(time.perf_counter() - t)
    return a.nbytes / statistics.median(times) / 1e9


def bench_kettle(path: Path, threads: int, reps: int) -> tuple[dict[str, float], str]:
    """Tokens/s of each test, and the kernel implementations that ran."""
    from kettle.engine.runner import Runner
    from kettle.gguf import GGUFFile
    from kettle.models import load_model

    model = load_model(GGUFFile(path))
    vocab = model.config.n_vocab
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for name, n in (("pp64", 64), ("pp512", 512)):
        ids = rng.integers(100, vocab, n).tolist()
        times = []
        for rep in range(reps + 1):
            r = Runner(model, n_ctx=1024, n_batch=512, n_thread=threads)
            t = time.perf_counter()
            r.forward(ids, range(n), [0] * n)
            if rep:  # the first run compiles and warms up
                times.append(time.perf_counter() - t)
        out[name] = n / statistics.median(times)
    times = []
    for rep in range(reps + 1):
        r = Runner(model, n_ctx=1024, n_thread=threads)
        r.forward([1], [0], [0])
        tok = rng.integers(100, vocab, 129).tolist()
        t = time.perf_counter()
        for i in range(1, 129):
            r.forward([tok[i]], [i], [0])
        if rep:
            times.append(time.perf_counter() - t)
    out["tg128"] = 128 / statistics.median(times)
    out["weights_gb"] = sum(info.nbytes for info in GGUFFile(path).tensors.values()) / 1e9
    return out, kernel_names(model)


def kernel_names(model) -> str:
    """The kernel implementations the model's matrices compute with (``avx512vnni``, ``avx2``...)."""
    weights = model.weights.tensors.values()
    return ", ".join(sorted({w.kernel_name for w in weights if hasattr(w, "kernel_name")}))


def bench_llama_cpp(path: Path, threads: int, reps: int) -> dict[str, float] | None:
    """llama.cpp in a process of its own: kettle sets OMP_WAIT_POLICY=PASSIVE and
    GOMP_SPINCOUNT for its numba threads, and llama.cpp's OpenMP threads would
    inherit them (they spin at barriers by design; sleeping there costs it 2-3x
    in decode)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cmd = [sys.executable, __file__, "--llama-cpp-worker", str(path), "--threads", str(threads), "--reps", str(reps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _llama_cpp_worker(path: Path, threads: int, reps: int) -> dict[str, float]:
    import llama_cpp
    llm = llama_cpp.Llama(str(path), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(0)
    vocab = llm.n_vocab()
    out: dict[str, float] = {}
    for name, n in (("pp64", 64), ("pp512", 512)):
        ids = rng.integers(100, vocab, n).tolist()
        times = []
        for rep in range(reps + 1):
            llm.reset()
            llm._ctx.kv_cache_clear()
            t = time.perf_counter()
            llm.eval(ids)
            if rep:
                times.append(time.perf_counter() - t)
        out[name] = n / statistics.median(times)
    times = []
    for rep in range(reps + 1):
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval([1])
        tok = rng.integers(100, vocab, 129).tolist()
        t = time.perf_counter()
        for i in range(1, 129):
            llm.eval([tok[i]])
        if rep:
            times.append(time.perf_counter() - t)
    out["tg128"] = 128 / statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3:270m", help="store names or .gguf paths")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-llama-cpp", action="store_true")
    ap.add_argument("--llama-cpp-worker", metavar="GGUF", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.llama_cpp_worker:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise SystemExit(1) from None
        print(json.dumps(_llama_cpp_worker(Path(args.llama_cpp_worker), args.threads, args.reps)))
        return

    from kettle.api import resolve

    bw = memory_bandwidth(args.threads)
    print(f"memory read bandwidth: {bw:.1f} GB/s ({args.threads} threads)")
    for name in args.models.split(","):
        path = resolve(name).path
        k, kernels = bench_kettle(path, args.threads, args.reps)
        ref = None if args.no_llama_cpp else bench_llama_cpp(path, args.threads, args.reps)
        ceiling = bw / k["weights_gb"]
        print(f"\n{name} ({path.name}, {k['weights_gb'] * 1000:.0f} MB of weights; decode ceiling at "
              f"this bandwidth {ceiling:.0f} t/s; kernels: {kernels})")
        print(f"  {'test':<7}{'kettle t/s':>12}{'llama.cpp t/s':>15}{'kettle/llama.cpp':>18}")
        for test in ("pp64", "pp512", "tg128"):
            mine = k[test]
            theirs = ref[test] if ref else float("nan")
            ratio = f"{mine / theirs:.2f}x" if ref else "n/a"
            print(f"  {test:<7}{mine:>12.1f}{theirs:>15.1f}{ratio:>18}")
        print(f"  tg128 reads weights at {k['tg128'] * k['weights_gb']:.1f} GB/s = "
              f"{k['tg128'] / ceiling:.2f} of measured bandwidth")


if __name__ == "__main__":
    main()
