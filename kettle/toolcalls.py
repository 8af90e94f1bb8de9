"""``tool_choice``: whether the model sees the request's tools, and forced calls.

OpenAI's values (kettle also takes them on ``/api/chat``, where ollama has no such field):

* ``"auto"`` (or absent): the tools are rendered; the model may answer or call;
* ``"none"``: the tools are hidden: not rendered, and the answer is not read for calls;
* ``"required"``: decoding is constrained so that the answer is exactly one call to one of
  the tools, its ``arguments`` matching that tool's ``parameters`` schema (an object schema
  that does not set ``additionalProperties`` is closed: only the arguments it lists);
* ``{"type": "function", "function": {"name": N}}`` (or the Responses API's flat
  ``{"type": "function", "name": N}``): the same, to the tool ``N`` only.

A forced call is written in the tool-call syntax of the model's template (``call_syntax``):
``<tool_call>[{...}]</tool_call>`` when the template shows calls as a JSON list inside
``<tool_call>`` tags (SmolLM2), ``<tool_call>{...}</tool_call>`` when it shows them tagged
(Hermes, Qwen), else a bare JSON object (Llama 3), with ``"parameters"`` for the arguments
when the template names that key. ``kettle.server.tools.ToolCallFilter`` reads each of these
back into ``tool_calls``. One call: ``parallel_tool_calls`` changes nothing.

Errors are ``InvalidParameter`` naming ``tool_choice`` (HTTP 400).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kettle.errors import InvalidParameter

ANY_ARGUMENTS: dict[str, Any] = {"type": "object"}  # a tool without ``parameters``


class Mode(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    FUNCTION = "function"


@dataclass(frozen=True)
class ToolChoice:
    mode: Mode = Mode.AUTO
    name: str | None = None  # Mode.FUNCTION: the tool the call must name

    @property
    def forced(self) -> bool:
        return self.mode in (Mode.REQUIRED, Mode.FUNCTION)


AUTO = ToolChoice()


def _function_name(value: Mapping[str, Any]) -> Any:
    fn = value.get("function")
    return fn.get("name") if isinstance(fn, Mapping) else value.get("name")


def parse_tool_choice(value: Any, tools: Sequence[Mapping[str, Any]] | None) -> ToolChoice:
    """A request's ``tool_choice`` (see the module doc) against its ``tools``."""
    if isinstance(value, ToolChoice):
        if not value.forced:
            return value
        choice = value
    elif value is None or value == "auto":
        return AUTO
    elif value == "none":
        return ToolChoice(Mode.NONE)
    elif value == "required":
        choice = ToolChoice(Mode.REQUIRED)
    elif isinstance(value, Mapping) and value.get("type") == "function":
        name = _function_name(value)
        if not isinstance(name, str) or not name:
            raise InvalidParameter("tool_choice", value, "a named function needs function.name, a string")
        choice = ToolChoice(Mode.FUNCTION, name)
    else:
        raise InvalidParameter("tool_choice", value,
                               "expected 'none', 'auto', 'required' or {\"type\": \"function\", "
                               "\"function\": {\"name\": ...}}")
    names = [n for n, _ in _schemas(tools or ())]
    if not names:
        raise InvalidParameter("tool_choice", choice.name or choice.mode.value, "a forced tool call needs tools")
    if choice.name is not None and choice.name not in names:
        raise InvalidParameter("tool_choice", choice.name, f"no tool is named {choice.name!r}")
    return choice


def visible_tools(tools: Sequence[Mapping[str, Any]] | None, choice: ToolChoice) -> list[Mapping[str, Any]] | None:
    """The tools the template renders and the output is read for: none for ``"none"``."""
    if not tools or choice.mode is Mode.NONE:
        return None
    return list(tools)


def _schemas(tools: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, parameters schema) of each function tool."""
    out = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out.append((fn["name"], params if isinstance(params, Mapping) and params else ANY_ARGUMENTS))
    return out


# -- the syntax of a call, and its grammar ------------------------------------------------

@dataclass(frozen=True)
class CallSyntax:
    """How a template shows one tool call: ``open`` + the call object (inside ``[...]`` when
    ``listed``) + ``close``; the arguments under ``arguments_key``."""

    open: str = ""
    close: str = ""
    listed: bool = False
    arguments_key: str = "arguments"


_LISTED = re.compile(r"<tool_call>\s*\[")


def call_syntax(template_source: str) -> CallSyntax:
    """The tool-call syntax ``template_source`` asks for (see the module doc)."""
    key = "parameters" if '"parameters"' in template_source and '"arguments"' not in template_source else "arguments"
    if "<tool_call>" in template_source:
        return CallSyntax("<tool_call>", "</tool_call>", bool(_LISTED.search(template_source)), key)
    return CallSyntax(arguments_key=key)


def closed(params: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's ``parameters`` for a forced call: an object schema that does not set
    ``additionalProperties`` is closed, so the call holds only the arguments the tool declares
    (``{}`` for a tool with none), never ones the model invents and the tool cannot take."""
    out = dict(params)
    if out.get("type", "object") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def call_grammar(tools: Sequence[Mapping[str, Any]], choice: ToolChoice, syntax: CallSyntax,
                 json_options: Mapping[str, Any]) -> str:
    """A Lark grammar (llguidance's dialect) of exactly one call allowed by ``choice``:
    ``{"name": <a tool's name>, <arguments_key>: <JSON matching that tool's parameters>}`` in
    ``syntax``. ``json_options``: llguidance's JSON options (whitespace)."""
    alternatives = []
    for i, (name, params) in enumerate(_schemas(tools)):
        if choice.name is not None and name != choice.name:
            continue
        schema = {
            "x-guidance": dict(json_options), "type": "object",
            "properties": {"name": {"const": name}, syntax.arguments_key: closed(params)},
            "required": ["name", syntax.arguments_key], "additionalProperties": False,
        }
        alternatives.append((f"call_{i}", schema))
    body = ['"["', "call", '"]"'] if syntax.listed else ["call"]
    start = [json.dumps(syntax.open)] * bool(syntax.open) + body + [json.dumps(syntax.close)] * bool(syntax.close)
    lines = ["start: " + " ".join(start), "call: " + " | ".join(rule for rule, _ in alternatives)]
    lines += [f"{rule}: %json {json.dumps(schema)}" for rule, schema in alternatives]
    return "\n".join(lines)
