"""ollama's way of turning a conversation into a prompt with a Go template.

:class:`GoChatTemplate` parses once (errors at compile time, with line numbers) and renders
many times, following ollama's ``template.Execute``:

1. **Fill-in-the-middle**: with a suffix and a prompt, the template runs once with only
   ``.Prompt`` and ``.Suffix`` (and ``.Response`` empty).
2. **Messages mode**: when the template names ``Messages`` anywhere, it runs once with
   ``.System`` (every system message, joined by a blank line), ``.Messages`` (consecutive
   messages of one role merged, except tool results), ``.Tools`` and an empty ``.Response``.
3. **Legacy mode** otherwise: the conversation is cut into (system, user, assistant) turns and
   the template runs once per turn with ``.System .Prompt .Response``; a turn closes when a user
   message follows an answer or a system message follows anything. The last turn runs on a copy
   of the tree cut right after its ``{{ .Response }}`` action, so the prompt ends where the model
   starts writing (a template without ``.Response`` gets one appended at parse time, as ollama
   does).

Deliberate differences from ollama: the last legacy turn keeps the helper functions and the
``missingkey=zero`` option (ollama's HEAD loses both there, by accident); a field the data
never has (``.Sytem``) is an error at compile time or render time instead of ``<no value>``;
``{{else}}`` after a cut ``{{ .Response }}`` is dropped instead of crashing.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from kettle.errors import TemplateError
from kettle.templates import ollama_data as data
from kettle.templates.gotmpl.executor import Executor, StrictRoot
from kettle.templates.gotmpl.funcs import BUILTINS, Func, FuncError, Param
from kettle.templates.gotmpl.gojson import UnsupportedValue, marshal
from kettle.templates.gotmpl.nodes import (
    ActionNode, ChainNode, CommandNode, FieldNode, IfNode, ListNode, Node, PipeNode, RangeNode,
    VariableNode, WithNode,
)
from kettle.templates.gotmpl.parser import parse
from kettle.templates.gotmpl.strings import to_text
from kettle.templates.gotmpl.values import GoList, GoStruct, Ptr, indirect
from kettle.templates.limits import Budget, TemplateLimits
from kettle.thinking import Think

ROOT_FIELDS = frozenset({
    "System", "Prompt", "Response", "Suffix", "Messages", "Tools", "Think", "ThinkLevel", "IsThinkSet",
})
DEFAULT_TEMPLATE = "{{ .Prompt }}"


# -- the helper functions ollama registers -----------------------------------------------------
def _json(max_chars: int, v: Any) -> str:
    if isinstance(v, str) and len(v) + 2 > max_chars:
        raise FuncError(f"json would produce more than {max_chars} characters")
    try:
        return marshal(v)
    except UnsupportedValue:
        return ""  # ollama ignores the marshal error


def _date(days_back: int) -> Any:
    def fn(_: int, *args: str) -> str:  # a format argument is accepted and ignored, as in ollama
        return (datetime.date.today() - datetime.timedelta(days=days_back)).isoformat()
    return fn


_TS_TYPES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
             "array": "any[]", "object": "Record<string, any>", "null": "null"}


def typescript_type(prop: GoStruct) -> str:
    """ollama's ToolProperty.ToTypeScriptType."""
    any_of = prop.values["AnyOf"].items
    if any_of:
        return " | ".join(typescript_type(p) for p in any_of)
    types = prop.values["Type"].items
    if not types:
        return "any"
    return " | ".join(_TS_TYPES.get(t, "any") for t in types)


def _to_typescript_type(_: int, v: Any) -> str:
    v = indirect(v)
    return typescript_type(v) if isinstance(v, GoStruct) and v.type is data.PROPERTY else "any"


FUNCS: dict[str, Func] = {
    **BUILTINS,
    "json": Func(_json, (Param.ANY,)),
    "currentDate": Func(_date(0), (), Param.STRING),
    "yesterdayDate": Func(_date(1), (), Param.STRING),
    "toTypeScriptType": Func(_to_typescript_type, (Param.ANY,)),
}


