"""GGUF ``tokenizer.chat_template`` (Jinja) rendered in a bounded sandbox, the way HF does it.

The environment is the one Hugging Face ``transformers`` builds for chat templates: jinja2's
``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``{% generation %}`` block that just renders its body, the
globals ``raise_exception(msg)`` and ``strftime_now(fmt)``, and a ``tojson`` filter that is
``json.dumps`` (no HTML escaping, non-ASCII kept; ``indent``, ``separators``, ``sort_keys``,
``ensure_ascii`` as keywords). Templates see ``messages``, ``tools``, ``documents``,
``add_generation_prompt``, ``bos_token`` and ``eos_token``.

The sandbox keeps templates away from Python internals (``__class__``, ``__globals__``...).
On top of it, every render is charged to a :class:`~kettle.templates.limits.Budget`:

* every ``for`` loop step (the loop's iterable is wrapped when the template is compiled) and
  every call, filter and namespace assignment checks the deadline;
* output is counted as it streams out;
* the operations that can build a huge value from small ones are checked *before* they run:
  ``*``, ``+``, ``**``, ``%`` and ``~``, ``str.format``, the string methods and filters that take
  a width or a replacement (``ljust``, ``replace``, ``indent``, ``join``, ...), and any integer
  argument above the output limit is refused;
* the results of calls and filters are measured after they run.

Every failure is a :class:`TemplateError` (with the template line when jinja2 knows it).
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.runtime
import jinja2.sandbox
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from kettle.errors import TemplateError
from kettle.templates.limits import Budget, TemplateLimits

_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("kettle_jinja_budget", default=None)
_DIGITS = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%[-+ #0_^]*(\d*)(?:\.(\d*))?")  # width and precision of a % directive
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")  # the spec after ':' in a {} field
_MAX_JSON_INDENT = 64
_MAX_POWER_BITS = 1_000_000  # refuse an integer ** whose result would need more bits
TEMPLATE_VARIABLES = frozenset({"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"})
_WIDENING_FILTERS = frozenset({"indent", "replace", "join", "wordwrap", "format", "center", "slice", "batch"})


def _budget() -> Budget:
    budget = _BUDGET.get()
    if budget is None:  # a template object used outside render(): give it the default bounds
        budget = Budget(TemplateLimits())
        _BUDGET.set(budget)
    return budget


def _too_big(size: int, what: str) -> None:
    limit = _budget().limits.max_output_chars
    if size > limit:
        raise TemplateError(f"{what} would produce more than {limit} characters")


def _check_ints(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    limit = _budget().limits.max_output_chars
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > limit:
            raise TemplateError(f"argument {a} is too large")


def _check_format_string(fmt: str, style: str = "%") -> None:
    """Widths and precisions in a ``%``-style or ``{}``-style format are bounded like integers."""
    limit = _budget().limits.max_output_chars
    if style == "%":
        numbers = [n for m in _PERCENT_SPEC.finditer(fmt) for n in m.groups() if n]
    else:
        numbers = [n for m in _BRACE_SPEC.finditer(fmt) for n in _DIGITS.findall(m.group(1))]
    for n in numbers:
        if len(n) > 9 or int(n) > limit:
            raise TemplateError(f"format string field {n} is too large")


def _measure(result: Any, what: str) -> Any:
    if isinstance(result, (str, list, tuple)):
        _too_big(len(result), what)
    return result


def _precheck(name: str, s: Any, args: Sequence[Any]) -> None:
    """Size checks for the string operations whose result can dwarf their inputs."""
    if not isinstance(s, str):
        if name == "join" and args and isinstance(args[0], str) and isinstance(s, (list, tuple)):
            _too_big(len(args[0]) * len(s) + sum(len(str(x)) for x in s), "join")
        return
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _too_big(len(s) + s.count(args[0]) * len(args[1]), "replace")
    elif name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        _too_big(len(s) * max(size, 1), "expandtabs")
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        _too_big(len(s) * len(args[0]) + sum(len(str(x)) for x in args[0]), "join")
    elif name == "indent":
        width = args[0] if args else 4
        pad = len(width) if isinstance(width, str) else int(width)
        _too_big(len(s) + pad * (s.count("\n") + 1), "indent")
    elif name == "wordwrap":
        wrap = args[2] if len(args) > 2 and isinstance(args[2], str) else "\n"
        _too_big(len(s) * (1 + len(wrap)), "wordwrap")
    elif name == "format":
        _check_format_string(s, "%")


def _iterate(iterable: Any) -> Any:
    """Every loop of a compiled template iterates through this."""
    budget = _budget()
    for item in iterable:
        budget.spend_iteration()
        yield item


def _concat(*parts: Any) -> str:
    texts = [str(p) for p in parts]
    _too_big(sum(len(t) for t in texts), "'~'")
    return "".join(texts)


class _Guard(NodeTransformer):
    """Route every loop iterable and every ``~`` through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("kettle_iterate"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("kettle_concat"), list(node.nodes), [], None, None,
                          lineno=node.lineno)


class _Undefined(jinja2.Undefined):
    """Jinja's lenient undefined (prints as nothing), except that a value the sandbox refused
    (``x.__class__``) raises its SecurityError instead of printing as nothing."""

    __slots__ = ()

    def __str__(self) -> str:
        if self._undefined_exception is jinja2.sandbox.SecurityError:
            self._fail_with_undefined_error()
        return ""


