"""Random strings against llama.cpp itself, when llama-cpp-python is installed.

Complements the fixed oracle strings: a few hundred reproducible random
strings per model, all four add_special/parse_special settings, plus
detokenization and the EOG set. Skipped where llama-cpp-python is absent.
"""

from __future__ import annotations

import pytest

from tests.tokenizer.variants import random_strings

pytest.importorskip("llama_cpp")

from tests.tokenizer.make_golden import SETTINGS, LlamaCppVocab  # noqa: E402


@pytest.fixture(scope="module")
def references(smollm2_path, gemma3_path):
    return {"smollm2": LlamaCppVocab(smollm2_path), "gemma3": LlamaCppVocab(gemma3_path)}


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_random_strings_match_llama_cpp(references, tokenizers, model):
    ref, tok = references[model], tokenizers[model]
    assert sorted(tok.eog_ids) == ref.eog()
    wrong = []
    for text in random_strings(300, seed=20240611):
        for key, (add_special, parse_special) in SETTINGS.items():
            want = ref.tokenize(text, add_special, parse_special)
            if tok.encode(text, add_special, parse_special) != want:
                wrong.append((text, key))
            elif key == "TT":
                for remove, unparse in ((False, True), (True, False)):
                    if tok.detokenize(want, remove, unparse) != ref.detokenize(want, remove, unparse):
                        wrong.append((text, f"detokenize remove_special={remove} unparse_special={unparse}"))
    assert not wrong, f"{len(wrong)} differences, first: {wrong[:3]}"
