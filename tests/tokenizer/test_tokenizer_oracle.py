"""The tokenizer against llama.cpp's own outputs for the two bundled models.

``fixtures/<model>.tokenize.json`` is llama.cpp's tokenize oracle (ids for four
add_special/parse_special settings, ``llama_token_to_piece(special=true)``
pieces and ``llama_detokenize(remove_special=false, unparse_special=true)``,
exact bytes in the ``*_hex`` fields); ``fixtures/oracle_extra.json`` holds the
ids of a 14000-character text and of greedy generations.
"""

from __future__ import annotations

import time

import pytest

from kettle.tokenizer import StreamDecoder, Tokenizer
from tests.tokenizer.conftest import FIXTURES, ORACLE_NAMES, load_fixture

MODELS = list(ORACLE_NAMES)
SETTINGS = [(True, True), (True, False), (False, True), (False, False)]


def _items(model: str) -> list[dict]:
    return load_fixture(f"{ORACLE_NAMES[model]}.tokenize.json")["items"]


def _text(item: dict) -> str:
    return bytes.fromhex(item["text_hex"]).decode("utf-8")


def _key(add_special: bool, parse_special: bool) -> str:
    return f"add_special={str(add_special).lower()},parse_special={str(parse_special).lower()}"


@pytest.mark.parametrize("add_special,parse_special", SETTINGS)
@pytest.mark.parametrize("model", MODELS)
def test_ids_equal_llama_cpp_for_every_string(tokenizers, model, add_special, parse_special):
    tok = tokenizers[model]
    items = _items(model)
    wrong = []
    for item in items:
        want = item["results"][_key(add_special, parse_special)]["ids"]
        got = tok.encode(_text(item), add_special=add_special, parse_special=parse_special)
        if got != want:
            wrong.append((item["text"], got, want))
    assert not wrong, f"{len(wrong)}/{len(items)} strings differ, first: {wrong[0]}"
    assert len(items) == 47


@pytest.mark.parametrize("model", MODELS)
def test_pieces_and_detokenize_equal_llama_cpp(tokenizers, model):
    tok = tokenizers[model]
    for item in _items(model):
        for result in item["results"].values():
            ids = result["ids"]
            assert [tok.token_to_piece(i, special=True).hex() for i in ids] == result["pieces_hex"], item["text"]
            assert tok.detokenize(ids).hex() == result["detok_hex"], item["text"]
            want = bytes.fromhex(result["detok_hex"]).decode("utf-8", errors="replace")
            assert tok.decode(ids, special=True) == want, item["text"]


@pytest.mark.parametrize("model", MODELS)
def test_stream_decoder_equals_full_decode_on_every_string(tokenizers, model):
    tok = tokenizers[model]
    split_chars = 0
    for item in _items(model):
        ids = item["results"][_key(True, True)]["ids"]
        for special in (True, False):
            stream = StreamDecoder(tok, special=special)
            chunks = [stream.feed(i) for i in ids] + [stream.flush()]
            assert "".join(chunks) == tok.decode(ids, special=special), item["text"]
            assert all("\ufffd" not in c for c in chunks) or "\ufffd" in _text(item)
        split_chars += sum(1 for i in ids if not _complete_utf8(tok.token_to_piece(i)))
    assert split_chars > 0, "the strings should include characters split across tokens"


def _complete_utf8(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("model", MODELS)
def test_long_text_ids_and_speed(model_meta, model):
    text = (FIXTURES / "gpl3-first-14000.txt").read_text(encoding="utf-8")
    assert len(text) == 14000
    want = load_fixture("oracle_extra.json")["models"][ORACLE_NAMES[model]]["gpl_text_ids"]
    fresh = Tokenizer.from_metadata(model_meta[model])  # cold: no cached words
    start = time.perf_counter()
    got = fresh.encode(text, add_special=True, parse_special=False)
    elapsed = time.perf_counter() - start
    assert got == want
    assert elapsed < 1.0, f"encoding 14000 characters took {elapsed:.2f}s"


@pytest.mark.parametrize("model", MODELS)
def test_greedy_generations_decode_like_llama_cpp(tokenizers, model):
    tok = tokenizers[model]
    for case in load_fixture("oracle_extra.json")["models"][ORACLE_NAMES[model]]["greedy"]:
        assert tok.encode(case["prompt"]) == case["prompt_ids"]
        ids = case["generated_ids"]
        want = bytes.fromhex(case["generated_text_hex"])
        assert tok.decode_bytes(ids, special=False) == want
        stream = StreamDecoder(tok)
        assert "".join(stream.feed(i) for i in ids) + stream.flush() == want.decode("utf-8", errors="replace")


# llama.cpp's README table: n_vocab, add_bos, BOS, EOS, EOG ids
EXPECTED_SPECIALS = {
    "smollm2": (49152, False, 1, 2, {0, 2, 4}),
    "gemma3": (262144, True, 2, 1, {1, 106, 212}),
}


@pytest.mark.parametrize("model", MODELS)
def test_special_tokens_match_llama_cpp(tokenizers, model):
    tok = tokenizers[model]
    n_vocab, add_bos, bos, eos, eog = EXPECTED_SPECIALS[model]
    assert (tok.vocab_size, tok.add_bos, tok.add_eos, tok.bos_id, tok.eos_id) == (n_vocab, add_bos, False, bos, eos)
    assert tok.eog_ids == frozenset(eog)
    assert all(tok.is_eog(i) for i in eog) and not tok.is_eog(bos)
    assert eog <= tok.control_ids <= tok.special_ids
    assert bos in tok.control_ids


def test_gemma3_end_of_text_tag_is_control_and_hidden(tokenizers):
    tok = tokenizers["gemma3"]
    assert tok.token_text(212) == "</s>"
    assert tok.token_to_piece(212, special=True) == b"</s>"
    assert tok.token_to_piece(212, special=False) == b""
    # a user-defined token stays visible without special=True
    assert tok.token_to_piece(tok.token_id("<table>"), special=False) == b"<table>"


def test_building_the_262144_token_vocabulary_is_fast(model_meta):
    start = time.perf_counter()
    tok = Tokenizer.from_metadata(model_meta["gemma3"])
    elapsed = time.perf_counter() - start
    assert tok.vocab_size == 262144
    assert elapsed < 1.0, f"building the gemma3 tokenizer took {elapsed:.2f}s"
