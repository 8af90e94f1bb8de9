"""Regenerate ``fixtures/random_golden.json.gz``: llama.cpp's answers on random strings.

Needs llama-cpp-python (its bundled llama.cpp is the reference):

    python -m tests.tokenizer.make_random_golden

For both bundled models: 300 reproducible random strings (``variants.random_strings``), the
ids of all four add_special/parse_special settings, the detokenization of the
(add_special, parse_special) ids both ways, and the end-of-generation set. Not a test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import gemma3_file, smollm2_file
from tests.tokenizer.make_golden import SETTINGS, LlamaCppVocab
from tests.tokenizer.variants import random_strings

OUT = Path(__file__).parent / "fixtures" / "random_golden.json.gz"
COUNT, SEED = 300, 20240611


def main() -> None:
    import llama_cpp

    strings = random_strings(COUNT, seed=SEED)
    out = {
        "generator": f"tests/tokenizer/make_random_golden.py with llama-cpp-python {llama_cpp.__version__}",
        "count": COUNT, "seed": SEED, "strings": strings, "models": {},
    }
    for name, path in (("smollm2", smollm2_file()), ("gemma3", gemma3_file())):
        ref = LlamaCppVocab(path)
        rows = []
        for text in strings:
            ids = {k: ref.tokenize(text, a, p) for k, (a, p) in SETTINGS.items()}
            rows.append({"ids": ids,
                         "detok": {f"{int(r)}{int(u)}": ref.detokenize(ids["TT"], r, u).hex()
                                   for r, u in ((False, True), (True, False))}})
        out["models"][name] = {"eog_ids": ref.eog(), "rows": rows}
        print(name, "done")
    OUT.write_bytes(gzip.compress(json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode(), mtime=0))


if __name__ == "__main__":
    main()
