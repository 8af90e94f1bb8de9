"""Interpret a parsed Modelfile: typed parameters, a checked template, collected layers.

This is the step between the neutral tree (parser.py) and the store (builder.py):
no file is read and nothing is written here. Every error is a ModelfileError
with the line of the command it comes from.

Repeats follow ollama: ``PARAMETER stop`` lines collect into a list; any other
parameter, TEMPLATE, SYSTEM and DRAFT keep the last one; LICENSE, ADAPTER and MESSAGE
lines all count, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kettle.errors import InvalidParameter, ModelfileError, TemplateError
from kettle.modelfile.parser import Command, Instruction, Modelfile

STOP = "stop"


@dataclass(frozen=True)
class ModelSpec:
    """What a Modelfile asks for. None / empty means "not given: inherit from FROM"."""

    base: Command  # the FROM command
    parameters: dict[str, Any]  # typed by kettle.options.coerce_parameter; "stop" is a list
    template: str | None = None
    system: str | None = None
    licenses: tuple[str, ...] = ()
    adapters: tuple[Command, ...] = ()
    messages: tuple[dict[str, str], ...] = ()
    draft: Command | None = None  # the last DRAFT: a draft model for speculative decoding


def _parameter(command: Command) -> object:
    from kettle.options import coerce_parameter

    try:
        return coerce_parameter(command.key, command.value)
    except InvalidParameter as e:
        raise ModelfileError(f"PARAMETER {command.key} {command.value[:80]!r}: {e.reason}", command.line) from None


def check_template(source: str, first_line: int) -> None:
    """Compile a TEMPLATE now, so a broken one fails at create time, not at every request.

    ``first_line`` is the Modelfile line the template text starts on; a template
    error's own line is shifted onto the Modelfile's.
    """
    from kettle.templates import compile_template

    try:
        compile_template(source)
    except TemplateError as e:
        message = str(e)
        if e.line:
            message = message.removeprefix(f"line {e.line}: ")
        line = first_line + e.line - 1 if e.line and first_line else first_line or None
        raise ModelfileError(f"TEMPLATE: {message}", line) from None


def interpret(modelfile: Modelfile) -> ModelSpec:
    """Type and check every command; ModelfileError (with the line) on the first problem."""
    parameters: dict[str, Any] = {}
    stops: list[str] = []
    template: str | None = None
    system: str | None = None
    licenses: list[str] = []
    adapters: list[Command] = []
    messages: list[dict[str, str]] = []
    draft: Command | None = None
    for command in modelfile.commands:
        kind = command.instruction
        if kind is Instruction.PARAMETER:
            value = _parameter(command)
            if command.key == STOP:
                stops.extend(value if isinstance(value, (list, tuple)) else [value])
            else:
                parameters[command.key] = value
        elif kind is Instruction.TEMPLATE:
            check_template(command.value, command.line)
            template = command.value
        elif kind is Instruction.SYSTEM:
            system = command.value
        elif kind is Instruction.LICENSE:
            licenses.append(command.value)
        elif kind is Instruction.ADAPTER:
            adapters.append(command)
        elif kind is Instruction.DRAFT:
            draft = command
        elif kind is Instruction.MESSAGE:
            messages.append({"role": command.key, "content": command.value})
    if stops:
        parameters[STOP] = stops
    return ModelSpec(
        base=modelfile.base,
        parameters=parameters,
        template=template,
        system=system,
        licenses=tuple(licenses),
        adapters=tuple(adapters),
        messages=tuple(messages),
        draft=draft,
    )
