"""Byte-for-byte agreement with Go's own text/template, driven the way ollama drives it.

``fixtures/go_renders.json`` was written by ``tools/gotemplate-fixtures`` (Go): every ollama
template in ``kettle/templates/builtin`` and ``fixtures/ollama`` rendered with every
conversation of ``fixtures/cases.json``, plus the executor "semantics" cases. Regenerate with
``cd tools/gotemplate-fixtures && go run . -root ../..`` after changing any of those inputs.
Where Go fails, kettle must fail too, on the same line.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from kettle.errors import TemplateError
from kettle.templates import ChatTemplate, compile_template

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
BUILTIN = HERE.parent.parent / "kettle" / "templates" / "builtin"
GO = json.loads((FIXTURES / "go_renders.json").read_text(encoding="utf-8"))
CONVERSATIONS = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))["conversations"]
GO_LINE = re.compile(r"template: :(\d+)")

BY_TEMPLATE: dict[str, list[dict]] = defaultdict(list)
for _render in GO["renders"]:
    BY_TEMPLATE[_render["template"]].append(_render)


def render(template: ChatTemplate, conversation: str) -> str:
    c = CONVERSATIONS[conversation]
    return template.render(c["messages"], system=c.get("system"), tools=c.get("tools"),
                           suffix=c.get("suffix", ""), response=c.get("response", ""))


def check(name: str) -> None:
    try:
        template = compile_template(GO["templates"][name])
    except TemplateError as exc:
        template, compile_error = None, exc
    for r in BY_TEMPLATE[name]:
        if template is None:
            assert "error" in r, f"{name}: kettle refused a template Go accepts: {compile_error}"
            assert compile_error.line == int(GO_LINE.match(r["error"]).group(1)), r["error"]
            continue
        if "error" in r:
            with pytest.raises(TemplateError) as exc:
                render(template, r["conversation"])
            assert exc.value.line == int(GO_LINE.match(r["error"]).group(1)), (r["conversation"], r["error"])
        else:
            assert render(template, r["conversation"]) == r["output"], (name, r["conversation"])


OLLAMA = sorted(n for n in GO["templates"] if not n.startswith("semantics/"))
SEMANTICS = sorted(n for n in GO["templates"] if n.startswith("semantics/"))


@pytest.mark.parametrize("name", OLLAMA)
def test_ollama_template_renders_like_go(name: str) -> None:
    assert len(BY_TEMPLATE[name]) == len(CONVERSATIONS)
    check(name)


@pytest.mark.parametrize("name", SEMANTICS)
def test_executor_semantics_like_go(name: str) -> None:
    check(name)


def test_fixtures_cover_the_template_files() -> None:
    """The fixture file is current: it holds exactly the template files, with their text."""
    files = {f.name.rsplit(".", 1)[0]: f for d in (BUILTIN, FIXTURES / "ollama")
             for f in d.iterdir() if f.suffix in (".tmpl", ".gotmpl")}
    assert set(files) == set(OLLAMA)
    for name, path in files.items():
        assert GO["templates"][name] == path.read_text(encoding="utf-8"), name
    cases = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))["semantics"]
    assert {"semantics/" + c["name"]: c["template"] for c in cases} == {n: GO["templates"][n] for n in SEMANTICS}


def test_every_supported_template_was_rendered_with_the_core_conversations() -> None:
    core = {"user", "system-user", "user-assistant-user", "system-user-assistant-user", "tools", "tool-calls"}
    for name in OLLAMA:
        assert core <= {r["conversation"] for r in BY_TEMPLATE[name]}
        assert not [r for r in BY_TEMPLATE[name] if "error" in r], name  # ollama's templates all render
