"""Prefill and decode speed of kettle against references measured in the same
run: this machine's memory bandwidth, and llama.cpp (through llama-cpp-python,
when installed) on the same GGUF file.

    python bench/bench.py [--models smollm2,gemma3] [--tests pp64,pp512,tg128] [--threads 2] [--reps 3]
    python bench/bench.py --models llama-1b,qwen-3b,llama-8b --tests tg128 --reps 1
    python bench/bench.py --models llama-1b --tests tg64 --busy 1   # with one core kept busy

Models: the bundled ``smollm2`` and ``gemma3`` (the default), the benchmark
shapes of ``bench/models.py`` (``llama-1b``, ``qwen-3b``, ``llama-8b``: random
weights, Q4_K_M, made and cached on first use), a store name or a .gguf path.

ppN: one forward over N prompt tokens from an empty cache (N <= 512).
tgN: N single-token decode steps after a one-token prompt (no sampling, as
llama-bench measures), on one loaded model whose cache is cleared between runs.
Medians of ``--reps`` runs, after a warm-up. For tg the
weight bytes one token reads (every matrix; of the token embeddings only when
they are also the output matrix) times t/s is the bandwidth the run reached.

``--rounds R`` measures kettle, then llama.cpp, R times over and reports each
one's best round: on a shared machine the neighbours' load comes and goes over
minutes, and alternating gives both sides the same chances at a quiet spell.

``--busy N`` runs N other processes that spin on a core each for the whole
measurement (kettle's and llama.cpp's alike): a desktop where something else
is working, the case where a fixed thread team that waits for its slowest
member loses most.
"""

from __future__ import annotations

import argparse
import contextlib
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


N_CTX = 1024


def parse_tests(spec: str) -> list[tuple[str, str, int]]:
    """``pp64,tg128`` -> [("pp64", "pp", 64), ("tg128", "tg", 128)]; SystemExit on a bad name."""
    out = []
    for name in spec.split(","):
        kind, n = name[:2], name[2:]
        if kind not in ("pp", "tg") or not n.isdigit() or not 0 < int(n) <= (512 if kind == "pp" else N_CTX - 1):
            raise SystemExit(f"--tests: {name!r} is not ppN (N 1..512) or tgN (N 1..{N_CTX - 1})")
        out.append((name, kind, int(n)))
    return out


def decode_gb(path: Path) -> float:
    """GB of weights one decoded token reads: every tensor, less the token embeddings
    (one row is gathered) where a separate output matrix exists."""
    from kettle.gguf import GGUFFile

    tensors = GGUFFile(path).tensors
    skip = {"token_embd.weight"} if "output.weight" in tensors else set()
    return sum(info.nbytes for name, info in tensors.items() if name not in skip) / 1e9


def bench_kettle(path: Path, threads: int, reps: int, tests: list[tuple[str, str, int]]) -> tuple[dict[str, float], str]:
    """Tokens/s of each test, and the kernel implementations that ran."""
    from kettle.engine.runner import Runner
    from kettle.gguf import GGUFFile
    from kettle.models import load_model

    model = load_model(GGUFFile(path))
    vocab = model.config.n_vocab
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for name, kind, n in tests:
        times = []
        if kind == "pp":
            ids = rng.integers(100, vocab, n).tolist()
            for rep in range(reps + 1):
                r = Runner(model, n_ctx=N_CTX, n_batch=512, n_thread=threads)
                t = time.perf_counter()
                r.forward(ids, range(n), [0] * n)
                if rep:  # the first run compiles and warms up
                    times.append(time.perf_counter() - t)
        else:
            # one Runner for every repetition, its cache cleared in between: a loaded model
            # serving requests (the thread governor's warm-up falls in the untimed first run)
            r = Runner(model, n_ctx=N_CTX, n_thread=threads)
            for rep in range(reps + 1):
                r.cache.clear(0)
                r.forward([1], [0], [0])
                tok = rng.integers(100, vocab, n + 1).tolist()
                t = time.perf_counter()
                for i in range(1, n + 1):
                    r.forward([tok[i]], [i], [0])
                if rep:
                    times.append(time.perf_counter() - t)
        out[name] = n / statistics.median(times)
    return out, kernel_names(model)


