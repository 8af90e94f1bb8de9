"""Tools reach the model or the request is refused, and ``tool_choice`` is enforced.

* ``tools`` to a model whose template does not name them: 400 ``"MODEL" does not support
  tools`` (ollama's words), on ``/api/chat`` and every translation of it;
* the bundled smollm2 renders them (kettle's built-in SmolLM2 template) and ``/api/show``
  says ``tools``;
* ``tool_choice`` (OpenAI's values; on ``/api/chat`` a kettle extension): ``none`` hides the
  tools, ``required`` or a named function constrains the answer to one call whose arguments
  match the tool's schema, read back as ``tool_calls`` (``finish_reason: tool_calls``).

Unit tests of ``kettle.toolcalls`` first, then the real server with the real clients.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import openai
import pytest

from kettle.errors import InvalidParameter
from kettle.server.tools import ToolCallFilter
from kettle.toolcalls import (
    CallSyntax,
    Mode,
    ToolChoice,
    call_grammar,
    call_syntax,
    parse_tool_choice,
)
from tests.server.conftest import MODEL, Server

WEATHER_PARAMS = {"type": "object", "properties": {
    "city": {"type": "string", "description": "The city"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}
ADD_PARAMS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD_PARAMS}},
]
SCHEMAS = {"get_weather": WEATHER_PARAMS, "add": ADD_PARAMS}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris?"}]
NO_TOOLS_TEMPLATE = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                     "<|im_start|>assistant\n")
GREEDY = {"temperature": 0, "seed": 1}


# -- kettle.toolcalls (pure) ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, ToolChoice()),
    ("auto", ToolChoice()),
    ("none", ToolChoice(Mode.NONE)),
    ("required", ToolChoice(Mode.REQUIRED)),
    ({"type": "function", "function": {"name": "add"}}, ToolChoice(Mode.FUNCTION, "add")),
    ({"type": "function", "name": "add"}, ToolChoice(Mode.FUNCTION, "add")),  # the Responses API's shape
])
def test_tool_choice_values(value, expected) -> None:
    assert parse_tool_choice(value, TOOLS) == expected
    assert parse_tool_choice(expected, TOOLS) == expected  # a parsed choice passes as it is
    if not expected.forced:
        assert parse_tool_choice(value, None) == expected


@pytest.mark.parametrize("value, tools, reason", [
    ("always", TOOLS, "expected 'none', 'auto', 'required'"),
    (3, TOOLS, "expected 'none'"),
    ({"type": "function", "function": {"name": "divide"}}, TOOLS, "no tool is named 'divide'"),
    ({"type": "function", "function": {}}, TOOLS, "function.name"),
    ({"type": "allowed_tools"}, TOOLS, "expected 'none'"),
    ("required", None, "needs tools"),
    ({"type": "function", "function": {"name": "add"}}, [], "needs tools"),
])
def test_bad_tool_choices_name_the_field(value, tools, reason) -> None:
    with pytest.raises(InvalidParameter) as e:
        parse_tool_choice(value, tools)
    assert e.value.name == "tool_choice" and reason in str(e.value)


@pytest.mark.parametrize("source, syntax", [
    ('<tool_call>[{"name": ...}]</tool_call>', CallSyntax("<tool_call>", "</tool_call>", listed=True)),
    ('<tool_call>\n{"name": <function-name>, "arguments": <args>}\n</tool_call>',
     CallSyntax("<tool_call>", "</tool_call>")),
    ('{"name": function name, "parameters": dictionary of argument name and its value}',
     CallSyntax(arguments_key="parameters")),
    ("{{ .Tools }}", CallSyntax()),
])
def test_call_syntax_follows_the_template(source, syntax) -> None:
    assert call_syntax(source) == syntax


def test_call_grammar_names_only_the_chosen_tool() -> None:
    lark = call_grammar(TOOLS, ToolChoice(Mode.FUNCTION, "add"), CallSyntax("<tool_call>", "</tool_call>", True), {})
    assert lark.splitlines()[0] == 'start: "<tool_call>" "[" call "]" "</tool_call>"'
    assert "get_weather" not in lark and '"const": "add"' in lark
    bare = call_grammar(TOOLS, ToolChoice(Mode.REQUIRED), CallSyntax(arguments_key="parameters"), {})
    assert bare.splitlines()[:2] == ["start: call", "call: call_0 | call_1"] and '"parameters"' in bare


def test_tool_choice_none_reads_no_calls() -> None:
    text = '<tool_call>[{"name": "add", "arguments": {"a": 1, "b": 2}}]</tool_call>'
    hidden = ToolCallFilter(TOOLS, "none")
    assert hidden.feed(text) == text and hidden.finish() == ("", [])
    shown = ToolCallFilter(TOOLS, "auto")
    assert shown.feed(text) == "" and shown.finish()[1][0]["function"]["name"] == "add"


# -- the server -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain(server: Server) -> str:
    """smollm2 with a chatml template that does not name the tools."""
    ollama.Client(host=server.url).create(model="no-tools", from_=MODEL, template=NO_TOOLS_TEMPLATE)
    return "no-tools"


@pytest.fixture(scope="module")
def sdk(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def chat(server: Server, **body) -> httpx.Response:
    with server.client() as c:
        return c.post("/api/chat", json={"model": MODEL, "messages": QUESTION, "stream": False,
                                         "options": {**GREEDY, "num_predict": 60}, **body})


@pytest.mark.slow
def test_capabilities_say_tools_only_where_the_template_names_them(server: Server, plain: str) -> None:
    client = ollama.Client(host=server.url)
    assert "tools" in client.show(MODEL).capabilities
    assert "tools" not in client.show(plain).capabilities


@pytest.mark.slow
def test_tools_to_a_template_without_tools_are_refused(server: Server, plain: str, sdk: openai.OpenAI) -> None:
    message = f'"{plain}" does not support tools'
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=server.url).chat(model=plain, messages=QUESTION, tools=TOOLS)
    assert e.value.status_code == 400 and e.value.error == message
    with pytest.raises(openai.BadRequestError) as oe:
        sdk.chat.completions.create(model=plain, messages=QUESTION, tools=TOOLS, max_tokens=3)
    assert oe.value.body["message"] == message
    with server.client() as c:
        r = c.post("/v1/responses", json={"model": plain, "input": "Hi", "max_output_tokens": 3,
                                          "tools": [{"type": "function", "name": "add", "parameters": ADD_PARAMS}]})
        assert r.status_code == 400 and r.json()["error"]["message"] == message
        r = c.post("/v1/messages", json={"model": plain, "max_tokens": 3, "messages": QUESTION,
                                         "tools": [{"name": "add", "input_schema": ADD_PARAMS}]})
        assert r.status_code == 400 and r.json()["error"]["message"] == message
    # hidden tools are no tools: the request is answered
    reply = sdk.chat.completions.create(model=plain, messages=QUESTION, tools=TOOLS, tool_choice="none",
                                        max_tokens=3, temperature=0)
    assert reply.choices[0].finish_reason == "length"
    assert chat(server, model=plain, tools=TOOLS, tool_choice="none", options={"num_predict": 2}).status_code == 200


@pytest.mark.slow
def test_smollm2_prompt_carries_the_tools_and_none_hides_them(server: Server) -> None:
    def prompt_tokens(**body) -> int:
        r = chat(server, options={**GREEDY, "num_predict": 1}, **body)
        assert r.status_code == 200, r.text
        return r.json()["prompt_eval_count"]

    without = prompt_tokens()
    with_tools = prompt_tokens(tools=TOOLS)
    assert with_tools > without + 100  # both schemas are in the prompt
    assert prompt_tokens(tools=TOOLS, tool_choice="none") == without
    assert prompt_tokens(tools=TOOLS, tool_choice="auto") == with_tools


def _check_call(name: str, arguments: dict) -> None:
    jsonschema.validate(arguments, SCHEMAS[name])


@pytest.mark.slow
def test_required_gives_one_valid_call_on_api_chat(server: Server) -> None:
    r = chat(server, tools=TOOLS, tool_choice="required")
    assert r.status_code == 200, r.text
    message = r.json()["message"]
    assert message["content"] == "" and len(message["tool_calls"]) == 1
    call = message["tool_calls"][0]["function"]
    assert call["name"] in SCHEMAS
    _check_call(call["name"], call["arguments"])
    forced = chat(server, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}}).json()
    call = forced["message"]["tool_calls"][0]["function"]
    assert call["name"] == "add"
    _check_call("add", call["arguments"])


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_openai_required_and_named(sdk: openai.OpenAI, stream: bool) -> None:
    for choice, names in [("required", set(SCHEMAS)), ({"type": "function", "function": {"name": "add"}}, {"add"}),
                          ({"type": "function", "function": {"name": "get_weather"}}, {"get_weather"})]:
        kw = {"model": MODEL, "messages": QUESTION, "tools": TOOLS, "tool_choice": choice, "max_tokens": 80,
              "temperature": 0, "parallel_tool_calls": False}
        if stream:
            chunks = list(sdk.chat.completions.create(stream=True, **kw))
            calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
            finish = chunks[-1].choices[0].finish_reason
            content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        else:
            reply = sdk.chat.completions.create(**kw)
            calls, finish = reply.choices[0].message.tool_calls, reply.choices[0].finish_reason
            content = reply.choices[0].message.content or ""
        assert finish == "tool_calls" and content == "" and len(calls) == 1, choice
        assert calls[0].function.name in names
        _check_call(calls[0].function.name, json.loads(calls[0].function.arguments))


@pytest.mark.slow
def test_openai_unknown_function_and_forced_call_with_format_are_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, tools=TOOLS, max_tokens=3,
                                    tool_choice={"type": "function", "function": {"name": "divide"}})
    assert e.value.body["param"] == "tool_choice" and "divide" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, tools=TOOLS, max_tokens=3,
                                    tool_choice="required", response_format={"type": "json_object"})
    assert e.value.body["param"] == "tool_choice"


@pytest.mark.slow
def test_api_chat_refuses_a_bad_tool_choice(server: Server) -> None:
    r = chat(server, tools=TOOLS, tool_choice="always")
    assert r.status_code == 400 and "tool_choice" in r.json()["error"]


@pytest.mark.slow
def test_langchain_bind_tools_with_tool_choice(server: Server) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return "sunny"

    llm = ChatOpenAI(model=MODEL, base_url=f"{server.url}/v1", api_key="unused", temperature=0, max_tokens=60)
    message = llm.bind_tools([add, get_weather], tool_choice="add").invoke("What is 2 plus 3?")
    assert [c["name"] for c in message.tool_calls] == ["add"]
    args = message.tool_calls[0]["args"]
    assert isinstance(args["a"], int) and isinstance(args["b"], int)
    message = llm.bind_tools([add, get_weather], tool_choice="required").invoke("Weather in Rome?")
    assert len(message.tool_calls) == 1 and message.tool_calls[0]["name"] in {"add", "get_weather"}
