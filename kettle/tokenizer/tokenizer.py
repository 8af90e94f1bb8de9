"""The tokenizer: text <-> token ids, reproducing llama.cpp's ids exactly.

``encode`` is ``llama_tokenize(add_special, parse_special)``;
``token_to_piece`` is ``llama_token_to_piece(lstrip=0, special)``;
``detokenize`` is ``llama_detokenize(remove_special, unparse_special)`` (with
its space clean-up); ``decode`` is the plain concatenation of pieces, which is
what a streaming client sees.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from kettle.errors import TokenizerError
from kettle.tokenizer.bpe import BPE
from kettle.tokenizer.special import Fragment, partition
from kettle.tokenizer.spm import ESCAPED_SPACE, byte_fallback_ids, spm_encode
from kettle.tokenizer.unicode import UNICODE_TO_BYTE
from kettle.tokenizer.vocab import TokenAttr, Vocab, VocabType, load_vocab
from kettle.tokenizer.wpm import WordPiece

__all__ = ["Tokenizer"]

_HIDDEN_UNLESS_SPECIAL = TokenAttr.UNKNOWN | TokenAttr.CONTROL  # empty piece when special=False
_RAW_TEXT = TokenAttr.UNKNOWN | TokenAttr.CONTROL | TokenAttr.USER_DEFINED  # piece = token text


def _bpe_text_to_bytes(text: str) -> bytes:
    """Undo the GPT-2 byte alphabet (llama.cpp's llama_decode_text, oddities included)."""
    out = bytearray()
    for ch in text:
        b = UNICODE_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:  # not a byte-alphabet character: llama.cpp writes a marker
            out += b"[UNK_BYTE_0x" + ch.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
    return bytes(out)


def _clean_spaces(text: bytes) -> bytes:
    """llama.cpp's three clean-up passes over detokenized text (BPE vocabularies)."""
    t = bytearray(text)
    # pass 1: drop the space before ? ! . ,
    out = bytearray(t[:1])
    for i in range(1, len(t)):
        if t[i - 1] == 0x20 and t[i] in b"?!.,":
            out.pop()
        out.append(t[i])
    # pass 2: " ' " -> "'" (the dropped next space is overwritten with NUL, which
    # the following step sees as its previous character)
    t, out = out, bytearray(out[:1])
    i = 1
    while i < len(t):
        x = t[i]
        if x == 0x27 and i + 1 < len(t) and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            out.pop()
            i += 1
            t[i] = 0
        out.append(x)
        i += 1
    # pass 3: " 's", " 'm", " 're", " 've" lose the space
    t, out = out, bytearray(out[:1])
    for i in range(1, len(t)):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < len(t):
            x1 = t[i + 1]
            if x1 in b"sm":
                out.pop()
            elif x1 not in b"td" and i + 2 < len(t) and (x1, t[i + 2]) in ((0x72, 0x65), (0x76, 0x65)):
                out.pop()
        out.append(x)
    return bytes(out)


class Tokenizer:
    """A vocabulary and its encoder/decoder. Build it with ``from_metadata``.

    Attributes: ``vocab_size``, ``bos_id``/``eos_id`` (None when absent),
    ``eog_ids`` (ids that end generation, as ``llama_vocab_is_eog``),
    ``add_bos``/``add_eos`` (added by ``encode(add_special=True)``),
    ``special_ids`` (control, user-defined and unknown tokens),
    ``control_ids`` (control tokens: hidden by ``special=False``).
    Thread-safe for concurrent use.
    """

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._attrs = vocab.attrs
        self._tokens = vocab.tokens
        self._pieces: list[bytes | None] = [None] * len(vocab.tokens)
        self.vocab_size: int = len(vocab.tokens)
        self.bos_id: int | None = vocab.ids["bos"]
        self.eos_id: int | None = vocab.ids["eos"]
        self.eog_ids: frozenset[int] = vocab.eog_ids
        self.add_bos: bool = vocab.add_bos
        self.add_eos: bool = vocab.add_eos
        self.special_ids: frozenset[int] = frozenset(s.id for s in vocab.specials)
        self.control_ids: frozenset[int] = frozenset(
            s.id for s in vocab.specials if self._attrs[s.id] & TokenAttr.CONTROL
        )
        self._bpe = BPE(vocab.token_to_id, vocab.ranks, vocab.pre) if vocab.pre is not None else None
        self._wpm = (WordPiece(vocab.token_to_id, vocab.ids["unk"], vocab.lowercase, vocab.strip_accents)  # type: ignore[arg-type]
                     if vocab.type is VocabType.WPM else None)
        # (256,) byte -> byte-fallback token id (SentencePiece vocabularies only)
        self._byte_ids = byte_fallback_ids(vocab.token_to_id) if vocab.type is VocabType.SPM else []

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """Build from GGUF metadata (``GGUFFile(path).metadata``); ``TokenizerError`` if bad."""
        return cls(load_vocab(meta))

    # ------------------------------------------------------------------ queries

    @property
    def type(self) -> VocabType:
        return self._vocab.type

    def special_id(self, role: str) -> int | None:
        """Id of a special role: bos, eos, eot, eom, unk, sep, pad, mask, fim_pre, ..."""
        return self._vocab.ids.get(role)

    def is_eog(self, token_id: int) -> bool:
        """True if ``token_id`` ends generation (llama_vocab_is_eog)."""
        return token_id in self.eog_ids

    def is_control(self, token_id: int) -> bool:
        return token_id in self.control_ids

    def token_text(self, token_id: int) -> str:
        """The vocabulary's text of a token (GPT-2 alphabet / "▁" spaces, unprocessed)."""
        return self._tokens[self._check_id(token_id)]

    def token_id(self, text: str) -> int | None:
        """Id of the token whose vocabulary text is exactly ``text``, or None."""
        return self._vocab.token_to_id.get(text)

    def token_attr(self, token_id: int) -> TokenAttr:
        return TokenAttr(self._attrs[self._check_id(token_id)])

    def _check_id(self, token_id: int) -> int:
        """``token_id`` as a plain int; ``TokenizerError`` naming it if it is no valid id."""
        try:
            value = operator.index(token_id) if not isinstance(token_id, bool) else None
        except TypeError:
            value = None
        if value is None or not 0 <= value < self.vocab_size:
            raise TokenizerError(f"token id {token_id!r} is outside the vocabulary (0..{self.vocab_size - 1})")
        return value

    # ------------------------------------------------------------------ encode

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``, as ``llama_tokenize(add_special, parse_special)``.

        ``add_special`` adds BOS/EOS as the model's flags say; ``parse_special``
        lets control-token text (``<|im_start|>``) become that token.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"text to encode must be str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TokenizerError(f"text to encode is not valid Unicode ({e.reason} at {e.start})") from None
        v = self._vocab
        out: list[int] = []
        fragments = partition(text, v.specials, parse_special)
        if self._wpm is not None:  # llama.cpp: [CLS] text [SEP] whenever add_special
            if add_special:
                out.append(self.bos_id)  # type: ignore[arg-type]  # checked by load_vocab
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._wpm.encode(frag, out)
            if add_special:
                out.append(v.ids["sep"])  # type: ignore[arg-type]
            return out
        if add_special and v.add_bos:
            out.append(self.bos_id)  # type: ignore[arg-type]  # checked by load_vocab
        if self._bpe is not None:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._bpe.encode(frag, out)
        else:
            self._encode_spm(fragments, out)
        if add_special and v.add_eos:
            out.append(self.eos_id)  # type: ignore[arg-type]
        return out

    def _encode_spm(self, fragments: list[Fragment], out: list[int]) -> None:
        v = self._vocab
        prev_special = True  # the space prefix goes before the first text and after each special
        for frag in fragments:
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if v.add_space_prefix and prev_special:
                frag = " " + frag
            spm_encode(frag.replace(" ", ESCAPED_SPACE), v.token_to_id, v.scores, self._byte_ids, out)
            prev_special = False

    # ------------------------------------------------------------------ decode

    def _piece(self, token_id: int) -> bytes:
        piece = self._pieces[token_id]
        if piece is None:
            attr = self._attrs[token_id]
            text = self._tokens[token_id]
            if attr & _RAW_TEXT:
                piece = text.encode("utf-8")
            elif attr & TokenAttr.NORMAL:
                if self._bpe is not None:
                    piece = _bpe_text_to_bytes(text)
                else:
                    piece = text.replace(ESCAPED_SPACE, " ").encode("utf-8")
            elif attr & TokenAttr.BYTE:
                piece = bytes([int(text[3:5], 16)])
            else:  # unused / undefined types render as nothing
                piece = b""
            self._pieces[token_id] = piece
        return piece

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """Bytes of one token (``llama_token_to_piece(lstrip=0, special)``).

        With ``special=False`` control and unknown tokens give ``b""``.
        """
        token_id = self._check_id(token_id)
        if not special and self._attrs[token_id] & _HIDDEN_UNLESS_SPECIAL:
            return b""
        return self._piece(token_id)

    def decode_bytes(self, ids: Sequence[int], special: bool = True) -> bytes:
        """Concatenated pieces of ``ids``."""
        return b"".join([self.token_to_piece(i, special) for i in ids])

    def decode(self, ids: Sequence[int], special: bool = True) -> str:
        """Concatenated pieces, decoded as UTF-8 with invalid bytes replaced by U+FFFD."""
        return self.decode_bytes(ids, special).decode("utf-8", errors="replace")

    def detokenize(self, ids: Sequence[int], remove_special: bool = False, unparse_special: bool = True) -> bytes:
        """``llama_detokenize``: pieces, minus a leading BOS / trailing EOS when
        ``remove_special``, minus one leading space when the model adds a space
        prefix, with BPE vocabularies' space clean-up."""
        v = self._vocab
        ids = [self._check_id(i) for i in ids]
        strip_space = v.add_space_prefix
        if remove_special and v.add_bos and ids and ids[0] == self.bos_id:
            strip_space = False
            ids = ids[1:]
        if remove_special and v.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        parts = []
        for i in ids:
            piece = self.token_to_piece(i, unparse_special)
            if strip_space and piece.startswith(b" "):
                piece = piece[1:]
            strip_space = False
            parts.append(piece)
        text = b"".join(parts)
        return _clean_spaces(text) if v.clean_spaces else text
