"""Functions a Go template may call: Go's builtins, and the table type for extra ones.

Each function is a :class:`Func`: a Python callable plus the kinds of its parameters, which
tell the executor how to turn template arguments into values the way Go's reflection does
(:class:`Param`). ``and`` and ``or`` are listed here but evaluated lazily by the executor (they
stop at the first decisive argument and return it, as Go does since 1.18). A function signals
a failure with :class:`FuncError`; the executor reports it as ``error calling NAME: ...`` with
the line of the call.

Go builtins left out (no ollama template uses them): ``call`` (there are no function values),
``html``, ``js``, ``urlquery``; a template naming them fails to parse.

Every function gets the render's output bound (``max_output_chars``) as its first argument;
the printing ones stop before their text passes it, so ``printf`` of 150 arguments of 16 MB
is refused after the first, not after building 2.4 GB.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kettle.templates.gotmpl.gofmt import sprint, sprintf, sprintln
from kettle.templates.gotmpl.strings import from_bytes, to_bytes
from kettle.templates.gotmpl.values import (
    NO_VALUE, GoList, GoMap, Nil, Ptr, Uint8, indirect, is_true, length, type_name,
)


class FuncError(Exception):
    """A function refused its arguments; the message is Go's."""


class Param(enum.Enum):
    VALUE = "reflect.Value"  # anything, a missing value included (Go's builtins take these)
    ANY = "interface {}"  # anything; a missing value arrives as nil
    STRING = "string"  # a string, strictly


@dataclass(frozen=True)
class Func:
    fn: Callable[..., Any]  # called as fn(limits_max_chars, *args)
    params: tuple[Param, ...]
    variadic: Param | None = None


def _iface(v: Any) -> Any:
    """Go's indirectInterface: a nil interface is no value at all."""
    return NO_VALUE if isinstance(v, Nil) and v.kind == "interface" else v


# -- comparison -----------------------------------------------------------------------------------
class _Kind(enum.Enum):
    INVALID = 0
    BOOL = 1
    INT = 2
    FLOAT = 3
    STRING = 4
    UINT = 5


def _basic_kind(v: Any) -> _Kind:
    if isinstance(v, bool):
        return _Kind.BOOL
    if isinstance(v, Uint8):
        return _Kind.UINT
    if isinstance(v, int):
        return _Kind.INT
    if isinstance(v, float):
        return _Kind.FLOAT
    if isinstance(v, str):
        return _Kind.STRING
    return _Kind.INVALID


_INT_KINDS = {_Kind.INT, _Kind.UINT}


def _is_nil(v: Any) -> bool:
    return v is NO_VALUE or isinstance(v, Nil) or (isinstance(v, (GoList, GoMap)) and v.nil)


def eq(_: int, arg1: Any, *rest: Any) -> bool:
    arg1 = _iface(arg1)
    if not rest:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in rest:
        arg = _iface(arg)
        k2 = _basic_kind(arg)
        if k1 != k2:
            if k1 in _INT_KINDS and k2 in _INT_KINDS:
                truth = int(arg1) == int(arg)
            elif arg1 is not NO_VALUE and arg is not NO_VALUE:
                raise FuncError("incompatible types for comparison")
            else:
                truth = False
        elif k1 is not _Kind.INVALID:
            truth = arg1 == arg
        elif _is_nil(arg1) or _is_nil(arg):
            truth = _is_nil(arg1) == _is_nil(arg)
        elif isinstance(arg1, Ptr) and isinstance(arg, Ptr):
            truth = arg1.target is arg.target
        else:
            raise FuncError(f"non-comparable type {type_name(arg)}")
        if truth:
            return True
    return False


def ne(max_chars: int, arg1: Any, arg2: Any) -> bool:
    return not eq(max_chars, arg1, arg2)


def lt(_: int, arg1: Any, arg2: Any) -> bool:
    arg1, arg2 = _iface(arg1), _iface(arg2)
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if _Kind.INVALID in (k1, k2):
        raise FuncError("invalid type for comparison")
    if k1 != k2 and not (k1 in _INT_KINDS and k2 in _INT_KINDS):
        raise FuncError("incompatible types for comparison")
    if k1 is _Kind.BOOL:
        raise FuncError("invalid type for comparison")
    if k1 is _Kind.STRING:
        return to_bytes(arg1) < to_bytes(arg2)
    return arg1 < arg2


