"""Interpreting a Modelfile: typed PARAMETERs, repeats, TEMPLATE checked at create time."""

from __future__ import annotations

import pytest

from kettle.errors import ModelfileError
from kettle.modelfile import interpret, parse


def spec_of(text: str):
    return interpret(parse(text))


def test_parameters_are_typed_and_stop_repeats() -> None:
    spec = spec_of(
        "FROM x\nPARAMETER temperature 1\nPARAMETER num_ctx 4096\nPARAMETER stop <|im_end|>\n"
        'PARAMETER stop "<|im_start|>"\nPARAMETER use_mmap true\nPARAMETER temperature 0.25\n'
    )
    assert spec.parameters == {"temperature": 0.25, "num_ctx": 4096, "use_mmap": True,
                               "stop": ["<|im_end|>", "<|im_start|>"]}
    assert isinstance(spec.parameters["num_ctx"], int) and isinstance(spec.parameters["temperature"], float)


def test_other_commands_collect_in_order() -> None:
    spec = spec_of(
        "FROM base\nSYSTEM one\nSYSTEM two\nLICENSE MIT\nLICENSE BSD\nADAPTER a.gguf\n"
        "MESSAGE user hi\nMESSAGE assistant hello\n"
    )
    assert spec.base.value == "base" and spec.system == "two"
    assert spec.licenses == ("MIT", "BSD")
    assert [a.value for a in spec.adapters] == ["a.gguf"]
    assert spec.messages == ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})
    assert spec.template is None and spec.parameters == {}


BAD_PARAMETERS = [
    ("PARAMETER temperature hot", "expected a number"),
    ("PARAMETER num_ctx -5", "must be at least 0"),
    ("PARAMETER num_ctx 4.5", "PARAMETER num_ctx"),
    ("PARAMETER use_mmap maybe", "PARAMETER use_mmap"),
    ("PARAMETER temprature 1", "unknown option; did you mean 'temperature'"),
    ("PARAMETER nonsense 1", "unknown option"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD_PARAMETERS)
def test_bad_parameters_name_their_line(line: str, fragment: str) -> None:
    with pytest.raises(ModelfileError) as info:
        spec_of(f"FROM x\n# comment\n{line}\n")
    assert fragment in str(info.value) and info.value.line == 3


@pytest.mark.usefixtures("needs_templates")
def test_template_is_compiled_when_the_modelfile_is_read() -> None:
    good = '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ .Prompt }}'
    assert spec_of(f'FROM x\nTEMPLATE """{good}"""').template == good


@pytest.mark.usefixtures("needs_templates")
@pytest.mark.parametrize(("template", "line"), [
    ("{{ if .System }}never closed", None),
    ("line one\n{{ .Prompt", 5),
    ("{{ range .Messages }}{{ end }}\n\n{{ end }}", 6),
])
def test_template_errors_point_into_the_modelfile(template: str, line: int | None) -> None:
    with pytest.raises(ModelfileError) as info:
        spec_of(f'FROM x\n\n# the template:\nTEMPLATE """{template}"""\n')
    assert "TEMPLATE" in str(info.value)
    assert info.value.line is not None and info.value.line >= 4
    if line is not None:
        assert info.value.line == line
