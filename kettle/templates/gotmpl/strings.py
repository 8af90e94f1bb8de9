"""Go strings in Python: quoted literals, and byte-level views of text.

A Go string is a sequence of bytes; kettle holds it as a Python ``str``. Bytes that are not
valid UTF-8 (a ``\\xff`` escape, ``slice`` cutting a character in two) are carried as lone
surrogates with Python's ``surrogateescape`` convention, so byte lengths and byte slices agree
with Go's; :func:`to_text` turns any that remain into U+FFFD for the final prompt.
"""

from __future__ import annotations

_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
}
_HEX = "0123456789abcdefABCDEF"


def to_bytes(s: str) -> bytes:
    """The Go bytes of ``s`` (lone surrogates from ``surrogateescape`` become their bytes)."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return to_text(s).encode("utf-8")


def from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def byte_len(s: str) -> int:
    """Go's ``len`` of a string: its length in bytes."""
    return len(s) if s.isascii() else len(to_bytes(s))


def to_text(s: str) -> str:
    """Valid Unicode text: every lone surrogate becomes U+FFFD."""
    if s.isascii():
        return s
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)


def unquote(quoted: str) -> str:
    """The value of a Go string literal: ``"..."``, raw ``\\`...\\``` or a character ``'c'``.

    Raises ValueError (with Go's wording) for a malformed literal.
    """
    if len(quoted) < 2 or quoted[0] != quoted[-1] or quoted[0] not in "\"'`":
        raise ValueError(f"invalid syntax: {quoted}")
    quote, body = quoted[0], quoted[1:-1]
    if quote == "`":
        return body.replace("\r", "")
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            raise ValueError(f"invalid syntax: {quoted}")
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        esc = body[i + 1:i + 2]
        i += 2
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc].encode()
        elif esc == quote:
            out += esc.encode()
        elif esc == "x":
            digits = body[i:i + 2]
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                raise ValueError(f"invalid syntax: {quoted}")
            out.append(int(digits, 16))
            i += 2
        elif esc in "01234567" and esc:
            digits = esc + body[i:i + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(f"invalid syntax: {quoted}")
            out.append(int(digits, 8))
            i += 2
        elif esc in ("u", "U"):
            n = 4 if esc == "u" else 8
            digits = body[i:i + n]
            if len(digits) != n or any(d not in _HEX for d in digits):
                raise ValueError(f"invalid syntax: {quoted}")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid syntax: {quoted}")
            out += chr(code).encode()
            i += n
        else:
            raise ValueError(f"invalid syntax: {quoted}")
    if quote == "'":
        text = out.decode("utf-8", "surrogateescape")
        if len(text) == 1 and 0xDC80 <= ord(text) <= 0xDCFF:
            return chr(ord(text) - 0xDC00)  # '\xff' is the rune 255
        return text
    return out.decode("utf-8", "surrogateescape")
