"""Modelfile parser: tables of good and bad input, line numbers, round trips."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kettle.errors import ModelfileError
from kettle.modelfile import Command, Instruction, Modelfile, parse, quote

F, P, T, S, A, L, M = (Instruction.FROM, Instruction.PARAMETER, Instruction.TEMPLATE, Instruction.SYSTEM,
                       Instruction.ADAPTER, Instruction.LICENSE, Instruction.MESSAGE)

MARIO = """FROM smollm2
PARAMETER temperature 1
PARAMETER num_ctx 4096
SYSTEM You are Mario from super mario bros, acting as an assistant.
"""

# (source, [(instruction, key, value, line)])
GOOD = [
    (MARIO, [(F, "", "smollm2", 1), (P, "temperature", "1", 2), (P, "num_ctx", "4096", 3),
             (S, "", "You are Mario from super mario bros, acting as an assistant.", 4)]),
    ("from x\nParameter top_k 10\nsYsTeM hi", [(F, "", "x", 1), (P, "top_k", "10", 2), (S, "", "hi", 3)]),
    ("# comment\n\n   # indented comment\nFROM x\n\n", [(F, "", "x", 4)]),
    ('FROM x\nSYSTEM """You are\n\n  Mario. # not a comment\n"""\nPARAMETER seed 1',
     [(F, "", "x", 1), (S, "", "You are\n\n  Mario. # not a comment\n", 2), (P, "seed", "1", 6)]),
    ('FROM x\nSYSTEM "two\nlines"', [(F, "", "x", 1), (S, "", "two\nlines", 2)]),
    ("FROM x\r\nSYSTEM \"\"\"a\r\nb\"\"\"\r\nPARAMETER stop x\r\n",
     [(F, "", "x", 1), (S, "", "a\nb", 2), (P, "stop", "x", 4)]),
    ("FROM x\rSYSTEM y\r", [(F, "", "x", 1), (S, "", "y", 2)]),
    ('FROM x\nPARAMETER stop "<|im_end|>"\nPARAMETER stop <|im_start|>',
     [(F, "", "x", 1), (P, "stop", "<|im_end|>", 2), (P, "stop", "<|im_start|>", 3)]),
    ("FROM x\nMESSAGE user Is Toronto in Canada?\nMESSAGE Assistant yes\nMESSAGE system be brief",
     [(F, "", "x", 1), (M, "user", "Is Toronto in Canada?", 2), (M, "assistant", "yes", 3), (M, "system", "be brief", 4)]),
    ("FROM\tx\nPARAMETER\ttemperature\t0.5  \t", [(F, "", "x", 1), (P, "temperature", "0.5", 2)]),
    ("\ufeffFROM x", [(F, "", "x", 1)]),
    ("  FROM ./models/my model.gguf  ", [(F, "", "./models/my model.gguf", 1)]),
    ('FROM x\nTEMPLATE """{{ .System }} {{ .Prompt }}"""', [(F, "", "x", 1), (T, "", "{{ .System }} {{ .Prompt }}", 2)]),
    ('FROM x\nSYSTEM ""\nLICENSE """"""', [(F, "", "x", 1), (S, "", "", 2), (L, "", "", 3)]),
    ('FROM x\nLICENSE """MIT"""\nLICENSE Apache-2.0', [(F, "", "x", 1), (L, "", "MIT", 2), (L, "", "Apache-2.0", 3)]),
    ("FROM x\nADAPTER ./lora.gguf", [(F, "", "x", 1), (A, "", "./lora.gguf", 2)]),
    ("FROM x\nSYSTEM Tu es Mario 🍄, très\tgentil", [(F, "", "x", 1), (S, "", "Tu es Mario 🍄, très\tgentil", 2)]),
    ('FROM x\nSYSTEM """a""" b\nc"""', [(F, "", "x", 1), (S, "", 'a""" b\nc', 2)]),  # ollama: closes only at a line end
]