def kernel_names(model) -> str:
    """The kernel implementations the model's matrices compute with (``avx512vnni``, ``avx2``...)."""
    weights = model.weights.tensors.values()
    return ", ".join(sorted({w.kernel_name for w in weights if hasattr(w, "kernel_name")}))


def bench_llama_cpp(path: Path, threads: int, reps: int, tests: str) -> dict[str, float] | None:
    """llama.cpp in a process of its own: kettle sets OMP_WAIT_POLICY=PASSIVE and
    GOMP_SPINCOUNT for its numba threads, and llama.cpp's OpenMP threads would
    inherit them (they spin at barriers by design; sleeping there costs it 2-3x
    in decode)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cmd = [sys.executable, __file__, "--llama-cpp-worker", str(path), "--threads", str(threads), "--reps", str(reps),
           "--tests", tests]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        if done.returncode != 3:  # 3: llama-cpp-python is not installed
            print(f"  llama.cpp failed on {path.name}: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _llama_cpp_worker(path: Path, threads: int, reps: int, tests: list[tuple[str, str, int]]) -> dict[str, float]:
    import llama_cpp
    llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(0)
    vocab = llm.n_vocab()
    out: dict[str, float] = {}
    for name, kind, n in tests:
        times = []
        if kind == "pp":
            ids = rng.integers(100, vocab, n).tolist()
            for rep in range(reps + 1):
                llm.reset()
                llm._ctx.kv_cache_clear()
                t = time.perf_counter()
                llm.eval(ids)
                if rep:
                    times.append(time.perf_counter() - t)
        else:
            for rep in range(reps + 1):
                llm.reset()
                llm._ctx.kv_cache_clear()
                llm.eval([1])
                tok = rng.integers(100, vocab, n + 1).tolist()
                t = time.perf_counter()
                for i in range(1, n + 1):
                    llm.eval([tok[i]])
                if rep:
                    times.append(time.perf_counter() - t)
        out[name] = n / statistics.median(times)
    return out


BUNDLED = {"smollm2": "smollm2", "gemma3": "gemma3:270m"}  # bench name -> store name


def model_file(name: str, made_dir: Path | None) -> Path:
    """A bundled model, a benchmark shape (made and cached on first use), a store name or a path."""
    import models  # bench/models.py, beside this file

    from kettle.api import resolve

    if name in models.SHAPES or name in models.ALIASES:
        return models.ensure(name, made_dir)
    return resolve(BUNDLED.get(name, name)).path


@contextlib.contextmanager
def busy_cores(n: int):
    """``n`` processes spinning on a core each while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3",
                    help="smollm2, gemma3, llama-1b, qwen-3b, llama-8b, store names or .gguf paths")
    ap.add_argument("--tests", default="pp64,pp512,tg128", help="ppN and tgN tests (default pp64,pp512,tg128)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate kettle and llama.cpp this many times and keep each one's best round "
                         "(on a shared machine, where the load changes from minute to minute)")
    ap.add_argument("--dir", type=Path, default=None, help="where bench/models.py caches the made models")
    ap.add_argument("--no-llama-cpp", action="store_true")
    ap.add_argument("--busy", type=int, default=0, metavar="N", help="keep N cores busy while measuring")
    ap.add_argument("--llama-cpp-worker", metavar="GGUF", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tests = parse_tests(args.tests)
    if args.llama_cpp_worker:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise SystemExit(3) from None
        print(json.dumps(_llama_cpp_worker(Path(args.llama_cpp_worker), args.threads, args.reps, tests)))
        return

    names = args.models.split(",")
    paths = {name: model_file(name, args.dir) for name in names}  # make missing ones before timing anything
    bw = memory_bandwidth(args.threads)
    print(f"memory read bandwidth: {bw:.1f} GB/s ({args.threads} threads)")
    if args.busy:
        print(f"{args.busy} other process(es) keep a core busy each while measuring")
    rows = []
    with busy_cores(args.busy):
        for name in names:
            rows += run_model(name, paths[name], args, tests, bw)
    print_table(rows, bw)


def run_model(name: str, path: Path, args: argparse.Namespace, tests: list[tuple[str, str, int]],
              bw: float) -> list[tuple]:
    rows = []
    mine_rounds, theirs_rounds = [], []
    for r in range(args.rounds):  # kettle, then llama.cpp, then again: both see the same spells of load
        k, kernels = bench_kettle(path, args.threads, args.reps, tests)
        mine_rounds.append(k)
        ref = None if args.no_llama_cpp else bench_llama_cpp(path, args.threads, args.reps, args.tests)
        if ref is not None:
            theirs_rounds.append(ref)
        if args.rounds > 1:
            print(f"  {name} round {r + 1}: kettle " + ", ".join(f"{t} {v:.1f}" for t, v in k.items())
                  + ("; llama.cpp " + ", ".join(f"{t} {v:.1f}" for t, v in ref.items()) if ref else ""))
    k = {test: max(m[test] for m in mine_rounds) for test in mine_rounds[0]}  # each side's best round
    ref = {test: max(m[test] for m in theirs_rounds) for test in theirs_rounds[0]} if theirs_rounds else None
    gb = decode_gb(path)
    print(f"\n{name} ({path.name}, {gb * 1000:.0f} MB of weights read per token; decode ceiling at "
          f"this bandwidth {bw / gb:.1f} t/s; kernels: {kernels})")
    print(f"  {'test':<7}{'kettle t/s':>12}{'llama.cpp t/s':>15}{'kettle/llama.cpp':>18}"
          f"{'kettle GB/s':>13}{'llama.cpp GB/s':>16}")
    for test, kind, _ in tests:
        mine = k[test]
        theirs = ref[test] if ref else float("nan")
        ratio = f"{mine / theirs:.2f}x" if ref else "n/a"
        line = f"  {test:<7}{mine:>12.1f}{theirs:>15.1f}{ratio:>18}"
        if kind == "tg":  # GB/s (fraction of the measured bandwidth)
            line += f"{f'{mine * gb:.1f} ({mine * gb / bw:.2f})':>13}"
            line += f"{f'{theirs * gb:.1f} ({theirs * gb / bw:.2f})':>16}" if ref else f"{'n/a':>16}"
        print(line)
        rows.append((name, gb, test, kind, mine, theirs))
    return rows


def print_table(rows: list[tuple], bw: float) -> None:
    print(f"\n| model | weights/token | test | kettle t/s | llama.cpp t/s | ratio | kettle GB/s | llama.cpp GB/s |"
          f"\n|---|---:|---|---:|---:|---:|---:|---:|")
    for name, gb, test, kind, mine, theirs in rows:
        known = theirs == theirs  # not NaN: llama.cpp ran
        ref, ratio = (f"{theirs:.1f}", f"{mine / theirs:.2f}") if known else ("n/a", "n/a")
        bws = " | "
        if kind == "tg":
            bws = f"{mine * gb:.1f} ({mine * gb / bw:.0%}) | "
            bws += f"{theirs * gb:.1f} ({theirs * gb / bw:.0%})" if known else "n/a"
        print(f"| {name} | {gb:.2f} GB | {test} | {mine:.1f} | {ref} | {ratio} | {bws} |")
    print(f"(GB/s: weights read per token x t/s; in brackets, of the {bw:.1f} GB/s measured)")


if __name__ == "__main__":
    main()
