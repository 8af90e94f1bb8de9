"""What the KV cache's element type costs in quality: perplexity of the bundled models on the
oracle text (tests/oracle, scored as llama.cpp's ``perplexity`` tool scores it) with each
cache type, beside llama.cpp's own number for the same file and text.

    python bench/kv_cache.py [--types f32,f16,q8_0]

Each type runs in a process of its own (``KETTLE_KV_CACHE_TYPE`` is read when a model loads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ORACLE = REPO / "tests" / "oracle"
MODELS = {"smollm2": ("smollm2", "smollm2-135m-q4_1"), "gemma3": ("gemma3:270m", "gemma3-270m-q4_k_m")}


def perplexity(store_name: str, case: str) -> float:
    """kettle's perplexity on the oracle text, chunked as the oracle's llama.cpp run was."""
    import kettle
    from kettle.perplexity import chunks
    from kettle.perplexity import perplexity as score

    ref = json.loads((ORACLE / case / "perplexity.json").read_text())["c_api_recomputation"]
    text = (ORACLE / "texts" / "gpl3-first-14000.txt").read_text().removesuffix("\n")
    model = kettle.load(store_name, num_ctx=2048)
    ids = model.tokenize(text, add_special=True, parse_special=False)
    parts = chunks(ids, ref["n_ctx"], ref["n_chunks"], model.tokenizer.bos_id if ref["add_bos"] else None)
    return score(model.logits, parts, ref["first_scored_position"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="f32,f16,q8_0")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(perplexity(*args.worker))
        return
    types = args.types.split(",")
    print("| model | llama.cpp (f16 cache) | " + " | ".join(f"kettle {t}" for t in types) + " |")
    print("|---|---:|" + "---:|" * len(types))
    for store_name, case in MODELS.values():
        ref = json.loads((ORACLE / case / "perplexity.json").read_text())["c_api_recomputation"]["ppl"]
        cells = []
        for kind in types:
            env = {**os.environ, "KETTLE_KV_CACHE_TYPE": kind}
            done = subprocess.run([sys.executable, __file__, "--worker", store_name, case], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            ppl = float(done.stdout.strip().splitlines()[-1])
            cells.append(f"{ppl:.4f} ({ppl / ref - 1:+.2%})")
        print(f"| {case} | {ref:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
