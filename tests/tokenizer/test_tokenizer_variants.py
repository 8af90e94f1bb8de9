"""Other pre-tokenizers and vocabulary flags, against llama.cpp's answers.

Each variant (``variants.VARIANTS``) is one of the real models' metadata with a
few tokenizer keys changed; ``fixtures/variants_golden.json`` holds what
llama.cpp answered for it (see ``make_golden.py``).
"""

from __future__ import annotations

import pytest

from kettle.tokenizer import Tokenizer
from tests.tokenizer.conftest import load_fixture
from tests.tokenizer.variants import VARIANTS, golden_strings

GOLDEN = load_fixture("variants_golden.json")


@pytest.fixture(scope="module")
def variant_tokenizers(model_meta):
    return {name: Tokenizer.from_metadata(change(dict(model_meta[base]))) for name, (base, change) in VARIANTS.items()}


def test_golden_strings_are_the_ones_recorded():
    assert GOLDEN["strings"] == golden_strings()
    assert set(GOLDEN["variants"]) == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_ids_equal_llama_cpp(variant_tokenizers, name):
    tok = variant_tokenizers[name]
    golden = GOLDEN["variants"][name]
    wrong = []
    for text, row in zip(GOLDEN["strings"], golden["results"]):
        for key, want in row["ids"].items():
            setting = GOLDEN["settings"][key]
            got = tok.encode(text, setting["add_special"], setting["parse_special"])
            if got != want:
                wrong.append((text, key, got, want))
    assert not wrong, f"{len(wrong)} encodings differ, first: {wrong[0]}"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_detokenize_pieces_and_eog_equal_llama_cpp(variant_tokenizers, name):
    tok = variant_tokenizers[name]
    golden = GOLDEN["variants"][name]
    assert sorted(tok.eog_ids) == golden["eog_ids"]
    for tid, (special, hidden) in golden["pieces_hex"].items():
        assert tok.token_to_piece(int(tid), special=True).hex() == special, tid
        assert tok.token_to_piece(int(tid), special=False).hex() == hidden, tid
    for text, row in zip(GOLDEN["strings"], golden["results"]):
        ids = row["ids"]["TT"]
        assert tok.detokenize(ids).hex() == row["detok_hex"], text
        hidden = tok.detokenize(ids, remove_special=True, unparse_special=False)
        assert hidden.hex() == row["detok_removed_hidden_hex"], text


def test_variants_cover_what_they_claim(variant_tokenizers):
    assert variant_tokenizers["smollm2-llama3-defaults"].add_bos  # llama3 pre-tokenizer's default
    assert not variant_tokenizers["smollm2-pre-llama-bpe"].add_bos  # the key says false
    eog = variant_tokenizers["smollm2-eog"]
    assert eog.add_eos and eog.token_id("<|end|>") not in eog.eog_ids  # harmony rule
    assert eog.token_id("<|eot_id|>") in eog.control_ids  # a normal token made control by its text
    assert variant_tokenizers["gemma3-prefix-eos"].encode("hi")[-1] == 1