# -- tree walks ---------------------------------------------------------------------------------
def _children(n: Node) -> list[Node]:
    if isinstance(n, ListNode):
        return list(n.nodes)
    if isinstance(n, ActionNode):
        return [n.pipe]
    if isinstance(n, (IfNode, RangeNode, WithNode)):
        return [n.pipe, n.list] + ([n.else_list] if n.else_list is not None else [])
    if isinstance(n, PipeNode):
        return [a for c in n.cmds for a in c.args]
    return []


def identifiers(n: Node) -> set[str]:
    """ollama's ``Vars``: every field and variable name in the tree, lower-cased."""
    if isinstance(n, (FieldNode, VariableNode)):
        return {i.lower() for i in n.ident}
    names: set[str] = set()
    for c in _children(n):
        names |= identifiers(c)
    return names


def check_root_fields(n: Node, dot_is_root: bool = True) -> None:
    """Refuse ``.X`` on the root data and ``$.X`` anywhere when X is not a field ollama passes."""
    def check(name: str, line: int) -> None:
        if name not in ROOT_FIELDS:
            raise TemplateError(f"unknown field .{name} (a template may use {', '.join(sorted(ROOT_FIELDS))})", line)

    if isinstance(n, FieldNode) and dot_is_root:
        check(n.ident[0], n.line)
    elif isinstance(n, VariableNode) and n.ident[0] == "$" and len(n.ident) > 1:
        check(n.ident[1], n.line)
    elif isinstance(n, ChainNode):
        check_root_fields(n.node, dot_is_root)
    elif isinstance(n, (RangeNode, WithNode)):
        check_root_fields(n.pipe, dot_is_root)
        check_root_fields(n.list, False)
        if n.else_list is not None:
            check_root_fields(n.else_list, dot_is_root)
    else:
        for c in _children(n):
            check_root_fields(c, dot_is_root)


def cut_after_response(root: ListNode) -> ListNode:
    """A copy of the tree that ends right after the first action printing a ``.Response`` field
    (ollama's ``deleteNode``; conditions of if/with/range are not looked into)."""
    cut = False

    def walk(n: Node) -> Node | None:
        nonlocal cut
        if isinstance(n, FieldNode) and "Response" in n.ident:
            cut = True
            return n
        if cut:
            return None
        if isinstance(n, ListNode):
            kept = [k for k in (walk(c) for c in n.nodes) if k is not None]
            return dataclasses.replace(n, nodes=tuple(kept))
        if isinstance(n, (IfNode, RangeNode, WithNode)):
            body = walk(n.list)
            rest = walk(n.else_list) if n.else_list is not None else None
            return dataclasses.replace(n, list=body or ListNode(()), else_list=rest)
        if isinstance(n, ActionNode):
            pipe = walk(n.pipe)
            return None if pipe is None else dataclasses.replace(n, pipe=pipe)
        if isinstance(n, PipeNode):
            cmds = []
            for c in n.cmds:
                args = [k for k in (walk(a) for a in c.args) if k is not None]
                if not args:
                    return None
                cmds.append(CommandNode(tuple(args), c.line))
            return dataclasses.replace(n, cmds=tuple(cmds))
        return n

    result = walk(root)
    return result if isinstance(result, ListNode) else ListNode(())


# -- the conversation -----------------------------------------------------------------------------
def collate(messages: list[Ptr]) -> tuple[str, list[Ptr]]:
    """(all system messages joined by a blank line, messages with same-role runs merged)."""
    system: list[str] = []
    out: list[Ptr] = []
    for m in messages:
        v = m.target.values
        if v["Role"] == "system":
            system.append(v["Content"])
        if out and out[-1].target.values["Role"] == v["Role"] and v["Role"] != "tool":
            last = out[-1].target
            merged = dict(last.values, Content=last.values["Content"] + "\n\n" + v["Content"])
            out[-1] = Ptr(GoStruct(last.type, merged))
        else:
            out.append(m)
    return "\n\n".join(system), out


