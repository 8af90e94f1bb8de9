"""Codepoint classes and the GPT-2 byte <-> text mapping, as llama.cpp sees them.

llama.cpp classifies every codepoint with a table generated from the Unicode
Character Database (``src/unicode-data.cpp``): one general-category flag per
codepoint plus a separate *whitespace* bit (the Unicode ``White_Space``
property). The pre-tokenizers look only at these flags, so we reproduce them
from Python's ``unicodedata`` (the major category letter picks the flag;
unassigned codepoints are ``UNDEFINED``).

Python 3.11 ships Unicode 14.0 while llama.cpp's table is Unicode 15.1; the
codepoints assigned in 15.0 and 15.1 are listed in ``_ASSIGNED_AFTER_14`` (from
llama.cpp's table) and used where Python still calls them unassigned.

The byte mapping is GPT-2's ``bytes_to_unicode``: the 188 printable Latin-1
bytes map to themselves, the other 68 bytes to U+0100.. in byte order. BPE
vocabularies store token text in this alphabet.
"""

from __future__ import annotations

import enum
import unicodedata

__all__ = [
    "CpFlag",
    "WHITESPACE",
    "cpt_flags",
    "text_flags",
    "BYTE_TO_UNICODE",
    "UNICODE_TO_BYTE",
    "bytes_to_bpe_text",
    "C_SPACE",
]


class CpFlag(enum.IntFlag):
    """Bits of llama.cpp's ``unicode_cpt_flags`` (same values)."""

    UNDEFINED = 0x0001
    NUMBER = 0x0002  # \p{N}
    LETTER = 0x0004  # \p{L}
    SEPARATOR = 0x0008  # \p{Z}
    ACCENT_MARK = 0x0010  # \p{M}
    PUNCTUATION = 0x0020  # \p{P}
    SYMBOL = 0x0040  # \p{S}
    CONTROL = 0x0080  # \p{C}
    MASK_CATEGORIES = 0x00FF
    WHITESPACE = 0x0100  # \s


# Major general-category letter -> flag; "Cn" (unassigned) is special-cased.
_MAJOR_CATEGORY: dict[str, CpFlag] = {
    "N": CpFlag.NUMBER,
    "L": CpFlag.LETTER,
    "Z": CpFlag.SEPARATOR,
    "M": CpFlag.ACCENT_MARK,
    "P": CpFlag.PUNCTUATION,
    "S": CpFlag.SYMBOL,
    "C": CpFlag.CONTROL,
}

# The Unicode White_Space property (llama.cpp's unicode_set_whitespace).
WHITESPACE: frozenset[int] = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

# C's isspace() in the "C" locale (used by llama.cpp's lstrip/rstrip of special tokens).
C_SPACE = " \t\n\v\f\r"


_L, _M, _N, _P, _S, _C = (
    CpFlag.LETTER, CpFlag.ACCENT_MARK, CpFlag.NUMBER, CpFlag.PUNCTUATION, CpFlag.SYMBOL, CpFlag.CONTROL,
)
# (first, last, flag): ranges of llama.cpp's table covering the Unicode 15.0/15.1
# additions. Only applied to codepoints Python's own (older) data calls unassigned.
_ASSIGNED_AFTER_14: tuple[tuple[int, int, CpFlag], ...] = (
    (0x0CF3, 0x0CF3, _M), (0x0EC8, 0x0ECE, _M), (0x2FF0, 0x2FFF, _S), (0x31EF, 0x31EF, _S),
    (0x10EFD, 0x10EFF, _M), (0x1123F, 0x11240, _L), (0x11241, 0x11241, _M),
    (0x11B00, 0x11B09, _P),
    (0x11F00, 0x11F01, _M), (0x11F02, 0x11F02, _L), (0x11F03, 0x11F03, _M), (0x11F04, 0x11F10, _L),
    (0x11F12, 0x11F33, _L), (0x11F34, 0x11F3A, _M), (0x11F3E, 0x11F42, _M), (0x11F43, 0x11F4F, _P),
    (0x11F50, 0x11F59, _N),
    (0x13430, 0x1343F, _C), (0x13440, 0x13440, _M), (0x13441, 0x13446, _L), (0x13447, 0x13455, _M),
    (0x1B132, 0x1B132, _L), (0x1B155, 0x1B155, _L), (0x1D2C0, 0x1D2D3, _N), (0x1DF25, 0x1DF2A, _L),
    (0x1E030, 0x1E06D, _L), (0x1E08F, 0x1E08F, _M),
    (0x1E4D0, 0x1E4EB, _L), (0x1E4EC, 0x1E4EF, _M), (0x1E4F0, 0x1E4F9, _N),
    (0x1F6DC, 0x1F6EC, _S), (0x1F77B, 0x1F7D9, _S), (0x1F700, 0x1F776, _S), (0x1FA70, 0x1FA7C, _S),
    (0x1FA80, 0x1FA88, _S), (0x1FA90, 0x1FABD, _S), (0x1FABF, 0x1FAC5, _S), (0x1FACE, 0x1FADB, _S),
    (0x1FAE0, 0x1FAE8, _S), (0x1FAF0, 0x1FAF8, _S),
    (0x2A700, 0x2B739, _L), (0x2EBF0, 0x2EE5D, _L), (0x31350, 0x323AF, _L),
)


def _flag_after_14(cp: int) -> int:
    for first, last, flag in _ASSIGNED_AFTER_14:
        if first <= cp <= last:
            return int(flag)
    return int(CpFlag.UNDEFINED)


def _compute_flags(ch: str) -> int:
    cat = unicodedata.category(ch)
    flags = _flag_after_14(ord(ch)) if cat == "Cn" else int(_MAJOR_CATEGORY[cat[0]])
    if ord(ch) in WHITESPACE:
        flags |= CpFlag.WHITESPACE
    return flags


# Cache: character -> flags int. Seeded with ASCII; grows with the characters seen.
_FLAGS: dict[str, int] = {chr(c): _compute_flags(chr(c)) for c in range(128)}


def cpt_flags(ch: str) -> int:
    """Flags (a ``CpFlag`` bit set, as int) of one character."""
    f = _FLAGS.get(ch)
    if f is None:
        f = _FLAGS[ch] = _compute_flags(ch)
    return f


def text_flags(text: str) -> list[int]:
    """Flags of every character of ``text`` (one int per codepoint)."""
    cache = _FLAGS
    get = cache.get
    out = [get(ch) for ch in text]
    if None in out:
        out = [cpt_flags(ch) for ch in text]
    return out


def _bytes_to_unicode() -> list[str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = [""] * 256
    for b in printable:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_UNICODE: tuple[str, ...] = tuple(_bytes_to_unicode())  # (256,) byte -> 1-char str
UNICODE_TO_BYTE: dict[str, int] = {ch: b for b, ch in enumerate(BYTE_TO_UNICODE)}

# str.translate table: a Latin-1-decoded byte string -> GPT-2 alphabet.
_LATIN1_TO_BPE: dict[int, str] = {b: ch for b, ch in enumerate(BYTE_TO_UNICODE)}


def bytes_to_bpe_text(word: str) -> str:
    """UTF-8 bytes of ``word`` spelled in the GPT-2 byte alphabet."""
    return word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BPE)
