"""The parse tree of a Go template: a neutral description, executed by ``executor``.

Node kinds and their ``str()`` follow Go's ``text/template/parse``: ``str(tree)`` is template
source that parses back to an equal tree (trim markers are already applied to the text nodes,
so they are not written back; ``{{else if}}`` is written in that short form). Every node knows
the 1-based source line it starts on, for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

Node = Union[
    "ListNode", "TextNode", "CommentNode", "ActionNode", "IfNode", "RangeNode", "WithNode",
    "BreakNode", "ContinueNode", "PipeNode", "CommandNode", "FieldNode", "VariableNode",
    "ChainNode", "DotNode", "NilNode", "BoolNode", "NumberNode", "StringNode", "IdentifierNode",
]


@dataclass(frozen=True, slots=True)
class ListNode:
    nodes: tuple[Node, ...]
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(frozen=True, slots=True)
class TextNode:
    text: str
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class CommentNode:
    text: str  # with its /* and */
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "{{" + self.text + "}}"


@dataclass(frozen=True, slots=True)
class VariableNode:
    ident: tuple[str, ...]  # ("$x", "Field", ...); "$" alone is the root
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(frozen=True, slots=True)
class CommandNode:
    args: tuple[Node, ...]
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(frozen=True, slots=True)
class PipeNode:
    decl: tuple[VariableNode, ...]
    is_assign: bool
    cmds: tuple[CommandNode, ...]
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass(frozen=True, slots=True)
class ActionNode:
    pipe: PipeNode
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(frozen=True, slots=True)
class _Branch:
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None
    line: int = field(default=0, compare=False)
    keyword: ClassVar[str] = ""

    def __str__(self) -> str:
        out = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            nodes = self.else_list.nodes
            if self.keyword == "if" and len(nodes) == 1 and isinstance(nodes[0], IfNode):
                return out + "{{else " + str(nodes[0])[2:]  # "{{else if ...}}...{{end}}"
            out += "{{else}}" + str(self.else_list)
        return out + "{{end}}"


@dataclass(frozen=True, slots=True)
class IfNode(_Branch):
    keyword: ClassVar[str] = "if"


@dataclass(frozen=True, slots=True)
class RangeNode(_Branch):
    keyword: ClassVar[str] = "range"


@dataclass(frozen=True, slots=True)
class WithNode(_Branch):
    keyword: ClassVar[str] = "with"


@dataclass(frozen=True, slots=True)
class BreakNode:
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(frozen=True, slots=True)
class ContinueNode:
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(frozen=True, slots=True)
class FieldNode:
    ident: tuple[str, ...]  # .A.B -> ("A", "B")
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(frozen=True, slots=True)
class ChainNode:
    """A term followed by fields: ``(pipeline).Field`` or ``fn.Field``."""

    node: Node
    fields: tuple[str, ...]
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        head = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return head + "".join("." + f for f in self.fields)


@dataclass(frozen=True, slots=True)
class DotNode:
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True)
class NilNode:
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True, slots=True)
class BoolNode:
    value: bool
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True)
class NumberNode:
    text: str  # as written
    value: int | float  # Go's "ideal constant": int unless the text is a float literal
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class StringNode:
    quoted: str  # as written, with its quotes
    text: str  # the value
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.quoted


@dataclass(frozen=True, slots=True)
class IdentifierNode:
    name: str  # a function name
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.name


BRANCH_TYPES = (IfNode, RangeNode, WithNode)
