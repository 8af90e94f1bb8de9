"""BPE pre-tokenizers: split text into words before the merges run.

Each pre-tokenizer type (``tokenizer.ggml.pre``) is a list of regexes applied
one after the other, as llama.cpp's ``unicode_regex_split`` does: every regex
splits each piece left by the previous one into its matches *and* the gaps
between them. Two regexes are recognised by their exact text and run as
hand-written scanners (llama.cpp's ``unicode_regex_split_custom_gpt2`` and
``..._llama3``), which is not quite what the regex says (e.g. a trailing run of
whitespace); the others run through a regex engine on a "collapsed" copy of
the text in which every non-ASCII codepoint is replaced by one byte naming its
class (``\\p{L}`` -> 0xD2, ...), exactly as llama.cpp feeds ``std::regex``.

Positions here are codepoint indices into a Python ``str``; a *segment* is a
``(start, end)`` pair of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kettle.errors import TokenizerError
from kettle.tokenizer.unicode import CpFlag, text_flags

__all__ = ["PreType", "PRE_TYPES", "pre_type", "split_words"]

Segments = list[tuple[int, int]]

_LETTER = int(CpFlag.LETTER)
_NUMBER = int(CpFlag.NUMBER)
_SPACE = int(CpFlag.WHITESPACE)
_WLN = _SPACE | _LETTER | _NUMBER
_CATEGORY_BITS = int(CpFlag.MASK_CATEGORIES)

# The regexes, spelled as in llama.cpp (the custom scanners are keyed on this text).
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class PreType:
    """One pre-tokenizer type and the vocabulary flags llama.cpp ties to it."""

    regexes: tuple[str, ...]
    clean_spaces: bool = True
    """``clean_up_tokenization_spaces`` applied by ``detokenize``."""
    ignore_merges: bool = False
    """A word that is already a token is taken whole, without merges."""
    add_bos: bool = False
    """Default of ``add_bos`` when ``tokenizer.ggml.add_bos_token`` is absent."""


_DEFAULT = PreType(
    (r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", "[0-9][0-9][0-9]"),
)
_GPT2 = PreType((GPT2_RE,))
_GPT2_NOCLEAN = PreType((GPT2_RE,), clean_spaces=False)
_LLAMA3 = PreType((LLAMA3_RE,), ignore_merges=True, add_bos=True)
_LLAMA3_REGEX_ONLY = PreType((LLAMA3_RE,))
_STARCODER = PreType((r"\p{N}", GPT2_RE))
_STARCODER_NOCLEAN = PreType((r"\p{N}", GPT2_RE), clean_spaces=False)
_QWEN2 = PreType((QWEN2_RE,), clean_spaces=False)
_QWEN2_CLEAN = PreType((QWEN2_RE,))
_FALCON = PreType((r"[\p{P}\$\+<=>\^~\|`]+", GPT2_RE, "[0-9][0-9][0-9]"))


def _names(pre: PreType, *names: str) -> dict[str, PreType]:
    return dict.fromkeys(names, pre)


# tokenizer.ggml.pre -> type (the subset of llama.cpp's table kettle supports).
PRE_TYPES: dict[str, PreType] = {
    **_names(_DEFAULT, "default"),
    **_names(
        _LLAMA3, "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
        "midm-2.0", "lfm2", "jina-v5-nano",
    ),
    **_names(_LLAMA3_REGEX_ONLY, "dbrx", "smaug-bpe"),
    **_names(
        _GPT2, "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
        "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais", "exaone4",
    ),
    **_names(_GPT2_NOCLEAN, "trillion", "granite-docling"),
    **_names(_STARCODER, "starcoder", "refact", "codeshell", "exaone", "minerva-7b"),
    **_names(_STARCODER_NOCLEAN, "smollm", "command-r"),
    **_names(
        _QWEN2, "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open",
    ),
    **_names(_QWEN2_CLEAN, "stablelm2", "megrez"),
    **_names(_FALCON, "falcon"),
}


def pre_type(name: str | None) -> PreType:
    """The pre-tokenizer for ``tokenizer.ggml.pre`` (absent: llama.cpp's 'default')."""
    if name is None or name == "":
        return _DEFAULT
    try:
        return PRE_TYPES[name]
    except KeyError:
        supported = ", ".join(sorted(PRE_TYPES))
        raise TokenizerError(
            f"unsupported BPE pre-tokenizer tokenizer.ggml.pre={name!r}; supported: {supported}"
        ) from None


# ---------------------------------------------------------------- custom scanners


def _split_gpt2(text: str, flags: list[int], segments: Segments) -> Segments:
    """llama.cpp's hand-written scanner for GPT2_RE."""
    out: Segments = []
    for ini, end in segments:

        def fl(p: int) -> int:
            return flags[p] if p < end else 0

        pos = prev = ini
        while pos < end:
            c = text[pos]
            f = flags[pos]
            if c == "'" and pos + 1 < end:
                n = text[pos + 1]
                if n in "stmd":
                    pos += 2
                elif pos + 2 < end and n + text[pos + 2] in ("re", "ve", "ll"):
                    pos += 3
                if pos != prev:
                    out.append((prev, pos))
                    prev = pos
                    continue
            space = c == " "
            f2 = fl(pos + 1) if space else f
            if f2 & _LETTER:
                pos += space
                while fl(pos) & _LETTER:
                    pos += 1
            elif f2 & _NUMBER:
                pos += space
                while fl(pos) & _NUMBER:
                    pos += 1
            elif not (f2 & _WLN) and f2:
                pos += space
                while not (fl(pos) & _WLN) and fl(pos):
                    pos += 1
            else:
                n_ws = 0
                while fl(pos + n_ws) & _SPACE:
                    n_ws += 1
                if n_ws > 1 and pos + n_ws < end:
                    pos += n_ws - 1  # \s+(?!\S): leave the last space to the next word
                elif n_ws > 0:
                    pos += n_ws
                else:
                    pos += 1
            out.append((prev, pos))
            prev = pos
    return out


def _split_llama3(text: str, flags: list[int], segments: Segments) -> Segments:
    """llama.cpp's hand-written scanner for LLAMA3_RE."""
    out: Segments = []
    for ini, end in segments:

        def fl(p: int) -> int:
            return flags[p] if p < end else 0

        pos = prev = ini
        while pos < end:
            c = text[pos]
            f = flags[pos]
            if c == "'" and pos + 1 < end:  # (?i:'s|'t|'re|'ve|'m|'ll|'d)
                n = text[pos + 1].lower() if text[pos + 1].isascii() else ""
                if n and n in "stmd":
                    pos += 2
                elif n and pos + 2 < end and text[pos + 2].isascii():
                    if n + text[pos + 2].lower() in ("re", "ve", "ll"):
                        pos += 3
                if pos != prev:
                    out.append((prev, pos))
                    prev = pos
                    continue
            if not (c == "\r" or c == "\n" or f & _NUMBER) and (f & _LETTER or fl(pos + 1) & _LETTER):
                pos += 1  # [^\r\n\p{L}\p{N}]?\p{L}+
                while fl(pos) & _LETTER:
                    pos += 1
            elif f & _NUMBER:  # \p{N}{1,3}
                start = pos
                while fl(pos) & _NUMBER:
                    pos += 1
                    if pos - start >= 3:
                        out.append((prev, pos))
                        prev = start = pos
                if pos == prev:
                    continue
            elif not ((fl(pos + 1) if c == " " else f) & _WLN):  # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
                pos += c == " "
                while not (fl(pos) & _WLN) and fl(pos):
                    pos += 1
                while pos < end and text[pos] in "\r\n":
                    pos += 1
            else:
                n_ws = 0
                last_rn = 0
                while fl(pos + n_ws) & _SPACE:
                    if text[pos + n_ws] in "\r\n":
                        last_rn = pos + n_ws + 1
                    n_ws += 1
                if last_rn:  # \s*[\r\n]+
                    pos = last_rn
                elif n_ws > 1 and pos + n_ws < end:  # \s+(?!\S)
                    pos += n_ws - 1
                elif n_ws > 0:  # \s+
                    pos += n_ws
                else:
                    pos += 1
            out.append((prev, pos))
            prev = pos
    return out


# ---------------------------------------------------------------- regex fallback

# \p{..} -> collapsed class byte, and the ASCII members of the class (llama.cpp's k_ucat_*).
_UCAT: dict[str, int] = {
    r"\p{N}": _NUMBER,
    r"\p{L}": _LETTER,
    r"\p{P}": int(CpFlag.PUNCTUATION),
    r"\p{M}": int(CpFlag.ACCENT_MARK),
    r"\p{S}": int(CpFlag.SYMBOL),
    r"\p{Lu}": _LETTER,
    r"\p{Ll}": _LETTER,
    r"\p{Lt}": _LETTER,
    r"\p{Lm}": _LETTER,
    r"\p{Lo}": _LETTER,
}
_COLLAPSED_CHAR: dict[int, str] = {
    _NUMBER: "\xd1",
    _LETTER: "\xd2",
    int(CpFlag.PUNCTUATION): "\xd3",
    int(CpFlag.ACCENT_MARK): "\xd4",
    int(CpFlag.SYMBOL): "\xd5",
}
_COLLAPSED_OTHER = "\xd0"
_COLLAPSED_SPACE = "\x0b"
_ASCII_CLASS: dict[int, str] = {
    _NUMBER: "0-9",
    _LETTER: "A-Za-z",
    int(CpFlag.PUNCTUATION): r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    int(CpFlag.ACCENT_MARK): "",
    int(CpFlag.SYMBOL): r"\$\+<->^`\|",
}


def _collapse_regex(expr: str) -> str:
    """Rewrite ``\\p{..}`` classes to match the collapsed text (llama.cpp's rewrite)."""
    out: list[str] = []
    inside = False
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append(ch)
            inside = True
        elif inside and ch == "]" and expr[i - 1] != "\\":
            out.append(ch)
            inside = False
        elif expr.startswith("\\p{", i) and i + 3 < len(expr):
            close = expr.find("}", i + 3)
            flag = _UCAT.get(expr[i : close + 1]) if 0 <= close <= i + 10 else None
            if flag is None:
                out.append(ch)
            else:
                body = _COLLAPSED_CHAR[flag] + _ASCII_CLASS[flag]
                out.append(body if inside else f"[{body}]")
                i = close
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _collapse_text(text: str, flags: list[int]) -> str:
    chars = []
    for ch, f in zip(text, flags):
        if ch < "\x80":
            chars.append(ch)
        elif f & _SPACE:
            chars.append(_COLLAPSED_SPACE)
        else:
            chars.append(_COLLAPSED_CHAR.get(f & _CATEGORY_BITS, _COLLAPSED_OTHER))
    return "".join(chars)


def _space_fallback(text: str, flags: list[int]) -> str:
    return "".join(_COLLAPSED_SPACE if ch >= "\x80" and f & _SPACE else ch for ch, f in zip(text, flags))


class _RegexSplit:
    """Split by matches and gaps of one regex, run as llama.cpp runs std::regex."""

    def __init__(self, expr: str) -> None:
        if not expr.isascii():
            raise TokenizerError(f"pre-tokenizer regex with non-ASCII text is not supported: {expr!r}")
        self.collapsed = any(k in expr for k in _UCAT)
        self.pattern = re.compile(_collapse_regex(expr) if self.collapsed else expr, re.ASCII)

    def __call__(self, text: str, flags: list[int], segments: Segments, views: dict[str, str]) -> Segments:
        key = "collapsed" if self.collapsed else "spaces"
        subject = views.get(key)
        if subject is None:
            subject = views[key] = (_collapse_text if self.collapsed else _space_fallback)(text, flags)
        out: Segments = []
        for ini, end in segments:
            prev = ini
            for m in self.pattern.finditer(subject[ini:end]):
                s, e = ini + m.start(), ini + m.end()
                if s > prev:
                    out.append((prev, s))
                out.append((s, e))
                prev = e
            if prev < end:
                out.append((prev, end))
        return out


_CUSTOM: dict[str, Callable[[str, list[int], Segments], Segments]] = {
    GPT2_RE: _split_gpt2,
    LLAMA3_RE: _split_llama3,
}
_COMPILED: dict[str, _RegexSplit] = {}


def split_words(text: str, regexes: Sequence[str]) -> list[str]:
    """``text`` cut into pre-tokenizer words (plain text, not yet byte-encoded)."""
    if not text:
        return []
    flags = text_flags(text)
    segments: Segments = [(0, len(text))]
    views: dict[str, str] = {}
    for expr in regexes:
        custom = _CUSTOM.get(expr)
        if custom is not None:
            segments = custom(text, flags, segments)
            continue
        splitter = _COMPILED.get(expr)
        if splitter is None:
            splitter = _COMPILED[expr] = _RegexSplit(expr)
        segments = splitter(text, flags, segments, views)
    return [text[s:e] for s, e in segments]
