"""GGUF Jinja chat templates: HF's semantics, llama.cpp's reference prompts, and the sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gguf
import pytest

from kettle.errors import TemplateError
from kettle.templates import TemplateLimits, compile_template

FIXTURES = Path(__file__).parent / "fixtures"
USER = [{"role": "user", "content": "hi"}]


def jinja(src: str, limits: TemplateLimits | None = None):
    t = compile_template(src, limits) if limits else compile_template(src)
    assert t.syntax == "jinja"
    return t


@pytest.fixture(scope="module")
def smollm2_template(smollm2_path: Path) -> str:
    field = gguf.GGUFReader(smollm2_path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def test_smollm2_gguf_template_matches_llama_cpp(smollm2_template: str) -> None:
    oracle = json.loads((FIXTURES / "oracle_smollm2_chat.json").read_text(encoding="utf-8"))
    assert smollm2_template == oracle["template_text_from_props"]
    template = jinja(smollm2_template)
    assert len(oracle["conversations"]) == 3
    for conv in oracle["conversations"]:
        assert template.render(conv["messages"]) == conv["prompt"], conv["name"]


def test_llama_cpp_chatml_fallback_matches() -> None:
    oracle = json.loads((FIXTURES / "oracle_gemma3_chat.json").read_text(encoding="utf-8"))
    template = jinja(oracle["template_text_from_props"])
    for conv in oracle["conversations"]:
        assert template.render(conv["messages"]) == conv["prompt"], conv["name"]


def test_hf_variables_and_helpers() -> None:
    src = ("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}"
           "{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}GO{% endif %}{{ eos_token }}")
    t = jinja(src)
    tools = [{"type": "function", "function": {"name": "f", "description": "é <b>"}}]
    assert t.render(USER, bos_token="<s>", eos_token="</s>", tools=tools) == \
        '<s>user:hi|[{"type": "function", "function": {"name": "f", "description": "é <b>"}}]GO</s>'
    assert t.render(USER, add_generation_prompt=False) == "user:hi|"


def test_tojson_options_and_strftime() -> None:
    t = jinja("{{ messages[0] | tojson(indent=2, sort_keys=true) }}|{{ strftime_now('%Y') }}")
    out = t.render([{"role": "user", "content": "x"}])
    assert out.startswith('{\n  "content": "x",\n  "role": "user"\n}|') and out[-4:].isdigit()


def test_trim_blocks_loopcontrols_and_generation() -> None:
    src = "{% for m in messages %}\n{% if loop.index > 1 %}{% break %}{% endif %}\n  {% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}"
    assert jinja(src).render(USER * 3) == "hi"  # trim_blocks eats the newline after a tag


def test_system_and_response() -> None:
    src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    t = jinja(src)
    assert t.render(USER, system="S") == "<system>S</system><user>hi</user><assistant>"
    assert t.render([{"role": "system", "content": "mine"}] + USER, system="S").startswith("<system>mine</system>")
    assert t.render(USER, response="Sure,") == "<user>hi</user><assistant>Sure,"


def test_raise_exception_is_a_template_error_with_line() -> None:
    t = jinja("ok\n{% if messages[0].role != 'system' %}{{ raise_exception('need a system message') }}{% endif %}")
    with pytest.raises(TemplateError, match="need a system message") as exc:
        t.render(USER)
    assert exc.value.line == 2


@pytest.mark.parametrize("src,line", [
    ("{% for m in messages %}\n{{ m }\n{% endfor %}", 2),
    ("{% if messages %}\n\n{% endfor %}", 3),
    ("{{ messages | nosuchfilter }}", 1),
])
def test_syntax_errors_at_compile_time(src: str, line: int) -> None:
    with pytest.raises(TemplateError) as exc:
        compile_template(src)
    assert exc.value.line == line


def test_runtime_error_has_line() -> None:
    with pytest.raises(TemplateError, match="TypeError") as exc:
        jinja("{% set x = 1 %}\n\n{{ messages[0].content + x }}").render(USER)
    assert exc.value.line == 3


# -- the sandbox -------------------------------------------------------------------------------
@pytest.mark.parametrize("expr", [
    "''.__class__.__mro__",
    "raise_exception.__globals__",
    "cycler.__init__.__globals__.os",
    "messages.__class__.__subclasses__()",
    "strftime_now.__globals__['__builtins__']",
    "namespace.__init__.__globals__",
    "messages.append(1)",
    "(messages[0]).update({'a': 1})",
])
def test_sandbox_refuses_internals(expr: str) -> None:
    t = jinja("{% if messages %}{{ " + expr + " }}{% endif %}")
    with pytest.raises(TemplateError, match="unsafe"):
        t.render(USER)


@pytest.mark.parametrize("src,words", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages }}", "iterations"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}{{ messages }}", "recursed"),
    ("{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}", "recursed"),
])
def test_runaway_loops_stop_quickly(src: str, words: str) -> None:
    start = time.monotonic()
    with pytest.raises(TemplateError, match=words):
        jinja(src).render(USER)
    assert time.monotonic() - start < 2.0


def test_slow_template_hits_the_deadline() -> None:
    src = "{% for i in range(100000) %}{% for j in range(100000) %}{{ messages[0].content }}{% endfor %}{% endfor %}"
    start = time.monotonic()
    with pytest.raises(TemplateError, match="longer than"):
        jinja(src, TemplateLimits(time_limit_s=0.2, max_iterations=10**12)).render(USER)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("src", [
    "{{ 'a' * 1000000000 }}",
    "{{ messages * 100000000 }}",
    "{% set a = 'xxxxxxxxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
    "{{ 2 ** 100000000 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'a' | center(999999999) }}",
    "{{ ('a\n' * 100000) | indent(10000) }}",
    "{{ ('a' * 100000).replace('a', 'b' * 100000) }}",
    "{{ ('a' * 100000) | replace('a', 'b' * 100000) }}",
    "{{ ('x' * 1000000).join(range(100000)|map('string')|list) }}",
    "{{ ('\t' * 1000000).expandtabs(1000) }}",
    "{{ messages | tojson(indent=100000) }}",
])
def test_huge_output_is_refused_before_it_is_built(src: str) -> None:
    start = time.monotonic()
    with pytest.raises(TemplateError):
        jinja(src + "{{ messages[0].content }}").render(USER)
    assert time.monotonic() - start < 2.0


def test_output_limit() -> None:
    t = jinja("{% for m in messages %}{{ m.content }}{% endfor %}", TemplateLimits(max_output_chars=100))
    assert t.render([{"role": "user", "content": "x" * 100}]) == "x" * 100
    with pytest.raises(TemplateError, match="output exceeds 100"):
        t.render([{"role": "user", "content": "x" * 101}])


def test_renders_are_independent_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    t = jinja("{% for m in messages %}{{ m.content }}{% endfor %}")
    convs = [[{"role": "user", "content": str(i) * 50}] for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(t.render, convs))
    assert outs == [str(i) * 50 for i in range(40)]
