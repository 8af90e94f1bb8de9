"""What the Go executor adds to Go's rules: a whitelist of fields, bounded work, typed errors.

(Agreement with Go itself is in test_go_fixtures.py.)
"""

from __future__ import annotations

import datetime
import math
import time

import pytest

from kettle.errors import TemplateError
from kettle.templates import TemplateLimits, compile_template
from kettle.templates.gotmpl.gofmt import format_float_g, format_float_json, sprintf
from kettle.templates.gotmpl.gojson import UnsupportedValue, marshal
from kettle.templates.gotmpl.values import NIL_ANY, GoList, GoMap

USER = [{"role": "user", "content": "hi"}]


def render(src: str, messages: list[dict] = USER, limits: TemplateLimits | None = None, **kw: object) -> str:
    t = compile_template(src, limits) if limits else compile_template(src)
    assert t.syntax == "go"
    return t.render(messages, **kw)


# -- only whitelisted fields -----------------------------------------------------------------
@pytest.mark.parametrize("src,line", [
    ("{{ .Sytem }}", 1),
    ("ok\n{{ if .Promt }}x{{ end }}", 2),
    ("{{ range .Messages }}{{ end }}\n\n{{ $.Foo }}", 3),
    ("{{ range .Messages }}{{ $.__class__ }}{{ end }}", 1),
    ("{{ with .System }}{{ end }}{{ .__init__ }}", 1),
])
def test_unknown_root_fields_fail_at_compile_time(src: str, line: int) -> None:
    with pytest.raises(TemplateError, match="unknown field") as exc:
        compile_template(src)
    assert exc.value.line == line


@pytest.mark.parametrize("src,line", [
    ("{{ range .Messages }}\n{{ .Nope }}{{ end }}", 2),
    ("{{ range .Messages }}{{ .__class__ }}{{ end }}", 1),
    ("{{ range .Messages }}{{ .Content.__len__ }}{{ end }}", 1),
    ("{{ range .Messages }}{{ .values }}{{ end }}", 1),
    ("{{ with index .Messages 0 }}\n\n{{ .target }}{{ end }}", 3),
    ("{{ $_ := .Messages }}{{ range .Tools }}{{ .Function.Parameters.Properties.x.__dict__ }}{{ end }}", 1),
])
def test_no_python_attribute_is_reachable(src: str, line: int) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string"}}}}}]
    with pytest.raises(TemplateError) as exc:
        render(src, tools=tools)
    assert exc.value.line == line


def test_a_map_key_that_is_missing_is_the_maps_zero_value() -> None:
    """Map keys are data, not attributes: a missing one is Go's zero value, not an error."""
    calls = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}]
    src = "{{ range .Messages }}{{ range .ToolCalls }}[{{ .Function.Arguments.a }}][{{ .Function.Arguments.zz }}]{{ end }}{{ end }}"
    assert render(src, calls) == "[1][<no value>]"


# -- bounded work -------------------------------------------------------------------------------
MANY = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(60)]


def test_iterations_are_bounded() -> None:
    src = "{{ range .Messages }}{{ range $.Messages }}{{ range $.Messages }}{{ end }}{{ end }}{{ end }}"
    with pytest.raises(TemplateError, match="iterations") as exc:
        render(src, MANY, TemplateLimits(max_iterations=10_000))
    assert exc.value.line == 1


def test_output_is_bounded() -> None:
    src = "{{ range .Messages }}\n{{ range $.Messages }}{{ $.System }}{{ end }}{{ end }}"
    with pytest.raises(TemplateError, match="output exceeds 1000") as exc:
        render(src, MANY, TemplateLimits(max_output_chars=1000), system="x" * 100)
    assert exc.value.line == 2


def test_time_is_bounded() -> None:
    src = "{{ range .Messages }}{{ range $.Messages }}{{ range $.Messages }}{{ end }}{{ end }}{{ end }}"
    start = time.monotonic()
    with pytest.raises(TemplateError, match="longer than"):
        render(src, MANY * 4, TemplateLimits(time_limit_s=0.05, max_iterations=10**9))
    assert time.monotonic() - start < 2.0


def test_values_built_in_loops_are_bounded() -> None:
    src = '{{ $s := "xx" }}{{ range .Messages }}\n{{ $s = printf "%s%s" $s $s }}{{ end }}'
    with pytest.raises(TemplateError, match="more than 1000") as exc:
        render(src, MANY, TemplateLimits(max_output_chars=1000))
    assert exc.value.line == 2


def test_printf_width_is_bounded() -> None:
    with pytest.raises(TemplateError, match="too large") as exc:
        render('\n{{ printf "%999999999d" 1 }}', limits=TemplateLimits(max_output_chars=1000))
    assert exc.value.line == 2


