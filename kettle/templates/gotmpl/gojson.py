"""Go's ``encoding/json.Marshal`` for template values (ollama's ``json`` helper uses it).

What makes it differ from Python's ``json.dumps``: no spaces; map keys sorted (unless the map is
one of ollama's insertion-ordered maps); struct fields in declaration order under their json tag
names, ``omitempty`` fields left out when false, 0, "", nil or empty; nil slices and maps are
``null``; ``<``, ``>``, ``&``, U+2028 and U+2029 are escaped as ``\\u003c`` and so on (Go
escapes HTML by default), backspace and form feed as ``\\b`` and ``\\f`` (Go 1.22 and later,
which ollama is built with), and invalid UTF-8 becomes ``\\ufffd``; float64 prints its shortest
digits without an exponent from 1e-6 up to 1e21 (``5`` not ``5.0``). NaN and infinities cannot
be encoded: :class:`UnsupportedValue` is raised (ollama's helper then yields an empty string).
"""

from __future__ import annotations

import math
from typing import Any

from kettle.templates.gotmpl.gofmt import format_float_json
from kettle.templates.gotmpl.values import NO_VALUE, GoList, GoMap, GoStruct, Nil, Ptr

_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
}


class UnsupportedValue(ValueError):
    """A value encoding/json refuses (NaN or an infinity)."""


_TABLE = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    **{c: "\\ufffd" for c in range(0xD800, 0xE000)},  # an invalid UTF-8 byte or a lone surrogate
    **{ord(k): v for k, v in _ESCAPES.items()},
}  # str.translate table: one C pass over the text


def quote_json(s: str) -> str:
    return '"' + s.translate(_TABLE) + '"'


def is_empty(v: Any) -> bool:
    """encoding/json's test for ``omitempty``."""
    if v is NO_VALUE or isinstance(v, Nil):
        return True
    if isinstance(v, (bool, int, float)):
        return v == 0
    if isinstance(v, str):
        return v == ""
    if isinstance(v, (GoList, GoMap)):
        return len(v.items) == 0
    return False


def marshal(v: Any) -> str:
    """The JSON text of ``v``; raises :class:`UnsupportedValue` for NaN and infinities."""
    if v is NO_VALUE or isinstance(v, Nil):
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise UnsupportedValue(f"json: unsupported value: {v}")
        return format_float_json(v)
    if isinstance(v, str):
        return quote_json(v)
    if isinstance(v, Ptr):
        return marshal(v.target)
    if isinstance(v, (GoList, GoMap)) and v.marshal is not None:
        return v.marshal(v)
    if isinstance(v, GoList):
        return "null" if v.nil else "[" + ",".join(marshal(x) for x in v.items) + "]"
    if isinstance(v, GoMap):
        if v.nil:
            return "null"
        items = v.items.items() if v.ordered else v.sorted_items()
        return "{" + ",".join(quote_json(k) + ":" + marshal(x) for k, x in items) + "}"
    if isinstance(v, GoStruct):
        parts = []
        for f in v.type.fields:
            value = v.values[f.name]
            if f.omitempty and is_empty(value):
                continue
            parts.append(quote_json(f.json_name or f.name) + ":" + marshal(value))
        return "{" + ",".join(parts) + "}"
    raise UnsupportedValue(f"json: unsupported type {type(v).__name__}")
