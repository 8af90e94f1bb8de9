"""Tokens -> a :class:`~kettle.templates.gotmpl.nodes.ListNode` tree, with Go's parse-time checks.

Grammar (the subset of Go's text/template that kettle runs)::

    template := (text | comment | action | control)*
    action   := "{{" pipeline "}}"
    control  := "{{if" pipeline "}}" template ("{{else if" pipeline "}}" template)*
                   ("{{else}}" template)? "{{end}}"
              | "{{range" pipeline "}}" template ("{{else}}" template)? "{{end}}"
              | "{{with" pipeline "}}" template ("{{else}}" template)? "{{end}}"
              | "{{break}}" | "{{continue}}"                      (inside a range only)
    pipeline := (decl (":=" | "="))? command ("|" command)*
    decl     := $var | $i "," $v                                  (two only in a range)
    command  := operand+
    operand  := term ("." Field)*
    term     := .Field.Chain | $var.Field | . | nil | true | false | number | "string"
              | `raw` | 'c' | function | "(" pipeline ")"

Checks done here, as Go does them: undefined variables, unknown functions, a literal in a
later pipeline stage, ``break``/``continue`` outside a range, ``else``/``end`` out of place.
Beyond Go: ``define``, ``template`` and ``block`` are refused (kettle has no template sets), an
assignment to an undeclared variable is a parse error (Go fails only when it runs), and nesting
deeper than ``max_depth`` is refused. Every error is a :class:`TemplateError` with its line.
"""

from __future__ import annotations

import re

from kettle.errors import TemplateError
from kettle.templates.gotmpl.lexer import Item, Tok, lex
from kettle.templates.gotmpl.nodes import (
    ActionNode, BoolNode, BreakNode, ChainNode, CommandNode, CommentNode, ContinueNode, DotNode,
    FieldNode, IdentifierNode, IfNode, ListNode, NilNode, Node, NumberNode, PipeNode, RangeNode,
    StringNode, TextNode, VariableNode, WithNode,
)
from kettle.templates.gotmpl.strings import unquote

_OPERAND_START = frozenset({
    Tok.BOOL, Tok.CHAR_CONSTANT, Tok.DOT, Tok.FIELD, Tok.IDENTIFIER, Tok.NUMBER, Tok.NIL,
    Tok.RAW_STRING, Tok.STRING, Tok.VARIABLE, Tok.LEFT_PAREN,
})
_LITERALS = (BoolNode, DotNode, NilNode, NumberNode, StringNode)
_UNSUPPORTED = {Tok.DEFINE, Tok.TEMPLATE, Tok.BLOCK}
_OCTAL = re.compile(r"[+-]?0[0-7_]+")


class _End:
    """Marker results of ``{{end}}`` and ``{{else}}`` while parsing a list."""

    def __init__(self, kind: str, line: int, else_if: bool = False) -> None:
        self.kind, self.line, self.else_if = kind, line, else_if


