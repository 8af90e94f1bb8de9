"""Run a parsed Go template over a value: Go's ``text/template`` execution rules.

What matches Go (``exec.go``): dot and ``$``; variables scoped to their control structure and
reset per ``range`` iteration; ``if``/``with``/``range`` truth; ``range`` over slices and maps
(keys in sorted order) with ``else`` when empty; ``break``/``continue``; field chains through
structs, pointers and maps (a missing map key yields the map's zero value, ollama's
``missingkey=zero``); a nil interface met mid-chain is an error, a missing value is silently
empty; functions with Go's argument conversions; printing through ``fmt`` (``<no value>`` for
a missing value).

What kettle adds: the root map may list the only keys a template can name (others are errors,
not ``<no value>``), and every render is charged to a :class:`~kettle.templates.limits.Budget`
(output size, loop iterations, time). Errors are :class:`TemplateError` with the line.
"""

from __future__ import annotations

from typing import Any

from kettle.errors import TemplateError
from kettle.templates.gotmpl.funcs import LAZY, Func, FuncError, Param
from kettle.templates.gotmpl.gofmt import format_value
from kettle.templates.gotmpl.nodes import (
    ActionNode, BoolNode, BreakNode, ChainNode, CommandNode, CommentNode, ContinueNode, DotNode,
    FieldNode, IdentifierNode, IfNode, ListNode, NilNode, Node, NumberNode, PipeNode, RangeNode,
    StringNode, TextNode, VariableNode, WithNode,
)
from kettle.templates.gotmpl.values import (
    NIL_ANY, NO_VALUE, GoList, GoMap, GoStruct, Nil, indirect, is_true, type_name,
)
from kettle.templates.limits import Budget


class _Missing:
    """Go's ``missingVal``: no piped-in value (distinct from a missing *field*)."""


MISSING = _Missing()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class StrictRoot(GoMap):
    """The data map of a render: only ``known`` keys may be named; absent known keys are nil."""

    __slots__ = ("known",)

    def __init__(self, items: dict[str, Any], known: frozenset[str]) -> None:
        super().__init__(items)
        self.known = known


