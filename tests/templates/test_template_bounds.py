"""Hostile templates end quickly, in bounded memory, with a TemplateError naming the limit.

Each case runs in a child process whose address space is capped at 2 GiB (``RLIMIT_AS``) and
whose wall time is capped too, so a case that would build gigabytes fails with MemoryError (or is
killed) instead of taking the machine down; the test then fails because the error is not the
sandbox's own. A case passes only when ``render`` raised a TemplateError that is not about
memory, within a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from kettle.errors import TemplateError
from kettle.templates import TemplateLimits, compile_template

USER = [{"role": "user", "content": "hi"}]
CHILD_WALL_S = 20  # the child is killed after this; a bounded case needs well under a second
FAST_S = 1.5  # seconds a refused case may take to render (the old code took 2-20 s, or ran out of memory)

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from kettle.errors import TemplateError
    from kettle.templates import compile_template
    case = json.loads(sys.stdin.read())
    start = time.monotonic()
    try:
        t = compile_template(case["src"])
        out = t.render([{"role": "user", "content": "hi"}])
        result = {"error": None, "type": None, "len": len(out)}
    except TemplateError as exc:
        result = {"error": str(exc), "type": "TemplateError"}
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"[:300], "type": type(exc).__name__}
    result["elapsed"] = time.monotonic() - start
    print(json.dumps(result))
""")


def run_isolated(src: str) -> dict:
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps({"src": src}), text=True,
                              capture_output=True, timeout=CHILD_WALL_S)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {CHILD_WALL_S}s", "type": "timeout", "elapsed": CHILD_WALL_S}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}: {proc.stderr[-300:]}", "type": "crash",
                "elapsed": time.monotonic() - start}
    result = json.loads(lines[-1])
    result["wall"] = time.monotonic() - start
    return result


def assert_refused(src: str, words: str) -> None:
    result = run_isolated(src)
    assert result["type"] == "TemplateError", result
    assert "memory" not in result["error"] and "MemoryError" not in result["error"], result
    assert words in result["error"], result
    assert result["elapsed"] < FAST_S, result


BIG = "{% set a = 'a' * 16000000 %}"  # 16M characters: one value at the output bound, legal by itself
HEX_X = "0x" + "f" * 600_000  # a 2.4M-bit integer literal (the source may hold 1M characters)
HEX_Y = "0x" + "e" * 300_000

