"""Tool calls in a model's output, for chat requests that pass ``tools``.

Models announce a call in one of a few shapes, which ``parse_tool_calls`` reads:

* ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes / Qwen /
  SmolLM2 style; several may follow each other),
* a bare JSON object ``{"name": ..., "arguments" | "parameters": {...}}`` (Llama 3
  style) or a JSON array of them.

Only names among the request's tools count; anything else is ordinary content.
``arguments`` may arrive as a JSON string and is returned as an object, as ollama
returns it. ``ToolCallFilter`` does this over a stream: text that might be the
start of a call is held back until it is known (then it becomes ``tool_calls``) or
ruled out (then it is released as content).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

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
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return {"name": name, "arguments": args}


def _objects(text: str) -> list[Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
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

    def __init__(self, tools: Iterable[Any]) -> None:
        self.names = tool_names(tools)
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
