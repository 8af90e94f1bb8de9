"""The public API: syntax detection, compile-time errors, built-in templates, render arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kettle.errors import TemplateError
from kettle.templates import (
    ChatTemplate, builtin_families, builtin_template, compile_template, default_template,
)

FIXTURES = Path(__file__).parent / "fixtures"

DETECT = [
    ("{{ .Prompt }}", "go"),
    ("plain text, no actions", "go"),
    ("{{- range .Messages }}{{ .Content }}{{ end }}", "go"),
    ("{{ if .System }}{# a Go text #}{{ .System }}{{ end }}", "go"),
    ("{{ messages[0]['content'] }}", "jinja"),
    ("{{ bos_token }}{{ messages | length }}", "jinja"),
    ("{% for m in messages %}{{ m.content }}{% endfor %}", "jinja"),
    ("{# comment #}{{ messages }}", "jinja"),
]


@pytest.mark.parametrize("src,syntax", DETECT)
def test_syntax_detection(src: str, syntax: str) -> None:
    t = compile_template(src)
    assert isinstance(t, ChatTemplate)
    assert t.syntax == syntax and t.source == src


@pytest.mark.parametrize("src,line,words", [
    ("{{ Prompt }}", 1, "not defined"),  # neither Go (no such function) nor a Jinja chat template
    ("a\n{{ .Prompt }", 2, "unclosed action"),
    ("{% for m in messages %}\n{{ m.content }}", 2, "endfor"),
    ("{% if x %}\n\n{% endfor %}", 3, "endfor"),
    ("{{ if .System }}\n{{ .System }}", 2, "EOF"),
    ("{{ .Sytem }}", 1, "unknown field"),
])
def test_compile_errors_carry_the_line(src: str, line: int, words: str) -> None:
    with pytest.raises(TemplateError) as exc:
        compile_template(src)
    assert exc.value.line == line
    assert words in str(exc.value)


@pytest.mark.parametrize("source", [None, 3, b"{{ .Prompt }}", "{{ .Prompt }}\x00"])
def test_non_text_sources_are_refused(source: object) -> None:
    with pytest.raises(TemplateError):
        compile_template(source)  # type: ignore[arg-type]


def test_builtin_families_and_stops() -> None:
    assert set(builtin_families()) >= {"gemma3", "gemma", "chatml", "llama3"}
    gemma, stops = builtin_template("gemma3")
    assert stops == ("<end_of_turn>",)
    assert builtin_template("Gemma")[1] == ("<end_of_turn>",)
    assert builtin_template("chatml")[1] == ("<|im_start|>", "<|im_end|>")
    assert builtin_template("llama3")[1] == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    assert builtin_template("no-such-family") is None
    # ollama's templates are Go; kettle's own smollm2 is Jinja, as the GGUF template it stands in for
    assert all(builtin_template(f)[0].syntax == "go" for f in builtin_families() if f != "smollm2")
    assert builtin_template("smollm2")[0].syntax == "jinja"


def test_gemma3_builtin_turns() -> None:
    gemma, _ = builtin_template("gemma3")
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}]
    assert gemma.render(msgs, system="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n\n")
    assert gemma.render(msgs[:1]) == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n\n"


def test_builtin_chatml_matches_llama_cpp_chatml_for_plain_chats() -> None:
    """kettle's chatml (ollama's) and llama.cpp's ChatML agree on the reference conversations."""
    chatml, _ = builtin_template("chatml")
    oracle = json.loads((FIXTURES / "oracle_gemma3_chat.json").read_text(encoding="utf-8"))
    for conv in oracle["conversations"]:
        assert chatml.render(conv["messages"]) == conv["prompt"], conv["name"]


def test_default_template() -> None:
    assert default_template().render([{"role": "user", "content": "raw prompt"}]) == "raw prompt"


@pytest.mark.parametrize("messages", ["not a list", [1, 2], [None]])
def test_render_refuses_bad_message_lists(messages: object) -> None:
    for src in ("{{ .Prompt }}", "{{ messages }}"):
        with pytest.raises(TemplateError):
            compile_template(src).render(messages)  # type: ignore[arg-type]


def test_go_ignores_jinja_only_arguments_and_jinja_ignores_suffix() -> None:
    go = compile_template("{{ range .Messages }}{{ .Content }}{{ end }}")
    assert go.render([{"role": "user", "content": "x"}], add_generation_prompt=False, bos_token="<s>") == "x"
    j = compile_template("{{ messages[0].content }}")
    assert j.render([{"role": "user", "content": "x"}], suffix="ignored") == "x"
