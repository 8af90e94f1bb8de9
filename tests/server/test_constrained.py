"""Grammar-constrained decoding (kettle.sampling.constrained) on a small byte-level vocabulary.

The constraint is driven the way the engine drives it (mask, pick, accept, stop when
complete or at an end-of-generation token) with adversarial logits: random, or
pushing hard for whitespace, the control token and end-of-generation. The output
must parse and validate whatever the logits want. The real-model path is in
``test_clients.py`` (structured output through the HTTP API).
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from kettle.errors import InvalidParameter
from kettle.sampling.constrained import compile_format

MULTI = ['{"', '":', '", "', '"}', "true", "false", "null", "name", "age", "  ", "\n"]


class ByteTokenizer:
    """ids 0..255: single bytes; then a few multi-byte pieces; then a BOS, a control
    token (text only with ``special``) and an EOS."""

    def __init__(self) -> None:
        self.pieces = [bytes([b]) for b in range(256)] + [m.encode() for m in MULTI]
        self.bos_id = len(self.pieces)
        self.control_id = self.bos_id + 1
        self.eos_id = self.bos_id + 2
        self.vocab_size = self.eos_id + 1

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        if token == self.bos_id:
            return b"<s>" if special else b""
        if token == self.control_id:
            return b"<|im_end|>" if special else b""
        if token == self.eos_id:
            return b"</s>" if special else b""
        return self.pieces[token]

    def is_eog(self, token: int) -> bool:
        return token in (self.eos_id, self.control_id)

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        data = text.encode()
        out = [self.bos_id] if add_special else []
        i = 0
        while i < len(data):
            best = max((t for t, p in enumerate(self.pieces) if data.startswith(p, i)), key=lambda t: len(self.pieces[t]))
            out.append(best)
            i += len(self.pieces[best])
        return out


def decode_constrained(tok: ByteTokenizer, factory, logits_for, limit: int = 400) -> str:
    constraint = factory()
    out = b""
    for step in range(limit):
        logits = logits_for(step).astype(np.float32)  # (n_vocab,)
        constraint.mask(logits)
        assert np.isfinite(logits).any(), "the mask forbade every token"
        token = int(np.argmax(logits))
        constraint.accept(token)
        if tok.is_eog(token):
            break
        out += tok.token_to_piece(token)
        if constraint.is_complete():
            break
    else:
        pytest.fail(f"no end after {limit} tokens: {out[:200]!r}")
    return out.decode()


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "pet": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age", "pet"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", range(6))
def test_schema_output_validates_under_random_logits(seed: int) -> None:
    tok = ByteTokenizer()
    rng = np.random.default_rng(seed)
    factory = compile_format(tok, SCHEMA)
    text = decode_constrained(tok, factory, lambda _: rng.normal(size=tok.vocab_size))
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_mode_gives_an_object_even_when_the_model_wants_to_stop() -> None:
    tok = ByteTokenizer()
    rng = np.random.default_rng(0)

    def logits(_: int) -> np.ndarray:
        row = rng.normal(size=tok.vocab_size)
        row[[tok.eos_id, tok.control_id, ord("\n"), ord("\t")]] += 50.0  # stop, or pad with whitespace
        row[ord('"')] += 20.0  # close strings soon (a string may hold anything, "}" included)
        row[ord("}")] += 10.0
        return row

    text = decode_constrained(tok, compile_format(tok, "json"), logits)
    assert isinstance(json.loads(text), dict)
    assert "<|im_end|>" not in text


def test_each_request_gets_a_fresh_state() -> None:
    tok = ByteTokenizer()
    factory = compile_format(tok, {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                                   "additionalProperties": False})
    rng = np.random.default_rng(1)
    first = decode_constrained(tok, factory, lambda _: rng.normal(size=tok.vocab_size))
    second = decode_constrained(tok, factory, lambda _: rng.normal(size=tok.vocab_size))
    assert json.loads(first)["ok"] in (True, False) and json.loads(second)["ok"] in (True, False)


@pytest.mark.parametrize("fmt", [None, ""])
def test_no_format_means_no_constraint(fmt: object) -> None:
    assert compile_format(ByteTokenizer(), fmt) is None


@pytest.mark.parametrize("fmt", ["yaml", 3, ["json"], {"type": "nonsense"}, {"$ref": "#/nowhere"}])
def test_bad_formats_are_invalid_parameters(fmt: object) -> None:
    with pytest.raises(InvalidParameter) as err:
        compile_format(ByteTokenizer(), fmt)
    assert err.value.name == "format"


def _consumes(tok: ByteTokenizer, fmt: object, text: str) -> tuple[bool, bool]:
    """(every byte of ``text`` accepted, the constraint complete after it)."""
    constraint = compile_format(tok, fmt)()
    for token in tok.encode(text, add_special=False):
        logits = np.zeros(tok.vocab_size, dtype=np.float32)
        constraint.mask(logits)
        if not np.isfinite(logits[token]):
            return False, False
        constraint.accept(token)
    return True, constraint.is_complete()


def test_json_mode_allows_indented_json_and_stops_at_its_end() -> None:
    tok = ByteTokenizer()
    value = {"name": "Ann", "tags": ["a", "b"], "inner": {"ok": True, "n": None}}
    for text in (json.dumps(value, indent=2), json.dumps(value, indent="\t"), json.dumps(value),
                 json.dumps(value, separators=(",", ":"))):
        assert _consumes(tok, "json", text) == (True, True), text
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert _consumes(tok, schema, '{\n  "n": 3\n}') == (True, True)


@pytest.mark.parametrize("text", ['{"a": 1}\n', '{"a": 1} ', '{\n' + " " * 21 + '"a": 1}', '{\n\n"a": 1}',
                                  '{"a":  1}'])
def test_json_mode_bounds_whitespace(text: str) -> None:
    """Nothing after the value; between tokens at most a newline and 20 blanks (json.gbnf's bound)."""
    accepted, _ = _consumes(ByteTokenizer(), "json", text)
    assert not accepted

