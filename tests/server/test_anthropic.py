"""Anthropic's Messages API (``/v1/messages``): the real ``anthropic`` SDK against a real
``kettle serve``, and the request translation on its own.

Greedy decoding throughout: the SDK's answer must be the same text ``/api/chat`` gives for
the same conversation, streamed or not.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest

from kettle.server.anthropic_routes import messages_request
from kettle.server.wire import RequestError
from tests.server.conftest import MODEL, Server, greedy_chat

CHAT = [{"role": "user", "content": "Name a colour."}]
GREEDY = {"temperature": 0}  # the SDK has no sampling keywords now; older ones sent these fields


@pytest.fixture(scope="module")
def sdk(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused")


@pytest.mark.slow
def test_sdk_message_equals_api_chat(server: Server, sdk: anthropic.Anthropic) -> None:
    got = sdk.messages.create(model=MODEL, max_tokens=12, extra_body=GREEDY, system="Be brief.", messages=CHAT)
    want = greedy_chat(server, [{"role": "system", "content": "Be brief."}, *CHAT], 12)
    assert got.type == "message" and got.role == "assistant" and got.id.startswith("msg_")
    assert [b.type for b in got.content] == ["text"]
    assert got.content[0].text == want["message"]["content"]
    assert got.stop_reason == ("max_tokens" if want["done_reason"] == "length" else "end_turn")
    assert got.usage.input_tokens == want["prompt_eval_count"] and got.usage.output_tokens == want["eval_count"]


@pytest.mark.slow
def test_sdk_stream_events_in_order(server: Server, sdk: anthropic.Anthropic) -> None:
    whole = sdk.messages.create(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=CHAT)
    names = []
    with sdk.messages.stream(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=CHAT) as stream:
        for event in stream:
            names.append(event.type)
        final = stream.get_final_message()
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens
    raw = [n for n in names if n not in ("text", "content_block_delta")]  # the SDK adds 'text' events
    assert raw == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") >= 1


@pytest.mark.slow
def test_structured_output_follows_the_schema(sdk: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    got = sdk.messages.create(model=MODEL, max_tokens=30, extra_body=GREEDY, messages=CHAT,
                              output_config={"format": {"type": "json_schema", "schema": schema}})
    jsonschema.validate(json.loads(got.content[0].text), schema)


@pytest.mark.slow
def test_count_tokens_is_the_prompt_the_message_gets(server: Server, sdk: anthropic.Anthropic) -> None:
    counted = sdk.messages.count_tokens(model=MODEL, messages=CHAT)
    got = sdk.messages.create(model=MODEL, max_tokens=1, extra_body=GREEDY, messages=CHAT)
    assert counted.input_tokens == got.usage.input_tokens > 3


@pytest.mark.slow
def test_errors_have_anthropics_shape(server: Server, sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as e:
        sdk.messages.create(model="no-such-model", max_tokens=5, messages=CHAT)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    with server.client() as c:
        r = c.post("/v1/messages", json={"model": MODEL, "messages": CHAT})  # max_tokens is required
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in r.json()["error"]["message"]
        r = c.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": ""}}]}]})
        assert r.status_code == 400 and "image" in r.json()["error"]["message"]
        assert c.get("/api/version").status_code == 200  # still serving


# -- the translation (pure) -----------------------------------------------------------------

def test_blocks_become_ollama_messages() -> None:
    body = messages_request({
        "model": "m", "max_tokens": 7, "system": [{"type": "text", "text": "sys"}], "stop_sequences": ["END"],
        "top_k": 3, "temperature": 0.5,
        "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "20 C"},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ]})
    assert body["options"] == {"num_predict": 7, "temperature": 0.5, "top_k": 3, "stop": ["END"]}
    assert body["tools"] == [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                               "parameters": {"type": "object"}}}]
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.",
         "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "20 C", "tool_call_id": "toolu_1"},
        {"role": "user", "content": "And tomorrow?"},
    ]


@pytest.mark.parametrize("change,field", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "name": "f"}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"thinking": {"type": "sometimes"}}, "thinking.type"),
])
def test_bad_bodies_name_the_field(change: dict, field: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": CHAT, **change}
    with pytest.raises(RequestError) as e:
        messages_request(body)
    assert e.value.field == field


ADD = {"name": "add", "description": "Add two integers.",
       "input_schema": {"type": "object", "required": ["a", "b"],
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}


@pytest.mark.slow
@pytest.mark.parametrize("choice", [{"type": "tool", "name": "add"}, {"type": "any"}])
def test_a_forced_tool_call_is_a_valid_tool_use(sdk: anthropic.Anthropic, choice: dict) -> None:
    r = sdk.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                            tools=[ADD], tool_choice=choice, extra_body=GREEDY)
    uses = [b for b in r.content if b.type == "tool_use"]
    assert r.stop_reason == "tool_use" and len(uses) == 1 and uses[0].name == "add"
    jsonschema.validate(uses[0].input, ADD["input_schema"])


def test_tool_choice_maps_to_openais() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    for choice, want in (({"type": "any"}, "required"), ({"type": "auto"}, "auto"),
                         ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}})):
        body = messages_request({"model": "m", "max_tokens": 5, "messages": CHAT, "tools": tools,
                                 "tool_choice": choice})
        assert body["tool_choice"] == want and body["tools"]


def test_tool_choice_none_hides_the_tools() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    assert messages_request({"model": "m", "max_tokens": 5, "messages": CHAT, "tools": tools,
                             "tool_choice": {"type": "none"}})["tools"] is None


def test_unknown_route_is_still_404(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/messages/nothing").status_code in (404, 405)
