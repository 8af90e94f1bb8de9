"""A Go ``text/template`` engine (the subset chat templates use), in kettle's own code.

lexer (source -> tokens) -> parser (tokens -> :mod:`nodes` tree, parse-time checks) ->
executor (tree + :mod:`values` -> text). :mod:`gofmt` and :mod:`gojson` reproduce Go's
printing and JSON encoding; :mod:`funcs` holds the builtin functions. Nothing here knows
about ollama: :mod:`kettle.templates.ollama` adds its data, helpers and render modes.
"""

from kettle.templates.gotmpl.executor import Executor, StrictRoot
from kettle.templates.gotmpl.funcs import BUILTINS, Func, FuncError, Param
from kettle.templates.gotmpl.nodes import ListNode
from kettle.templates.gotmpl.parser import parse

__all__ = ["parse", "ListNode", "Executor", "StrictRoot", "BUILTINS", "Func", "FuncError", "Param"]
