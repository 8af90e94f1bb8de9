"""kettle's built-in SmolLM2 template (``builtin/smollm2-tools.jinja``): token for token what
the bundled GGUF's own template renders when no tools are given, so ``choose_template`` uses
it in that template's place; with tools it lists them and shows calls as
``<tool_call>[...]</tool_call>``, which ``call_syntax`` and ``parse_tool_calls`` read."""

from __future__ import annotations

import json

import pytest

from kettle.api import ModelSpec
from kettle.gguf import GGUFFile
from kettle.prompt import PromptBuilder, choose_template
from kettle.server.tools import parse_tool_calls
from kettle.templates import builtin_superseding, builtin_template, compile_template
from kettle.tokenizer import Tokenizer
from kettle.toolcalls import CallSyntax, call_syntax

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

CONVERSATIONS = [
    [],
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}, {"role": "user", "content": "b"}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}],
    [{"role": "user", "content": "Ünïcödé ✓ 東京 <|im_start|> {{ not a tag }}\n\n  spaced  "}],
    # tool use without tools: rendered as the GGUF template renders it (content only)
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                       "arguments": {"city": "Paris"}}}]},
     {"role": "tool", "content": "20 C"}],
]


@pytest.fixture(scope="module")
def gguf(smollm2_path):
    with GGUFFile(smollm2_path) as f:
        metadata = dict(f.metadata)
    return metadata, Tokenizer.from_metadata(metadata)


def builder(metadata, tokenizer, path, template=None) -> PromptBuilder:
    return PromptBuilder(metadata, tokenizer, ModelSpec(path=path, name="smollm2", template=template))


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_renders_the_gguf_template_token_for_token_without_tools(gguf, smollm2_path, messages,
                                                                add_generation_prompt) -> None:
    metadata, tokenizer = gguf
    own = builder(metadata, tokenizer, smollm2_path, template=metadata["tokenizer.chat_template"])  # as a TEMPLATE
    kettle = builder(metadata, tokenizer, smollm2_path)
    assert own.origin == "modelfile" and kettle.origin == "builtin:smollm2"
    a = own.render_chat(messages, add_generation_prompt=add_generation_prompt)
    b = kettle.render_chat(messages, add_generation_prompt=add_generation_prompt)
    assert b == a
    if a:
        assert kettle.tokenize_prompt(b) == own.tokenize_prompt(a)


def test_the_gguf_template_is_superseded_and_names_tools(gguf) -> None:
    metadata, _ = gguf
    source = metadata["tokenizer.chat_template"]
    assert not compile_template(source).renders_tools
    family, template, stops = builtin_superseding(source)
    assert family == "smollm2" and template.renders_tools and stops == ("<|im_start|>", "<|im_end|>")
    assert builtin_superseding(source + " ") is None  # only that exact template
    spec = ModelSpec(path=None, name="m")  # type: ignore[arg-type]
    assert choose_template(metadata, spec)[2] == "builtin:smollm2"


def test_with_tools_the_prompt_lists_them_and_shows_calls_in_the_syntax_read_back(gguf, smollm2_path) -> None:
    metadata, tokenizer = gguf
    p = builder(metadata, tokenizer, smollm2_path)
    conversation = CONVERSATIONS[-1]
    text = p.render_chat([{"role": "system", "content": "Be brief."}, *conversation], tools=[WEATHER])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n")
    assert "<tools>\n" + json.dumps(WEATHER) + "\n</tools>" in text
    assert "SmolLM" not in text  # the tools' system turn replaces the default one
    call = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>\n" in text
    assert "<|im_start|>user\n<tool_response>\n20 C\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert call_syntax(p.template.source) == CallSyntax("<tool_call>", "</tool_call>", listed=True)
    assert parse_tool_calls(call, {"get_weather"})[0]["function"]["arguments"] == {"city": "Paris"}


def test_builtin_entry_exists() -> None:
    template, stops = builtin_template("smollm2")
    assert template.syntax == "jinja" and "<|im_end|>" in stops
