"""Structured output: ``format: "json"`` or a JSON schema constrains decoding.

Built on llguidance (Microsoft's guidance core, Rust with Python bindings). Why it,
over outlines-core and xgrammar:

* it takes the vocabulary as plain byte strings plus a tokenize callback, so it
  works with kettle's own GGUF tokenizer (xgrammar and outlines build from a
  Hugging Face tokenizer or need one emulated);
* it computes each token mask lazily from the grammar's current state (tens of
  microseconds for a 50k vocabulary) with no ahead-of-time index per schema, so a
  new schema per request costs milliseconds, not seconds (outlines-core compiles
  an index over the whole vocabulary for every schema);
* it covers JSON Schema broadly (``$ref``, ``anyOf``, ``enum``, ``pattern``,
  lengths, ``additionalProperties``...) and reports unsupported keywords as errors;
  resource limits bound hostile schemas; llama.cpp, vLLM and SGLang ship it.

``compile_format(tokenizer, fmt)`` turns a request's ``format`` (and ``compile_lark`` a
grammar, such as a forced tool call's) into a factory of ``GrammarConstraint``\\ s,
which implement ``kettle.engine.batch.Constraint`` (``mask`` / ``accept`` /
``is_complete``). Between JSON tokens the model may write the whitespace llama.cpp's
``json.gbnf`` allows (nothing, one space, or a newline and up to 20 spaces or tabs), so it
can indent as it was trained to, but never loop on blanks; nothing may follow the
top-level value, so generation stops at its end.

The tokenizer must provide ``vocab_size``, ``token_to_piece(id, special)`` (bytes),
``is_eog(id)``, ``encode(text, add_special, parse_special)`` and ``bos_id``. Control
tokens (empty without ``special``) are marked as special for llguidance, so a
grammar never spells them out as text; end-of-generation tokens are allowed
exactly when the output is complete.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import llguidance
import llguidance.numpy as llg_np
import numpy as np

from kettle.errors import InvalidParameter

# llguidance marks a special (control) token by this first byte.
SPECIAL_MARK = b"\xff"

# `format: "json"`: any JSON object, as ollama (and llama.cpp's json.gbnf) mean it.
ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}

# Whitespace between tokens as llama.cpp's json.gbnf bounds it (`ws ::= | " " | "\n" [ \t]{0,20}`):
# indented JSON is allowed, an endless run of blanks is not. Forbidding all whitespace made small
# models write junk keys (`{",": 1}`), since the layout they want was masked away.
JSON_WHITESPACE = r"( |\n[ \t]{0,20})?"
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": True, "whitespace_pattern": JSON_WHITESPACE}


class TokenizerLike(Protocol):
    vocab_size: int
    bos_id: int | None

    def token_to_piece(self, token: int, special: bool = False) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]: ...


class _Vocabulary:
    """What ``llguidance.LLTokenizer`` reads from a tokenizer object (its TokenizerWrapper protocol)."""

    def __init__(self, tokenizer: TokenizerLike) -> None:
        self._tokenizer = tokenizer
        self.tokens: list[bytes] = []
        self.special_token_ids: list[int] = []
        self.eog_ids: list[int] = []
        for token in range(tokenizer.vocab_size):
            piece = tokenizer.token_to_piece(token, special=True)
            if tokenizer.is_eog(token):
                self.eog_ids.append(token)
            if piece and not tokenizer.token_to_piece(token, special=False):
                self.special_token_ids.append(token)
                piece = SPECIAL_MARK + piece
            self.tokens.append(piece)
        if not self.eog_ids:
            raise InvalidParameter("format", "json", "the model has no end-of-generation token")
        self.eos_token_id = self.eog_ids[0]
        self.bos_token_id = tokenizer.bos_id
        self.is_tokenizer_wrapper = True

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._tokenizer.encode(text, add_special=False, parse_special=False)


_CACHE: weakref.WeakKeyDictionary[Any, llguidance.LLTokenizer] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def grammar_tokenizer(tokenizer: TokenizerLike) -> llguidance.LLTokenizer:
    """llguidance's view of ``tokenizer``, built once per tokenizer (it reads every token)."""
    with _CACHE_LOCK:
        found = _CACHE.get(tokenizer)
        if found is None:
            vocab = _Vocabulary(tokenizer)
            found = llguidance.LLTokenizer(vocab, eos_token=vocab.eog_ids, slices=llguidance.LLTokenizer.json_slices())
            _CACHE[tokenizer] = found
        return found


