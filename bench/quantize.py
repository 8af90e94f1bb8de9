"""The quantizer's speed: kettle's against llama.cpp's on the same F16 file, same threads.

    python bench/quantize.py [--only 1b] [--type Q4_K_M] [--threads 2] [--dir DIR]

The F16 file of a benchmark shape (``bench/models.py``'s random weights in the real shape)
is written once and cached beside the Q4_K_M files. Each quantizer runs in a process of its
own: kettle's as ``kettle quantize`` would (``kettle.quant.file.quantize_file``), llama.cpp's
through llama-cpp-python's ``llama_model_quantize`` with a clean environment (kettle sets
OpenMP variables at import that slow llama.cpp down). The two outputs must be the same bytes
(kettle's quantizer is byte-identical with llama.cpp's), so the script checks their sha256 too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402  (bench/models.py, beside this file)


def f16_file(name: str, directory: Path) -> Path:
    """The cached F16 file of shape ``name`` (written first if it is not there)."""
    s = models.SHAPES[name]
    path = directory / f"{name}.F16.{models.digest(s, 'f16')}.gguf"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        print(f"writing {path}", file=sys.stderr)
        models.write_gguf(tmp, name, s, quantized=False)
        os.replace(tmp, path)
    return path


def _kettle_worker(src: str, dst: str, type_name: str) -> None:
    from kettle.quant.file import quantize_file

    quantize_file(src, dst, type_name)


def _llama_worker(src: str, dst: str, type_name: str, threads: int) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name.upper()}")
    params.nthread = threads
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise SystemExit("llama_model_quantize failed")


def timed(which: str, src: Path, dst: Path, type_name: str, threads: int) -> float:
    """Seconds one quantizer takes, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_", "NUMBA_"))}
    if which == "kettle":
        env["NUMBA_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, f"--{which}-worker", str(src), str(dst), type_name, "--threads", str(threads)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{which} quantizer failed:\n{done.stderr[-2000:]}")
    return elapsed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="1b", help="shapes: " + ", ".join(models.SHAPES))
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--kettle-worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--llama.cpp-worker", dest="llama_worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kettle_worker:
        return _kettle_worker(*args.kettle_worker)
    if args.llama_worker:
        return _llama_worker(*args.llama_worker, args.threads)
    directory = args.dir or models.default_dir()
    print(f"{'model':<10} {'type':<8} {'kettle s':>9} {'llama.cpp s':>12} {'ratio':>6}  bytes")
    for short in args.only.split(","):
        name = models.shape_name(short)
        src = f16_file(name, directory)
        ours = directory / f"{name}.{args.type}.bench-kettle.gguf"
        theirs = directory / f"{name}.{args.type}.bench-llama.gguf"
        try:
            t_kettle = timed("kettle", src, ours, args.type, args.threads)
            if models.have_llama_cpp():
                t_llama = timed("llama.cpp", src, theirs, args.type, args.threads)
                same = "identical" if sha256(ours) == sha256(theirs) else "DIFFERENT"
                ratio = t_llama / t_kettle
                print(f"{name:<10} {args.type:<8} {t_kettle:>9.1f} {t_llama:>12.1f} {ratio:>5.2f}x  {same}")
            else:
                print(f"{name:<10} {args.type:<8} {t_kettle:>9.1f} {'-':>12} {'-':>6}  (no llama-cpp-python)")
        finally:
            ours.unlink(missing_ok=True)
            theirs.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