# (source, message fragment, line)
BAD = [
    ("FROM x\nBOGUS y", "unknown instruction 'BOGUS'", 2),
    ("FROM: x", "unknown instruction 'FROM:'", 1),
    ("FROM x\n123 y", "unknown instruction '123'", 2),
    ("FROM x\nREQUIRES 0.14.0", "REQUIRES is an ollama instruction", 2),
    ("FROM x\nPARAMETER", "PARAMETER needs a name and a value", 2),
    ("FROM x\nPARAMETER temperature", "PARAMETER temperature needs a value", 2),
    ("FROM x\nPARAMETER temperature   \t", "PARAMETER temperature needs a value", 2),
    ("FROM x\nPARAMETER temp-erature 1", "invalid parameter name", 2),
    ("FROM x\nSYSTEM", "SYSTEM needs a value", 2),
    ("FROM", "FROM needs a value", 1),
    ('FROM x\n\nSYSTEM """never closed\nmore\n', 'unterminated """', 3),
    ('FROM x\nSYSTEM """"', 'unterminated """', 2),
    ('FROM x\nTEMPLATE "open', 'unterminated "', 2),
    ("FROM x\nMESSAGE robot hi", "MESSAGE role must be one of system, user, assistant", 2),
    ("FROM x\nMESSAGE user", "MESSAGE user needs a value", 2),
    ("FROM x\nMESSAGE", "MESSAGE needs a role and a value", 2),
    ("SYSTEM hi", "no FROM line", None),
    ("", "no FROM line", None),
    ("# only a comment\n", "no FROM line", None),
    ("FROM a\nFROM b", "this is the second", 2),
    ("FROM x\nSYSTEM a\x00b", "NUL", 2),
    (b"FROM x\nSYSTEM a\x00b", "NUL byte", 2),
    (b"FROM x\n\nSYSTEM caf\xe9", "invalid UTF-8", 3),
    (b"FROM x\r\n\r\nSYSTEM \xc3", "invalid UTF-8", 3),
    (codecs.BOM_UTF16_LE + b"F\x00R", "invalid UTF-16", None),
    ("FROM x\nSYSTEM " + "a" * (10 << 20), "line is longer than", 2),
    (b"FROM x\n" + b"#" * (10 << 20), "line is longer than", 2),
    ("FROM x\n" + "SYSTEM a\n" * (4 << 20), "larger than", None),
]


def table(cases: list) -> list:
    return [pytest.param(*c, id=f"{i}:{str(c[0])[:30]!r}") for i, c in enumerate(cases)]


@pytest.mark.parametrize(("source", "expected"), table(GOOD))
def test_good(source: str, expected: list) -> None:
    mf = parse(source)
    assert [(c.instruction, c.key, c.value, c.line) for c in mf.commands] == expected
    assert parse(str(mf)) == mf  # str() round-trips
    assert parse(source.encode()) == mf  # bytes input


@pytest.mark.parametrize(("source", "fragment", "line"), table(BAD))
def test_bad(source: str | bytes, fragment: str, line: int | None) -> None:
    with pytest.raises(ModelfileError) as info:
        parse(source)
    assert fragment in str(info.value)
    assert info.value.line == line


def test_utf16_with_bom_is_decoded() -> None:
    assert parse(MARIO.encode("utf-16")) == parse(MARIO)


def test_str_is_canonical_text() -> None:
    mf = parse('from x\nparameter stop "<|im_end|>"\nsystem """ padded """\nmessage USER hi\n')
    assert str(mf) == 'FROM x\nPARAMETER stop <|im_end|>\nSYSTEM " padded "\nMESSAGE user hi\n'


QUOTES = [
    ("plain", "plain"),
    ("", '""'),
    (" lead", '" lead"'),
    ("two\nlines", '"two\nlines"'),
    ('"starts with a quote', '""starts with a quote"'),
    ('line ends with "\nnext', '"""line ends with "\nnext"""'),
    ('say "hi"', 'say "hi"'),
]


@pytest.mark.parametrize(("value", "text"), QUOTES)
def test_quote(value: str, text: str) -> None:
    assert quote(value) == text
    assert parse(f"FROM x\nSYSTEM {text}").commands[1].value == value


@pytest.mark.parametrize("value", ['a"""\nb', "a\x00b", "a\rb"])
def test_unwritable_values_are_an_error(value: str) -> None:
    with pytest.raises(ModelfileError, match="cannot be written"):
        str(Modelfile((Command(F, "x"), Command(S, value))))


@pytest.mark.parametrize(("args", "fragment"), [
    ((P, "1", ""), "needs name"),
    ((P, "1", "bad name"), "invalid parameter name"),
    ((M, "hi", "robot"), "MESSAGE role"),
    ((S, "hi", "user"), "takes no key"),
])
def test_commands_built_in_code_are_checked(args: tuple, fragment: str) -> None:
    with pytest.raises(ModelfileError, match=fragment):
        Command(*args)


VALUE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r")


@settings(max_examples=300, deadline=None)
@given(st.text(VALUE_CHARS, max_size=40))
def test_any_value_round_trips_or_is_refused(value: str) -> None:
    mf = Modelfile((Command(F, "x"), Command(S, value), Command(M, value, "user")))
    try:
        text = str(mf)
    except ModelfileError:
        assert '"""\n' in value.replace(" ", "").replace("\t", "")  # only the documented case
        return
    assert parse(text) == mf