class Executor:
    def __init__(self, funcs: dict[str, Func], budget: Budget) -> None:
        self.funcs = funcs
        self.budget = budget
        self.out: list[str] = []
        self.vars: list[list[Any]] = []  # [name, value] pairs; index 0 is "$"

    def execute(self, tree: ListNode, data: Any) -> str:
        self.vars = [["$", data]]
        try:
            self.walk(data, tree)
        except RecursionError:
            raise TemplateError("template evaluation is nested too deeply") from None
        return "".join(self.out)

    # -- helpers -------------------------------------------------------------------------------
    def write(self, text: str, line: int) -> None:
        self.budget.spend_output(len(text), line)
        self.out.append(text)

    def var_value(self, name: str, line: int) -> Any:
        for pair in reversed(self.vars):
            if pair[0] == name:
                return pair[1]
        raise TemplateError(f"undefined variable: {name}", line)

    def set_var(self, name: str, value: Any, line: int) -> None:
        for pair in reversed(self.vars):
            if pair[0] == name:
                pair[1] = value
                return
        raise TemplateError(f"undefined variable: {name}", line)

    # -- statements ----------------------------------------------------------------------------
    def walk(self, dot: Any, node: Node) -> None:
        if isinstance(node, TextNode):
            self.write(node.text, node.line)
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(value, node.line)
        elif isinstance(node, (IfNode, WithNode)):
            mark = len(self.vars)
            try:
                value = self.eval_pipeline(dot, node.pipe)
                if is_true(value):
                    self.walk(value if isinstance(node, WithNode) else dot, node.list)
                elif node.else_list is not None:
                    self.walk(dot, node.else_list)
            finally:
                del self.vars[mark:]
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        elif not isinstance(node, CommentNode):
            raise TemplateError(f"unknown node {node!r}", getattr(node, "line", None))

    def walk_range(self, dot: Any, node: RangeNode) -> None:
        outer = len(self.vars)
        try:
            value = indirect(self.eval_pipeline(dot, node.pipe))
            if isinstance(value, GoList):
                pairs: Any = enumerate(value.items)
            elif isinstance(value, GoMap):
                pairs = value.sorted_items()
            elif value is NO_VALUE:
                pairs = ()
            else:
                raise TemplateError(f"range can't iterate over {format_value(value)}", node.line)
            mark = len(self.vars)
            decl, assign = node.pipe.decl, node.pipe.is_assign
            ran = False
            for key, elem in pairs:
                ran = True
                self.budget.spend_iteration(node.line)
                if decl:
                    if assign:
                        self.set_var(decl[0].ident[0], key if len(decl) > 1 else elem, node.line)
                    else:
                        self.vars[-1][1] = elem
                if len(decl) > 1:
                    if assign:
                        self.set_var(decl[1].ident[0], elem, node.line)
                    else:
                        self.vars[-2][1] = key
                try:
                    self.walk(elem, node.list)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[mark:]
            if not ran and node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[outer:]

    def print_value(self, value: Any, line: int) -> None:
        value = indirect(value)
        self.write("<no value>" if value is NO_VALUE else format_value(value), line)

    # -- expressions ---------------------------------------------------------------------------
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if isinstance(value, Nil) and value.kind == "interface":
                value = NO_VALUE  # Go digs out of an empty interface after every stage
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.ident[0], value, v.line)
            else:
                self.vars.append([v.ident[0], value])
        return value

    def not_a_function(self, args: tuple[Node, ...], final: Any, line: int) -> None:
        if len(args) > 1 or final is not MISSING:
            raise TemplateError(f"can't give argument to non-function {args[0]}", line)

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        line = first.line
        if isinstance(first, FieldNode):
            return self.eval_chain(dot, dot, first.ident, cmd.args, final, line)
        if isinstance(first, ChainNode):
            if isinstance(first.node, NilNode):
                raise TemplateError(f"indirection through explicit nil in {first}", line)
            head = self.eval_arg(dot, None, first.node)
            return self.eval_chain(dot, head, first.fields, cmd.args, final, line)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.not_a_function(cmd.args, final, line)
        if isinstance(first, PipeNode):
            return self.eval_pipeline(dot, first)
        if isinstance(first, (BoolNode, NumberNode)):
            return first.value
        if isinstance(first, StringNode):
            return first.text
        if isinstance(first, DotNode):
            return dot
        raise TemplateError("nil is not a command", line)

    def eval_variable(self, dot: Any, node: VariableNode, args: tuple[Node, ...], final: Any) -> Any:
        value = self.var_value(node.ident[0], node.line)
        if len(node.ident) == 1:
            self.not_a_function(args, final, node.line)
            return value
        return self.eval_chain(dot, value, node.ident[1:], args, final, node.line)

    def eval_chain(self, dot: Any, receiver: Any, ident: tuple[str, ...], args: tuple[Node, ...],
                   final: Any, line: int) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(name, (), MISSING, receiver, line)
        return self.eval_field(ident[-1], args, final, receiver, line)

    def eval_field(self, name: str, args: tuple[Node, ...], final: Any, receiver: Any, line: int) -> Any:
        if receiver is NO_VALUE:
            return NO_VALUE
        if isinstance(receiver, Nil):
            raise TemplateError(f"nil pointer evaluating {receiver.type_name}.{name}", line)
        has_args = len(args) > 1 or final is not MISSING
        target = indirect(receiver)
        if isinstance(target, GoStruct):
            if name in target.values:
                if has_args:
                    raise TemplateError(f"{name} has arguments but cannot be invoked as function", line)
                return target.values[name]
        elif isinstance(target, GoMap):
            if has_args:
                raise TemplateError(f"{name} is not a method but has arguments", line)
            if isinstance(target, StrictRoot) and name not in target.known:
                raise TemplateError(
                    f"unknown field .{name} (a template may use {', '.join(sorted(target.known))})", line)
            if name in target.items:
                return target.items[name]
            return NIL_ANY if isinstance(target, StrictRoot) else target.zero()
        raise TemplateError(f"can't evaluate field {name} in type {type_name(receiver)}", line)

    def eval_function(self, dot: Any, node: IdentifierNode, args: tuple[Node, ...], final: Any) -> Any:
        name, line = node.name, node.line
        func = self.funcs.get(name)
        if func is None:
            raise TemplateError(f"{name!r} is not a defined function", line)
        actual = args[1:]
        count = len(actual) + (final is not MISSING)
        fixed = len(func.params)
        if func.variadic is not None and count < fixed:
            raise TemplateError(f"wrong number of args for {name}: want at least {fixed} got {count}", line)
        if func.variadic is None and count != fixed:
            raise TemplateError(f"wrong number of args for {name}: want {fixed} got {count}", line)
        if name in LAZY:
            value: Any = NO_VALUE
            for arg in actual:
                value = self.eval_arg(dot, Param.VALUE, arg)
                if is_true(value) == (name == "or"):
                    return value
            return final if final is not MISSING else value
        kinds = [func.params[i] if i < fixed else func.variadic for i in range(count)]
        values = [self.eval_arg(dot, kind, arg) for kind, arg in zip(kinds, actual)]
        if final is not MISSING:
            values.append(self.convert(final, kinds[-1], line))
        limit = self.budget.limits.max_output_chars
        try:
            result = func.fn(limit, *values)
        except FuncError as exc:
            raise TemplateError(f"error calling {name}: {exc}", line) from None
        if isinstance(result, str) and len(result) > limit:  # e.g. $s = printf "%s%s" $s $s in a loop
            raise TemplateError(f"{name} produced more than {limit} characters", line)
        return result

    def eval_arg(self, dot: Any, kind: Param | None, node: Node) -> Any:
        """An argument of a function (``kind``) or the head of a chain (``None``)."""
        line = node.line
        if isinstance(node, NilNode):
            if kind is Param.STRING:
                raise TemplateError("cannot assign nil to string", line)
            return NIL_ANY if kind is Param.ANY else NO_VALUE
        if kind is Param.STRING and isinstance(node, (BoolNode, NumberNode)):
            raise TemplateError(f"expected string; found {node}", line)
        if isinstance(node, FieldNode):
            value = self.eval_chain(dot, dot, node.ident, (node,), MISSING, line)
        elif isinstance(node, VariableNode):
            value = self.eval_variable(dot, node, (), MISSING)
        elif isinstance(node, PipeNode):
            value = self.eval_pipeline(dot, node)
        elif isinstance(node, IdentifierNode):
            value = self.eval_function(dot, node, (node,), MISSING)
        elif isinstance(node, ChainNode):
            value = self.eval_command(dot, CommandNode((node,), line), MISSING)
        elif isinstance(node, (BoolNode, NumberNode)):
            value = node.value
        elif isinstance(node, StringNode):
            value = node.text
        elif isinstance(node, DotNode):
            value = dot
        else:
            raise TemplateError(f"can't handle {node} as an argument", line)
        return value if kind is None else self.convert(value, kind, line)

    @staticmethod
    def convert(value: Any, kind: Param, line: int) -> Any:
        """Go's validateType for the three parameter kinds."""
        if kind is Param.VALUE:
            return value
        if kind is Param.ANY:
            return NIL_ANY if value is NO_VALUE else value
        if value is NO_VALUE:
            raise TemplateError("invalid value; expected string", line)
        if not isinstance(value, str):
            raise TemplateError(f"wrong type for value; expected string; got {type_name(value)}", line)
        return value