class Parser:
    def __init__(self, src: str, functions: frozenset[str], max_depth: int) -> None:
        self.items = lex(src)
        self.i = 0
        self.functions = functions
        self.max_depth = max_depth
        self.depth = 0
        self.range_depth = 0
        self.vars: list[str] = ["$"]

    # -- token access ------------------------------------------------------------------------
    def next(self) -> Item:
        item = self.items[min(self.i, len(self.items) - 1)]  # EOF repeats at the end
        self.i += 1
        return item

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Item:
        return self.items[min(self.i, len(self.items) - 1)]

    def next_non_space(self) -> Item:
        item = self.next()
        while item.typ is Tok.SPACE:
            item = self.next()
        return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    def error(self, message: str, line: int | None = None) -> TemplateError:
        return TemplateError(message, line if line is not None else self.items[min(max(self.i - 1, 0), len(self.items) - 1)].line)

    def unexpected(self, item: Item, context: str) -> TemplateError:
        return self.error(f"unexpected {item} in {context}", item.line)

    def expect(self, typ: Tok, context: str) -> Item:
        item = self.next_non_space()
        if item.typ is not typ:
            raise self.unexpected(item, context)
        return item

    def enter(self, line: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error(f"template nesting exceeds {self.max_depth} levels", line)

    # -- lists and actions ---------------------------------------------------------------------
    def parse(self) -> ListNode:
        first = self.peek().line
        nodes: list[Node] = []
        while self.peek().typ is not Tok.EOF:
            n = self.text_or_action()
            if isinstance(n, _End):
                raise self.error(f"unexpected {{{{{n.kind}}}}}", n.line)
            nodes.append(n)
        return ListNode(tuple(nodes), first)

    def item_list(self, context: str) -> tuple[ListNode, _End]:
        first = self.peek_non_space().line
        nodes: list[Node] = []
        while self.peek_non_space().typ is not Tok.EOF:
            n = self.text_or_action()
            if isinstance(n, _End):
                return ListNode(tuple(nodes), first), n
            nodes.append(n)
        raise self.error(f"unexpected EOF: {{{{{context}}}}} has no {{{{end}}}}", self.peek().line)

    def text_or_action(self) -> Node | _End:
        item = self.next_non_space()
        if item.typ is Tok.TEXT:
            return TextNode(item.val, item.line)
        if item.typ is Tok.COMMENT:
            return CommentNode(item.val, item.line)
        if item.typ is Tok.LEFT_DELIM:
            return self.action()
        raise self.unexpected(item, "input")

    def action(self) -> Node | _End:
        item = self.next_non_space()
        typ = item.typ
        if typ in _UNSUPPORTED:
            raise self.error(f"{{{{{item.val}}}}} is not supported (kettle templates are single templates)", item.line)
        if typ is Tok.IF:
            return self.control(IfNode, "if", item.line)
        if typ is Tok.RANGE:
            return self.control(RangeNode, "range", item.line)
        if typ is Tok.WITH:
            return self.control(WithNode, "with", item.line)
        if typ is Tok.END:
            self.expect(Tok.RIGHT_DELIM, "end")
            return _End("end", item.line)
        if typ is Tok.ELSE:
            if self.peek_non_space().typ is Tok.IF:
                return _End("else", item.line, else_if=True)
            self.expect(Tok.RIGHT_DELIM, "else")
            return _End("else", item.line)
        if typ in (Tok.BREAK, Tok.CONTINUE):
            nxt = self.next_non_space()
            if nxt.typ is not Tok.RIGHT_DELIM:
                raise self.unexpected(nxt, f"{{{{{item.val}}}}}")
            if self.range_depth == 0:
                raise self.error(f"{{{{{item.val}}}}} outside {{{{range}}}}", item.line)
            return BreakNode(item.line) if typ is Tok.BREAK else ContinueNode(item.line)
        self.backup()
        line = self.peek_non_space().line
        return ActionNode(self.pipeline("command", Tok.RIGHT_DELIM), line)

    def control(self, cls: type, context: str, line: int) -> Node:
        self.enter(line)
        mark = len(self.vars)
        pipe = self.pipeline(context, Tok.RIGHT_DELIM)
        if context == "range":
            self.range_depth += 1
        body, end = self.item_list(context)
        if context == "range":
            self.range_depth -= 1
        else_list = None
        if end.kind == "else":
            if end.else_if and context == "if":
                self.next_non_space()  # the "if"
                nested = self.control(IfNode, "if", end.line)
                else_list = ListNode((nested,), end.line)
            elif end.else_if:
                raise self.error(f"{{{{else if}}}} is only allowed after {{{{if}}}}, not {{{{{context}}}}}", end.line)
            else:
                else_list, end = self.item_list(context)
                if end.kind != "end":
                    raise self.error(f"expected {{{{end}}}}; found {{{{{end.kind}}}}}", end.line)
        del self.vars[mark:]
        self.depth -= 1
        return cls(pipe, body, else_list, line)

    # -- pipelines -------------------------------------------------------------------------------
    def pipeline(self, context: str, end: Tok) -> PipeNode:
        line = self.peek_non_space().line
        decl: list[VariableNode] = []
        is_assign = False
        while self.peek_non_space().typ is Tok.VARIABLE:
            start = self.i
            v = self.next_non_space()
            nxt = self.next_non_space()
            if nxt.typ in (Tok.ASSIGN, Tok.DECLARE):
                is_assign = nxt.typ is Tok.ASSIGN
                if is_assign and v.val not in self.vars:
                    raise self.error(f"undefined variable {v.val!r}", v.line)
                decl.append(VariableNode((v.val,), v.line))
                break
            if nxt.typ is Tok.CHAR and nxt.val == ",":
                decl.append(VariableNode((v.val,), v.line))
                if context != "range" or len(decl) > 1:
                    raise self.error(f"too many declarations in {context}", v.line)
                if self.peek_non_space().typ is not Tok.VARIABLE:
                    raise self.error("range can only initialize variables", v.line)
                continue
            self.i = start
            break
        cmds: list[CommandNode] = []
        while True:
            item = self.next_non_space()
            if item.typ is end:
                break
            if item.typ in _OPERAND_START:
                self.backup()
                cmds.append(self.command())
                continue
            raise self.unexpected(item, context)
        if not cmds:
            raise self.error(f"missing value for {context}", line)
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], _LITERALS):
                raise self.error(f"non executable command in pipeline stage {stage}", cmd.line)
        if not is_assign:
            self.vars.extend(v.ident[0] for v in decl)
        return PipeNode(tuple(decl), is_assign, tuple(cmds), line)

    def command(self) -> CommandNode:
        line = self.peek_non_space().line
        args: list[Node] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            item = self.next()
            if item.typ is Tok.SPACE:
                continue
            if item.typ in (Tok.RIGHT_DELIM, Tok.RIGHT_PAREN):
                self.backup()
            elif item.typ is not Tok.PIPE:
                raise self.unexpected(item, "operand")
            break
        if not args:
            raise self.error("empty command", line)
        return CommandNode(tuple(args), line)

    def operand(self) -> Node | None:
        node = self.term()
        if node is None or self.peek().typ is not Tok.FIELD:
            return node
        fields: list[str] = []
        while self.peek().typ is Tok.FIELD:
            fields.append(self.next().val[1:])
        if isinstance(node, FieldNode):
            return FieldNode(node.ident + tuple(fields), node.line)
        if isinstance(node, VariableNode):
            return VariableNode(node.ident + tuple(fields), node.line)
        if isinstance(node, _LITERALS):
            raise self.error(f"unexpected . after term {str(node)!r}", node.line)
        return ChainNode(node, tuple(fields), node.line)

    def term(self) -> Node | None:
        item = self.next_non_space()
        typ, line = item.typ, item.line
        if typ is Tok.IDENTIFIER:
            if item.val not in self.functions:
                raise self.error(f"function {item.val!r} not defined", line)
            return IdentifierNode(item.val, line)
        if typ is Tok.DOT:
            return DotNode(line)
        if typ is Tok.NIL:
            return NilNode(line)
        if typ is Tok.VARIABLE:
            if item.val not in self.vars:
                raise self.error(f"undefined variable {item.val!r}", line)
            return VariableNode((item.val,), line)
        if typ is Tok.FIELD:
            return FieldNode((item.val[1:],), line)
        if typ is Tok.BOOL:
            return BoolNode(item.val == "true", line)
        if typ in (Tok.NUMBER, Tok.CHAR_CONSTANT):
            return NumberNode(item.val, self.number(item), line)
        if typ is Tok.LEFT_PAREN:
            self.enter(line)
            pipe = self.pipeline("parenthesized pipeline", Tok.RIGHT_PAREN)
            self.depth -= 1
            return pipe
        if typ in (Tok.STRING, Tok.RAW_STRING):
            try:
                return StringNode(item.val, unquote(item.val), line)
            except ValueError as exc:
                raise self.error(str(exc), line) from None
        self.backup()
        return None

    def number(self, item: Item) -> int | float:
        """Go's ideal constant: an int, unless the literal is written as a float."""
        text = item.val
        if item.typ is Tok.CHAR_CONSTANT:
            try:
                value = unquote(text)
            except ValueError as exc:
                raise self.error(str(exc), item.line) from None
            if len(value) != 1:
                raise self.error(f"malformed character constant: {text}", item.line)
            return ord(value)
        if text.endswith("i"):
            raise self.error(f"complex numbers are not supported: {text}", item.line)
        is_hex = text.lstrip("+-")[:2].lower() == "0x"
        try:
            if _OCTAL.fullmatch(text):
                value = int(text.replace("_", ""), 8)
            elif any(c in text for c in ".eEpP") and not (is_hex and not any(c in text for c in "pP")):
                value = float.fromhex(text) if is_hex else float(text.replace("_", ""))
                return value
            else:
                value = int(text, 0)
        except ValueError:
            raise self.error(f"illegal number syntax: {text!r}", item.line) from None
        if not -(1 << 63) <= value < (1 << 63):
            raise self.error(f"{text} overflows int", item.line)
        return value


def parse(src: str, functions: frozenset[str], max_depth: int = 100) -> ListNode:
    """Parse a whole template. ``functions`` are the names a template may call."""
    return Parser(src, functions, max_depth).parse()
