"""Tool calls in a model's output, for chat requests that pass ``tools``.

Models announce a call in one of a few shapes, which ``parse_tool_calls`` reads:

* ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes / Qwen /
  SmolLM2 style; several may follow each other),
* a bare JSON object ``{"name": ..., "arguments" | "parameters": {...}}`` (Llama 3
  style) or a JSON array of them.

Only names among the request's tools count (none with ``tool_choice: "none"``); anything
else is ordinary content. A forced call (``kettle.toolcalls``) is written in one of these
shapes, so it is read the same way.
``arguments`` may arrive as a JSON string and is returned as an object, as ollama
returns it. ``ToolCallFilter`` does this over a stream: text that might be the
start of a call is held back until it is known (then it becomes ``tool_calls``) or
ruled out (then it is released as content).

In requests, ``check_tools`` and ``check_tool_calls`` hold the request's ``tools``
and a message's ``tool_calls`` to ollama's types (``api/types.go``: ``Tool``,
``ToolFunction``, ``ToolProperty``, ``ToolCall``) and refuse anything else with a
400 naming the field, before a template renders them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from kettle.server.wire import Fields, RequestError, bad_value, loads
from kettle.toolcalls import parse_tool_choice, visible_tools

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
_TAGGED = re.compile(re.escape(OPEN_TAG) + r"(.*?)(?:" + re.escape(CLOSE_TAG) + r"|$)", re.S)


def tool_names(tools: Iterable[Any]) -> set[str]:
    names = set()
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names


def _call(obj: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"function": {"name", "arguments"}}
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = loads(args)
        except (json.JSONDecodeError, RequestError):  # not JSON, or an absurd literal: not a call
            return None
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return {"name": name, "arguments": args}


def _objects(text: str) -> list[Any] | None:
    try:
        value = loads(text)
    except (json.JSONDecodeError, RequestError):
        return None
    return value if isinstance(value, list) else [value]


def parse_tool_calls(text: str, names: set[str]) -> list[dict[str, Any]]:
    """The tool calls ``text`` consists of (ollama's ``tool_calls`` shape), or [] when it is
    not wholly calls to tools in ``names``."""
    body = text.strip()
    if body.startswith(OPEN_TAG):
        parts = [m.group(1).strip() for m in _TAGGED.finditer(body)]
        rest = _TAGGED.sub("", body).strip()
        if rest:
            return []
        objects: list[Any] = []
        for part in parts:
            found = _objects(part)
            if found is None:
                return []
            objects += found
    else:
        found = _objects(body)
        if found is None:
            return []
        objects = found
    calls = [_call(obj, names) for obj in objects]
    if not calls or any(c is None for c in calls):
        return []
    return [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "function": {"index": i, **c}}  # type: ignore[dict-item]
        for i, c in enumerate(calls)
    ]


class ToolCallFilter:
    """Hold back streamed text while it may be a tool call (see module doc)."""

    def __init__(self, tools: Iterable[Any], tool_choice: Any = None) -> None:
        """``tool_choice``: the request's, already checked (``none`` reads no calls)."""
        tools = list(tools)
        self.names = tool_names(visible_tools(tools, parse_tool_choice(tool_choice, tools)) or ())
        self.held = ""
        self.passing = not self.names  # no tools: nothing to hold

    def _maybe_call(self) -> bool:
        head = self.held.lstrip()
        return not head or head.startswith(("{", "[")) or head.startswith(OPEN_TAG) or OPEN_TAG.startswith(head)

    def feed(self, text: str) -> str:
        """The part of ``text`` that can be shown now."""
        if self.passing:
            return text
        self.held += text
        if self._maybe_call():
            return ""
        self.passing = True
        out, self.held = self.held, ""
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """(content still held, tool calls) at the end of the output."""
        if self.passing or not self.held:
            return self.held, []
        calls = parse_tool_calls(self.held, self.names)
        if calls:
            return "", calls
        return self.held, []


# -- requests: the types ollama declares ----------------------------------------------------

def _function_items(items: Any, where: str, noun: str, label: str, body: str) -> Iterable[tuple[Fields, dict]]:
    """(its function's Fields, the item) for each item of the array ``items``: every item an
    object whose optional string ``label`` is checked first, with a ``function`` object whose
    ``name`` is a non-empty string."""
    if not isinstance(items, list):
        raise bad_value(where, f"an array of {noun}s", items)
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise bad_value(at, f"a {noun} object", item)
        f = Fields(item, at)
        f.str(label)
        fn = f.object("function")
        if fn is None:
            raise bad_value(f.path("function"), f"an object with the function's name and {body}", None)
        ff = Fields(fn, f.path("function"))
        if not ff.str("name"):
            raise bad_value(ff.path("name"), "a non-empty string", fn.get("name"))
        yield ff, item


def check_tools(tools: Any, where: str = "tools") -> list[dict[str, Any]]:
    """A request's ``tools``: each ``{"type"?: str, "function": {"name": str, "description"?: str,
    "parameters"?: {"type"?: str, "required"?: [str], "properties"?: {name: property}}}}``."""
    for ff, _ in _function_items(tools, where, "tool", "type", "parameters"):
        ff.str("description")
        params = ff.object("parameters")
        if params is not None:
            _check_parameters(Fields(params, ff.path("parameters")))
    return tools


def _check_parameters(f: Fields) -> None:
    f.str("type")
    required = f.list("required")
    if required is not None and not all(isinstance(r, str) for r in required):
        raise bad_value(f.path("required"), "an array of strings", required)
    for name, prop in (f.object("properties") or {}).items():
        at = f.path(f"properties.{name}")
        if not isinstance(prop, dict):
            raise bad_value(at, "a property object", prop)
        pf = Fields(prop, at)
        kind = prop.get("type")
        if kind is not None and not isinstance(kind, str) and not (
                isinstance(kind, list) and all(isinstance(k, str) for k in kind)):
            raise bad_value(pf.path("type"), "a string or an array of strings", kind)
        pf.str("description")
        pf.list("enum")


def check_tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """A message's ``tool_calls`` in ollama's shape: each ``{"function": {"index"?: int,
    "name": str, "arguments": object}}``; returns them with ``arguments`` defaulted to {}."""
    out = []
    for ff, call in _function_items(calls, where, "tool call", "id", "arguments"):
        fn = call["function"]
        ff.int("index")
        args = ff.object("arguments")
        out.append({**call, "function": {**fn, "arguments": args if args is not None else {}}})
    return out


def openai_arguments(args: Any, where: str) -> dict[str, Any]:
    """OpenAI's ``function.arguments`` (a JSON string of an object; an object or null also
    pass) as an object."""
    if args is None or args == "":
        return {}
    if isinstance(args, str):
        try:
            args = loads(args)
        except json.JSONDecodeError as e:
            raise RequestError(f"invalid value for {where!r}: not JSON ({e.msg} at column {e.colno})",
                               field=where) from None
        except RequestError as e:
            raise RequestError(f"invalid value for {where!r}: {e}", field=where) from None
    if not isinstance(args, dict):
        raise bad_value(where, "a JSON object (or a string holding one)", args)
    return args
