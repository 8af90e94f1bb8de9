"""Small hand-made vocabularies: metadata checks and the algorithms' rules.

The metadata dicts are built here, in the shape ``GGUFFile.metadata`` returns
(token types and scores as numpy arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kettle.errors import KettleError, TokenizerError
from kettle.tokenizer import PRE_TYPES, StreamDecoder, TokenAttr, Tokenizer, TokenType

N, C, U, B = TokenType.NORMAL, TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.BYTE
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def spm_meta(pieces: dict[str, float], specials: dict[str, TokenType] | None = None, **keys: Any) -> dict:
    """SentencePiece vocabulary: <unk> <s> </s>, the specials, 256 byte tokens, then scored pieces."""
    specials = specials or {}
    tokens = ["<unk>", "<s>", "</s>", *specials, *BYTES, *pieces]
    types = [TokenType.UNKNOWN, C, C, *specials.values(), *[B] * 256, *[N] * len(pieces)]
    scores = [0.0] * (3 + len(specials) + 256) + list(pieces.values())
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.array(scores, dtype=np.float32),
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }
    meta.update({f"tokenizer.ggml.{k}": v for k, v in keys.items()})
    return meta


def bpe_meta(tokens: list[str], merges: list[str], types: list[int] | None = None, **keys: Any) -> dict:
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types or [N] * len(tokens), dtype=np.int32),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 0,
    }
    meta.update({f"tokenizer.ggml.{k}": v for k, v in keys.items()})
    return meta


BPE_TOKENS = ["<|endoftext|>", "a", "b", "c", "Ġ", "ab", "bc", "Ġa", "abc"]
BPE_MERGES = ["a b", "b c", "Ġ a", "ab c"]

# ------------------------------------------------------------------ bad metadata


def _without(meta: dict, key: str) -> dict:
    return {k: v for k, v in meta.items() if k != f"tokenizer.ggml.{key}"}


def _with(meta: dict, **keys: Any) -> dict:
    return {**meta, **{f"tokenizer.ggml.{k}": v for k, v in keys.items()}}


SPM = spm_meta({"▁": -1.0, "a": -2.0})
BPE = bpe_meta(BPE_TOKENS, BPE_MERGES)

BAD_METADATA = {
    "no model key": (_without(SPM, "model"), "tokenizer.ggml.model"),
    "unknown model": (_with(SPM, model="rwkv"), "'bert'"),
    "unsupported pre-tokenizer": (_with(BPE, pre="no-such-pre"), "smollm"),
    "no tokens": (_without(SPM, "tokens"), "tokenizer.ggml.tokens"),
    "tokens not strings": (_with(SPM, tokens=[1, 2, 3]), "array of strings"),
    "empty vocabulary": (_with(BPE, tokens=[], token_type=np.array([], np.int32), merges=[]), "empty"),
    "scores length": (_with(SPM, scores=np.zeros(3, np.float32)), "tokenizer.ggml.scores has 3 entries"),
    "token types length": (_with(SPM, token_type=np.ones(5, np.int32)), "tokenizer.ggml.token_type has 5"),
    "scores not numbers": (_with(SPM, scores=["x"] * len(SPM["tokenizer.ggml.tokens"])), "1-D array of numbers"),
    "duplicate token": (_with(BPE, tokens=[*BPE_TOKENS[:-1], "ab"]), "duplicate token"),
    "no merges": (_without(BPE, "merges"), "tokenizer.ggml.merges"),
    "merge of unknown token": (_with(BPE, merges=[*BPE_MERGES, "c zz"]), "'zz'"),
    "merge without space": (_with(BPE, merges=["ab"]), "no space"),
    "bos out of range": (_with(SPM, bos_token_id=10**6), "bos_token_id = 1000000 is out of range"),
    "eos out of range": (_with(BPE, eos_token_id=len(BPE_TOKENS)), "eos_token_id"),
    "negative bos": (_with(BPE, bos_token_id=-1), "bos_token_id = -1"),
    "id not an integer": (_with(SPM, padding_token_id="3"), "padding_token_id must be an integer"),
    "flag not a bool": (_with(SPM, add_bos_token=1), "add_bos_token must be a bool"),
    "add_bos without bos": (_with(_without(BPE, "bos_token_id"), add_bos_token=True), "no valid BOS"),
    "malformed byte token": (_with(SPM, token_type=np.full(len(SPM["tokenizer.ggml.tokens"]), B, np.int32)), "<0xXX>"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_raises_tokenizer_error(case):
    meta, fragment = BAD_METADATA[case]
    with pytest.raises(TokenizerError) as err:
        Tokenizer.from_metadata(meta)
    assert fragment in str(err.value)
    assert isinstance(err.value, KettleError)


def test_supported_pre_tokenizers_include_the_required_ones():
    for name in ("smollm", "default", "gpt-2", "llama3", "llama-bpe", "qwen2"):
        assert name in PRE_TYPES
    Tokenizer.from_metadata(_without(BPE, "pre"))  # absent: llama.cpp's default


@pytest.mark.parametrize("bad", [-1, 10**6, "3", 1.0, True, None])
def test_ids_outside_the_vocabulary_are_named(bad):
    tok = Tokenizer.from_metadata(BPE)
    for call in (lambda: tok.token_to_piece(bad), lambda: tok.decode([1, bad]), lambda: tok.detokenize([bad]),
                 lambda: StreamDecoder(tok).feed(bad), lambda: tok.token_text(bad)):
        with pytest.raises(TokenizerError, match=repr(bad).replace("(", r"\(")):
            call()


def test_encode_rejects_non_text():
    tok = Tokenizer.from_metadata(BPE)
    with pytest.raises(TokenizerError):
        tok.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TokenizerError, match="not valid Unicode"):
        tok.encode("a\ud800b")


def test_numpy_ids_are_accepted():
    tok = Tokenizer.from_metadata(BPE)
    assert tok.decode(np.array([5, 3])) == "abc"


# ------------------------------------------------------------------ SentencePiece rules


def test_spm_merges_highest_score_first_and_leftmost_on_ties():
    tok = Tokenizer.from_metadata(spm_meta({"a": -5, "b": -5, "ab": -1, "bb": -1, "abb": -0.5}, add_space_prefix=False))
    ids = tok.encode("abb", add_special=False)
    # "ab" and "bb" tie at -1: the leftmost pair merges first, then "ab"+"b" -> "abb"
    assert [tok.token_text(i) for i in ids] == ["abb"]
    tok2 = Tokenizer.from_metadata(spm_meta({"a": -5, "b": -5, "ab": -1, "bb": -1}, add_space_prefix=False))
    assert [tok2.token_text(i) for i in tok2.encode("abb", add_special=False)] == ["ab", "b"]


def test_spm_space_prefix_escaping_and_byte_fallback():
    # only pairs that are tokens merge: "hi" first, then "▁" + "hi"
    tok = Tokenizer.from_metadata(spm_meta({"▁": -1, "h": -2, "i": -2, "hi": -0.5, "▁hi": -0.1}, add_space_prefix=True))
    assert tok.add_bos and tok.encode("hi") == [1, tok.token_id("▁hi")]
    ids = tok.encode("hé", add_special=False)  # "é" is not a piece: its two UTF-8 bytes
    assert [tok.token_text(i) for i in ids] == ["▁", "h", "<0xC3>", "<0xA9>"]
    assert tok.decode(ids) == " hé" and tok.detokenize(ids) == "hé".encode()  # leading space dropped
    no_prefix = Tokenizer.from_metadata(spm_meta({"▁": -1, "h": -2}, add_space_prefix=False))
    assert [no_prefix.token_text(i) for i in no_prefix.encode("h h", add_special=False)] == ["h", "▁", "h"]


def test_spm_without_byte_tokens_cannot_encode_unknown_characters():
    meta = spm_meta({"a": -1}, add_space_prefix=False)
    keep = [i for i, t in enumerate(meta["tokenizer.ggml.tokens"]) if t not in BYTES]
    meta = {**meta, "tokenizer.ggml.tokens": [meta["tokenizer.ggml.tokens"][i] for i in keep],
            "tokenizer.ggml.scores": meta["tokenizer.ggml.scores"][keep],
            "tokenizer.ggml.token_type": meta["tokenizer.ggml.token_type"][keep]}
    tok = Tokenizer.from_metadata(meta)
    with pytest.raises(TokenizerError, match="<0xC3>"):
        tok.encode("é")


def test_special_tokens_split_before_tokenizing():
    tok = Tokenizer.from_metadata(spm_meta(
        {"▁": -1, "x": -1, "<": -3, "b": -3, ">": -3},
        specials={"<b>": U, "<ctl>": C}, add_space_prefix=False))
    user, ctl = tok.token_id("<b>"), tok.token_id("<ctl>")
    assert tok.encode("x<b>x", add_special=False) == [tok.token_id("x"), user, tok.token_id("x")]
    assert ctl not in tok.encode("<ctl>", add_special=False, parse_special=False)
    assert tok.encode("<ctl>", add_special=False, parse_special=True) == [ctl]
    assert user in tok.special_ids and ctl in tok.control_ids and user not in tok.control_ids
    assert tok.token_to_piece(ctl, special=False) == b"" and tok.token_to_piece(user, special=False) == b"<b>"


def test_phi3_models_strip_spaces_after_special_tokens():
    meta = spm_meta({"▁": -1, "x": -1}, specials={"<|end|>": C}, add_space_prefix=False)
    plain = Tokenizer.from_metadata(meta)
    phi3 = Tokenizer.from_metadata({**meta, "general.name": "Phi-3-mini"})
    end = plain.token_id("<|end|>")
    assert plain.encode("<|end|> \n x", add_special=False, parse_special=True)[:2] == [end, plain.token_id("▁")]
    assert phi3.encode("<|end|> \n x", add_special=False, parse_special=True) == [end, phi3.token_id("x")]
    assert TokenAttr.RSTRIP in phi3.token_attr(end)


# ------------------------------------------------------------------ BPE rules


def test_bpe_merges_by_rank_and_maps_bytes():
    tok = Tokenizer.from_metadata(BPE)
    assert [tok.token_text(i) for i in tok.encode("abc a", add_special=False)] == ["abc", "Ġa"]
    assert tok.decode(tok.encode("abc a")) == "abc a"
    assert not tok.add_bos and tok.encode("") == []
    assert tok.eog_ids == {0}  # "<|endoftext|>" by its text, and it is the EOS
    assert tok.is_control(0)


def test_bpe_drops_bytes_without_a_token_like_llama_cpp():
    tok = Tokenizer.from_metadata(BPE)
    assert [tok.token_text(i) for i in tok.encode("a d b", add_special=False)] == ["a", "Ġ", "Ġ", "b"]


def test_llama3_pre_tokenizer_adds_bos_by_default():
    tok = Tokenizer.from_metadata(_with(BPE, pre="llama3"))
    assert tok.add_bos and tok.encode("ab")[0] == tok.bos_id
    assert not Tokenizer.from_metadata(_with(BPE, pre="llama3", add_bos_token=False)).add_bos


def test_stream_decoder_never_splits_a_character():
    tok = Tokenizer.from_metadata(spm_meta({"▁": -1}, add_space_prefix=False))
    ids = tok.encode("é🙂", add_special=False)
    assert len(ids) == 6  # all byte fallback
    stream = StreamDecoder(tok)
    assert [stream.feed(i) for i in ids] == ["", "é", "", "", "", "🙂"]
    assert stream.flush() == ""
    assert stream.feed(ids[2]) == "" and stream.flush() == "\ufffd"  # truncated character
    assert stream.feed(tok.token_id("<0xFF>")) == "\ufffd"  # never valid
    hidden = StreamDecoder(tok, special=False)
    assert hidden.feed(2) == "" and StreamDecoder(tok, special=True).feed(2) == "</s>"
