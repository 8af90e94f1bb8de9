"""GGUF ``tokenizer.chat_template`` (Jinja) rendered in a bounded sandbox, the way HF does it.

The environment is the one Hugging Face ``transformers`` builds for chat templates: jinja2's
``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``{% generation %}`` block that just renders its body, the
globals ``raise_exception(msg)`` and ``strftime_now(fmt)``, and a ``tojson`` filter that is
``json.dumps`` (no HTML escaping, non-ASCII kept; ``indent``, ``separators``, ``sort_keys``,
``ensure_ascii`` as keywords). Templates see ``messages``, ``tools``, ``documents``,
``add_generation_prompt``, ``bos_token`` and ``eos_token``.

The sandbox keeps templates away from Python internals (``__class__``, ``__globals__``...).
On top of it, every render is charged to a :class:`~kettle.templates.limits.Budget`
(see :mod:`kettle.templates.jinja_bounds` for the rules):

* every ``for`` loop step (the loop's iterable is wrapped when the template is compiled) and
  every call, filter, operator and namespace assignment checks the deadline;
* output is counted as it streams out;
* what an operation would build is measured *before* it runs: the text of ``{{ value }}``, ``~``,
  ``%``/``format``, ``join``, ``tojson``, ``pprint``, ``string`` and the other text filters (an
  upper bound found without building it), the items of ``*`` and ``+`` on lists, ``list``,
  ``batch``, ``split``; integer operators by the size of their operands; the buffers of macros
  and blocks before they are joined;
* the results of calls, filters, operators and slices are measured after they run, and what
  all of them built is added up against ``max_built_bytes``;
* ``sum`` adds numbers only; ``lipsum`` is capped.

Every failure is a :class:`TemplateError` (with the template line when jinja2 knows it).
"""

from __future__ import annotations

import functools
import json
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
from jinja2.utils import Namespace, pass_environment
from jinja2.visitor import NodeTransformer

from kettle.errors import TemplateError
from kettle.templates import jinja_bounds as bounds
from kettle.templates.limits import Budget, TemplateLimits
from kettle.thinking import Think

TEMPLATE_VARIABLES = frozenset({"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"})
_BUDGET = bounds.BUDGET
_CONTEXTS = (jinja2.runtime.Context, jinja2.Environment, jinja2.nodes.EvalContext)


def _iterate(iterable: Any) -> Any:
    """Every loop of a compiled template iterates through this."""
    budget = bounds.budget()
    for item in iterable:
        budget.spend_iteration()
        yield item


def _concat(*parts: Any) -> str:
    return bounds.concat(parts)


def _slice(value: Any) -> Any:
    """``x[a:b]`` is a copy (jinja2 compiles it to a plain subscript): it counts as built."""
    return bounds.measure(value, "a slice")


class _Guard(NodeTransformer):
    """Route every loop iterable, every ``~`` and every slice through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("kettle_iterate"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        node = self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):  # x[i] goes through environment.getitem
            return node
        return nodes.Call(nodes.EnvironmentAttribute("kettle_slice"), [node], [], None, None, lineno=node.lineno)

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
        bounds.budget().check_time()
        bounds.measure(value, "namespace value", charged=False)
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
    bounds.format_widths(fmt)
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    bounds.tojson_size(value, indent, separators)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _pprint(value: Any) -> str:
    from pprint import pformat

    bounds.pprint_size(value)
    return pformat(value)


def _environment_of(lead: Sequence[Any]) -> Any:
    for a in lead:
        if isinstance(a, jinja2.Environment):
            return a
        return a.environment  # a Context or an EvalContext
    return _ENV


def _guard_filter(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        bounds.budget().check_time()
        lead = 0
        while lead < len(args) and isinstance(args[lead], _CONTEXTS):
            lead += 1
        values = list(args[lead:])
        bounds.check_ints(values[1:], kwargs)  # widths and counts; the value itself may be any number
        value = values[0] if values else None
        bounds.precheck_filter(name, _environment_of(args[:lead]), values, kwargs)
        return bounds.finish_filter(name, fn(*args[:lead], *values, **kwargs), value)
    return guarded


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, undefined=_Undefined,
                         extensions=[_Generation, jinja2.ext.loopcontrols], finalize=bounds.finalize)
        self.kettle_iterate = _iterate
        self.kettle_concat = _concat
        self.kettle_slice = _slice
        self.concat = bounds.join_buffer  # the generated code joins macro and block buffers with it
        self.filters["tojson"] = _tojson
        self.filters["pprint"] = _pprint
        self.filters["sum"] = pass_environment(bounds.bounded_sum)
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["namespace"] = _BoundedNamespace
        self.globals["lipsum"] = bounds.bounded_lipsum

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        bounds.budget().check_time()
        bounds.check_binop(operator, left, right)
        return bounds.measure(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        bounds.budget().check_time()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, bytes, bytearray, list, tuple, int)):
            bounds.check_ints(args, kwargs)  # widths and counts of 'x'.center(n), (1).to_bytes(n)...
        if isinstance(owner, (str, bytes)):
            args = bounds.precheck_method(name, owner, args)
        result = super().call(__context, __obj, *args, **kwargs)
        # a macro's text was charged when its buffer was joined; dict.get(), loop.cycle() and the
        # like hand back a value that exists already
        charged = not isinstance(__obj, jinja2.runtime.Macro) and result is not owner and \
            (not isinstance(owner, Mapping) or name == "copy") and not any(result is a for a in args)
        return bounds.measure(result, f"call of {name or 'a function'}", charged)



    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        bounds.format_widths(value.__self__, "{}")
        return bounds.wrap_format(wrapped, value.__self__, value.__name__ == "format_map")


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
        except (ValueError, OverflowError) as exc:  # e.g. an integer literal of 5000 digits
            raise TemplateError(f"Jinja template has a literal Python refuses: {exc}") from None

    def render(self, messages: Sequence[Mapping[str, Any]], *, system: str | None = None,
               tools: Sequence[Any] | None = None, add_generation_prompt: bool = True,
               bos_token: str = "", eos_token: str = "", response: str = "", think: Think | None = None) -> str:
        """HF's ``apply_chat_template(..., tokenize=False)``. ``system`` is prepended unless the
        conversation starts with a system message; a non-empty ``response`` is appended as an
        assistant message and the prompt is cut right after its text (HF's
        ``continue_final_message``), so generation continues it. ``think`` (when set) becomes
        ``enable_thinking`` (qwen3's name) and, with a level, ``reasoning_effort`` (gpt-oss's)."""
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
        if think is not None:
            variables["enable_thinking"] = think.enabled
            if think.level:
                variables["reasoning_effort"] = think.level
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
