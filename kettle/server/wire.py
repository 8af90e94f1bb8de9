"""Request bodies in, errors out: strict JSON reading, typed fields, error -> HTTP status.

Reading (``read_json``): the body must be one UTF-8 JSON object; NaN/Infinity
literals, integer literals longer than ``MAX_INT_DIGITS`` digits, unpaired
surrogates (``"\\ud800"``) and nesting deeper than ``MAX_DEPTH`` are refused with
400 before any handler sees them (``loads`` applies the same rules to JSON text
inside a body, such as tool-call arguments). ``Fields`` then
reads each field with its type: ``null`` or absent means "unset" (older LangChain
sends nulls), a wrong type is a 400 naming the field. Unknown top-level fields are
ignored, as ollama and OpenAI ignore them (clients add fields over time); unknown
*options* are refused by ``kettle.options.parse_options``.

Errors (``status_of`` / ``public_message``): every ``KettleError`` class maps to
one status code (ollama's: 400 bad input, 404 unknown model, 503 queue full, 500
otherwise); messages have absolute paths cut to their last component, so no reply
shows where files live; anything else is an internal error whose details go to
the server log only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from kettle.errors import (
    CapabilityError, Cancelled, ContextOverflow, InvalidParameter, KettleError, ModelfileError, ModelNotFound,
    SamplingError, ServerBusy, TemplateError,
)

MAX_DEPTH = 64  # nesting of a request body (JSON schemas and tool parameters nest)
MAX_INT_DIGITS = 4300  # digits in one integer literal (CPython's int-string limit; checked first)

# ollama's status codes, most specific class first.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (ModelNotFound, 404),
    (ServerBusy, 503),
    (InvalidParameter, 400),
    (ContextOverflow, 400),
    (CapabilityError, 400),
    (TemplateError, 400),
    (ModelfileError, 400),
    (SamplingError, 500),
    (Cancelled, 499),  # the client went away; nobody reads this
    (KettleError, 500),
)

# An absolute path: not one glued to a word before it (host:port/ns/model, a registry name, stays).
_ABS_PATH = re.compile(r"(?<![\w.:\-])(?:~|[A-Za-z]:)?(?:[/\\][\w.\-+@~ ]*?[\w.\-+@~]){2,}(?=$|[\s'\":,;)\]])")


class RequestError(KettleError):
    """A request the server refuses, with its HTTP status (400 unless given) and, when one
    field is at fault, its path (``"messages[0].tool_calls[1].function.arguments"``)."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)


def status_of(exc: BaseException) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def public_message(exc: BaseException) -> str:
    """What a client may see of ``exc``: the message of a KettleError with any absolute
    path cut to its last component; "internal error" for anything else."""
    if not isinstance(exc, KettleError):
        return "internal server error"
    return _ABS_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0))[-1], str(exc)) or type(exc).__name__


def _reject_constant(name: str) -> Any:
    raise RequestError(f"invalid JSON: {name} is not a JSON number")


def _parse_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise RequestError(f"invalid JSON: an integer literal of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(literal)


def loads(text: str) -> Any:
    """``json.loads`` with the body's rules: no NaN/Infinity, no integer literal over
    ``MAX_INT_DIGITS`` digits (``RequestError``); malformed text raises ``json.JSONDecodeError``."""
    return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)


def _check_tree(value: Any, depth: int = 0) -> None:
    """Refuse unpaired surrogates and excessive nesting anywhere in a parsed body."""
    if depth > MAX_DEPTH:
        raise RequestError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_tree(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_tree(v, depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("invalid text: a string holds an unpaired UTF-16 surrogate (not valid Unicode)") from None


def parse_json_body(body: bytes) -> dict[str, Any]:
    """One JSON object from a request body, or ``RequestError`` (400) saying what is wrong."""
    if not body.strip():
        raise RequestError("missing request body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"invalid JSON: the body is not UTF-8 (byte {e.start})") from None
    try:
        value = loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise RequestError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise RequestError(f"expected a JSON object, got {_kind(value)}")
    _check_tree(value)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def bad_value(field: str, expected: str, value: Any) -> RequestError:
    """The 400 for ``field`` (a path such as ``"tools[0].function.name"``) holding ``value``."""
    return RequestError(f"invalid value for {field!r}: expected {expected}, got {_kind(value)}", field=field)


class Fields:
    """Typed access to a request object; ``None`` (absent or null) means unset."""

    def __init__(self, obj: Mapping[str, Any], where: str = "") -> None:
        self.obj = obj
        self.where = where

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def _bad(self, name: str, expected: str, value: Any) -> RequestError:
        return bad_value(self.path(name), expected, value)

    def raw(self, name: str) -> Any:
        return self.obj.get(name)

    def str(self, name: str, default: str | None = None, max_len: int | None = None) -> str | None:
        value = self.obj.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._bad(name, "a string", value)
        if max_len is not None and len(value) > max_len:
            raise RequestError(f"{name!r} is longer than {max_len} characters (KETTLE_MAX_PROMPT)", 413)
        return value

    def required_str(self, name: str) -> str:
        value = self.str(name)
        if not value:
            raise RequestError(f"{name} is required")
        return value

    def bool(self, name: str, default: bool | None = None) -> bool | None:
        value = self.obj.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean", value)
        return value

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.obj.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(name, "an integer", value)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self._bad(name, "an integer", value)
        return int(value)

    def number(self, name: str, default: float | None = None) -> float | None:
        value = self.obj.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._bad(name, "a number", value)
        return float(value)

    def object(self, name: str) -> dict[str, Any] | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._bad(name, "an object", value)
        return value

    def list(self, name: str) -> list[Any] | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._bad(name, "an array", value)
        return value

    def int_list(self, name: str) -> list[int] | None:
        items = self.list(name)
        if items is None:
            return None
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise RequestError(f"invalid value for {name!r}: expected an array of integers")
        return items

    def str_list(self, name: str) -> list[str] | None:
        """A string or an array of strings, as a list."""
        value = self.obj.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise self._bad(name, "a string or an array of strings", value)


def sampling_options(f: Fields, num_predict: int | None, numbers: tuple[str, ...], integers: tuple[str, ...] = (),
                     stop: str | None = "stop") -> dict[str, Any]:
    """The ollama ``options`` of an OpenAI- or Anthropic-shaped body (the one mapping both use):
    ``num_predict`` when given, each field of ``numbers`` (read as a number) and of ``integers``
    that is set, under its own name, and the stop strings of field ``stop`` (None: the API has
    none) as ``stop``."""
    options: dict[str, Any] = {}
    if num_predict is not None:
        options["num_predict"] = num_predict
    for name in numbers:
        value = f.number(name)
        if value is not None:
            options[name] = value
    for name in integers:
        number = f.int(name)
        if number is not None:
            options[name] = number
    stops = f.str_list(stop) if stop is not None else None
    if stops:
        options["stop"] = stops
    return options
