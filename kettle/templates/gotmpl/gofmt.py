"""Go's ``fmt`` for template values: ``%v`` printing, ``print``, ``println`` and ``printf``.

Printing follows ``fmt``'s rules: a value whose Go type has ``String()`` prints through it;
slices print ``[a b]``, maps ``map[k:v]`` with sorted keys, structs ``{a b}`` (``%+v``:
``{Name:a}``), nil interfaces and pointers ``<nil>``; float64 prints in ``%g`` form with the
shortest digits that round-trip (``1e+06``, ``0.1``). A pointer nested in a container prints as
an address in Go; kettle prints the fixed stand-in :data:`NESTED_POINTER` (addresses are not
reproducible anyway). ``printf`` supports the verbs ``v s d q t f F e E g G x X c %`` with
flags ``+ - # 0 space``, width and precision (``*`` included) and Go's error notation for bad
verbs, missing and extra arguments (``%!d(string=x)``, ``%!s(MISSING)``, ``%!(EXTRA ...)``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from kettle.templates.gotmpl.strings import to_bytes
from kettle.templates.gotmpl.values import (
    NO_VALUE, GoList, GoMap, GoStruct, Nil, Ptr, Uint8, type_name,
)

NESTED_POINTER = "0xc000010000"
_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.?)", re.S)


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``abs(x)`` and the decimal point position."""
    sign, digits, exp = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    dp = len(digits) + int(exp)
    if ds == "0":
        dp = 1
    return ds, dp


def _fmt_e(neg: bool, ds: str, dp: int, prec: int, e: str = "e") -> str:
    mant = ds[0] + ("." + ds[1:prec + 1].ljust(prec, "0") if prec > 0 else "")
    exp = dp - 1 if ds != "0" else 0
    return ("-" if neg else "") + mant + e + ("-" if exp < 0 else "+") + f"{abs(exp):02d}"


def _fmt_f(neg: bool, ds: str, dp: int, prec: int) -> str:
    if dp <= 0:
        whole, frac = "0", "0" * -dp + ds
    else:
        whole, frac = (ds + "0" * max(dp - len(ds), 0))[:dp], ds[dp:]
    frac = frac[:prec].ljust(prec, "0")
    return ("-" if neg else "") + whole + ("." + frac if prec > 0 else "")


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return None


def format_float_g(x: float) -> str:
    """``%v`` of a float64: strconv's 'g' with the shortest digits."""
    special = _special(x)
    if special:
        return special
    neg = math.copysign(1.0, x) < 0
    ds, dp = _shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:  # Go decides with precision 6 when the digits are shortest
        return _fmt_e(neg, ds, dp, len(ds) - 1)
    return _fmt_f(neg, ds, dp, max(len(ds) - dp, 0))


def format_float_json(x: float) -> str:
    """encoding/json's float64: plain digits, exponent form below 1e-6 and from 1e21."""
    neg = math.copysign(1.0, x) < 0
    ds, dp = _shortest_digits(x)
    if x != 0 and (abs(x) < 1e-6 or abs(x) >= 1e21):
        out = _fmt_e(neg, ds, dp, len(ds) - 1)
        return re.sub(r"e-0(\d)$", r"e-\1", out)
    return _fmt_f(neg, ds, dp, max(len(ds) - dp, 0))


def _format_float(x: float, verb: str, prec: int | None) -> str:
    special = _special(x)
    if special:
        return special
    if verb in "vgG" and prec is None:
        out = format_float_g(x)
        return out.upper() if verb == "G" else out
    p = 6 if prec is None else prec
    # Python rounds the exact binary value half-to-even, as strconv does
    return format(x, f".{p}{ {'F': 'f', 'v': 'g'}.get(verb, verb)}")


_ASCII_QUOTE = {
    **{c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]},
    **{ord(k): v for k, v in {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
                               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}.items()},
}  # str.translate table: what strconv.Quote escapes in ASCII text


def quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go literal, escaping what is not printable."""
    if s.isascii():
        return '"' + s.translate(_ASCII_QUOTE) + '"'  # one C pass; the loop below costs ~0.3 s per MB
    out = ['"']
    for ch in s:
        o = ord(ch)
        if o < 0x80:
            out.append(_ASCII_QUOTE.get(o, ch))
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")  # an invalid UTF-8 byte
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def format_value(v: Any, verb: str = "v", plus: bool = False, depth: int = 0) -> str:
    """``fmt.Sprintf("%v", v)`` (or another verb applied element by element)."""
    if v is NO_VALUE:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    if isinstance(v, Nil):
        if verb == "v" or (v.kind == "pointer" and verb in "sdxX"):
            return "<nil>"
        return f"%!{verb}(<nil>)"
    if isinstance(v, (GoList, GoMap)) and v.stringer is not None and verb in "vsq":
        text = v.stringer(v)
        return quote(text) if verb == "q" else text
    if isinstance(v, GoList):
        return "[" + " ".join(format_value(x, verb, plus, depth + 1) for x in v.items) + "]"
    if isinstance(v, GoMap):
        return "map[" + " ".join(
            f"{format_value(k, verb, plus, depth + 1)}:{format_value(x, verb, plus, depth + 1)}"
            for k, x in v.sorted_items()) + "]"
    if isinstance(v, Ptr):
        if depth > 0:
            return NESTED_POINTER
        return "&" + format_value(v.target, verb, plus, depth + 1)
    if isinstance(v, GoStruct):
        parts = []
        for f in v.type.fields:
            text = format_value(v.values[f.name], verb, plus, depth + 1)
            parts.append(f"{f.name}:{text}" if plus else text)
        return "{" + " ".join(parts) + "}"
    return format_scalar(v, verb, None, plus and verb != "v")  # %+v: field names, not signs


def format_scalar(v: Any, verb: str, prec: int | None, plus: bool = False) -> str:
    """A string, bool or number under one verb (Go's ``%!verb(type=value)`` when it does not fit)."""
    bad = f"%!{verb}({type_name(v)}={format_scalar(v, 'v', None)})" if verb != "v" else ""
    if isinstance(v, bool):
        return ("true" if v else "false") if verb in "vt" else bad
    if isinstance(v, int):
        if verb in "vd":
            return ("+" if plus and v >= 0 else "") + str(int(v))
        if verb in "xX":
            text = format(abs(int(v)), "x" if verb == "x" else "X")
            return ("-" if v < 0 else "") + text
        if verb == "c":
            return chr(v) if 0 <= v <= 0x10FFFF else "\ufffd"
        if verb == "q":
            return "'" + quote(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd")[1:-1].replace("'", "\\'") + "'"
        if verb == "s" and isinstance(v, Uint8):
            return bad
        return bad
    if isinstance(v, float):
        if verb in "vfFeEgG":
            text = _format_float(v, verb, prec)
            return ("+" + text) if plus and not text.startswith(("-", "+")) and text != "NaN" else text
        return bad
    if isinstance(v, str):
        if verb in "vs":
            return v
        if verb == "q":
            return quote(v)
        if verb in "xX":
            text = to_bytes(v).hex()
            return text.upper() if verb == "X" else text
        return bad
    return bad


class _Output:
    """The pieces of one print call, refused (ValueError) as soon as they pass ``max_chars``.

    ``least`` is asked before a piece is formatted: a lower bound of its length, so a string
    argument too long to fit is refused before any copy of it is made."""

    __slots__ = ("pieces", "size", "max_chars", "what")

    def __init__(self, max_chars: int | None, what: str) -> None:
        self.pieces: list[str] = []
        self.size = 0
        self.max_chars = max_chars
        self.what = what

    def least(self, n: int) -> None:
        if self.max_chars is not None and self.size + n > self.max_chars:
            raise ValueError(f"{self.what} would produce more than {self.max_chars} characters")

    def put(self, text: str) -> None:
        self.least(len(text))
        self.size += len(text)
        self.pieces.append(text)

    def text(self) -> str:
        return "".join(self.pieces)


def sprint(args: list[Any], max_chars: int | None = None) -> str:
    """fmt.Sprint: a space between operands when neither is a string.

    Raises ValueError when the text would pass ``max_chars``."""
    out = _Output(max_chars, "print")
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.put(" ")
        out.least(len(a) if isinstance(a, str) else 0)
        out.put(format_value(a))
    return out.text()


def sprintln(args: list[Any], max_chars: int | None = None) -> str:
    """fmt.Sprintln: operands separated by spaces, then a newline (ValueError past ``max_chars``)."""
    out = _Output(max_chars, "println")
    for i, a in enumerate(args):
        if i > 0:
            out.put(" ")
        out.least(len(a) if isinstance(a, str) else 0)
        out.put(format_value(a))
    out.put("\n")
    return out.text()


def _least_width(arg: Any, verb: str, prec: int | None) -> int:
    """A lower bound on the text of a string argument under ``verb`` (0 for other values)."""
    if not isinstance(arg, str):
        return 0
    if verb in "sv":
        return len(arg) if prec is None else min(prec, len(arg))
    if verb in "xX":
        return 2 * len(arg)
    return len(arg) + 2 if verb == "q" else len(arg)  # a bad verb prints %!d(string=...)


def _pad(text: str, width: int | None, left: bool, zero: bool) -> str:
    if width is None or len(text) >= width:
        return text
    fill = width - len(text)
    if left:
        return text + " " * fill
    if zero and text[:1] in "+-" and text[1:2].isdigit():
        return text[0] + "0" * fill + text[1:]
    return ("0" if zero else " ") * fill + text


def sprintf(fmt: str, args: list[Any], max_width: int) -> str:
    """fmt.Sprintf for the verbs listed in the module docstring.

    Raises ValueError when a width or precision is above ``max_width``, or when the text would
    pass ``max_width`` characters (checked before each piece is formatted, where it can be).
    """
    out = _Output(max_width, "printf")
    argi = 0
    pos = 0

    def take_int() -> int | None:
        nonlocal argi
        if argi >= len(args) or not isinstance(args[argi], int) or isinstance(args[argi], bool):
            argi += 1
            return None
        argi += 1
        return int(args[argi - 1])

    while True:
        i = fmt.find("%", pos)
        if i < 0:
            out.put(fmt[pos:])
            break
        out.put(fmt[pos:i])
        m = _VERB.match(fmt, i)
        assert m is not None  # the pattern matches any "%..."
        flags, width_s, prec_s, verb = m.groups()
        pos = m.end()
        width = prec = None
        if width_s == "*":
            width = take_int()
            if width is None:
                out.put("%!(BADWIDTH)")
        elif width_s:
            width = int(width_s)
        if prec_s == "*":
            prec = take_int()
            if prec is None:
                out.put("%!(BADPREC)")
        elif prec_s is not None:
            prec = int(prec_s or "0")
        for n in (width, prec):
            if n is not None and abs(n) > max_width:
                raise ValueError(f"printf width or precision {n} is too large")
        if width is not None and width < 0:
            flags, width = flags + "-", -width
        if verb == "":
            out.put("%!(NOVERB)")
            break
        if verb == "%":
            out.put("%")
            continue
        if argi >= len(args):
            out.put(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.least(max(_least_width(arg, verb, prec), width or 0))
        plus = "+" in flags
        if verb not in "vsdqtfFeEgGxXc":
            out.put(f"%!{verb}({type_name(arg)}={format_value(arg)})")
            continue
        if isinstance(arg, (GoList, GoMap, GoStruct, Ptr, Nil)) or arg is NO_VALUE:
            text = format_value(arg, verb, plus)
        elif isinstance(arg, str) and prec is not None and verb in "sv":
            text = arg[:prec]
        else:
            text = format_scalar(arg, verb, prec, plus and verb != "v")
            if " " in flags and not plus and isinstance(arg, (int, float)) and not isinstance(arg, bool) \
                    and text[:1] not in "-+":
                text = " " + text
        out.put(_pad(text, width, "-" in flags, "0" in flags and isinstance(arg, (int, float))))
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is NO_VALUE else f"{type_name(a)}={format_value(a)}" for a in args[argi:])
        out.put(f"%!(EXTRA {extra})")
    return out.text()
