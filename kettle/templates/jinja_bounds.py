"""The checks the Jinja sandbox runs before and after every operation of a render.

A render's :class:`~kettle.templates.limits.Budget` lives in a context variable while it runs.
The rule for every operation that can build a big value out of small ones is: *measure what it
would build first*, refuse when that is over the bound, build, measure the result, and charge it
to the budget's ``max_built_bytes``. Sizes of text come from :func:`kettle.templates.sizes.text_size`
(an upper bound found without building the text); sizes of lists are item counts.

* strings: at most ``max_output_chars`` characters each; lists, tuples, dicts: at most
  ``max_items`` items each;
* integers: operands and results of at most :data:`MAX_INT_BITS` bits, so that no single ``*``,
  ``//``, ``%`` or ``**`` runs long while holding the interpreter lock;
* ``sum`` adds numbers only, and at most :data:`MAX_SUM_WORK` bit-operations of them;
* ``lipsum`` makes at most :data:`MAX_LIPSUM_WORDS` words.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.runtime
from jinja2.filters import make_attrgetter
from jinja2.utils import generate_lorem_ipsum

from kettle.errors import TemplateError
from kettle.templates.limits import DEFAULT_LIMITS, Budget
from kettle.templates.sizes import quoted_size, text_size

BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("kettle_jinja_budget", default=None)
MAX_INT_BITS = 1 << 16  # 65536 bits, 19729 decimal digits: far beyond any count or id a template needs
MAX_SUM_WORK = 1 << 26  # items times bits of the largest one, for |sum
MAX_LIPSUM_WORDS = 10_000
MAX_JSON_INDENT = 64
MAX_JSON_SEPARATORS = 16  # characters of tojson's separators=(item, key)
_DIGITS = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%[-+ #0_^]*(\d*)(?:\.(\d*))?")  # width and precision of a % directive
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")  # the spec after ':' in a {} field
_NESTED_BRACE = re.compile(r"\{[^{}]*\{")  # a {} field whose spec takes a width from the arguments
_QUOTING = re.compile(r"%[^a-zA-Z%]*[ra]|![ra]")  # %r, %a, !r, !a: repr() of the argument
_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_CONTEXTS = (jinja2.runtime.Context, jinja2.Environment, jinja2.nodes.EvalContext)

# filters that hand back (a part of) their input or an argument instead of building a value
_PICKING_FILTERS = frozenset({"attr", "d", "default", "first", "last", "max", "min", "random", "length", "count"})
# filters that run through their whole input: a lazy input is collected (and counted) first
_CONSUMING_FILTERS = frozenset({"list", "join", "sort", "unique", "reverse", "groupby", "dictsort", "batch",
                                "slice", "min", "max"})
# filters that turn their input into text: the text is measured first, times a factor for escapes
# (or, for title, wordwrap and urlize, which run Python code per word: for their time)
_TEXT_FILTERS = {
    "capitalize": 1, "center": 1, "lower": 1, "upper": 1, "trim": 1, "truncate": 1, "string": 1,
    "safe": 1, "striptags": 1, "wordcount": 1, "indent": 1, "replace": 1,
    "e": 5, "escape": 5, "forceescape": 5, "xmlattr": 6, "urlencode": 12, "title": 8, "wordwrap": 8, "urlize": 8,
}


def _tick() -> None:
    current = BUDGET.get()
    if current is not None:
        current.check_time()


def _size(value: Any, limit: int, indent: int = 1) -> int:
    return text_size(value, limit, indent, _tick)


def budget() -> Budget:
    """The running render's budget (a fresh default one for a template used outside render())."""
    current = BUDGET.get()
    return current if current is not None else Budget(DEFAULT_LIMITS)


def charge(n: int) -> None:
    current = BUDGET.get()
    if current is not None and n:
        current.spend_built(n)


def too_big(size: int, what: str) -> None:
    limit = budget().limits.max_output_chars
    if size > limit:
        raise TemplateError(f"{what} would produce more than {limit} characters")


def too_many(count: int, what: str) -> None:
    limit = budget().limits.max_items
    if count > limit:
        raise TemplateError(f"{what} would hold more than {limit} items (max_items)")