JINJA_CASES = {
    # integers: every operation bounded by the size of its operands, as ** is
    "int-floordiv": ("{% set x = 10 ** 250000 %}{% set y = x * x %}{{ (y // (x + 1)) > 0 }}", "integer"),
    "int-mod": ("{% set x = 10 ** 250000 %}{% set y = x * x %}{{ (y % (x + 1)) > 0 }}", "integer"),
    "int-literal": ("{% set x = " + HEX_X + " %}{% set y = " + HEX_Y + " %}{{ (x // y) > 0 }}", "4300 digits"),
    "int-mul-loop": ("{% set ns = namespace(x=7) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"
                     "{{ ns.x > 0 }}", "integer"),
    "int-from-filter": ("{% set x = ('f' * 600000)|int(base=16) %}{{ (x // 3) > 0 }}", "integer"),
    "int-sum": ("{% set x = 7 ** 15000 %}{{ (([x] * 1000000)|sum) > 0 }}", "sum"),
    "list-sum": ("{{ ([[1] * 10000] * 1000)|sum(start=[])|length }}", "sum"),
    "lipsum": ("{{ lipsum(300000)|length }}", "lipsum"),
    # text built from a list of big strings: measured before it is built
    "print-list": (BIG + "{{ [a] * 1000 }}", "characters"),
    "join-list": (BIG + "{{ ([a] * 600)|join }}", "characters"),
    "string-filter": (BIG + "{{ ([a] * 600)|string|length }}", "characters"),
    "concat": (BIG + "{{ ([a] * 600) ~ 'x' }}", "characters"),
    "percent-format": (BIG + "{{ ('%s' % ([a] * 600,))|length }}", "characters"),
    "percent-fields": (BIG + "{{ (('%(k)s' * 1000) % {'k': a})|length }}", "characters"),
    "brace-format": (BIG + "{{ '" + "{0}" * 200 + "'.format(a)|length }}",
                     "characters"),
    "brace-format-list": (BIG + "{{ '{}'.format([a] * 600)|length }}", "characters"),
    "format-filter": (BIG + "{{ '%s'|format([a] * 600)|length }}", "characters"),
    "replace-list": (BIG + "{{ ([a] * 600)|replace('x', 'y')|length }}", "characters"),
    "center-list": (BIG + "{{ ([a] * 600)|center(10)|length }}", "characters"),
    "upper-list": (BIG + "{{ ([a] * 600)|upper|length }}", "characters"),
    "title-words": ("{% set w = 'a ' * 8000000 %}{{ w|title|length }}", "characters"),
    "wordwrap-words": ("{% set w = 'a ' * 4000000 %}{{ w|wordwrap|length }}", "characters"),
    "tojson-list": (BIG + "{{ ([a] * 600)|tojson|length }}", "characters"),
    "pprint-list": (BIG + "{{ ([a] * 600)|pprint|length }}", "characters"),
    "namespace-repr": (BIG + "{% set ns = namespace(x=[a] * 600) %}{{ ns }}", "characters"),
    "join-nested": (BIG + "{{ 'x'.join([[a] * 600] * 2)|length }}", "characters"),
    "translate": (BIG + "{{ a.translate({97: a})|length }}", "characters"),
    "bytes-repeat": ("{{ ('a'.encode() * 3000000000)|length }}", "characters"),
    # buffers of macros and {% set %} blocks
    "macro-buffer": (BIG + "{% macro f(x) %}" + "{{ x }}" * 200 + "{% endmacro %}{{ f(a)|length }}", "characters"),
    "set-block": (BIG + "{% set y %}{% for i in range(1000) %}{{ a }}{% endfor %}{% endset %}{{ y|length }}",
                  "characters"),
    # many values, each within the bound, kept alive together
    "many-copies": (BIG + "{{ [" + ", ".join(["a * 1"] * 200) + "]|length }}", "built"),
    "many-slices": (BIG + "{{ [" + ", ".join(["a[1:]"] * 200) + "]|length }}", "built"),
    "many-list-copies": ("{% set l = [1] * 1000000 %}{{ [" + ", ".join(["l.copy()"] * 200) + "]|length }}", "built"),
    # lists: measured by their item count before they are built
    "list-of-string": (BIG + "{{ (a|list)|length }}", "items"),
    "batch-fill": ("{{ ([1]|batch(16000000, 0)|list)[0]|length }}", "items"),
    "split": (BIG + "{{ a.split('a')|length }}", "items"),
}


@pytest.mark.parametrize("name", list(JINJA_CASES))
def test_hostile_jinja_is_refused_quickly(name: str) -> None:
    src, words = JINJA_CASES[name]
    src += "{{ messages[0].content }}"
    if name != "int-literal":
        assert compile_template(src).syntax == "jinja"
    assert_refused(src, words)


GO_BIG = '{{ $s := printf "%16777216s" "" }}'  # exactly max_output_chars: legal by itself
GO_CASES = {
    "printf-many": (GO_BIG + "{{ printf \"" + "%s" * 150 + "\" " + " $s" * 150 + " }}", "characters"),
    "print-many": (GO_BIG + "{{ print" + " $s" * 150 + " }}", "characters"),
    "println-many": (GO_BIG + "{{ println" + " $s" * 150 + " }}", "characters"),
    "printf-width-many": ("{{ printf \"" + "%16000000d" * 150 + "\"" + " 1" * 150 + " }}", "characters"),
    "printf-quote": ('{{ $s := printf "%16777213s" "" }}{{ $t := printf "%s%s" $s "\\n" }}{{ printf "%q" $t }}',
                     "characters"),
    "json-big": (GO_BIG + "{{ json $s }}", "characters"),
}


@pytest.mark.parametrize("name", list(GO_CASES))
def test_hostile_go_is_refused_quickly(name: str) -> None:
    src, words = GO_CASES[name]
    src += "{{ .Prompt }}"
    assert compile_template(src).syntax == "go"
    assert_refused(src, words)


def test_a_huge_integer_literal_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="4300 digits"):
        compile_template("{% if messages %}{{ " + "9" * 5000 + " }}{% endif %}")


# -- the bounds themselves, with small limits ----------------------------------------------------
JINJA = "{# jinja #}"  # a comment marker: the source is Jinja


def small() -> TemplateLimits:
    return TemplateLimits(max_output_chars=1000, max_items=100, max_built_bytes=10_000)


