'''Modelfile text -> a neutral tree of commands (ollama ``parser/parser.go``).

Syntax, line by line::

    # a comment (only at the start of a line)
    FROM <model name | path.gguf | sha256:<hex>>
    PARAMETER <name> <value>          name: letters, digits, "_"
    TEMPLATE <value>
    SYSTEM <value>
    ADAPTER <path | sha256:<hex>>
    DRAFT <model name | path.gguf | sha256:<hex>>    a draft model for speculative decoding
    LICENSE <value>
    MESSAGE <system|user|assistant> <value>

Instruction names are case-insensitive. A value is the rest of the line, with
surrounding spaces and tabs removed, or a quoted value that may span lines:
``"..."`` or ``"""..."""``. As in ollama, a quoted value ends at the first line
whose end (trailing blanks ignored) closes the quote; there are no escapes.
Line breaks may be LF, CRLF or CR; inside values they become LF. Bytes must be
UTF-8 (a UTF-8 BOM is skipped, UTF-16 with a BOM is decoded).

``parse`` checks syntax only (plus: exactly one FROM). Typing the PARAMETERs
and checking the TEMPLATE is ``interpret`` (spec.py). ``str(modelfile)``
writes text that parses back to an equal tree (comments and blank lines are
not kept; line numbers do not take part in equality).

Differences from ollama, on purpose: tabs inside values are kept (ollama
drops them); ``MESSAGE`` roles are case-insensitive; the ollama-only
instructions REQUIRES, RENDERER and PARSER are rejected by name; a
second FROM is an error (ollama merges several model files).
'''

from __future__ import annotations

import codecs
import enum
import re
from dataclasses import dataclass, field

from kettle.errors import ModelfileError

MAX_MODELFILE_BYTES = 32 << 20  # a whole Modelfile
MAX_LINE_CHARS = 1 << 20  # one line; a longer one is an error, not a slow parse

MESSAGE_ROLES = ("system", "user", "assistant")
UNSUPPORTED = ("REQUIRES", "RENDERER", "PARSER")  # ollama has them; kettle does not

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_BLANKS = " \t"
_WORD = re.compile(r"([A-Za-z]+)(?=[ \t]|$)")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")
_TOKEN = re.compile(r"[^ \t]+")
_QUOTES = ('"""', '"')


class Instruction(enum.StrEnum):
    FROM = "FROM"
    PARAMETER = "PARAMETER"
    TEMPLATE = "TEMPLATE"
    SYSTEM = "SYSTEM"
    ADAPTER = "ADAPTER"
    DRAFT = "DRAFT"
    LICENSE = "LICENSE"
    MESSAGE = "MESSAGE"


_KEYED = {Instruction.PARAMETER: "name", Instruction.MESSAGE: "role"}


@dataclass(frozen=True)
class Command:
    """One instruction. ``key`` is the PARAMETER name or MESSAGE role, else "".

    ``line`` is the 1-based line the command starts on (0 when built in code);
    it does not take part in equality.
    """

    instruction: Instruction
    value: str
    key: str = ""
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        keyed = self.instruction in _KEYED
        if keyed != bool(self.key):
            raise ModelfileError(f"{self.instruction} {'needs' if keyed else 'takes no'} {_KEYED.get(self.instruction, 'key')}", self.line or None)
        if self.instruction is Instruction.PARAMETER and not _PARAM_NAME.fullmatch(self.key):
            raise ModelfileError(f"invalid parameter name {self.key!r}", self.line or None)
        if self.instruction is Instruction.MESSAGE and self.key not in MESSAGE_ROLES:
            raise ModelfileError(f"MESSAGE role must be one of {', '.join(MESSAGE_ROLES)}", self.line or None)

    def __str__(self) -> str:
        head = f"{self.instruction} {self.key} " if self.key else f"{self.instruction} "
        return head + quote(self.value)


@dataclass(frozen=True)
class Modelfile:
    """The commands of a Modelfile, in order."""

    commands: tuple[Command, ...]

    def __str__(self) -> str:
        return "".join(f"{command}\n" for command in self.commands)

    def of(self, instruction: Instruction) -> list[Command]:
        return [c for c in self.commands if c.instruction is instruction]

    @property
    def base(self) -> Command:
        """The FROM command (``parse`` guarantees exactly one)."""
        froms = self.of(Instruction.FROM)
        if len(froms) != 1:
            raise ModelfileError("a Modelfile needs exactly one FROM line")
        return froms[0]


# -- text ---------------------------------------------------------------------


def _line_of(text: str | bytes, offset: int) -> int:
    pattern = _LINE_BREAK_BYTES if isinstance(text, bytes) else _LINE_BREAK
    return sum(1 for _ in pattern.finditer(text, 0, offset)) + 1


