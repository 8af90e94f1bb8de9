"""Resident memory: kettle against llama.cpp for the same model and context, each in a clean
process of its own that loads the model and answers one short greedy request.

    python bench/memory.py [--models smollm2,gemma3,llama-1b] [--ctx 4096] [--kv f16,q8_0]

Both memory-map the weights, so the pages a forward pass touches count for both alike. The
KV cache is the rest: kettle's type is ``KETTLE_KV_CACHE_TYPE`` (f32 by default), llama.cpp's
``type_k`` / ``type_v`` (f16 by default); each ``--kv`` type is measured on both sides (f32
is llama.cpp's ``-ctk f32``). Printed: the peak resident set (VmHWM) and the resident set
after the answer (VmRSS) in MiB, and kettle's peak as a ratio to llama.cpp's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}  # ggml_type values llama.cpp's type_k / type_v take


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def _kettle_worker(path: str, ctx: int) -> dict[str, int]:
    import kettle

    model = kettle.load(path, num_ctx=ctx)
    model.generate("The capital of France is", temperature=0, num_predict=16).text()
    return _status()


def _llama_worker(path: str, ctx: int, kv: str) -> dict[str, int]:
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit(3) from None  # not installed: no reference

    llm = llama_cpp.Llama(path, n_ctx=ctx, n_batch=512, verbose=False, type_k=GGML_TYPES[kv], type_v=GGML_TYPES[kv])
    llm("The capital of France is", max_tokens=16, temperature=0)
    return _status()


def measure(which: str, path: Path, ctx: int, kv: str) -> dict[str, int] | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KETTLE_KV"))}
    env["KETTLE_KV_CACHE_TYPE"] = kv
    cmd = [sys.executable, __file__, f"--{which}-worker", str(path), str(ctx), kv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode == 3:
        return None
    if done.returncode != 0:
        print(f"  {which} failed on {path.name} ({kv}): {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--kv", default="f16,q8_0", help="KV cache types to compare (f32, f16, q8_0)")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--kettle-worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--llama-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kettle_worker:
        path, ctx, _ = args.kettle_worker
        print(json.dumps(_kettle_worker(path, int(ctx))))
        return
    if args.llama_worker:
        path, ctx, kv = args.llama_worker
        print(json.dumps(_llama_worker(path, int(ctx), kv)))
        return
    from bench import model_file  # bench/bench.py

    print("| model | ctx | KV cache | kettle peak MiB | llama.cpp peak MiB | ratio | kettle / llama.cpp after, MiB |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name in args.models.split(","):
        path = model_file(name, args.dir)
        for kv in args.kv.split(","):
            ours, theirs = measure("kettle", path, args.ctx, kv), measure("llama", path, args.ctx, kv)
            if ours is None:
                continue
            if theirs is None:
                print(f"| {name} | {args.ctx} | {kv} | {ours['VmHWM']} | n/a | n/a | {ours['VmRSS']} / n/a |")
                continue
            print(f"| {name} | {args.ctx} | {kv} | {ours['VmHWM']} | {theirs['VmHWM']} | "
                  f"{ours['VmHWM'] / theirs['VmHWM']:.2f} | {ours['VmRSS']} / {theirs['VmRSS']} |")


if __name__ == "__main__":
    main()
