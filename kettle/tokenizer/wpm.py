"""WordPiece (``tokenizer.ggml.model = "bert"``), as llama.cpp's WPM tokenizer does it.

The GGUF vocabulary stores WordPiece in "phantom space" form: a piece that starts
a word carries a leading ``▁`` (BERT's ``hello``), a continuation piece has lost
its ``##`` (BERT's ``##lo`` is ``lo``), control tokens (``[CLS]``) are unchanged.

Text is first split into words (``preprocess``):

* with ``strip_accents`` each codepoint is replaced by the first codepoint of its
  canonical decomposition (llama.cpp's one-codepoint NFD table), and combining
  marks are dropped;
* whitespace ends a word; NUL, U+FFFD and control characters are dropped;
* with ``lowercase`` each codepoint takes its simple lowercase mapping;
* punctuation, ASCII symbols and CJK ideographs are words of their own.

Each word, with ``▁`` prepended, is then cut greedily into the longest pieces the
vocabulary holds, left to right; a word with any part that matches no piece
becomes one ``[UNK]``. The flags come from ``tokenizer.ggml.normalizer.lowercase``
(default true: older converters wrote no key, and their BERT vocabularies are uncased) and ``tokenizer.ggml.normalizer.strip_accents`` (default: the
lowercase flag), as llama.cpp reads them. Each position tries only the lengths
vocabulary entries have (entries longer than ``MAX_PIECE`` codepoints are never
matched), so a hostile vocabulary cannot make every position try a million lengths.
"""

from __future__ import annotations

import unicodedata

from kettle.tokenizer.unicode import CpFlag, cpt_flags

__all__ = ["WordPiece", "PHANTOM_SPACE"]

PHANTOM_SPACE = "\u2581"
MAX_PIECE = 256  # codepoints: a longer vocabulary entry is never matched (real WordPiece pieces are < 30)

_DROP = CpFlag.CONTROL
_SPACE, _SKIP, _ALONE, _APPEND = range(4)  # what preprocess does with a character
_OWN_WORD = CpFlag.PUNCTUATION


def _is_cjk(cp: int) -> bool:
    """llama.cpp's ``is_chinese_char`` ranges (the 0x2B920 start is theirs, after HF's Rust code)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _nfd_first(ch: str) -> str:
    """The first codepoint of ``ch``'s canonical decomposition (llama.cpp's NFD table)."""
    if ch < "\u00c0":
        return ch
    return unicodedata.normalize("NFD", ch)[0]


def _lower(ch: str) -> str:
    """The simple (one-codepoint) lowercase mapping of UnicodeData.txt."""
    low = ch.lower()
    if len(low) == 1:
        return low
    return "i" if ch == "\u0130" else ch  # U+0130's full mapping is two codepoints; its simple one is "i"


class WordPiece:
    """Greedy longest-match WordPiece over a phantom-space vocabulary (thread-safe)."""

    def __init__(self, token_to_id: dict[str, int], unk_id: int, lowercase: bool, strip_accents: bool) -> None:
        self.token_to_id = token_to_id
        self.unk_id = unk_id
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        # the lengths a match can have, longest first: each position tries only these
        self.lengths = sorted({len(t) for t in token_to_id if len(t) <= MAX_PIECE}, reverse=True)
        self._seen: dict[str, tuple[int, str]] = {}  # character -> _classify(character), filled as met

    def _classify(self, ch: str) -> tuple[int, str]:
        """What ``preprocess`` does with one input character: (_SPACE | _SKIP | _ALONE | _APPEND, its text)."""
        if self.strip_accents:
            ch = _nfd_first(ch)
        cp = ord(ch)
        flags = cpt_flags(ch)
        if flags & CpFlag.WHITESPACE:
            return _SPACE, ""
        if cp == 0 or cp == 0xFFFD or flags & _DROP or (self.strip_accents and flags & CpFlag.ACCENT_MARK):
            return _SKIP, ""
        s = _lower(ch) if self.lowercase else ch
        if flags & _OWN_WORD or (cp < 0x7F and flags & CpFlag.SYMBOL) or _is_cjk(cp):
            return _ALONE, s
        return _APPEND, s

    def preprocess(self, text: str) -> list[str]:
        """``text`` split into words (see the module docstring)."""
        words: list[str] = []
        word: list[str] = []
        seen = self._seen
        for ch in text:
            kind_s = seen.get(ch)
            if kind_s is None:
                kind_s = seen[ch] = self._classify(ch)
            kind, s = kind_s
            if kind == _APPEND:
                word.append(s)
            elif kind == _SPACE or kind == _ALONE:
                if word:
                    words.append("".join(word))
                    word = []
                if kind == _ALONE:
                    words.append(s)
        if word:
            words.append("".join(word))
        return words

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of ``text`` (one fragment without special tokens) to ``out``."""
        lookup = self.token_to_id.get
        for word in self.preprocess(text):
            w = PHANTOM_SPACE + word
            n = len(w)
            start = len(out)
            i = 0
            while i < n:
                for length in self.lengths:
                    if length > n - i:
                        continue
                    tid = lookup(w[i:i + length])
                    if tid is not None:
                        out.append(tid)
                        i += length
                        break
                else:  # no piece fits here: the whole word is unknown
                    del out[start:]
                    break
            if len(out) == start:
                out.append(self.unk_id)
