"""Speculative decoding (prompt lookup) on and off, on workloads that copy and one that does not.

    python bench/speculative.py [--models smollm2,gemma3] [--reps 3] [--draft 8]

Each workload is a chat request decoded greedily to ``--tokens`` tokens (or to its
end), once with ``draft_num_predict=0`` and once with ``--draft``, interleaved,
medians of ``--reps``. Prints decode tokens/s both ways, the ratio, how many drafted
tokens were kept, and whether the two outputs were identical (they must be).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARAGRAPH = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light into "
    "chemical energy. Inside the chloroplasts, chlorophyll absorbs sunlight, which drives the splitting "
    "of water molecules and releases oxygen. The energy captured is stored in ATP and NADPH, and the "
    "Calvin cycle then uses it to fix carbon dioxide from the air into sugars that feed the plant."
)
CODE = (
    "def parse_config(path):\n"
    "    settings = {}\n"
    "    with open(path) as f:\n"
    "        for line in f:\n"
    "            line = line.strip()\n"
    "            if not line or line.startswith('#'):\n"
    "                continue\n"
    "            key, value = line.split('=')\n"
    "            settings[key.strip()] = value.strip()\n"
    "    return setings\n"
)
WORKLOADS = {
    "repeat with one word changed": f"Repeat this paragraph exactly, but write 'plants' instead of 'green plants':\n\n{PARAGRAPH}",
    "fix the bug in this code": f"Fix the bug in this Python function and show the whole corrected function:\n\n{CODE}",
    "never copies (a poem)": "Write a poem of eight lines about a lighthouse keeper in winter.",
}


def bench(model, prompt: str, draft: int, tokens: int) -> tuple[float, list[int], int, int]:
    """(decode tokens/s, generated ids, drafted, kept) of one greedy chat request."""
    stream = model.chat([{"role": "user", "content": prompt}], temperature=0, num_predict=tokens,
                        draft_num_predict=draft)
    stream.text()
    s = stream.last.stats
    ids = stream.last.context[-s.eval_count:]
    return (s.eval_count - 1) / (s.eval_duration / 1e9), ids, s.draft_count, s.draft_accepted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2,gemma3:270m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--draft", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=160)
    args = ap.parse_args()
    import kettle

    for name in args.models.split(","):
        model = kettle.load(name, num_ctx=2048)
        print(f"{name} (greedy, {args.tokens} tokens at most, draft_num_predict {args.draft} vs 0)")
        print(f"  {'workload':32s} {'off t/s':>8s} {'on t/s':>8s} {'ratio':>6s} {'kept':>10s}  same")
        for label, prompt in WORKLOADS.items():
            bench(model, prompt, args.draft, 8)  # warm-up (compiles the kernels)
            off, on, kept = [], [], (0, 0)
            same = True
            for _ in range(args.reps):
                rate, plain, _, _ = bench(model, prompt, 0, args.tokens)
                off.append(rate)
                rate, fast, drafted, accepted = bench(model, prompt, args.draft, args.tokens)
                on.append(rate)
                kept = (accepted, drafted)
                same = same and fast == plain
            a, b = statistics.median(off), statistics.median(on)
            print(f"  {label:32s} {a:8.1f} {b:8.1f} {b / a:5.2f}x {kept[0]:4d}/{kept[1]:<5d}  {'yes' if same else 'NO'}",
                  flush=True)
        model.close()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
