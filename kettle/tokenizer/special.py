"""Split special-token text out of the input before tokenizing (llama.cpp's
``tokenizer_st_partition``).

The special tokens (control, user-defined and unknown tokens) are tried one at
a time, longest text first; each one cuts every still-raw fragment at all of
its non-overlapping occurrences, left to right. Control and unknown tokens are
only matched when ``parse_special`` is true; user-defined tokens always are.
A token with the LSTRIP / RSTRIP attribute also eats the C-locale whitespace
before / after it.

Known difference: llama.cpp orders tokens of equal length with an unstable
sort; we order them by id. This only matters for two distinct special tokens
of the same length that overlap each other in the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kettle.tokenizer.unicode import C_SPACE

__all__ = ["SpecialToken", "Fragment", "partition"]

Fragment = str | int  # raw text still to tokenize, or a token id already decided


@dataclass(frozen=True)
class SpecialToken:
    text: str
    id: int
    parse_only: bool
    """Matched only when parse_special is true (control and unknown tokens)."""
    lstrip: bool = False
    rstrip: bool = False


def _split_one(fragment: str, tok: SpecialToken, out: list[Fragment]) -> None:
    text = tok.text
    size = len(fragment)
    start = 0
    while True:
        match = fragment.find(text, start)
        if match < 0:
            break
        left_end = match
        if tok.lstrip:
            while left_end > start and fragment[left_end - 1] in C_SPACE:
                left_end -= 1
        if left_end > start:
            out.append(fragment[start:left_end])
        out.append(tok.id)
        start = match + len(text)
        if tok.rstrip:
            while start < size and fragment[start] in C_SPACE:
                start += 1
    if start < size:
        out.append(fragment[start:])


def partition(text: str, specials: Sequence[SpecialToken], parse_special: bool) -> list[Fragment]:
    """``text`` as a list of raw-text fragments and special-token ids, in order.

    ``specials`` must be sorted longest text first. Empty text gives ``[]``.
    """
    if not text:
        return []
    fragments: list[Fragment] = [text]
    for tok in specials:
        if tok.parse_only and not parse_special:
            continue
        if tok.text not in text:  # cheap filter: fragments are substrings of text
            continue
        out: list[Fragment] = []
        for frag in fragments:
            if isinstance(frag, int):
                out.append(frag)
            else:
                _split_one(frag, tok, out)
        fragments = out
    return fragments
