"""Server pieces that need no model: OpenAI translations, tool-call parsing, strict JSON,
error messages, and the Host/Origin guard when the bind address is opened on purpose."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from kettle.errors import GGUFError, ModelNotFound, ServerBusy
from kettle.server import openai_routes as oa
from kettle.server.security import DEFAULT_ORIGINS, Guard, is_loopback_host, origin_allowed
from kettle.server.tools import ToolCallFilter, check_tool_calls, check_tools, parse_tool_calls
from kettle.server.wire import RequestError, parse_json_body, public_message, status_of

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


# -- OpenAI <-> ollama translations (pure) -----------------------------------------------

def test_chat_request_translation() -> None:
    body = {
        "model": "m", "max_tokens": 7, "temperature": 0.2, "top_p": 0.5, "seed": 3, "stop": "END", "stream": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "messages": [
            {"role": "developer", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        ],
        "tools": TOOLS,
    }
    out = oa.chat_request(body)
    assert out["options"] == {"num_predict": 7, "temperature": 0.2, "top_p": 0.5, "seed": 3, "stop": ["END"]}
    assert out["format"] == {"type": "object"} and out["stream"] is True and out["tools"] == TOOLS
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]
    assert out["messages"][1]["content"] == "ab"
    assert out["messages"][2]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert oa.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                            "response_format": {"type": "json_object"}})["format"] == "json"


@pytest.mark.parametrize("body", [
    {"model": "m"},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
])
def test_chat_request_rejects(body: dict) -> None:
    with pytest.raises(RequestError):
        oa.chat_request(body)


USER = {"role": "user", "content": "x"}


def assistant_calls(calls: object) -> dict:
    return {"model": "m", "messages": [USER, {"role": "assistant", "content": "", "tool_calls": calls}]}


@pytest.mark.parametrize("body, field", [
    ({"model": "m", "messages": [USER], "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": [USER], "max_tokens": -3}, "max_tokens"),
    ({"model": "m", "messages": [USER], "max_completion_tokens": 0}, "max_completion_tokens"),
    (assistant_calls("call"), "messages[1].tool_calls"),
    (assistant_calls([5]), "messages[1].tool_calls[0]"),
    (assistant_calls([{"function": "f"}]), "messages[1].tool_calls[0].function"),
    (assistant_calls([{"id": "c", "type": "function"}]), "messages[1].tool_calls[0].function"),
    (assistant_calls([{"function": {"name": "f", "arguments": "[1, 2]"}}]), "messages[1].tool_calls[0].function.arguments"),
    (assistant_calls([{"function": {"name": "f", "arguments": "5"}}]), "messages[1].tool_calls[0].function.arguments"),
    (assistant_calls([{"function": {"name": "f", "arguments": 5}}]), "messages[1].tool_calls[0].function.arguments"),
    (assistant_calls([{"function": {"name": "f", "arguments": "{oops"}}]), "messages[1].tool_calls[0].function.arguments"),
    (assistant_calls([{"function": {"name": "f", "arguments": '{"n": ' + "9" * 5000 + "}"}}]),
     "messages[1].tool_calls[0].function.arguments"),
])
def test_openai_requests_name_the_bad_field(body: dict, field: str) -> None:
    with pytest.raises(RequestError) as err:
        oa.chat_request(body)
    assert err.value.status == 400 and err.value.field == field and repr(field) in str(err.value)
    assert oa.openai_error(err.value, 400)["error"]["param"] == field


def test_completion_request_max_tokens_zero_generates_nothing() -> None:
    """0 never reaches ``num_predict`` (where 0 means no limit): nothing is generated, or with
    echo and logprobs one token that is dropped; below 0 is refused."""
    body = {"model": "m", "prompt": "x", "max_tokens": 0}
    assert "num_predict" not in oa.completion_request(body)["options"]
    assert not oa.completion_choices(body).generate
    scored = {**body, "echo": True, "logprobs": 2}
    assert oa.completion_request(scored)["options"] == {"num_predict": 1} and oa.completion_choices(scored).score_prompt
    with pytest.raises(RequestError) as err:
        oa.completion_request({**body, "max_tokens": -1})
    assert err.value.field == "max_tokens"
    assert oa.completion_request({"model": "m", "prompt": "x", "max_tokens": 1})["options"] == {"num_predict": 1}


def tool(**function: object) -> dict:
    return {"type": "function", "function": {"name": "f", **function}}


@pytest.mark.parametrize("tools, field", [
    ("tools", "tools"),
    ([5], "tools[0]"),
    ([{"type": "function"}], "tools[0].function"),
    ([{"type": 3, "function": {"name": "f"}}], "tools[0].type"),
    ([{"function": {"name": ""}}], "tools[0].function.name"),
    ([{"function": {"name": ["f"]}}], "tools[0].function.name"),
    ([tool(description=5)], "tools[0].function.description"),
    ([tool(parameters="object")], "tools[0].function.parameters"),
    ([tool(parameters={"type": ["object"]})], "tools[0].function.parameters.type"),
    ([tool(parameters={"required": "city"})], "tools[0].function.parameters.required"),
    ([tool(parameters={"required": [1]})], "tools[0].function.parameters.required"),
    ([tool(parameters={"properties": []})], "tools[0].function.parameters.properties"),
    ([tool(parameters={"properties": {"city": "string"}})], "tools[0].function.parameters.properties.city"),
    ([tool(parameters={"properties": {"city": {"type": 5}}})], "tools[0].function.parameters.properties.city.type"),
    ([tool(parameters={"properties": {"city": {"description": {}}}})],
     "tools[0].function.parameters.properties.city.description"),
    ([tool(parameters={"properties": {"city": {"enum": "a"}}})], "tools[0].function.parameters.properties.city.enum"),
])
def test_tools_of_the_wrong_types(tools: object, field: str) -> None:
    with pytest.raises(RequestError) as err:
        check_tools(tools)
    assert err.value.status == 400 and err.value.field == field, str(err.value)


def test_tools_and_tool_calls_of_the_right_types_pass() -> None:
    tools = [tool(description="d", parameters={"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "a city"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
        "nested": {"type": "object", "properties": {"any": "thing"}}}})]
    assert check_tools(tools) == tools and check_tools([]) == []
    calls = [{"function": {"name": "f", "arguments": {"city": "Oslo"}}}, {"function": {"index": 1, "name": "g"}}]
    assert check_tool_calls(calls, "m") == [calls[0], {"function": {"index": 1, "name": "g", "arguments": {}}}]


@pytest.mark.parametrize("calls, field", [
    ({"function": {}}, "m"),
    (["x"], "m[0]"),
    ([{"function": None}], "m[0].function"),
    ([{"function": {"arguments": {}}}], "m[0].function.name"),
    ([{"function": {"name": "f", "arguments": "{}"}}], "m[0].function.arguments"),
    ([{"function": {"name": "f", "arguments": [1]}}], "m[0].function.arguments"),
    ([{"function": {"name": "f", "index": "0"}}], "m[0].function.index"),
])
def test_ollama_tool_calls_of_the_wrong_types(calls: object, field: str) -> None:
    with pytest.raises(RequestError) as err:
        check_tool_calls(calls, "m")
    assert err.value.field == field, str(err.value)


def test_chat_response_and_chunks() -> None:
    final = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True, "done_reason": "length",
             "prompt_eval_count": 5, "eval_count": 2}
    out = oa.chat_response(final, "chatcmpl-1", 9)
    assert out["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "hi"},
                                 "finish_reason": "length", "logprobs": None}
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    first = oa.chat_chunk({"model": "m", "message": {"role": "assistant", "content": "h"}, "done": False}, "c", 9, True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "h"}
    assert first["choices"][0]["finish_reason"] is None
    call = {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}
    tooled = oa.chat_response({**final, "message": {"role": "assistant", "content": "", "tool_calls": [call]}}, "c", 9)
    assert tooled["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(tooled["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}


def test_embeddings_base64_is_little_endian_float32() -> None:
    out = oa.embeddings_response({"model": "m", "embeddings": [[1.0, -2.5]], "prompt_eval_count": 3}, "base64")
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert np.frombuffer(raw, dtype="<f4").tolist() == [1.0, -2.5] and out["usage"]["prompt_tokens"] == 3


def test_model_object() -> None:
    tag = {"model": "me/thing:latest", "modified_at": "2024-01-02T03:04:05.123Z"}
    assert oa.model_object(tag) == {"id": "me/thing:latest", "object": "model", "created": 1704164645, "owned_by": "me"}


# -- tool calls ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, n", [
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', 1),
    ('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>\n<tool_call>{"name": "get_weather", '
     '"arguments": {}}</tool_call>', 2),
    ('{"name": "get_weather", "parameters": {"city": "Oslo"}}', 1),
    ('[{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}]', 1),
    ('{"name": "other_tool", "arguments": {}}', 0),
    ('{"answer": 42}', 0),
    ("The weather is nice.", 0),
])
def test_parse_tool_calls(text: str, n: int) -> None:
    calls = parse_tool_calls(text, {"get_weather"})
    assert len(calls) == n
    for i, call in enumerate(calls):
        assert call["function"]["name"] == "get_weather" and call["function"]["index"] == i
        assert isinstance(call["function"]["arguments"], dict)


def test_tool_filter_holds_only_what_may_be_a_call() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("  <tool") == "" and f.feed('_call>{"name": "get_weather", "arguments": {}}') == ""
    assert f.feed("</tool_call>") == ""
    content, calls = f.finish()
    assert content == "" and calls[0]["function"]["name"] == "get_weather"
    g = ToolCallFilter(TOOLS)
    assert g.feed("Sunny") == "Sunny" and g.feed(" today") == " today" and g.finish() == ("", [])
    h = ToolCallFilter(TOOLS)
    assert h.feed('{"not": "a call"}') == "" and h.finish() == ('{"not": "a call"}', [])
    assert ToolCallFilter([]).feed("{") == "{"


# -- strict JSON and errors -----------------------------------------------------------------

def test_parse_json_body() -> None:
    assert parse_json_body(b' {"a": [1, "\\u00e9"]} ') == {"a": [1, "é"]}
    assert parse_json_body(b'{"a": ' + b"9" * 4300 + b', "b": -1e400}') == {"a": int("9" * 4300), "b": -math.inf}
    for bad in (b"", b"   ", b"{", b"[]", b"1", b'{"a": Infinity}', b'{"a": "\\udfff"}', b"\xc3\x28",
                b'{"a": ' + b"1" * 5000 + b"}", b'{"a": [-' + b"1" * 4301 + b"]}"):
        with pytest.raises(RequestError) as err:
            parse_json_body(bad)
        assert err.value.status == 400


def test_errors_map_to_status_and_hide_paths() -> None:
    assert status_of(ModelNotFound("x")) == 404 and status_of(ServerBusy("full")) == 503
    assert status_of(RequestError("big", 413)) == 413 and status_of(KeyError("x")) == 500
    message = public_message(GGUFError("/home/me/.kettle/models/blobs/sha256-abc", "truncated"))
    assert message == "sha256-abc: truncated"
    named = public_message(ModelNotFound("127.0.0.1:8/library/m:latest", "the registry has no such model"))
    assert "'127.0.0.1:8/library/m:latest'" in named  # a model name is not a path
    assert public_message(ModelNotFound("x", "see /etc/kettle/secret.conf")).endswith("see secret.conf")
    assert public_message(KeyError("/secret")) == "internal server error"


def test_an_error_mid_stream_is_the_last_ndjson_line() -> None:
    import asyncio

    from kettle.errors import SamplingError
    from kettle.server.streaming import ndjson

    async def objects():
        yield {"response": "a", "done": False}
        raise SamplingError("/opt/x/model.gguf: NaN logits")

    async def lines() -> list[bytes]:
        return [line async for line in ndjson(objects())]

    out = [json.loads(line) for line in asyncio.run(lines())]
    assert out == [{"response": "a", "done": False}, {"error": "model.gguf: NaN logits"}]


# -- the guard with an open bind address -------------------------------------------------------

def guarded(bind_host: str) -> TestClient:
    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))],
                    middleware=[Middleware(Guard, bind_host=bind_host, origins=DEFAULT_ORIGINS, max_body=10)])
    return TestClient(app)


def test_opened_bind_address_accepts_any_host_but_still_checks_origin() -> None:
    with guarded("0.0.0.0") as c:
        assert c.get("/", headers={"Host": "my-server.lan"}).status_code == 200
        assert c.get("/", headers={"Origin": "https://evil.example"}).status_code == 403
    with guarded("127.0.0.1") as c:
        assert c.get("/", headers={"Host": "my-server.lan"}).status_code == 403
        assert c.post("/", content=b"x" * 11, headers={"Host": "localhost"}).status_code == 413


@pytest.mark.parametrize("host, ok", [
    ("localhost", True), ("LOCALHOST:11434", True), ("app.localhost", True), ("127.0.0.1:80", True),
    ("127.8.9.10", True), ("[::1]:11434", True), ("::1", True),
    ("", False), (":11434", False), ("[]:11434", False), (" ", False), (".localhost", False),
    ("evil.example", False), ("localhost.evil.example", False), ("192.168.1.5", False), ("[::2]", False),
])
def test_loopback_hosts(host: str, ok: bool) -> None:
    assert is_loopback_host(host) is ok


@pytest.mark.parametrize("origin, ok", [
    ("http://localhost", True), ("http://localhost:3000", True), ("https://127.0.0.1:8443", True),
    ("app://anything", True), ("vscode-webview://x", True), ("http://localhost.evil.com", False),
    ("https://evil.example", False), ("null", False),
])
def test_default_origins(origin: str, ok: bool) -> None:
    assert origin_allowed(origin, DEFAULT_ORIGINS) is ok


def guard_status(headers: list[tuple[bytes, bytes]], bind_host: str = "127.0.0.1") -> int:
    """The status the guard answers for a GET with exactly these raw headers."""
    import asyncio

    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    guard = Guard(app, bind_host=bind_host, origins=DEFAULT_ORIGINS, max_body=10)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"]


@pytest.mark.parametrize("headers, status", [
    ([(b"host", b"localhost:11434")], 200),
    ([(b"Host", b"127.0.0.1")], 200),
    ([(b"host", b":11434")], 403),  # ollama#17721
    ([(b"host", b"")], 403),
    ([], 403),
    ([(b"host", b"evil.example"), (b"host", b"localhost")], 403),  # the foreign one first
    ([(b"host", b"localhost"), (b"host", b"evil.example")], 403),
    ([(b"host", b"localhost"), (b"host", b"localhost")], 403),
])
def test_host_header_rules(headers: list[tuple[bytes, bytes]], status: int) -> None:
    assert guard_status(headers) == status
    assert guard_status(headers, bind_host="0.0.0.0") == 200  # opened on purpose: any Host


@pytest.mark.parametrize("host, warns", [
    ("0.0.0.0", True), ("::", True), ("192.168.1.5", True), ("my-server.lan", True),
    ("127.0.0.1", False), ("localhost", False), ("::1", False),
])
def test_serving_beyond_loopback_warns(host: str, warns: bool) -> None:
    from kettle.server.app import exposure_warning

    text = exposure_warning(host, 11434)
    assert (text is not None) is warns
    if text is not None:
        assert "KETTLE_HOST=127.0.0.1:11434" in text and "delete" in text and host in text


@pytest.mark.parametrize("env, name", [
    ({"KETTLE_HEADER_TIMEOUT": "0"}, "KETTLE_HEADER_TIMEOUT"),
    ({"KETTLE_KEEPALIVE_TIMEOUT": "-1"}, "KETTLE_KEEPALIVE_TIMEOUT"),
    ({"KETTLE_MAX_HEADER_BYTES": "100"}, "KETTLE_MAX_HEADER_BYTES"),
    ({"KETTLE_MAX_HEADERS": "2"}, "KETTLE_MAX_HEADERS"),
    ({"KETTLE_MAX_HEADERS": "many"}, "KETTLE_MAX_HEADERS"),
])
def test_connection_limits_are_checked(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str) -> None:
    from kettle.errors import InvalidParameter
    from kettle.server.connections import ConnectionLimits

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InvalidParameter) as err:
        ConnectionLimits.from_config()
    assert err.value.name == name


def test_connection_limits_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from kettle.server.connections import ConnectionLimits

    for key in ("KETTLE_HEADER_TIMEOUT", "KETTLE_KEEPALIVE_TIMEOUT", "KETTLE_MAX_HEADER_BYTES", "KETTLE_MAX_HEADERS"):
        monkeypatch.delenv(key, raising=False)
    assert ConnectionLimits.from_config() == ConnectionLimits(10.0, 5.0, 65536, 100)