def test_source_size_is_bounded() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        compile_template("x" * 101, TemplateLimits(max_source_chars=100))


# -- modes ------------------------------------------------------------------------------------------
def test_legacy_mode_runs_once_per_turn_and_ends_at_the_response() -> None:
    src = "{{ if .System }}[S:{{ .System }}]{{ end }}[U:{{ .Prompt }}][A:{{ .Response }}]</turn>"
    msgs = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}]
    assert render(src, msgs, system="sys") == "[S:sys][U:q1][A:a1]</turn>[U:q2][A:"
    assert render(src, msgs, response="pre") == "[U:q1][A:a1]</turn>[U:q2][A:pre"


def test_messages_mode_sees_the_modelfile_system_as_a_message() -> None:
    src = "{{ range .Messages }}<{{ .Role }}:{{ .Content }}>{{ end }}|{{ .System }}"
    assert render(src, system="sys") == "<system:sys><user:hi>|sys"
    own = [{"role": "system", "content": "mine"}] + USER
    assert render(src, own, system="sys") == "<system:mine><user:hi>|mine"


def test_fill_in_the_middle() -> None:
    src = "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"
    assert render(src, [{"role": "user", "content": "def f("}], suffix=") -> int") == "<PRE> def f( <SUF>) -> int <MID>"


def test_default_template_is_the_prompt() -> None:
    from kettle.templates import default_template
    assert default_template().render(USER) == "hi"


def test_current_date_helpers() -> None:
    today = datetime.date.today()
    out = render("{{ currentDate }}|{{ yesterdayDate \"%Y\" }}{{ range .Messages }}{{ end }}")
    assert out in (f"{today}|{today - datetime.timedelta(days=1)}",
                   f"{datetime.date.today()}|{datetime.date.today() - datetime.timedelta(days=1)}")


@pytest.mark.parametrize("messages,error", [
    ([{"role": "user", "content": 3}], "content must be a string"),
    ([{"role": 1, "content": "x"}], "role must be a string"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}],
     "not valid JSON"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}],
     "JSON object"),
    (["not a dict"], "object"),
])
def test_bad_messages_are_typed_errors(messages: list, error: str) -> None:
    with pytest.raises(TemplateError, match=error):
        render("{{ range .Messages }}{{ .Content }}{{ end }}", messages)


def test_openai_style_tool_call_arguments_are_parsed() -> None:
    msgs = [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{\"b\": 2, \"a\": \"x\"}"}}]}]
    src = "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}{{ .Function.Arguments }}{{ end }}{{ end }}"
    assert render(src, msgs) == 'f{"a":"x","b":2}'


# -- Go's printing and JSON, for values the fixtures do not reach --------------------------------
@pytest.mark.parametrize("x,g,j", [
    (0.0, "0", "0"), (-0.0, "-0", "-0"), (1.0, "1", "1"), (0.1, "0.1", "0.1"), (100000.0, "100000", "100000"),
    (1e6, "1e+06", "1000000"), (1e20, "1e+20", "100000000000000000000"), (1e21, "1e+21", "1e+21"),
    (1.5e-7, "1.5e-07", "1.5e-7"), (123456789.125, "1.23456789125e+08", "123456789.125"),
    (2 ** 53 + 0.0, "9.007199254740992e+15", "9007199254740992"),
])
def test_float_formats(x: float, g: str, j: str) -> None:
    assert format_float_g(x) == g
    assert format_float_json(x) == j


def test_json_refuses_nan_and_the_helper_prints_nothing() -> None:
    with pytest.raises(UnsupportedValue):
        marshal(math.nan)
    assert marshal(GoMap({"b": NIL_ANY, "a": GoList([1.0, "\b\f\u2028<"])})) == '{"a":[1,"\\b\\f\\u2028\\u003c"],"b":null}'


@pytest.mark.parametrize("fmt,args,out", [
    ("%5s|%-5s|%.2s", ["ab", "cd", "xyz"], "   ab|cd   |xy"),
    ("%*d|%-*d|", [4, 1, 3, 2], "   1|2  |"),
    ("%x %X %o", [255, "hi", 8], "ff 6869 %!o(int=8)"),
    ("%q|%v|%d", ["é\x00", True, -3], '"é\\x00"|true|-3'),
    ("% d|%+.1f|%08.3f", [5, 2.25, -3.14159], " 5|+2.2|-003.142"),
])
def test_sprintf_table(fmt: str, args: list, out: str) -> None:
    assert sprintf(fmt, args, 1000) == out
