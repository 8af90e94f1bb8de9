"""Go values as the executor sees them: a closed set of Python types, nothing else.

A template can only reach what these classes expose: the fields declared by a
:class:`StructType`, the entries of a :class:`GoMap`, the items of a :class:`GoList`. No Python
attribute or method of any object is ever looked up by name, which is what keeps a template
from touching the interpreter.

========================  ===========================================================
Go                        Python here
========================  ===========================================================
string, bool, int         ``str``, ``bool``, ``int``
float64                   ``float``
uint8 (a string's byte)   :class:`Uint8`
invalid reflect.Value     :data:`NO_VALUE` (a missing value; prints ``<no value>``)
nil interface / pointer   :class:`Nil`
*T                        :class:`Ptr` (to a :class:`GoStruct`)
struct                    :class:`GoStruct` of a :class:`StructType`
slice, map[string]T       :class:`GoList`, :class:`GoMap` (each may be a nil slice/map)
========================  ===========================================================

Some named Go types have a ``String()`` method (fmt prints them through it) or a
``MarshalJSON``; :class:`GoList` and :class:`GoMap` carry those as ``stringer`` and ``marshal``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kettle.templates.gotmpl.strings import byte_len


class _NoValue:
    """Go's invalid ``reflect.Value``: what a missing map key yields after a pipeline."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = _NoValue()


class Uint8(int):
    """A byte (what ``index`` yields on a string)."""


@dataclass(frozen=True, slots=True)
class Nil:
    """A nil interface (``kind='interface'``) or nil pointer (``kind='pointer'``) of ``type_name``."""

    type_name: str = "interface {}"
    kind: str = "interface"


NIL_ANY = Nil()


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # the Go field name a template uses
    json_name: str | None = None  # json tag name; None: the Go name
    omitempty: bool = False
    zero: Callable[[], Any] = field(default=lambda: "", compare=False)


@dataclass(frozen=True, slots=True)
class StructType:
    name: str  # Go's type name, for messages ("template.templateMessage")
    fields: tuple[FieldSpec, ...]

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def make(self, **values: Any) -> GoStruct:
        """A struct value; fields not given get their zero value."""
        unknown = set(values) - set(self.field_names())
        if unknown:
            raise KeyError(f"{self.name} has no field(s) {sorted(unknown)}")
        return GoStruct(self, {f.name: values[f.name] if f.name in values else f.zero() for f in self.fields})


@dataclass(eq=False, slots=True)
class GoStruct:
    type: StructType
    values: dict[str, Any]


@dataclass(eq=False, slots=True)
class Ptr:
    """A non-nil pointer to a struct (Go prints its address when it is nested)."""

    target: GoStruct

    @property
    def type_name(self) -> str:
        return "*" + self.target.type.name


@dataclass(eq=False, slots=True)
class GoList:
    items: list[Any]
    type_name: str = "[]interface {}"
    nil: bool = False
    stringer: Callable[[GoList], str] | None = None
    marshal: Callable[[GoList], str] | None = None


@dataclass(eq=False, slots=True)
class GoMap:
    items: dict[str, Any]
    type_name: str = "map[string]interface {}"
    nil: bool = False
    stringer: Callable[[GoMap], str] | None = None
    marshal: Callable[[GoMap], str] | None = None
    zero: Callable[[], Any] = field(default=lambda: NIL_ANY)  # what a missing key yields
    ordered: bool = False  # JSON keeps insertion order (ollama's ordered maps) instead of sorting

    def sorted_items(self) -> list[tuple[str, Any]]:
        """Go visits map keys in sorted (byte) order; code-point order is the same for UTF-8."""
        return sorted(self.items.items())


def nil_list(type_name: str = "[]interface {}", **kw: Any) -> GoList:
    return GoList([], type_name, nil=True, **kw)


def type_name(v: Any) -> str:
    """Go's name for the type of ``v`` (for error messages)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Uint8):
        return "uint8"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, GoStruct):
        return v.type.name
    if isinstance(v, (Ptr, GoList, GoMap, Nil)):
        return v.type_name
    return "invalid"


def length(v: Any) -> int | None:
    """Go's ``len`` of a string, slice or map; None for other kinds."""
    if isinstance(v, str):
        return byte_len(v)
    if isinstance(v, (GoList, GoMap)):
        return len(v.items)
    return None


def is_true(v: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, slices and maps are false."""
    if v is NO_VALUE or isinstance(v, Nil):
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0
    n = length(v)
    if n is not None:
        return n > 0
    return True  # structs and non-nil pointers


def indirect(v: Any) -> Any:
    """Through a pointer to the struct it points at."""
    return v.target if isinstance(v, Ptr) else v
