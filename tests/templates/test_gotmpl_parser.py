"""Go template lexer and parser: token streams, tree shapes, round trips, errors with lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kettle.errors import TemplateError
from kettle.templates.gotmpl.lexer import Tok, lex
from kettle.templates.gotmpl.nodes import (
    ActionNode, FieldNode, IfNode, ListNode, NumberNode, PipeNode, RangeNode, TextNode, VariableNode,
)
from kettle.templates.gotmpl.parser import parse
from kettle.templates.ollama import FUNCS

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = frozenset(FUNCS)


def p(src: str, depth: int = 100) -> ListNode:
    return parse(src, NAMES, depth)


LEX_CASES = [
    ("text only", "hello", [(Tok.TEXT, "hello"), (Tok.EOF, "")]),
    ("field chain", "{{.A.B}}", [(Tok.LEFT_DELIM, "{{"), (Tok.FIELD, ".A"), (Tok.FIELD, ".B"),
                                 (Tok.RIGHT_DELIM, "}}"), (Tok.EOF, "")]),
    ("trim both sides", "a \n{{- $x := 1 -}}\n b",
     [(Tok.TEXT, "a"), (Tok.LEFT_DELIM, "{{"), (Tok.VARIABLE, "$x"), (Tok.SPACE, " "), (Tok.DECLARE, ":="),
      (Tok.SPACE, " "), (Tok.NUMBER, "1"), (Tok.RIGHT_DELIM, "}}"), (Tok.TEXT, "b"), (Tok.EOF, "")]),
    ("negative number is not a trim", "{{-3}}", [(Tok.LEFT_DELIM, "{{"), (Tok.NUMBER, "-3"),
                                                 (Tok.RIGHT_DELIM, "}}"), (Tok.EOF, "")]),
    ("keywords and literals", "{{if true}}{{else}}{{end}}",
     [(Tok.LEFT_DELIM, "{{"), (Tok.IF, "if"), (Tok.SPACE, " "), (Tok.BOOL, "true"), (Tok.RIGHT_DELIM, "}}"),
      (Tok.LEFT_DELIM, "{{"), (Tok.ELSE, "else"), (Tok.RIGHT_DELIM, "}}"),
      (Tok.LEFT_DELIM, "{{"), (Tok.END, "end"), (Tok.RIGHT_DELIM, "}}"), (Tok.EOF, "")]),
    ("strings", "{{\"a\\\"b\" `r` 'c'}}",
     [(Tok.LEFT_DELIM, "{{"), (Tok.STRING, '"a\\"b"'), (Tok.SPACE, " "), (Tok.RAW_STRING, "`r`"),
      (Tok.SPACE, " "), (Tok.CHAR_CONSTANT, "'c'"), (Tok.RIGHT_DELIM, "}}"), (Tok.EOF, "")]),
    ("comment is one token", "a{{/* x */}}b", [(Tok.TEXT, "a"), (Tok.COMMENT, "/* x */"), (Tok.TEXT, "b"),
                                              (Tok.EOF, "")]),
    ("dot and root", "{{. $}}", [(Tok.LEFT_DELIM, "{{"), (Tok.DOT, "."), (Tok.SPACE, " "), (Tok.VARIABLE, "$"),
                                 (Tok.RIGHT_DELIM, "}}"), (Tok.EOF, "")]),
]


@pytest.mark.parametrize("name,src,expected", LEX_CASES, ids=[c[0] for c in LEX_CASES])
def test_lexer(name: str, src: str, expected: list[tuple[Tok, str]]) -> None:
    assert [(i.typ, i.val) for i in lex(src)] == expected


def test_lexer_lines() -> None:
    items = lex("a\nb{{ .X }}\n\n{{ .Y\n}}")
    assert [(i.typ, i.line) for i in items if i.typ is Tok.FIELD] == [(Tok.FIELD, 2), (Tok.FIELD, 4)]


# (source, str(tree)) -- str() is normalized source that parses back to the same tree
STR_CASES = [
    ("{{ .A.B }}", "{{.A.B}}"),
    ("x {{- .A -}} y", "x{{.A}}y"),
    ("{{- if .X -}} a {{- else if .Y }}b{{ else }}c{{ end }}", "{{if .X}}a{{else if .Y}}b{{else}}c{{end}}"),
    ("{{ if .X }}a{{ else }}{{ if .Y }}b{{ end }}{{ end }}", "{{if .X}}a{{else if .Y}}b{{end}}"),
    ("{{ range $i, $m := .Messages }}{{ $m.Role }}{{ else }}none{{ end }}",
     "{{range $i, $m := .Messages}}{{$m.Role}}{{else}}none{{end}}"),
    ("{{ with $x := .A }}{{ . }}{{ end }}", "{{with $x := .A}}{{.}}{{end}}"),
    ("{{ $x := 1 }}{{ $x = 2 }}{{ $ }}", "{{$x := 1}}{{$x = 2}}{{$}}"),
    ("{{ (index .M 0).Content | printf \"%s\" }}", '{{(index .M 0).Content | printf "%s"}}'),
    ("{{ eq (len (slice $.Messages $i)) 1 }}", "{{eq (len (slice $.Messages $i)) 1}}"),
    ("{{/* c */}}x{{ `raw` }}{{ 'a' }}{{ 0x1F }}{{ 1e3 }}{{ nil }}", "{{/* c */}}x{{`raw`}}{{'a'}}{{0x1F}}{{1e3}}{{nil}}"),
    ("{{ range .A }}{{ if .B }}{{ break }}{{ end }}{{ continue }}{{ end }}",
     "{{range .A}}{{if .B}}{{break}}{{end}}{{continue}}{{end}}"),
]


@pytest.mark.parametrize("src,expected", STR_CASES)
def test_str_of_tree(src: str, expected: str) -> None:
    tree = p(src) if "$i" not in src else p("{{ $i := 0 }}" + src)
    text = str(tree)
    assert text.endswith(expected)
    assert p(text) == tree  # round trip: same tree
    assert str(p(text)) == text  # and a fixed point


def test_tree_shape() -> None:
    tree = p("hi {{ if .A }}{{ .B }}{{ end }}{{ range $i, $m := .C }}{{ $i }}{{ end }}")
    assert isinstance(tree.nodes[0], TextNode) and tree.nodes[0].text == "hi "
    branch = tree.nodes[1]
    assert isinstance(branch, IfNode) and branch.else_list is None
    assert branch.pipe.cmds[0].args == (FieldNode(("A",)),)
    assert isinstance(branch.list.nodes[0], ActionNode)
    rng = tree.nodes[2]
    assert isinstance(rng, RangeNode)
    assert rng.pipe.decl == (VariableNode(("$i",)), VariableNode(("$m",)))
    assert not rng.pipe.is_assign


@pytest.mark.parametrize("src,value", [
    ("1", 1), ("-2", -2), ("1.5", 1.5), ("1e6", 1e6), ("0x1F", 31), ("0o17", 15), ("017", 15),
    ("0b101", 5), ("1_000", 1000), ("'a'", 97), ("'\\n'", 10), ("1.0", 1.0),
])
def test_number_values(src: str, value: int | float) -> None:
    node = p("{{ " + src + " }}").nodes[0]
    assert isinstance(node, ActionNode) and isinstance(node.pipe, PipeNode)
    number = node.pipe.cmds[0].args[0]
    assert isinstance(number, NumberNode)
    assert number.value == value and type(number.value) is type(value)


def _ollama_sources() -> list[tuple[str, str]]:
    fx = json.loads((FIXTURES / "go_renders.json").read_text(encoding="utf-8"))
    errors = {r["template"] for r in fx["renders"] if "error" in r and r["error"].startswith("template: :") and
              "executing" not in r["error"]}
    return sorted((n, s) for n, s in fx["templates"].items() if n not in errors)


@pytest.mark.parametrize("name,src", _ollama_sources(), ids=[n for n, _ in _ollama_sources()])
def test_round_trip_of_every_fixture_template(name: str, src: str) -> None:
    tree = p(src)
    assert p(str(tree)) == tree
    assert str(p(str(tree))) == str(tree)


# (source, line, words of the message) -- Go refuses these too, on the same line
ERROR_CASES = [
    ("{{ if .System }}\nno end", 2, "unexpected EOF"),
    ("a\n\n{{ end }}", 3, "unexpected {{end}}"),
    ("x\n{{ $nope }}", 2, "undefined variable"),
    ("{{ nosuchfunc 1 }}", 1, "not defined"),
    ("{{ .System | 3 }}", 1, "non executable command in pipeline stage 2"),
    ("a\n{{ break }}", 2, "outside {{range}}"),
    ("a\nb\n{{ \"unterminated }}", 3, "unterminated quoted string"),
    ("{{ (1 }}", 1, "unclosed left paren"),
    ("{{ 1) }}", 1, "unexpected"),
    ("a {{ else }} b", 1, "unexpected {{else}}"),
    ("{{ range $a, $b, $c := .M }}{{ end }}", 1, "too many declarations"),
    ("x\n{{ .System ", 2, "unclosed action"),
    ("{{/* never closed }}", 1, "unclosed comment"),
    ("{{/* x */ }}", 1, "comment ends before closing delimiter"),
    ("{{ 12abc }}", 1, "bad number syntax"),
    ("{{ }}", 1, "missing value"),
    ("{{ with .A }}a{{ else with .B }}b{{ end }}", 1, "with"),
    ('{{ "a".Foo }}', 1, "unexpected . after term"),
    ("a\n{{-/* x */}}", 2, "number"),
    ("{{ 3 :x }}", 1, "expected :="),
    ("{{ .A\x01 }}", 1, "bad character"),
    ("{{ \"\\q\" }}", 1, "invalid syntax"),
    ("{{ 'ab' }}", 1, "malformed character constant"),
    # kettle-specific refusals
    ('{{ define "x" }}{{ end }}', 1, "not supported"),
    ('a\n{{ template "x" }}', 2, "not supported"),
    ('{{ block "x" . }}{{ end }}', 1, "not supported"),
    ("\n\n{{ $y = 1 }}", 3, "undefined variable"),
    ("{{ html .X }}", 1, "not defined"),
    ("{{ call .X }}", 1, "not defined"),
    ("{{ 1i }}", 1, "complex"),
    ("{{ 99999999999999999999 }}", 1, "overflows int"),
]


@pytest.mark.parametrize("src,line,words", ERROR_CASES, ids=[c[2] for c in ERROR_CASES])
def test_parse_errors(src: str, line: int, words: str) -> None:
    with pytest.raises(TemplateError) as exc:
        p(src)
    assert exc.value.line == line
    assert words in str(exc.value)


def test_nesting_depth_is_bounded() -> None:
    deep = "{{ if 1 }}" * 50 + "{{ end }}" * 50
    assert p(deep, depth=50)
    with pytest.raises(TemplateError, match="nesting"):
        p("{{ if 1 }}" * 51 + "{{ end }}" * 51, depth=50)
    with pytest.raises(TemplateError, match="nesting"):
        p("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", depth=100)
