"""A forced call's ``arguments`` hold only what the tool declares: a tool's ``parameters``
without ``additionalProperties`` is closed in the call grammar (``kettle.toolcalls.closed``),
so a tool with no parameters is called with ``{}`` (LangChain's standard
``test_tool_calling_with_no_arguments`` got ``{"argument": "value"}`` from smollm2)."""

from __future__ import annotations

import json

import openai
import pytest

from kettle.toolcalls import (
    ANY_ARGUMENTS,
    CallSyntax,
    Mode,
    ToolChoice,
    call_grammar,
    closed,
)
from tests.server.conftest import MODEL, Server

NO_ARGS = {"type": "object", "properties": {}}
OPEN = {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": True}


@pytest.mark.parametrize("params, expected", [
    (NO_ARGS, {**NO_ARGS, "additionalProperties": False}),
    (ANY_ARGUMENTS, {"type": "object", "additionalProperties": False}),
    ({"properties": {"a": {"type": "integer"}}}, {"properties": {"a": {"type": "integer"}}, "additionalProperties": False}),
    (OPEN, OPEN),  # the tool says so: extra arguments stay allowed
    ({"type": "object", "additionalProperties": {"type": "string"}},
     {"type": "object", "additionalProperties": {"type": "string"}}),
])
def test_closed(params, expected) -> None:
    assert closed(params) == expected
    assert "additionalProperties" not in NO_ARGS  # the request's schema is not changed


def test_call_grammar_closes_the_arguments() -> None:
    tools = [{"type": "function", "function": {"name": "ping", "parameters": NO_ARGS}}]
    lark = call_grammar(tools, ToolChoice(Mode.REQUIRED), CallSyntax(), {})
    schema = json.loads(lark.splitlines()[-1].split("%json ", 1)[1])
    assert schema["properties"]["arguments"] == {"type": "object", "properties": {}, "additionalProperties": False}


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_forced_call_of_a_tool_without_parameters_has_no_arguments(server: Server, stream: bool) -> None:
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    tools = [{"type": "function", "function": {"name": "magic", "description": "A magic number", "parameters": NO_ARGS}}]
    kw = {"model": MODEL, "messages": [{"role": "user", "content": "What is magic()? Use the tool."}],
          "tools": tools, "tool_choice": "required", "temperature": 0, "seed": 1, "max_tokens": 40}
    if stream:
        chunks = list(sdk.chat.completions.create(stream=True, **kw))
        calls = [c for ch in chunks for d in ch.choices for c in (d.delta.tool_calls or [])]
        finish = [d.finish_reason for ch in chunks for d in ch.choices if d.finish_reason]
    else:
        choice = sdk.chat.completions.create(**kw).choices[0]
        calls, finish = choice.message.tool_calls or [], [choice.finish_reason]
    assert [c.function.name for c in calls] == ["magic"] and finish == ["tool_calls"]
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {}