def _decode(source: str | bytes) -> str:
    """The Modelfile as text, after the size, NUL and encoding checks."""
    if isinstance(source, bytes):
        if len(source) > MAX_MODELFILE_BYTES:
            raise ModelfileError(f"the Modelfile is larger than {MAX_MODELFILE_BYTES} bytes")
        if source.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            try:
                text = source.decode("utf-16")
            except UnicodeDecodeError:
                raise ModelfileError("invalid UTF-16 text after a UTF-16 byte order mark") from None
        else:
            nul = source.find(b"\0")
            if nul >= 0:
                raise ModelfileError("NUL byte in the Modelfile", _line_of(source, nul))
            try:
                text = source.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ModelfileError(
                    f"invalid UTF-8 (byte 0x{source[e.start]:02x} at offset {e.start})", _line_of(source, e.start)
                ) from None
    else:
        text = source
        if len(text) > MAX_MODELFILE_BYTES:
            raise ModelfileError(f"the Modelfile is larger than {MAX_MODELFILE_BYTES} characters")
    nul = text.find("\0")
    if nul >= 0:
        raise ModelfileError("NUL character in the Modelfile", _line_of(text, nul))
    return text.removeprefix("\ufeff")


def _split_lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE_CHARS:
            raise ModelfileError(f"line is longer than {MAX_LINE_CHARS} characters", i + 1)
    return lines


def _read_value(first: str, lines: list[str], next_index: int, line: int) -> tuple[str | None, int]:
    """The value that starts with ``first`` (already left-stripped) on ``line``.

    Returns (value or None when there is none, index of the next unread line).
    """
    for q in _QUOTES:
        if not first.startswith(q):
            continue
        parts = [first]
        total = len(first)
        j = next_index
        while True:
            last = parts[-1].rstrip(_BLANKS)
            closed_len = total - (len(parts[-1]) - len(last))
            if last.endswith(q) and closed_len >= 2 * len(q):
                return "\n".join(parts).rstrip(_BLANKS)[len(q):-len(q)], j
            if j >= len(lines):
                raise ModelfileError(f"unterminated {q} (the value opened on this line never closes)", line)
            parts.append(lines[j])
            total += 1 + len(lines[j])
            j += 1
    bare = first.rstrip(_BLANKS)
    return (bare or None), next_index


def parse(source: str | bytes) -> Modelfile:
    """Parse Modelfile text (or bytes); ModelfileError carries the line number."""
    lines = _split_lines(_decode(source))
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        line = i + 1
        text = lines[i].lstrip(_BLANKS)
        i += 1
        if not text or text.startswith("#"):
            continue
        m = _WORD.match(text)
        word = m.group(1).upper() if m else ""
        if word not in Instruction.__members__:
            if word in UNSUPPORTED:
                raise ModelfileError(f"{word} is an ollama instruction kettle does not support", line)
            token = _TOKEN.match(text).group(0)  # text is not empty and starts with no blank
            shown = token if len(token) <= 40 else token[:40] + "..."
            raise ModelfileError(
                f"unknown instruction {shown!r}; expected one of {', '.join(Instruction)}", line
            )
        instruction = Instruction(word)
        rest = text[m.end():].lstrip(_BLANKS)  # type: ignore[union-attr]
        key = ""
        if instruction in _KEYED:
            tm = _TOKEN.match(rest)
            token = tm.group(0) if tm else ""
            rest = rest[len(token):].lstrip(_BLANKS)
            if not token:
                raise ModelfileError(f"{instruction} needs a {_KEYED[instruction]} and a value", line)
            if instruction is Instruction.PARAMETER:
                if not _PARAM_NAME.fullmatch(token):
                    raise ModelfileError(f"invalid parameter name {token[:40]!r} (letters, digits and _ only)", line)
                key = token
            else:
                key = token.lower()
                if key not in MESSAGE_ROLES:
                    raise ModelfileError(
                        f"MESSAGE role must be one of {', '.join(MESSAGE_ROLES)}, not {token[:40]!r}", line
                    )
        value, i = _read_value(rest, lines, i, line)
        if value is None:
            what = f"{instruction} {key}" if key else str(instruction)
            raise ModelfileError(f"{what} needs a value", line)
        if instruction is Instruction.FROM and any(c.instruction is Instruction.FROM for c in commands):
            raise ModelfileError("a Modelfile has exactly one FROM line; this is the second", line)
        commands.append(Command(instruction, value, key, line))
    if not any(c.instruction is Instruction.FROM for c in commands):
        raise ModelfileError("no FROM line: a Modelfile must say which model it builds on")
    return Modelfile(tuple(commands))


def quote(value: str) -> str:
    """``value`` as Modelfile text that reads back as exactly ``value``.

    Bare when that is unambiguous, else ``"..."``, else ``\"\"\"...\"\"\"``;
    ModelfileError when no form can carry it (a NUL or CR, or a line ending in
    ``\"\"\"`` before the last one).
    """
    if "\0" in value or "\r" in value:
        raise ModelfileError("a value with NUL or carriage-return characters cannot be written in a Modelfile")
    if value and "\n" not in value and value == value.strip(_BLANKS) and not value.startswith('"'):
        return value
    for q in reversed(_QUOTES):
        candidate = f"{q}{value}{q}"
        lines = candidate.split("\n")
        try:
            read, end = _read_value(lines[0], lines, 1, 1)
        except ModelfileError:
            continue
        if read == value and end == len(lines):
            return candidate
    raise ModelfileError("this value cannot be written in a Modelfile (a line before its last ends in '\"\"\"')")