class GoChatTemplate:
    """A parsed Go template with ollama's render modes; see the module docstring."""

    def __init__(self, source: str, limits: TemplateLimits) -> None:
        self.source = source
        self.limits = limits
        tree = parse(source, frozenset(FUNCS), limits.max_depth)
        check_root_fields(tree)
        names = identifiers(tree)
        if "messages" not in names and "response" not in names:
            response = ActionNode(PipeNode((), False, (CommandNode((FieldNode(("Response",)),)),)))
            tree = ListNode(tree.nodes + (response,), tree.line)
        self.tree = tree
        self.names = frozenset(names)
        self.uses_messages = "messages" in names
        self.last_turn = cut_after_response(tree)
        self._think: dict[str, Any] = {"Think": False, "ThinkLevel": "", "IsThinkSet": False}  # think not set

    def _run(self, tree: ListNode, values: dict[str, Any], budget: Budget) -> str:
        root = StrictRoot({**self._think, **values}, ROOT_FIELDS)
        return Executor(FUNCS, budget).execute(tree, root)

    def render(self, messages: Sequence[Mapping[str, Any]], *, system: str | None = None,
               tools: Sequence[Mapping[str, Any]] | None = None, suffix: str = "",
               response: str = "", think: Think | None = None) -> str:
        """The prompt for ``messages`` (dicts with role, content, and optionally tool_calls,
        thinking, tool_name, tool_call_id). ``system`` is prepended as a system message unless
        the conversation starts with one (ollama's chat handler); ``response`` is appended as an
        assistant message (a prefill); ``suffix`` selects fill-in-the-middle; ``think`` sets
        ``.Think``, ``.ThinkLevel`` and ``.IsThinkSet`` as ollama does."""
        return self.with_think(think)._render(messages, system, tools, suffix, response)

    def with_think(self, think: Think | None) -> GoChatTemplate:
        """This template with the root's think fields set for one render (a shallow copy)."""
        if think is None:
            return self
        other = copy.copy(self)
        other._think = {"Think": think.enabled, "ThinkLevel": think.level, "IsThinkSet": True}
        return other

    def _render(self, messages: Sequence[Mapping[str, Any]], system: str | None,
                tools: Sequence[Mapping[str, Any]] | None, suffix: str, response: str) -> str:
        budget = Budget(self.limits)
        msgs = [dict(m) if isinstance(m, Mapping) else m for m in messages]
        if system and (not msgs or not isinstance(msgs[0], Mapping) or msgs[0].get("role") != "system"):
            msgs.insert(0, {"role": "system", "content": system})
        if response:
            msgs.append({"role": "assistant", "content": response})
        converted = [data.message(m) for m in msgs]
        if suffix:
            users = [m for m in converted if m.target.values["Role"] == "user"]
            prompt = users[-1].target.values["Content"] if users else ""
            if prompt:
                return to_text(self._run(self.tree, {"Prompt": prompt, "Suffix": suffix, "Response": ""}, budget))
        system_text, collated = collate(converted)
        if self.uses_messages:
            go_tools = data.tools_list(None if tools is None else [data.tool(t) for t in tools])
            values = {"System": system_text, "Messages": GoList(collated, "[]*template.templateMessage", not collated),
                      "Tools": go_tools, "Response": ""}
            return to_text(self._run(self.tree, values, budget))
        return to_text(self._legacy(collated, budget))

    def _legacy(self, messages: list[Ptr], budget: Budget) -> str:
        out: list[str] = []
        turn = {"System": "", "Prompt": "", "Response": ""}

        def flush() -> None:
            out.append(self._run(self.tree, dict(turn), budget))
            turn.update(System="", Prompt="", Response="")

        for m in messages:
            role, content = m.target.values["Role"], m.target.values["Content"]
            if role == "system":
                if turn["Prompt"] or turn["Response"]:
                    flush()
                turn["System"] = content
            elif role == "user":
                if turn["Response"]:
                    flush()
                turn["Prompt"] = content
            elif role == "assistant":
                turn["Response"] = content
        out.append(self._run(self.last_turn, dict(turn), budget))
        return "".join(out)
