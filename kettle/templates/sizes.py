"""Upper bounds on the size of text before it is built: ``str()``, ``repr()``, JSON, ``pprint``.

The Jinja sandbox asks :func:`text_size` how long ``str(value)`` (or ``json.dumps`` /
``pprint.pformat`` of it) could be *before* converting, so a list holding the same 16 MB string
600 times is refused in microseconds instead of being turned into 10 GB of text. The bound is
never below the real length; it may be above it (quotes and escapes are counted generously).

Cost: one visit per distinct container (a container met again at the same depth and indentation is looked up,
so ``[s] * 1000`` costs one visit of ``s``), and the walk stops as soon as the total passes
``limit``. A cycle (a namespace holding itself) counts as a short ``[...]``.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, KeysView, Mapping, ValuesView
from typing import Any

from jinja2 import Undefined
from jinja2.utils import Namespace

_CONTROLS = dict.fromkeys(list(range(0x20)) + [0x7F])  # str.translate table deleting ASCII controls
_MAX_ESCAPE = 12  # the longest escape of one character: json's surrogate pair \\udXXX\\udXXX
_OTHER = 256  # repr of an object kettle does not know (a macro, a loop, a generator...)
_SCAN_NON_ASCII = 1 << 16  # non-ASCII strings up to this length have their escapes counted exactly
_TICK_EVERY = 1 << 14  # items between two calls of the caller's clock check


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


def text_size(value: Any, limit: int, indent: int = 1, tick: Callable[[], None] | None = None) -> int:
    """An upper bound on ``len(str(value))``, on ``json.dumps(value, indent=indent)`` and on
    ``pprint.pformat(value)``; ``limit + 1`` as soon as the bound passes ``limit``. ``tick`` is
    called every few thousand items (a deadline check may raise from it)."""
    if isinstance(value, str):
        return len(value)
    state = _Walk(limit, max(indent, 1), tick)
    try:
        return state.size(value, 0, top=True)
    except _Over:
        return limit + 1


class _Walk:
    __slots__ = ("limit", "indent", "total", "seen", "open", "tick", "items")

    def __init__(self, limit: int, indent: int, tick: Callable[[], None] | None) -> None:
        self.limit = limit
        self.indent = indent
        self.tick = tick
        self.items = 0
        self.total = 0  # what has been counted so far, to stop early
        self.seen: dict[tuple[int, int], int] = {}  # (id, depth) -> size of a finished container
        self.open: set[int] = set()  # containers being walked (a cycle prints as [...])

    def add(self, n: int) -> int:
        self.total += n
        if self.total > self.limit:
            raise _Over
        return n

    def size(self, v: Any, depth: int, offset: int = 0, top: bool = False) -> int:
        """``offset``: the column pformat indents ``v``'s lines to (it aligns under dict keys)."""
        if isinstance(v, str):
            n = len(v) if top else quoted_size(v)
            return self.add(n if type(v) is str else n + 10)  # Markup('...')
        if isinstance(v, (bytes, bytearray)):
            return self.add(4 * len(v) + 14)  # bytearray(b'\\xNN...')
        if isinstance(v, bool) or v is None:
            return self.add(5)
        if isinstance(v, Undefined):
            return self.add(0 if top else 9)  # prints as nothing; repr "Undefined"
        if isinstance(v, int):
            return self.add(int_digits(v))
        if isinstance(v, float):
            return self.add(24)
        if isinstance(v, Namespace):
            attrs = object.__getattribute__(v, "_Namespace__attrs")
            return self.add(12) + self.container(attrs, depth, offset + 12)
        if isinstance(v, (Mapping, list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            return self.container(v, depth, offset)
        return self.add(_OTHER)

    def container(self, v: Any, depth: int, offset: int) -> int:
        key = (id(v), depth, offset)
        if key in self.seen:
            return self.add(self.seen[key])
        if id(v) in self.open:
            return self.add(5)
        self.open.add(id(v))
        start = self.total
        per_item = 5 + (depth + 1) * self.indent + offset  # ", " / ": " / ",\n" plus the indentation
        self.add(16)  # brackets, and a type name such as frozenset(...) or dict_items(...)
        self.items += len(v)
        if self.tick is not None and self.items >= _TICK_EVERY:
            self.items = 0
            self.tick()
        inner = offset + (12 if isinstance(v, (set, frozenset)) else 1)
        if isinstance(v, Mapping):
            for k, x in v.items():
                self.add(per_item)
                width = self.size(k, depth + 1, inner)
                self.size(x, depth + 1, inner + width + 2)
        else:
            for x in v:
                self.add(per_item)
                self.size(x, depth + 1, inner)
        self.open.discard(id(v))
        size = self.total - start
        self.seen[key] = size
        self.total = start  # add() below counts it once
        return self.add(size)
