"""Upper bounds on the size of text before it is built: ``str()``, ``repr()``, JSON, ``pprint``.

The Jinja sandbox asks :func:`text_size` how long ``str(value)`` (or ``json.dumps`` /
``pprint.pformat`` of it) could be *before* converting, so a list holding the same 16 MB string
600 times is refused in microseconds instead of being turned into 10 GB of text. The bound is
never below the real length; it may be above it (quotes and escapes are counted generously).

Cost: one visit per distinct container (a container met again at the same depth is looked up,
so ``[s] * 1000`` costs one visit of ``s``), and the walk stops as soon as the total passes
``limit``. A cycle (a namespace holding itself) counts as a short ``[...]``.
"""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from typing import Any

from jinja2.utils import Namespace

_CONTROLS = dict.fromkeys(list(range(0x20)) + [0x7F])  # str.translate table deleting ASCII controls
_MAX_ESCAPE = 12  # the longest escape of one character: json's surrogate pair \\udXXX\\udXXX
_OTHER = 256  # repr of an object kettle does not know (a macro, a loop, a generator...)
_SCAN_NON_ASCII = 1 << 16  # non-ASCII strings up to this length have their escapes counted exactly


class _Over(Exception):
    pass


def quoted_size(s: str) -> int:
    """An upper bound on ``len(repr(s))`` and ``len(json.dumps(s))`` (either ``ensure_ascii``)."""
    n = len(s)
    extra = 2 + s.count("\\") + s.count('"') + s.count("'")
    if s.isascii():
        if s.isprintable():
            return n + extra
        return n + extra + 5 * (n - len(s.translate(_CONTROLS)))  # a control is \\u00XX at most
    if n <= _SCAN_NON_ASCII:
        return extra + sum(1 if c.isascii() and c.isprintable() else _MAX_ESCAPE for c in s)
    return _MAX_ESCAPE * n + extra


def int_digits(v: int) -> int:
    """An upper bound on ``len(str(v))``: decimal digits of ``v`` and its sign."""
    return v.bit_length() * 30103 // 100000 + 2


def text_size(value: Any, limit: int, indent: int = 1) -> int:
    """An upper bound on ``len(str(value))``, on ``json.dumps(value, indent=indent)`` and on
    ``pprint.pformat(value)``; ``limit + 1`` as soon as the bound passes ``limit``."""
    if isinstance(value, str):
        return len(value)
    state = _Walk(limit, max(indent, 1))
    try:
        return state.size(value, 0, top=True)
    except _Over:
        return limit + 1


class _Walk:
    __slots__ = ("limit", "indent", "total", "seen", "open")

    def __init__(self, limit: int, indent: int) -> None:
        self.limit = limit
        self.indent = indent
        self.total = 0  # what has been counted so far, to stop early
        self.seen: dict[tuple[int, int], int] = {}  # (id, depth) -> size of a finished container
        self.open: set[int] = set()  # containers being walked (a cycle prints as [...])

    def add(self, n: int) -> int:
        self.total += n
        if self.total > self.limit:
            raise _Over
        return n

    def size(self, v: Any, depth: int, top: bool = False) -> int:
        if isinstance(v, str):
            n = len(v) if top else quoted_size(v)
            return self.add(n if type(v) is str else n + 10)  # Markup('...')
        if isinstance(v, (bytes, bytearray)):
            return self.add(4 * len(v) + 14)  # bytearray(b'\\xNN...')
        if isinstance(v, bool) or v is None:
            return self.add(5)
        if isinstance(v, int):
            return self.add(int_digits(v))
        if isinstance(v, float):
            return self.add(24)
        if isinstance(v, Namespace):
            attrs = object.__getattribute__(v, "_Namespace__attrs")
            return self.add(12) + self.container(attrs, depth)
        if isinstance(v, (Mapping, list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            return self.container(v, depth)
        return self.add(_OTHER)

    def container(self, v: Any, depth: int) -> int:
        key = (id(v), depth)
        if key in self.seen:
            return self.add(self.seen[key])
        if id(v) in self.open:
            return self.add(5)
        self.open.add(id(v))
        start = self.total
        per_item = 5 + (depth + 1) * self.indent  # ", " / ": " / ",\n" plus the indentation
        self.add(16)  # brackets, and a type name such as frozenset(...) or dict_items(...)
        if isinstance(v, Mapping):
            for k, x in v.items():
                self.add(per_item)
                self.size(k, depth + 1)
                self.size(x, depth + 1)
        else:
            for x in v:
                self.add(per_item)
                self.size(x, depth + 1)
        self.open.discard(id(v))
        size = self.total - start
        self.seen[key] = size
        self.total = start  # add() below counts it once
        return self.add(size)