def le(max_chars: int, arg1: Any, arg2: Any) -> bool:
    return lt(max_chars, arg1, arg2) or eq(max_chars, arg1, arg2)


def gt(max_chars: int, arg1: Any, arg2: Any) -> bool:
    return not le(max_chars, arg1, arg2)


def ge(max_chars: int, arg1: Any, arg2: Any) -> bool:
    return not lt(max_chars, arg1, arg2)


# -- collections ----------------------------------------------------------------------------------
def _index_arg(v: Any, cap: int) -> int:
    v = _iface(v)
    if v is NO_VALUE:
        raise FuncError("cannot index slice/array with nil")
    if isinstance(v, bool) or not isinstance(v, int):
        raise FuncError(f"cannot index slice/array with type {type_name(v)}")
    if v < 0 or v > cap:
        raise FuncError(f"index out of range: {v}")
    return int(v)


def index(_: int, item: Any, *indexes: Any) -> Any:
    item = _iface(item)
    if item is NO_VALUE:
        raise FuncError("index of untyped nil")
    for ix in indexes:
        if isinstance(item, Nil):
            raise FuncError("index of nil pointer")
        item = indirect(item)
        if isinstance(item, str):
            data = item if item.isascii() else to_bytes(item)  # no copy of an ASCII string per call
            i = _index_arg(ix, len(data))
            if i == len(data):
                raise FuncError(f"index out of range: {i}")
            item = Uint8(ord(data[i]) if isinstance(data, str) else data[i])
        elif isinstance(item, GoList):
            i = _index_arg(ix, len(item.items))
            if i == len(item.items):
                raise FuncError(f"index out of range: {i}")
            item = item.items[i]
        elif isinstance(item, GoMap):
            key = _iface(ix)
            if not isinstance(key, str):
                raise FuncError(f"value has type {type_name(key)}; should be string")
            item = item.items[key] if key in item.items else item.zero()
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def slice_(_: int, item: Any, *indexes: Any) -> Any:
    item = _iface(item)
    if item is NO_VALUE:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        data = to_bytes(item)
        size = len(data)
    elif isinstance(item, GoList):
        size = len(item.items)
    else:
        raise FuncError(f"can't slice item of type {type_name(item)}")
    idx = [0, size, size]
    for i, ix in enumerate(indexes):
        idx[i] = _index_arg(ix, size)
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if isinstance(item, str):
        return from_bytes(data[idx[0]:idx[1]])
    return GoList(item.items[idx[0]:idx[1]], item.type_name, False, item.stringer, item.marshal)


def len_(_: int, item: Any) -> int:
    if isinstance(item, Nil) or item is NO_VALUE:
        raise FuncError("len of nil pointer")
    n = length(indirect(item))
    if n is None:
        raise FuncError(f"len of type {type_name(item)}")
    return n


def not_(_: int, arg: Any) -> bool:
    return not is_true(_iface(arg))


# -- printing -------------------------------------------------------------------------------------
def print_(max_chars: int, *args: Any) -> str:
    try:
        return sprint(list(args), max_chars)
    except ValueError as exc:
        raise FuncError(str(exc)) from None


def println_(max_chars: int, *args: Any) -> str:
    try:
        return sprintln(list(args), max_chars)
    except ValueError as exc:
        raise FuncError(str(exc)) from None


def printf(max_chars: int, fmt: str, *args: Any) -> str:
    try:
        return sprintf(fmt, list(args), max_chars)
    except ValueError as exc:
        raise FuncError(str(exc)) from None


def _lazy(*_: Any) -> Any:  # pragma: no cover - and/or never reach their table entry
    raise AssertionError("and/or are evaluated by the executor")


V, A, S = Param.VALUE, Param.ANY, Param.STRING
BUILTINS: dict[str, Func] = {
    "and": Func(_lazy, (V,), V),
    "or": Func(_lazy, (V,), V),
    "not": Func(not_, (V,)),
    "len": Func(len_, (V,)),
    "index": Func(index, (V,), V),
    "slice": Func(slice_, (V,), V),
    "eq": Func(eq, (V,), V),
    "ne": Func(ne, (V, V)),
    "lt": Func(lt, (V, V)),
    "le": Func(le, (V, V)),
    "gt": Func(gt, (V, V)),
    "ge": Func(ge, (V, V)),
    "print": Func(print_, (), A),
    "println": Func(println_, (), A),
    "printf": Func(printf, (S,), A),
}
LAZY = frozenset({"and", "or"})

