"""Modelfiles: parse (text -> commands), interpret (typed spec), build (store model).

See parser.py for the syntax, spec.py for how commands combine and builder.py
for how a model is created from them.
"""

from kettle.modelfile.builder import create_model, format_parameter, to_modelfile
from kettle.modelfile.parser import MESSAGE_ROLES, Command, Instruction, Modelfile, parse, quote
from kettle.modelfile.spec import ModelSpec, check_template, interpret

__all__ = [
    "MESSAGE_ROLES",
    "Command",
    "Instruction",
    "ModelSpec",
    "Modelfile",
    "check_template",
    "create_model",
    "format_parameter",
    "interpret",
    "parse",
    "quote",
    "to_modelfile",
]