@pytest.mark.parametrize("src,words", [
    ("{{ [1] * 101 }}", "more than 100 items"),
    ("{{ 'ab'|list * 51 }}", "more than 100 items"),
    ("{{ range(101)|list }}", "more than 100 items"),
    ("{{ 'x' * 1001 }}", "more than 1000 characters"),
    ("{{ '%*d' % (1001, 1) }}", "more than 1000 characters"),
    ("{% set s = 'x\n' * 450 %}{{ '%r' % s }}", "more than 1000 characters"),
    ("{{ '{:{}}'.format(1, 1001) }}", "more than 1000 characters"),
    ("{{ 'x'.center(1001) }}", "too large"),
    ("{{ ['xxxxxxxxxx'] * 99 }}", "more than 1000 characters"),
    ("{% set s = 'x' * 900 %}{{ [s ~ '1', s ~ '2', s ~ '3', s ~ '4', s ~ '5', s ~ '6', s ~ '7', s ~ '8', "
     "s ~ '9', s ~ '10', s ~ '11', s ~ '12'] | length }}", "built more than 10000"),
])
def test_small_limits_name_the_bound(src: str, words: str) -> None:
    with pytest.raises(TemplateError, match=words):
        compile_template(JINJA + src, small()).render(USER)


@pytest.mark.parametrize("src,expected", [
    ("{{ ['x' * 10] * 9 }}", str(["x" * 10] * 9)),
    ("{{ 'ab'|list * 50 }}", str(["a", "b"] * 50)),
    ("{{ (2 ** 64) * (2 ** 64) // 3 % 1000 }}", str((2 ** 64) * (2 ** 64) // 3 % 1000)),
    ("{{ [1, 2, 3]|sum }}|{{ [1.5, 2]|sum(start=1) }}", "6|4.5"),
    ("{{ lipsum(2, html=false, min=3, max=5)|length > 0 }}", "True"),
    # big numbers are values, not widths: only widths and counts are bounded
    ("{% set s = 'x\n' * 450 %}{{ ('%s' % s)|length }}|{{ ('{}'.format(s))|length }}", "900|900"),
    ("{{ '%d' % 1700000000 }}|{{ '{}'.format(1700000000) }}|{{ 1700000000|filesizeformat }}|{{ [1700000000]|sum }}",
     "1700000000|1700000000|1.7 GB|1700000000"),
    ("{{ '%s-%d' % ('a', 3) }}|{{ '{}{}'.format('b', 4) }}|{{ '%s'|format('c') }}", "a-3|b4|c"),
    ("{% macro f(x) %}<{{ x }}>{% endmacro %}{% set y %}{{ f(1) }}{{ f(2) }}{% endset %}{{ y }}", "<1><2>"),
    ("{{ {'a': [1, 'b']}|tojson }}|{{ {'a': 1}|pprint }}", '{"a": [1, "b"]}|{\'a\': 1}'),
])
def test_legitimate_values_within_small_limits_render(src: str, expected: str) -> None:
    assert compile_template(JINJA + src, small()).render(USER) == expected


def test_work_limit_counts_values_not_reads() -> None:
    """Reading a message's content many times builds nothing: no charge to max_built_bytes."""
    src = ("{% for i in range(50) %}{% if messages[0].content.startswith('x') and messages[0].content|length > 10"
           " and messages[0].content|default('') %}.{% endif %}{% endfor %}")
    msgs = [{"role": "user", "content": "x" * 900}]
    assert compile_template(src, small()).render(msgs) == "." * 50


@pytest.mark.parametrize("src", [
    '{{ $s := printf "%900s" "" }}{{ printf "%s%s" $s $s }}',
    '{{ $s := printf "%900s" "" }}{{ print $s $s }}',
    '{{ $s := printf "%900s" "" }}{{ println $s $s }}',
    '{{ printf "%600d%600d" 1 2 }}',
])
def test_go_printing_stops_at_the_output_bound(src: str) -> None:
    with pytest.raises(TemplateError, match="more than 1000 characters"):
        compile_template(src + "{{ .Prompt }}", small()).render(USER)


def test_go_index_of_a_long_string_copies_nothing() -> None:
    """``index $s i`` in a loop: no copy of a 16 MB string per call (the old code ran out of time)."""
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(200)]
    src = '{{ $s := printf "%16777216s" "" }}{{ range .Messages }}{{ range $.Messages }}{{ index $s 5 }}{{ end }}{{ end }}'
    start = time.monotonic()
    assert compile_template(src).render(msgs) == "32" * 40_000
    assert time.monotonic() - start < FAST_S
