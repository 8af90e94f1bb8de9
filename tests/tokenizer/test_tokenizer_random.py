"""Random strings against llama.cpp's recorded answers.

Complements the fixed oracle strings: 300 reproducible random strings per model, all four
add_special/parse_special settings, detokenization both ways and the EOG set, as llama.cpp
answered them (``fixtures/random_golden.json.gz``, made by ``make_random_golden.py``).
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.tokenizer.conftest import FIXTURES
from tests.tokenizer.make_golden import SETTINGS
from tests.tokenizer.variants import random_strings

GOLDEN = json.loads(gzip.decompress((FIXTURES / "random_golden.json.gz").read_bytes()))


def test_the_recorded_strings_are_the_generated_ones():
    assert GOLDEN["strings"] == random_strings(GOLDEN["count"], seed=GOLDEN["seed"])


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_random_strings_match_llama_cpp(tokenizers, model):
    tok, golden = tokenizers[model], GOLDEN["models"][model]
    assert sorted(tok.eog_ids) == golden["eog_ids"]
    wrong = []
    for text, row in zip(GOLDEN["strings"], golden["rows"], strict=True):
        for key, (add_special, parse_special) in SETTINGS.items():
            if tok.encode(text, add_special, parse_special) != row["ids"][key]:
                wrong.append((text, key))
        for flags, want in row["detok"].items():
            remove, unparse = bool(int(flags[0])), bool(int(flags[1]))
            if tok.detokenize(row["ids"]["TT"], remove, unparse).hex() != want:
                wrong.append((text, f"detokenize remove_special={remove} unparse_special={unparse}"))
    assert not wrong, f"{len(wrong)} differences, first: {wrong[:3]}"
