"""Validated vocabulary built from a GGUF file's ``tokenizer.ggml.*`` metadata.

Mirrors what llama.cpp's ``llama_vocab::impl::load`` derives: token
attributes from ``tokenizer.ggml.token_type``, the special-token ids (from the
metadata, else per-model-type defaults, else recognised by their text), the
add-BOS/EOS flags and their defaults, the end-of-generation (EOG) set, and the
list of special tokens that are split out of the input before tokenizing.

Everything is checked here, once; the tokenizer itself trusts a ``Vocab``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kettle.errors import TokenizerError
from kettle.tokenizer import markers
from kettle.tokenizer.bpe import Pair, parse_merges
from kettle.tokenizer.pretokenize import PreType, pre_type
from kettle.tokenizer.special import SpecialToken

__all__ = ["VocabType", "TokenType", "TokenAttr", "Vocab", "load_vocab"]

KEY_MODEL = "tokenizer.ggml.model"
KEY_PRE = "tokenizer.ggml.pre"
KEY_TOKENS = "tokenizer.ggml.tokens"
KEY_SCORES = "tokenizer.ggml.scores"
KEY_TOKEN_TYPE = "tokenizer.ggml.token_type"
KEY_MERGES = "tokenizer.ggml.merges"
KEY_ADD_BOS = "tokenizer.ggml.add_bos_token"
KEY_ADD_EOS = "tokenizer.ggml.add_eos_token"
KEY_ADD_PREFIX = "tokenizer.ggml.add_space_prefix"
KEY_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
KEY_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"
KEY_NAME = "general.name"


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class VocabType(enum.Enum):
    """``tokenizer.ggml.model`` values kettle supports."""

    SPM = "llama"  # SentencePiece-style, scores + byte fallback
    BPE = "gpt2"  # byte-level BPE with merges and a pre-tokenizer
    WPM = "bert"  # WordPiece in phantom-space form (kettle/tokenizer/wpm.py)


class TokenType(enum.IntEnum):
    """``tokenizer.ggml.token_type`` values (llama.cpp's llama_token_type)."""

    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


class TokenAttr(enum.IntFlag):
    """llama.cpp's llama_token_attr bits."""

    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5
    NORMALIZED = 1 << 6
    LSTRIP = 1 << 7
    RSTRIP = 1 << 8
    SINGLE_WORD = 1 << 9


# (7,) token type -> attribute; any other type value is UNDEFINED.
_TYPE_TO_ATTR = np.array(
    [TokenAttr.UNDEFINED, TokenAttr.NORMAL, TokenAttr.UNKNOWN, TokenAttr.CONTROL,
     TokenAttr.USER_DEFINED, TokenAttr.UNUSED, TokenAttr.BYTE],
    dtype=np.int32,
)
SPECIAL_ATTRS = TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN

# Per-model-type defaults of the special ids before the metadata is read.
_DEFAULT_IDS: dict[VocabType, dict[str, int]] = {
    VocabType.SPM: {"bos": 1, "eos": 2, "unk": 0},
    VocabType.BPE: {"bos": 11, "eos": 11},
    VocabType.WPM: {"bos": 101, "unk": 100, "sep": 102, "pad": 0, "mask": 103},
}
_STRICT_ROLES = ("bos", "eos")  # an out-of-range id for these is an error, not a warning


@dataclass
class Vocab:
    """Everything the tokenizer needs, derived once from the metadata."""

    type: VocabType
    pre: PreType | None  # None for SPM
    tokens: list[str]  # (n_vocab,) token text (empty texts renamed "[EMPTY_i]")
    token_to_id: dict[str, int]
    scores: list[float]  # (n_vocab,)
    attrs: list[int]  # (n_vocab,) TokenAttr bits, after llama.cpp's overrides
    ids: dict[str, int | None]  # role ("bos", "eos", "eot", "fim_pre", ...) -> id
    eog_ids: frozenset[int]
    specials: list[SpecialToken]  # split out before tokenizing; longest text first
    ranks: dict[Pair, int]  # BPE merge ranks (empty for SPM)
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool
    lowercase: bool = False  # WordPiece normalizer flags (WPM only)
    strip_accents: bool = False


def _require(meta: Mapping[str, Any], key: str) -> Any:
    if key not in meta:
        raise TokenizerError(f"the model has no {key} metadata (not a tokenizer-bearing GGUF?)")
    return meta[key]


def _flag(meta: Mapping[str, Any], key: str, default: bool) -> bool:
    value = meta.get(key, default)
    if not isinstance(value, (bool, np.bool_)):
        raise TokenizerError(f"{key} must be a bool, got {value!r}")
    return bool(value)


def _numeric_array(meta: Mapping[str, Any], key: str, n: int, integer: bool) -> np.ndarray | None:
    if key not in meta:
        return None
    try:
        arr = np.asarray(meta[key])
    except (TypeError, ValueError):
        arr = np.asarray([], dtype=object)
    kinds = "iu" if integer else "iuf"
    if arr.ndim != 1 or arr.dtype.kind not in kinds:
        want = "integers" if integer else "numbers"
        raise TokenizerError(f"{key} must be a 1-D array of {want}")
    if len(arr) != n:
        raise TokenizerError(f"{key} has {len(arr)} entries but tokenizer.ggml.tokens has {n}")
    return arr


def _read_tokens(meta: Mapping[str, Any]) -> tuple[list[str], dict[str, int]]:
    tokens = _require(meta, KEY_TOKENS)
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{KEY_TOKENS} must be an array of strings")
    if not tokens:
        raise TokenizerError(f"{KEY_TOKENS} is empty")
    tokens = list(tokens)
    if "" in tokens:
        tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    token_to_id = dict(zip(tokens, range(len(tokens))))
    if len(token_to_id) != len(tokens):
        seen: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t in seen:
                raise TokenizerError(f"duplicate token in vocabulary: {t!r} has ids {seen[t]} and {i}")
            seen[t] = i
    return tokens, token_to_id


def _read_ids(meta: Mapping[str, Any], vtype: VocabType, n: int) -> dict[str, int | None]:
    ids: dict[str, int | None] = {role: None for role in markers.SPECIAL_ID_KEYS}
    for role, default in _DEFAULT_IDS[vtype].items():
        ids[role] = default if default < n else None
    for role, keys in markers.SPECIAL_ID_KEYS.items():
        for key in keys:
            if key not in meta:
                continue
            value = meta[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TokenizerError(f"{key} must be an integer token id, got {value!r}")
            if 0 <= value < n:
                ids[role] = int(value)
            elif role in _STRICT_ROLES:
                raise TokenizerError(f"{key} = {value} is out of range for a vocabulary of {n} tokens")
            # other roles: llama.cpp warns and keeps the default
    return ids


def _detect_by_text(
    ids: dict[str, int | None], token_to_id: dict[str, int], attrs: np.ndarray
) -> None:
    for role, texts in markers.TEXT_DETECTED_ROLES.items():
        if ids[role] is not None:
            continue
        found = [token_to_id[t] for t in texts if t in token_to_id]
        if found:
            ids[role] = tid = min(found)
            attrs[tid] |= TokenAttr.CONTROL


def _eog_ids(
    ids: dict[str, int | None], tokens: list[str], token_to_id: dict[str, int], attrs: np.ndarray
) -> set[int]:
    eog = {ids[r] for r in ("fim_pad", "fim_rep", "fim_sep") if ids[r] is not None}
    for text in markers.EOG_TEXTS:
        tid = token_to_id.get(text)
        if tid is not None:
            eog.add(tid)
            attrs[tid] |= TokenAttr.CONTROL
    for text in markers.FORCED_USER_DEFINED:
        tid = token_to_id.get(text)
        if tid is not None:
            attrs[tid] = TokenAttr.USER_DEFINED
    eog.update(ids[r] for r in ("eos", "eot", "eom") if ids[r] is not None)
    texts = {tokens[t] for t in eog}
    end_id = token_to_id.get(markers.END_TEXT)
    if end_id in eog and any(all(g & texts for g in group) for group in markers.END_TOKEN_EXCEPTIONS):
        eog.discard(end_id)
        attrs[end_id] = TokenAttr.USER_DEFINED
    s_id = token_to_id.get(markers.EOS_TEXT)
    if s_id in eog and markers.TOOL_RESPONSE_EXCEPTION in texts:
        eog.discard(s_id)
        attrs[s_id] = TokenAttr.NORMAL
    return eog


def _specials(tokens: list[str], attrs: np.ndarray) -> list[SpecialToken]:
    special_ids = np.nonzero(attrs & SPECIAL_ATTRS)[0].tolist()
    # longest UTF-8 text first (llama.cpp sorts by byte length); ties by id
    special_ids.sort(key=lambda i: -len(tokens[i].encode("utf-8")))
    out = []
    for i in special_ids:
        a = int(attrs[i])
        out.append(SpecialToken(
            text=tokens[i], id=i,
            parse_only=bool(a & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)),
            lstrip=bool(a & TokenAttr.LSTRIP), rstrip=bool(a & TokenAttr.RSTRIP),
        ))
    return out


def _apply_name_quirks(meta: Mapping[str, Any], token_to_id: dict[str, int], attrs: np.ndarray) -> None:
    name = meta.get(KEY_NAME)
    if not isinstance(name, str) or not any(k in name.lower() for k in markers.RSTRIP_MODEL_NAMES):
        return
    attrs[(attrs & SPECIAL_ATTRS) != 0] |= TokenAttr.RSTRIP
    for text, on in [(t, True) for t in markers.RSTRIP_ON] + [(t, False) for t in markers.RSTRIP_OFF]:
        tid = token_to_id.get(text)
        if tid is not None:
            attrs[tid] = (attrs[tid] | TokenAttr.RSTRIP) if on else (attrs[tid] & ~TokenAttr.RSTRIP)


def load_vocab(meta: Mapping[str, Any]) -> Vocab:
    """Build and check a ``Vocab``; raises ``TokenizerError`` naming the bad key."""
    model = _require(meta, KEY_MODEL)
    try:
        vtype = VocabType(model)
    except ValueError:
        supported = ", ".join(repr(v.value) for v in VocabType)
        raise TokenizerError(f"unsupported {KEY_MODEL}={model!r}; supported: {supported}") from None

    tokens, token_to_id = _read_tokens(meta)
    n = len(tokens)
    scores_arr = _numeric_array(meta, KEY_SCORES, n, integer=False)
    types_arr = _numeric_array(meta, KEY_TOKEN_TYPE, n, integer=True)
    scores = [0.0] * n if scores_arr is None else scores_arr.astype(np.float64).tolist()
    if types_arr is None:
        attrs = np.full(n, TokenAttr.NORMAL, dtype=np.int32)
    else:
        t = types_arr.astype(np.int64)
        known = (t >= 0) & (t < len(_TYPE_TO_ATTR))
        attrs = np.where(known, _TYPE_TO_ATTR[np.where(known, t, 0)], TokenAttr.UNDEFINED).astype(np.int32)
    for i in np.nonzero(attrs & TokenAttr.BYTE)[0].tolist():
        text = tokens[i]
        # Two hex digits exactly: int(..., 16) alone would take "-1", " 1" or "_1".
        if len(text) != 6 or not text.startswith("<0x") or not text.endswith(">") \
                or any(c not in _HEX_DIGITS for c in text[3:5]):
            raise TokenizerError(f"token {i} {text!r} has type BYTE but is not of the form <0xXX>")

    ranks: dict[Pair, int] = {}
    pre: PreType | None = None
    if vtype is VocabType.BPE:
        merges = _require(meta, KEY_MERGES)
        if not isinstance(merges, (list, tuple)):
            raise TokenizerError(f"{KEY_MERGES} must be an array of strings")
        ranks = parse_merges(merges, token_to_id)
        pre_name = meta.get(KEY_PRE)
        if pre_name is not None and not isinstance(pre_name, str):
            raise TokenizerError(f"{KEY_PRE} must be a string, got {pre_name!r}")
        pre = pre_type(pre_name)
        add_bos, add_eos, add_space_prefix, clean_spaces = pre.add_bos, False, False, pre.clean_spaces
    elif vtype is VocabType.WPM:
        add_bos, add_eos, add_space_prefix, clean_spaces = True, False, False, True
    else:
        add_bos, add_eos, add_space_prefix, clean_spaces = True, False, True, False
    lowercase = _flag(meta, KEY_LOWERCASE, True)  # llama.cpp's default: files converted before the key lowercase
    strip_accents = _flag(meta, KEY_STRIP_ACCENTS, lowercase)
    add_space_prefix = _flag(meta, KEY_ADD_PREFIX, add_space_prefix)
    add_bos = _flag(meta, KEY_ADD_BOS, add_bos)
    add_eos = _flag(meta, KEY_ADD_EOS, add_eos)

    ids = _read_ids(meta, vtype, n)
    for role, key, wanted in (("bos", KEY_ADD_BOS, add_bos), ("eos", KEY_ADD_EOS, add_eos)):
        if wanted and ids[role] is None:
            raise TokenizerError(f"{key} is true, but the model has no valid {role.upper()} token id")
    if vtype is VocabType.WPM:  # llama.cpp adds [CLS] ... [SEP] whatever the flags say, and needs [UNK]
        for role, key in (("bos", "tokenizer.ggml.bos_token_id"), ("sep", "tokenizer.ggml.seperator_token_id"),
                          ("unk", "tokenizer.ggml.unknown_token_id")):
            if ids[role] is None:
                raise TokenizerError(f"a WordPiece vocabulary needs a valid {role.upper()} token id ({key})")

    _detect_by_text(ids, token_to_id, attrs)
    control = np.nonzero(attrs & TokenAttr.CONTROL)[0].tolist()
    for i in control:
        if "unused" in tokens[i]:
            attrs[i] |= TokenAttr.UNUSED
    eog = _eog_ids(ids, tokens, token_to_id, attrs)
    _apply_name_quirks(meta, token_to_id, attrs)

    return Vocab(
        type=vtype, pre=pre, tokens=tokens, token_to_id=token_to_id, scores=scores,
        attrs=attrs.tolist(), ids=ids, eog_ids=frozenset(eog), specials=_specials(tokens, attrs),
        ranks=ranks, add_bos=add_bos, add_eos=add_eos, add_space_prefix=add_space_prefix,
        clean_spaces=clean_spaces, lowercase=lowercase, strip_accents=strip_accents,
    )
