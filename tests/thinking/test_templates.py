"""A template is told whether to think: Go's .Think/.ThinkLevel/.IsThinkSet, Jinja's
enable_thinking and reasoning_effort (kettle.templates with kettle.thinking.Think)."""

import pytest

from kettle.templates import compile_template
from kettle.thinking import Think

MSGS = [{"role": "user", "content": "hi"}]
GO = ("{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}<assistant>"
      "{{ if .IsThinkSet }}{{ if .Think }}<think>{{ .ThinkLevel }}{{ else }}<think></think>{{ end }}{{ end }}")
JINJA = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
         "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
         "{% if reasoning_effort is defined %}[{{ reasoning_effort }}]{% endif %}")


@pytest.mark.parametrize(("source", "think", "expected"), [
    (GO, None, "<user>hi<assistant>"),
    (GO, Think(True, "medium"), "<user>hi<assistant><think>medium"),
    (GO, Think(True, "high"), "<user>hi<assistant><think>high"),
    (GO, Think(False), "<user>hi<assistant><think></think>"),
    (JINJA, None, "<user>hi<assistant>"),
    (JINJA, Think(True, "low"), "<user>hi<assistant>[low]"),
    (JINJA, Think(False), "<user>hi<assistant><think></think>"),
])
def test_template_told_to_think(source, think, expected):
    template = compile_template(source)
    assert template.render(MSGS, think=think) == expected
    assert template.render(MSGS) == compile_template(source).render(MSGS)  # one render leaves no trace
