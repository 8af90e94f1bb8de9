"""OpenAI's Responses API (``/v1/responses``): the real ``openai`` SDK against a real
``kettle serve``, stateful follow-ups, and the request translation on its own.

Greedy decoding throughout: the SDK's answer must be the text ``/api/chat`` gives for the
same conversation, streamed or not.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from kettle.server.conversations import Conversations, Kept
from kettle.server.responses_routes import responses_request
from kettle.server.wire import RequestError
from tests.server.conftest import MODEL, Server, greedy_chat


@pytest.fixture(scope="module")
def sdk(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


@pytest.mark.slow
def test_sdk_response_equals_api_chat(server: Server, sdk: openai.OpenAI) -> None:
    got = sdk.responses.create(model=MODEL, input="Name a colour.", instructions="Be brief.",
                               max_output_tokens=12, temperature=0)
    want = greedy_chat(server, [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Name a colour."}], 12)
    assert got.object == "response" and got.id.startswith("resp_")
    assert got.output_text == want["message"]["content"]
    assert got.status == ("incomplete" if want["done_reason"] == "length" else "completed")
    assert got.usage.input_tokens == want["prompt_eval_count"] and got.usage.output_tokens == want["eval_count"]
    assert sdk.responses.retrieve(got.id).output_text == got.output_text


@pytest.mark.slow
def test_previous_response_id_continues_and_reuses_the_kv_prefix(server: Server, sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=MODEL, input="My name is Ada. Say hello.", max_output_tokens=10, temperature=0)
    follow = sdk.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                  max_output_tokens=10, temperature=0)
    want = greedy_chat(server, [{"role": "user", "content": "My name is Ada. Say hello."},
                          {"role": "assistant", "content": first.output_text},
                          {"role": "user", "content": "What is my name?"}], 10)
    assert follow.output_text == want["message"]["content"]
    assert follow.usage.input_tokens == want["prompt_eval_count"]
    # the history was already in a slot's KV cache: it was not read again
    assert follow.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=MODEL, input="Again?", previous_response_id=first.id, max_output_tokens=2)


@pytest.mark.slow
def test_stream_events_in_order(sdk: openai.OpenAI) -> None:
    whole = sdk.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=10, temperature=0, store=False)
    events = list(sdk.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=10, temperature=0,
                                       stream=True, store=False))
    names = [e.type for e in events]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed" if whole.status == "completed" else "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.output_text == whole.output_text
    with pytest.raises(openai.NotFoundError):  # store=False: nothing kept
        sdk.responses.retrieve(whole.id)


@pytest.mark.slow
def test_structured_output_and_refusals(sdk: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    got = sdk.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=30, temperature=0,
                               text={"format": {"type": "json_schema", "name": "c", "schema": schema}})
    jsonschema.validate(json.loads(got.output_text), schema)
    add = {"type": "function", "name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}
    for choice in ("required", {"type": "function", "name": "add"}):  # a forced call (kettle.toolcalls)
        got = sdk.responses.create(model=MODEL, input="2 + 3?", tool_choice=choice, tools=[add],
                                   max_output_tokens=60, temperature=0)
        calls = [item for item in got.output if item.type == "function_call"]
        assert [c.name for c in calls] == ["add"] and got.output_text == ""
        jsonschema.validate(json.loads(calls[0].arguments), add["parameters"])
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=MODEL, input="x", tool_choice={"type": "function", "name": "divide"}, tools=[add])
    assert e.value.body["param"] == "tool_choice"


# -- the translation (pure) -----------------------------------------------------------------

def test_items_become_ollama_messages() -> None:
    body, turns = responses_request({
        "model": "m", "instructions": "sys", "max_output_tokens": 9,
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "input": [
            {"role": "developer", "content": "dev"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "20 C"},
        ]}, history=({"role": "user", "content": "before"},))
    assert body["options"] == {"num_predict": 9}
    assert body["tools"][0]["function"]["name"] == "weather"
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "before"},
        {"role": "system", "content": "dev"},
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "20 C", "tool_call_id": "call_1"},
    ]
    assert turns == body["messages"][1:]  # the instructions are not kept for follow-ups


@pytest.mark.parametrize("change,field", [
    ({"input": []}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format"),
])
def test_bad_bodies_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(RequestError) as e:
        responses_request({"model": "m", "input": "hi", **change})
    assert e.value.field == field


def test_kept_conversations_are_bounded() -> None:
    kept = Conversations(limit=2, max_chars=100)
    for i in range(3):
        assert kept.put(f"r{i}", Kept("m", ({"role": "user", "content": "x"},), {}))
    with pytest.raises(RequestError):
        kept.get("r0")  # the oldest left
    assert kept.get("r2").model == "m"
    assert not kept.put("big", Kept("m", ({"role": "user", "content": "x" * 200},), {}))
