"""Typed, range-checked fields for frozen option dataclasses.

An option field is declared with :func:`option`, which stores a :class:`Spec` (its kind and
range) in the dataclass field's metadata. One set of functions then serves every option type:

* :func:`check_value` -- a Python value (from JSON or from code) -> the normalized value, or
  ``InvalidParameter``. Strict: ``bool`` is not an integer, a numeric string is not a number,
  NaN and infinities are not numbers. An ``int`` is accepted for a float field; a float with an
  integral value (``40.0``, what some JSON encoders emit) is accepted for an integer field.
* :func:`coerce_text` -- the text of a Modelfile ``PARAMETER`` line -> the typed value.
* :func:`normalize_fields` -- called from ``__post_init__``: checks and normalizes every field of
  a frozen dataclass instance in place, so an invalid instance never exists.

This module knows nothing about sampling; it lives here because both
``kettle.sampling.params`` and ``kettle.options`` use it and ``sampling`` must not import upward.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from kettle.errors import InvalidParameter

SPEC_KEY = "kettle.spec"

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Modelfile text forms, as ollama's FormatParams accepts them (Go strconv rules).
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_TEXT = {
    "1": True, "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "0": False, "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}


class Kind(enum.Enum):
    """The value type of an option; the enum value is the name used in error messages."""

    INT = "an integer"
    FLOAT = "a number"
    BOOL = "a boolean"
    OPTIONAL_BOOL = "a boolean or null"
    STRINGS = "a string or a list of strings"


@dataclass(frozen=True)
class Spec:
    """Kind and allowed range of one option (bounds are inclusive unless named ``gt``)."""

    kind: Kind
    lo: float | None = None  # value >= lo
    hi: float | None = None  # value <= hi
    gt: float | None = None  # value > gt
    choices: tuple[int, ...] | None = None  # value in choices


def option(kind: Kind, default: Any, *, lo: float | None = None, hi: float | None = None,
           gt: float | None = None, choices: tuple[int, ...] | None = None) -> Any:
    """A dataclass field with ``default`` whose metadata carries the option's :class:`Spec`."""
    spec = Spec(kind, lo=lo, hi=hi, gt=gt, choices=choices)
    return dataclasses.field(default=default, metadata={SPEC_KEY: spec})


def specs_of(cls: type) -> dict[str, Spec]:
    """``{field name: Spec}`` for every option field of dataclass ``cls``, in declaration order."""
    return {f.name: f.metadata[SPEC_KEY] for f in dataclasses.fields(cls) if SPEC_KEY in f.metadata}


def _type_error(name: str, value: object, spec: Spec) -> InvalidParameter:
    return InvalidParameter(name, value, f"expected {spec.kind.value}, got {type(value).__name__}")


def _check_int(name: str, value: object, spec: Spec) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise _type_error(name, value, spec)
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        out = int(value)
    elif isinstance(value, numbers.Real):
        raise InvalidParameter(name, value, f"expected {spec.kind.value}, got a fractional number")
    else:
        raise _type_error(name, value, spec)
    if not INT64_MIN <= out <= INT64_MAX:
        raise InvalidParameter(name, value, "does not fit in a 64-bit integer")
    return out


def _check_float(name: str, value: object, spec: Spec) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _type_error(name, value, spec)
    out = float(value)
    if not math.isfinite(out):
        raise InvalidParameter(name, value, "must be a finite number")
    return out


def _check_strings(name: str, value: object, spec: Spec) -> tuple[str, ...]:
    if isinstance(value, str):
        items: tuple[object, ...] = (value,)
    elif isinstance(value, (list, tuple)):
        items = tuple(value)
    else:
        raise _type_error(name, value, spec)
    for item in items:
        if not isinstance(item, str):
            raise InvalidParameter(name, value, f"every item must be a string, got {type(item).__name__}")
        if not item:
            raise InvalidParameter(name, value, "an empty string is not allowed")
    return items  # type: ignore[return-value]


def _check_range(name: str, value: float, spec: Spec) -> None:
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        raise InvalidParameter(name, value, f"must be one of {allowed}")
    if spec.gt is not None and not value > spec.gt:
        raise InvalidParameter(name, value, f"must be greater than {spec.gt:g}")
    if spec.lo is not None and spec.hi is not None and not spec.lo <= value <= spec.hi:
        raise InvalidParameter(name, value, f"must be between {spec.lo:g} and {spec.hi:g}")
    if spec.lo is not None and not value >= spec.lo:
        raise InvalidParameter(name, value, f"must be at least {spec.lo:g}")
    if spec.hi is not None and not value <= spec.hi:
        raise InvalidParameter(name, value, f"must be at most {spec.hi:g}")


def check_value(name: str, spec: Spec, value: object) -> Any:
    """``value`` checked against ``spec`` and normalized (int -> float for FLOAT fields,
    str/list -> tuple for STRINGS); raises ``InvalidParameter(name, value, reason)``."""
    if spec.kind is Kind.INT:
        out_num: float = _check_int(name, value, spec)
    elif spec.kind is Kind.FLOAT:
        out_num = _check_float(name, value, spec)
    elif spec.kind in (Kind.BOOL, Kind.OPTIONAL_BOOL):
        if value is None and spec.kind is Kind.OPTIONAL_BOOL:
            return None
        if not isinstance(value, (bool, np.bool_)):
            raise _type_error(name, value, spec)
        return bool(value)
    else:
        return _check_strings(name, value, spec)
    _check_range(name, out_num, spec)
    return out_num


def coerce_text(name: str, spec: Spec, text: str) -> Any:
    """The typed value of a Modelfile ``PARAMETER name text`` line, range-checked.

    Integers are decimal (``40``, ``-1``); floats are decimal or exponent form (``0.9``, ``1e-3``);
    booleans are Go's ``strconv.ParseBool`` set (``true``/``false``/``1``/``0``/``t``/``f`` ...).
    A STRINGS option returns the single string (``PARAMETER stop`` lines repeat; the caller
    collects them into a list).
    """
    if not isinstance(text, str):
        raise InvalidParameter(name, text, "expected the text of a PARAMETER line")
    raw = text.strip()
    if spec.kind is Kind.INT:
        if not _INT_TEXT.fullmatch(raw):
            raise InvalidParameter(name, text, "expected an integer")
        value: object = int(raw)
    elif spec.kind is Kind.FLOAT:
        if not _FLOAT_TEXT.fullmatch(raw):
            raise InvalidParameter(name, text, "expected a number")
        value = float(raw)
    elif spec.kind in (Kind.BOOL, Kind.OPTIONAL_BOOL):
        if raw not in _BOOL_TEXT:
            raise InvalidParameter(name, text, "expected true or false")
        value = _BOOL_TEXT[raw]
    else:
        if not text:
            raise InvalidParameter(name, text, "an empty string is not allowed")
        check_value(name, spec, text)
        return text
    return check_value(name, spec, value)


def normalize_fields(obj: object) -> None:
    """Check and normalize every option field of frozen dataclass ``obj`` in place."""
    for name, spec in specs_of(type(obj)).items():
        value = check_value(name, spec, getattr(obj, name))
        object.__setattr__(obj, name, value)


def validate_fields(obj: object) -> None:
    """Check every option field of dataclass ``obj``; raise ``InvalidParameter`` on the first bad one."""
    for name, spec in specs_of(type(obj)).items():
        check_value(name, spec, getattr(obj, name))