class GrammarConstraint:
    """One request's grammar state (``kettle.engine.batch.Constraint``). Never raises while
    decoding: should the grammar fail, only end-of-generation tokens stay allowed and
    ``is_complete`` becomes true, so the request ends instead of the whole batch."""

    def __init__(self, lltok: llguidance.LLTokenizer, grammar: str, name: str = "format") -> None:
        self._matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
        if self._matcher.is_error():
            raise InvalidParameter(name, "<schema>", self._matcher.get_error())
        self._bits = llg_np.allocate_token_bitmask(1, lltok.vocab_size)  # (1, ceil(V / 32)) int32
        self._eog = np.array(lltok.eos_tokens, dtype=np.int64)  # (n_eog,)

    def mask(self, logits: np.ndarray) -> None:
        """logits (n_vocab,): forbidden tokens -> -inf, in place."""
        if self._matcher.is_error():
            allowed = np.zeros(logits.shape[0], dtype=bool)
            allowed[self._eog[self._eog < logits.shape[0]]] = True
        else:
            llg_np.fill_next_token_bitmask(self._matcher, self._bits, 0)
            bits = np.unpackbits(self._bits[0].view(np.uint8), bitorder="little")  # (32 * ceil(V / 32),)
            allowed = np.zeros(logits.shape[0], dtype=bool)
            n = min(logits.shape[0], bits.shape[0])
            allowed[:n] = bits[:n].astype(bool)
        logits[~allowed] = -np.inf

    def accept(self, token: int) -> None:
        self._matcher.consume_token(int(token))  # a failure leaves the matcher in its error state

    def is_complete(self) -> bool:
        return self._matcher.is_stopped() or self._matcher.is_error()

    @property
    def error(self) -> str:
        return self._matcher.get_error()


def compile_format(tokenizer: TokenizerLike, fmt: object) -> Callable[[], GrammarConstraint] | None:
    """A request's ``format`` -> a factory of fresh constraints, or None for no constraint.

    ``fmt`` is None or ``""`` (none), ``"json"`` (any JSON object), or a JSON schema object.
    Raises ``InvalidParameter`` (HTTP 400) for anything else or for a schema llguidance
    rejects, naming the problem.
    """
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        schema: Mapping[str, Any] = ANY_OBJECT_SCHEMA
    elif isinstance(fmt, Mapping):
        schema = fmt
    else:
        raise InvalidParameter("format", fmt, 'expected "json" or a JSON schema object')
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=JSON_OPTIONS)
    except (ValueError, TypeError) as e:
        raise InvalidParameter("format", "<schema>", f"not a usable JSON schema: {e}") from None
    return _factory(tokenizer, grammar, "format", "unsupported JSON schema")


def compile_lark(tokenizer: TokenizerLike, lark: str, name: str) -> Callable[[], GrammarConstraint]:
    """A factory of constraints for a Lark grammar (llguidance's dialect, ``%json`` included),
    such as a forced tool call's (``kettle.toolcalls.call_grammar``); ``InvalidParameter``
    naming the request field ``name`` when llguidance refuses it."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    except (ValueError, TypeError) as e:
        raise InvalidParameter(name, "<grammar>", f"not a usable grammar: {e}") from None
    return _factory(tokenizer, grammar, name, "unsupported schema")


def _factory(tokenizer: TokenizerLike, grammar: str, name: str, what: str) -> Callable[[], GrammarConstraint]:
    lltok = grammar_tokenizer(tokenizer)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, lltok)
    if is_error:
        raise InvalidParameter(name, "<schema>", f"{what}: {messages[0]}")
    GrammarConstraint(lltok, grammar, name)  # fail now, not at the first token
    return lambda: GrammarConstraint(lltok, grammar, name)