class _BoundedNamespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        _budget().check_time()
        _measure(value, "namespace value")
        super().__setitem__(name, value)


class _Generation(jinja2.ext.Extension):
    """HF's ``{% generation %}...{% endgeneration %}`` marks assistant text; it renders as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    _check_format_string(fmt)
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    if isinstance(indent, int) and indent > _MAX_JSON_INDENT:
        raise TemplateError(f"tojson indent {indent} is too large")
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _guard_filter(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().check_time()
        _check_ints(args, kwargs)
        if name in _WIDENING_FILTERS:
            values = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.Environment,
                                                            jinja2.nodes.EvalContext))]
            if values:
                if name == "slice" and len(values) > 1 and isinstance(values[1], int):
                    if values[1] > _budget().limits.max_iterations:
                        raise TemplateError(f"slice count {values[1]} is too large")
                _precheck(name, values[0], values[1:])
        return _measure(fn(*args, **kwargs), f"filter {name}")
    return guarded


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, undefined=_Undefined,
                         extensions=[_Generation, jinja2.ext.loopcontrols])
        self.kettle_iterate = _iterate
        self.kettle_concat = _concat
        self.filters["tojson"] = _tojson
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["namespace"] = _BoundedNamespace

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().check_time()
        seq = (str, list, tuple)
        if operator == "*":
            if isinstance(left, seq) and isinstance(right, int):
                _too_big(len(left) * right, "'*'")
            elif isinstance(right, seq) and isinstance(left, int):
                _too_big(len(right) * left, "'*'")
        elif operator == "+" and isinstance(left, seq) and isinstance(right, seq):
            _too_big(len(left) + len(right), "'+'")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(abs(left).bit_length(), 1) * right > _MAX_POWER_BITS:
                raise TemplateError(f"{left} ** {right} is too large")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left)
            _check_ints(right if isinstance(right, tuple) else (right,), {})
        return _measure(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().check_time()
        _check_ints(args, kwargs)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, list, tuple)):
            _precheck(name, owner, args)
        return _measure(super().call(__context, __obj, *args, **kwargs), f"call of {name or 'a function'}")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_string(value.__self__, "{}")
        return wrapped


_ENV = _Environment()


def _line_of(exc: BaseException) -> int | None:
    """The template line of a runtime error (jinja2 maps its frames to ``<template>`` lines)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class JinjaChatTemplate:
    """A compiled Jinja chat template; :meth:`render` is thread-safe."""

    def __init__(self, source: str, limits: TemplateLimits) -> None:
        self.source = source
        self.limits = limits
        try:
            tree = _ENV.parse(source)
            self.variables = frozenset(jinja2.meta.find_undeclared_variables(tree))
            self.template = _ENV.from_string(_Guard().visit(tree))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"Jinja syntax error: {exc.message}", exc.lineno) from None
        except RecursionError:
            raise TemplateError("Jinja template is nested too deeply") from None

    def render(self, messages: Sequence[Mapping[str, Any]], *, system: str | None = None,
               tools: Sequence[Any] | None = None, add_generation_prompt: bool = True,
               bos_token: str = "", eos_token: str = "", response: str = "") -> str:
        """HF's ``apply_chat_template(..., tokenize=False)``. ``system`` is prepended unless the
        conversation starts with a system message; a non-empty ``response`` is appended as an
        assistant message and the prompt is cut right after its text (HF's
        ``continue_final_message``), so generation continues it."""
        msgs = [dict(m) for m in messages]
        if system and (not msgs or msgs[0].get("role") != "system"):
            msgs.insert(0, {"role": "system", "content": system})
        if response:
            msgs.append({"role": "assistant", "content": response})
            add_generation_prompt = False
        variables = {
            "messages": msgs, "tools": list(tools) if tools is not None else None, "documents": None,
            "add_generation_prompt": add_generation_prompt, "bos_token": bos_token, "eos_token": eos_token,
        }
        text = self._generate(variables)
        if response:
            tail = response if response in text else response.strip()
            if not tail or tail not in text:
                raise TemplateError("the template does not show the final assistant message, so it cannot be continued")
            text = text[:text.rindex(tail) + len(tail)]
        return text

    def _generate(self, variables: dict[str, Any]) -> str:
        budget = Budget(self.limits)
        token = _BUDGET.set(budget)
        chunks: list[str] = []
        try:
            for chunk in self.template.generate(**variables):
                budget.spend_output(len(chunk))
                budget.check_time()
                chunks.append(chunk)
        except TemplateError as exc:
            if exc.line is None and _line_of(exc) is not None:
                raise TemplateError(str(exc), _line_of(exc)) from None
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"Jinja template error: {exc.message or exc}", _line_of(exc)) from None
        except RecursionError:
            raise TemplateError("Jinja template recursed too deeply") from None
        except MemoryError:
            raise TemplateError("Jinja template ran out of memory") from None
        except Exception as exc:  # any Python error raised while the template runs
            raise TemplateError(f"Jinja template failed: {type(exc).__name__}: {exc}", _line_of(exc)) from None
        finally:
            _BUDGET.reset(token)
        return "".join(chunks)
