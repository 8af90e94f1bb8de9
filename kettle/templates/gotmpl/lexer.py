"""Go text/template source -> a list of :class:`Item` (the tokens of the parser).

The rules follow Go's ``text/template/parse`` lexer: text runs up to ``{{``; ``{{- `` trims the
white space (space, tab, CR, LF) that ends the text before it and `` -}}`` the white space that
starts the text after it (the marker needs the blank beside it: ``{{-3}}`` is the number -3);
``{{/* ... */}}`` is a comment that must close right before the delimiter; inside an action the
tokens are fields (``.Name``), variables (``$x``, ``$``), identifiers and keywords, strings
(``"..."`` with Go escapes and raw back-quoted strings), character constants and numbers,
``( ) | = := ,`` and runs of blanks (the parser needs them to tell ``.a.b`` from ``.a .b``).

Errors raise :class:`TemplateError` with the 1-based line where the bad token starts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kettle.errors import TemplateError

LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
TRIM_MARKER = "-"
SPACE_CHARS = " \t\r\n"  # Go's own white space: what trim markers remove
TERMINATORS = ".,|:()"  # characters that may directly follow a word


class Tok(enum.Enum):
    TEXT = "text"
    COMMENT = "comment"
    LEFT_DELIM = "{{"
    RIGHT_DELIM = "}}"
    SPACE = "space"
    FIELD = "field"  # .Name
    VARIABLE = "variable"  # $ or $name
    DOT = "."
    IDENTIFIER = "identifier"
    BOOL = "bool"
    NUMBER = "number"
    CHAR_CONSTANT = "char constant"
    STRING = "string"
    RAW_STRING = "raw string"
    LEFT_PAREN = "("
    RIGHT_PAREN = ")"
    PIPE = "|"
    ASSIGN = "="
    DECLARE = ":="
    CHAR = "char"  # any other printable ASCII character (the parser accepts only ',')
    EOF = "EOF"
    # keywords
    BLOCK = "block"
    BREAK = "break"
    CONTINUE = "continue"
    DEFINE = "define"
    ELSE = "else"
    END = "end"
    IF = "if"
    NIL = "nil"
    RANGE = "range"
    TEMPLATE = "template"
    WITH = "with"


KEYWORDS = {t.value: t for t in (
    Tok.BLOCK, Tok.BREAK, Tok.CONTINUE, Tok.DEFINE, Tok.ELSE, Tok.END, Tok.IF, Tok.NIL,
    Tok.RANGE, Tok.TEMPLATE, Tok.WITH,
)}


@dataclass(frozen=True, slots=True)
class Item:
    typ: Tok
    val: str
    line: int

    def __str__(self) -> str:
        """The token as error messages quote it (Go's style: ``<if>``, ``"text"``, EOF)."""
        if self.typ is Tok.EOF:
            return "EOF"
        if self.typ in _KEYWORD_TYPES:
            return f"<{self.val}>"
        return repr(self.val) if len(self.val) <= 10 else repr(self.val[:10]) + "..."


_KEYWORD_TYPES = frozenset(KEYWORDS.values())


def _is_space(c: str) -> bool:
    return c != "" and c in SPACE_CHARS


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdigit()


def _has_left_trim(src: str, pos: int) -> bool:
    return src.startswith(TRIM_MARKER, pos) and _is_space(src[pos + 1:pos + 2])


def _has_right_trim(src: str, pos: int) -> bool:
    """A blank, ``-``, then the right delimiter, starting at ``pos``."""
    return (_is_space(src[pos:pos + 1]) and src.startswith(TRIM_MARKER, pos + 1)
            and src.startswith(RIGHT_DELIM, pos + 2))


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self.line = 1
        self.items: list[Item] = []

    # -- helpers -----------------------------------------------------------------------------
    def error(self, message: str, line: int | None = None) -> TemplateError:
        return TemplateError(message, line or self.line)

    def emit(self, typ: Tok, start: int, end: int, line: int) -> None:
        self.items.append(Item(typ, self.src[start:end], line))

    def advance_to(self, pos: int) -> None:
        self.line += self.src.count("\n", self.pos, pos)
        self.pos = pos

    def peek(self, offset: int = 0) -> str:
        return self.src[self.pos + offset:self.pos + offset + 1]

    def at_terminator(self, pos: int) -> bool:
        c = self.src[pos:pos + 1]
        return c == "" or _is_space(c) or c in TERMINATORS or self.src.startswith(RIGHT_DELIM, pos)

    # -- states ------------------------------------------------------------------------------
    def run(self) -> list[Item]:
        src = self.src
        while True:
            x = src.find(LEFT_DELIM, self.pos)
            end = len(src) if x < 0 else x
            text_end = end
            if x >= 0 and _has_left_trim(src, x + len(LEFT_DELIM)):
                text_end = len(src[self.pos:end].rstrip(SPACE_CHARS)) + self.pos
            if text_end > self.pos:
                self.emit(Tok.TEXT, self.pos, text_end, self.line)
            self.advance_to(end)
            if x < 0:
                self.items.append(Item(Tok.EOF, "", self.line))
                return self.items
            self.left_delim()

    def left_delim(self) -> None:
        src = self.src
        start_line = self.line
        after = self.pos + len(LEFT_DELIM)
        if _has_left_trim(src, after):
            after += 2  # the marker and its blank
        if src.startswith(LEFT_COMMENT, after):
            self.comment(after, start_line)
            return
        self.items.append(Item(Tok.LEFT_DELIM, LEFT_DELIM, start_line))
        self.advance_to(after)
        self.inside_action()

    def comment(self, start: int, start_line: int) -> None:
        src = self.src
        close = src.find(RIGHT_COMMENT, start + len(LEFT_COMMENT))
        if close < 0:
            raise self.error("unclosed comment", start_line)
        pos = close + len(RIGHT_COMMENT)
        trim = _has_right_trim(src, pos)
        if not trim and not src.startswith(RIGHT_DELIM, pos):
            raise self.error("comment ends before closing delimiter", start_line)
        self.items.append(Item(Tok.COMMENT, src[start:pos], start_line))
        pos += (2 if trim else 0) + len(RIGHT_DELIM)
        if trim:
            pos = len(src) - len(src[pos:].lstrip(SPACE_CHARS))
        self.advance_to(pos)

    def right_delim(self, trim: bool) -> None:
        line = self.line
        pos = self.pos + (2 if trim else 0) + len(RIGHT_DELIM)
        self.items.append(Item(Tok.RIGHT_DELIM, RIGHT_DELIM, line))
        if trim:
            pos = len(self.src) - len(self.src[pos:].lstrip(SPACE_CHARS))
        self.advance_to(pos)

    def inside_action(self) -> None:
        src = self.src
        paren_depth = 0
        while True:
            pos, line = self.pos, self.line
            trim = _has_right_trim(src, pos)
            if trim or src.startswith(RIGHT_DELIM, pos):
                if paren_depth:
                    raise self.error("unclosed left paren")
                self.right_delim(trim)
                return
            c = src[pos:pos + 1]
            if c == "":
                raise self.error("unclosed action")
            if _is_space(c):
                end = pos
                while _is_space(src[end:end + 1]) and not _has_right_trim(src, end):
                    end += 1
                if end > pos:
                    self.emit(Tok.SPACE, pos, end, line)
                    self.advance_to(end)
                continue
            if c == "=":
                self.emit(Tok.ASSIGN, pos, pos + 1, line)
                self.advance_to(pos + 1)
            elif c == ":":
                if src[pos + 1:pos + 2] != "=":
                    raise self.error("expected :=")
                self.emit(Tok.DECLARE, pos, pos + 2, line)
                self.advance_to(pos + 2)
            elif c == "|":
                self.emit(Tok.PIPE, pos, pos + 1, line)
                self.advance_to(pos + 1)
            elif c == '"':
                self.quoted(pos, '"', Tok.STRING, "unterminated quoted string")
            elif c == "'":
                self.quoted(pos, "'", Tok.CHAR_CONSTANT, "unterminated character constant")
            elif c == "`":
                close = src.find("`", pos + 1)
                if close < 0:
                    raise self.error("unterminated raw quoted string")
                self.emit(Tok.RAW_STRING, pos, close + 1, line)
                self.advance_to(close + 1)
            elif c == "$":
                self.word(pos, Tok.VARIABLE)
            elif c == "." and not src[pos + 1:pos + 2].isdigit():
                self.word(pos, Tok.FIELD)
            elif c in "+-." or c.isdigit():
                self.number(pos)
            elif _is_alnum(c):
                self.word(pos, Tok.IDENTIFIER)
            elif c == "(":
                paren_depth += 1
                self.emit(Tok.LEFT_PAREN, pos, pos + 1, line)
                self.advance_to(pos + 1)
            elif c == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    raise self.error("unexpected right paren")
                self.emit(Tok.RIGHT_PAREN, pos, pos + 1, line)
                self.advance_to(pos + 1)
            elif c.isascii() and c.isprintable():
                self.emit(Tok.CHAR, pos, pos + 1, line)
                self.advance_to(pos + 1)
            else:
                raise self.error(f"unrecognized character in action: {c!r}")

    def quoted(self, start: int, quote: str, typ: Tok, unterminated: str) -> None:
        src = self.src
        pos = start + 1
        while True:
            c = src[pos:pos + 1]
            if c == "\\":
                nxt = src[pos + 1:pos + 2]
                if nxt in ("", "\n"):
                    raise self.error(unterminated)
                pos += 2
                continue
            if c in ("", "\n"):
                raise self.error(unterminated)
            pos += 1
            if c == quote:
                break
        self.emit(typ, start, pos, self.line)
        self.advance_to(pos)

    def word(self, start: int, typ: Tok) -> None:
        """A field, variable or identifier; ``.`` or ``$`` alone when a terminator follows."""
        src = self.src
        pos = start + (0 if typ is Tok.IDENTIFIER else 1)
        while _is_alnum(src[pos:pos + 1]):
            pos += 1
        if not self.at_terminator(pos):
            raise self.error(f"bad character {src[pos]!r}")
        word = src[start:pos]
        if typ is Tok.FIELD and word == ".":
            typ = Tok.DOT
        elif typ is Tok.IDENTIFIER:
            if word in KEYWORDS:
                typ = KEYWORDS[word]
            elif word in ("true", "false"):
                typ = Tok.BOOL
        self.emit(typ, start, pos, self.line)
        self.advance_to(pos)

    def number(self, start: int) -> None:
        src = self.src
        pos = self._scan_number(start)
        if pos < 0:
            raise self.error(f"bad number syntax: {src[start:-pos]!r}")
        if src[pos:pos + 1] in ("+", "-"):
            raise self.error("complex numbers are not supported")
        self.emit(Tok.NUMBER, start, pos, self.line)
        self.advance_to(pos)

    def _scan_number(self, pos: int) -> int:
        """End of the number starting at ``pos``, or ``-end`` when it is malformed."""
        src = self.src

        def accept(valid: str) -> bool:
            nonlocal pos
            if src[pos:pos + 1] != "" and src[pos] in valid:
                pos += 1
                return True
            return False

        def accept_run(valid: str) -> None:
            while accept(valid):
                pass

        accept("+-")
        digits = "0123456789_"
        if accept("0"):
            if accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif accept("oO"):
                digits = "01234567_"
            elif accept("bB"):
                digits = "01_"
        accept_run(digits)
        if accept("."):
            accept_run(digits)
        if len(digits) == 11 and accept("eE"):
            accept("+-")
            accept_run("0123456789_")
        if len(digits) == 23 and accept("pP"):
            accept("+-")
            accept_run("0123456789_")
        accept("i")
        if _is_alnum(src[pos:pos + 1]):
            return -(pos + 1)
        return pos


def lex(src: str) -> list[Item]:
    """Tokenize a whole template; the list ends with an ``EOF`` item."""
    return _Lexer(src).run()