def _int_too_big(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateError(f"{what} would be an integer of {bits} bits; integers over {MAX_INT_BITS} bits"
                            " are refused")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_ints(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    limit = budget().limits.max_output_chars
    for a in list(args) + list(kwargs.values()):
        if _is_int(a) and abs(a) > limit:
            if a.bit_length() > 64:
                raise TemplateError(f"an argument of {a.bit_length()} bits is too large")
            raise TemplateError(f"argument {a} is too large")


def measure(result: Any, what: str, charged: bool = True) -> Any:
    """Check a value just built against the bounds (and charge it to the work budget)."""
    if isinstance(result, _TEXT):
        too_big(len(result), what)
        n = len(result)
    elif isinstance(result, _CONTAINERS):
        too_many(len(result), what)
        n = len(result) * (8 if isinstance(result, (list, tuple)) else 64)  # pointers; hash table entries
    else:
        if _is_int(result):
            _int_too_big(result.bit_length(), what)
        return result
    if charged:
        charge(n)
    return result


def collect(iterable: Any, what: str) -> Any:
    """A lazy iterable as a list, refused past ``max_items``; a sized one is checked and kept."""
    if isinstance(iterable, str):
        return iterable  # bounded as text, by max_output_chars
    if isinstance(iterable, Sized) and not hasattr(iterable, "__next__"):
        too_many(len(iterable), what)
        return iterable
    b = budget()
    items = []
    for item in iterable:
        items.append(item)
        if len(items) > b.limits.max_items:
            too_many(len(items), what)
        b.spend_iteration()
    return items


def sum_sizes(items: Iterable[Any], limit: int) -> int:
    """An upper bound on the text of all ``items``, stopping once over ``limit``."""
    if isinstance(items, str):
        return len(items)
    total = 0
    known: dict[int, int] = {}
    for x in items:
        size = known.get(id(x))
        if size is None:
            size = known[id(x)] = _size(x, limit)
        total += size
        if total > limit:
            break
    return total


# -- operators ------------------------------------------------------------------------------------
def check_binop(operator: str, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = max(abs(left).bit_length(), abs(right).bit_length())
        _int_too_big(bits, f"an operand of '{operator}'")
        if operator == "*":
            _int_too_big(abs(left).bit_length() + abs(right).bit_length(), f"{operator!r}")
        elif operator == "**" and right > 0:
            _int_too_big(max(abs(left).bit_length(), 1) * right, f"{left} ** {right}")
        return
    if operator == "*":
        seq, n = (left, right) if _is_int(right) else (right, left)
        if _is_int(n):
            if isinstance(seq, _TEXT):
                too_big(len(seq) * n, "'*'")
            elif isinstance(seq, (list, tuple)):
                too_many(len(seq) * n, "'*'")
    elif operator == "+" and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        too_many(len(left) + len(right), "'+'")
    elif operator == "+" and isinstance(left, _TEXT) and isinstance(right, _TEXT):
        too_big(len(left) + len(right), "'+'")
    elif operator == "%" and isinstance(left, str):
        values = list(right.values()) if isinstance(right, Mapping) else \
            list(right) if isinstance(right, tuple) else [right]
        check_format(left, "%", values)


def concat(parts: Sequence[Any]) -> str:
    """``a ~ b ~ c``: measured before any part is turned into text."""
    limit = budget().limits.max_output_chars
    total = sum_sizes(parts, limit)
    too_big(total, "'~'")
    charge(total)
    return "".join([str(p) for p in parts])


def join_buffer(parts: Iterable[str]) -> str:
    """The environment's ``concat``: the output of a macro, a ``{% set %}`` or ``{% filter %}`` block."""
    if BUDGET.get() is not None:
        parts = parts if isinstance(parts, list) else list(parts)
        total = sum(map(len, parts))
        too_big(total, "a macro or block")
        charge(total)
    return "".join(parts)


def finalize(value: Any) -> Any:
    """Every ``{{ value }}`` passes here before ``str()``: a value whose text would be too big stops."""
    if type(value) is str:
        return value
    current = BUDGET.get()
    if current is None:  # jinja2 folding a constant at compile time
        return value
    size = _size(value, current.limits.max_output_chars)
    too_big(size, "printing a value")
    charge(size)
    return value


# -- formatting -----------------------------------------------------------------------------------
def format_widths(fmt: str, style: str = "%") -> int:
    """The largest width or precision in a ``%``-style or ``{}``-style format (each bounded)."""
    limit = budget().limits.max_output_chars
    if style == "%":
        numbers = [n for m in _PERCENT_SPEC.finditer(fmt) for n in m.groups() if n]
    else:
        numbers = [n for m in _BRACE_SPEC.finditer(fmt) for n in _DIGITS.findall(m.group(1))]
    for n in numbers:
        if len(n) > 9 or int(n) > limit:
            raise TemplateError(f"format string field {n} is too large")
    return max((int(n) for n in numbers), default=0)


def _arg_size(v: Any, limit: int, quoting: bool) -> int:
    if _is_int(v):
        return v.bit_length() + 3  # binary digits, sign and prefix: the longest base
    if isinstance(v, str):
        return quoted_size(v) if quoting else len(v)
    return _size(v, limit)


def check_format(fmt: str, style: str, values: Sequence[Any]) -> None:
    """``fmt % values`` or ``fmt.format(*values)``: at most (fields) x (the largest argument or width)."""
    limit = budget().limits.max_output_chars
    width = format_widths(fmt, style)
    if (style == "%" and "*" in fmt) or (style == "{}" and _NESTED_BRACE.search(fmt)):
        width = max([width] + [abs(v) for v in values if _is_int(v)])  # a width taken from the arguments
        too_big(width, "a format width")
    fields = fmt.count("%") if style == "%" else fmt.count("{")
    if not fields:
        return
    quoting = _QUOTING.search(fmt) is not None
    biggest = max((_arg_size(v, limit, quoting) for v in values), default=0)
    too_big(len(fmt) + fields * max(biggest, width, 1), "formatting")


def wrap_format(wrapped: Any, fmt: str, is_map: bool) -> Any:
    """jinja2's sandboxed ``str.format`` / ``str.format_map``, measured first."""
    def bounded(*args: Any, **kwargs: Any) -> str:
        values = list(args) + list(kwargs.values())
        if is_map and len(args) == 1 and isinstance(args[0], Mapping):
            values = list(args[0].values())
        check_format(fmt, "{}", values)
        return wrapped(*args, **kwargs)
    bounded.__name__ = "format_map" if is_map else "format"
    return bounded


# -- methods of strings ---------------------------------------------------------------------------
def precheck_method(name: str, s: str | bytes, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Size checks for the string methods whose result can dwarf their inputs (the arguments,
    a lazy iterable collected)."""
    limit = budget().limits.max_output_chars
    if name == "replace" and len(args) >= 2 and isinstance(args[0], _TEXT) and isinstance(args[1], _TEXT):
        too_big(len(s) + (s.count(args[0]) + 1) * len(args[1]), "replace")
    elif name == "expandtabs":
        size = args[0] if args and _is_int(args[0]) else 8
        too_big(len(s) * max(size, 1), "expandtabs")
    elif name == "join" and args:
        items = collect(args[0], "join")
        too_big(len(s) * max(len(items) - 1, 0) + sum_sizes(items, limit), "join")
        args = (items,) + args[1:]
    elif name == "translate" and args and isinstance(args[0], Mapping):
        widest = max((len(v) if isinstance(v, str) else 1 for v in args[0].values()), default=1)
        too_big(len(s) * max(widest, 1), "translate")
    elif name in ("split", "rsplit") and args and isinstance(args[0], _TEXT) and args[0]:
        parts = s.count(args[0]) + 1
        if len(args) > 1 and _is_int(args[1]) and args[1] >= 0:
            parts = min(parts, args[1] + 1)
        too_many(parts, name)
    return args


# -- filters --------------------------------------------------------------------------------------
def _escaped_size(v: Any, factor: int, limit: int) -> int:
    if isinstance(v, str) and factor == 5:  # markupsafe: & < > ' " become &amp; &lt; &gt; &#39; &#34;
        return len(v) + 4 * sum(v.count(c) for c in "&<>'\"")
    return _size(v, limit) * factor


def precheck_filter(name: str, env: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Measure what filter ``name`` would build from ``args`` (its value first), in place: a lazy
    value is collected into a list first, a ``join(attribute=...)`` is resolved first."""
    b = budget()
    limit = b.limits.max_output_chars
    if not args:
        return
    if name == "list" and isinstance(args[0], str):
        too_many(len(args[0]), "filter list")
    if name in _CONSUMING_FILTERS:
        args[0] = collect(args[0], f"filter {name}")
    value = args[0]
    if name in _TEXT_FILTERS:
        too_big(_escaped_size(value, _TEXT_FILTERS[name], limit), f"filter {name}")
    if name == "join":
        attribute = args[2] if len(args) > 2 else kwargs.pop("attribute", None)
        if attribute is not None:
            args[0] = value = [make_attrgetter(env, attribute)(x) for x in value]
            del args[2:]
        sep = args[1] if len(args) > 1 else kwargs.get("d", "")
        too_big(_size(sep, limit) * max(len(value) - 1, 0) + sum_sizes(value, limit), "filter join")
    elif name == "format" and isinstance(value, str):
        check_format(value, "%", list(kwargs.values()) or args[1:])
    elif name == "replace" and len(args) >= 3:
        old, new = args[1], args[2]
        for part in (old, new):
            too_big(_size(part, limit), "filter replace")
        size = len(value) if isinstance(value, str) else _size(value, limit)
        count = value.count(old) + 1 if isinstance(value, str) and isinstance(old, str) else size + 1
        too_big(size + count * _size(new, limit), "filter replace")
    elif name == "indent" and isinstance(value, str):
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        pad = len(width) if isinstance(width, str) else int(width)
        too_big(len(value) + pad * (value.count("\n") + 1), "filter indent")
    elif name == "wordwrap" and isinstance(value, str):
        wrap = args[3] if len(args) > 3 and isinstance(args[3], str) else kwargs.get("wrapstring") or "\n"
        too_big(len(value) * (1 + len(str(wrap))), "filter wordwrap")
    elif name in ("batch", "slice") and len(args) > 1 and _is_int(args[1]):
        too_many(args[1], f"filter {name}")


def finish_filter(name: str, result: Any, value: Any) -> Any:
    return measure(result, f"filter {name}", charged=name not in _PICKING_FILTERS and result is not value)


def tojson_size(value: Any, indent: Any, separators: Any) -> None:
    if _is_int(indent) and indent > MAX_JSON_INDENT:
        raise TemplateError(f"tojson indent {indent} is too large")
    if separators is not None and sum(len(str(s)) for s in separators) > MAX_JSON_SEPARATORS:
        raise TemplateError(f"tojson separators are limited to {MAX_JSON_SEPARATORS} characters")
    width = len(indent) if isinstance(indent, str) else indent if _is_int(indent) else 1
    too_big(_size((value,), budget().limits.max_output_chars, max(width, 1) + 2), "filter tojson")


def pprint_size(value: Any) -> None:
    too_big(_size((value,), budget().limits.max_output_chars), "filter pprint")


def bounded_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """jinja2's ``sum`` filter, for numbers only and bounded work (not list or tuple concatenation)."""
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise TemplateError("sum adds numbers only: start must be a number")
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    items = collect(iterable, "sum")
    bits = abs(start).bit_length() if _is_int(start) else 0
    for x in items:
        if _is_int(x):
            bits = max(bits, x.bit_length())
        elif not isinstance(x, (float, bool)):
            raise TemplateError(f"sum adds numbers only, not {type(x).__name__}")
    if len(items) * max(bits, 1) > MAX_SUM_WORK:
        raise TemplateError(f"sum of {len(items)} integers of up to {bits} bits is too much work")
    return sum(items, start)


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """jinja2's ``lipsum``, for at most :data:`MAX_LIPSUM_WORDS` words."""
    if not (_is_int(n) and _is_int(max)) or n * max > MAX_LIPSUM_WORDS:
        raise TemplateError(f"lipsum({n}, max={max}) would make more than {MAX_LIPSUM_WORDS} words")
    return generate_lorem_ipsum(n, html, min, max)

