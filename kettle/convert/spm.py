"""SentencePiece tokenizers (``tokenizer.model``) -> ``tokenizer.ggml.*``, as llama.cpp writes them.

``tokenizer.model`` is a protobuf ``ModelProto``; kettle reads the one part it
needs, the pieces (field 1: each a message of ``piece`` (1, text), ``score``
(2, float) and ``type`` (3, enum: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
UNUSED 5, BYTE 6, the numbering GGUF's token types share)), with its own
bounded decoder rather than a protobuf dependency. As llama.cpp's converter
does: the list is padded with ``[PAD<i>]`` (UNUSED, score -10000) to
config.json's ``vocab_size``; ``added_tokens.json`` entries become
USER_DEFINED (score -1000); tokenizer_config.json's ``added_tokens_decoder``
marks special ones CONTROL; special ids and ``add_bos_token``/``add_eos_token``
come from tokenizer_config.json, the chat template as for BPE (``bpe.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from kettle.convert.bpe import SPECIAL_KEYS, _content, _looks_special, chat_template
from kettle.convert.checkpoint import Checkpoint
from kettle.errors import ConvertError
from kettle.tokenizer.vocab import TokenType

MAX_MODEL_BYTES = 64 << 20  # a 256k-piece model is ~4 MB
MAX_VOCAB = 1 << 22
PAD_SCORE, ADDED_SCORE = -10000.0, -1000.0
_TYPES = {int(t) for t in TokenType}


@dataclass
class SPMVocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    ids: dict[str, int]
    flags: dict[str, bool] = field(default_factory=dict)
    chat_template: str | None = None

    def write(self, writer: Any, add_space_prefix: bool | None = None) -> None:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(self.tokens)
        writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        for role, tid in self.ids.items():
            writer.add_uint32(SPECIAL_KEYS[role], tid)
        for name, value in self.flags.items():
            writer.add_bool(f"tokenizer.ggml.{name}", value)
        if add_space_prefix is not None:
            writer.add_add_space_prefix(add_space_prefix)
        if self.chat_template is not None:
            writer.add_chat_template(self.chat_template)


class _Proto:
    """A bounded protobuf wire-format reader over one message's bytes."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ConvertError(f"{self.what}: a truncated or overlong varint at byte {self.pos}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def fields(self):
        """(field number, wire type, value): ints for varints/fixed, bytes for length-delimited."""
        while self.pos < len(self.data):
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, wire, self.varint()
            elif wire in (1, 5):
                n = 8 if wire == 1 else 4
                if self.pos + n > len(self.data):
                    raise ConvertError(f"{self.what}: a truncated field at byte {self.pos}")
                yield number, wire, self.data[self.pos:self.pos + n]
                self.pos += n
            elif wire == 2:
                n = self.varint()
                if n > len(self.data) - self.pos:
                    raise ConvertError(f"{self.what}: a field of {n} bytes runs past the end at byte {self.pos}")
                yield number, wire, self.data[self.pos:self.pos + n]
                self.pos += n
            else:
                raise ConvertError(f"{self.what}: wire type {wire} at byte {self.pos} (not a SentencePiece model?)")


def read_pieces(data: bytes, what: str) -> list[tuple[str, float, int]]:
    """(piece, score, type) of every piece of a ``ModelProto``."""
    pieces = []
    for number, wire, value in _Proto(data, what).fields():
        if number != 1 or wire != 2:
            continue  # trainer, normalizer, denormalizer specs
        if len(pieces) >= MAX_VOCAB:
            raise ConvertError(f"{what}: more than {MAX_VOCAB} pieces")
        text, score, kind = None, 0.0, int(TokenType.NORMAL)
        for n, w, v in _Proto(value, f"{what} piece {len(pieces)}").fields():
            if n == 1 and w == 2:
                try:
                    text = v.decode("utf-8")
                except UnicodeDecodeError:
                    raise ConvertError(f"{what}: piece {len(pieces)} is not UTF-8") from None
            elif n == 2 and w == 5:
                score = struct.unpack("<f", v)[0]
            elif n == 3 and w == 0:
                kind = v
        if text is None or kind not in _TYPES:
            raise ConvertError(f"{what}: piece {len(pieces)} has no text or an unknown type {kind}")
        pieces.append((text, score, kind))
    if not pieces:
        raise ConvertError(f"{what}: no pieces (not a SentencePiece model)")
    return pieces


def spm_vocab(ckpt: Checkpoint, n_vocab: int) -> SPMVocab:
    """The SentencePiece vocabulary of ``ckpt`` padded to ``n_vocab`` (config.json's ``vocab_size``)."""
    if not 1 <= n_vocab <= MAX_VOCAB:
        raise ConvertError(f"{ckpt.path}: vocab_size {n_vocab} is not from 1 to {MAX_VOCAB}")
    path = ckpt.file("tokenizer.model")
    if path is None:
        raise ConvertError(f"{ckpt.path}: no tokenizer.model")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ConvertError(f"{path}: larger than {MAX_MODEL_BYTES} bytes")
    pieces = read_pieces(path.read_bytes(), str(path))
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores, types = [PAD_SCORE] * n_vocab, [int(TokenType.UNUSED)] * n_vocab
    for tid, (text, score, kind) in enumerate(pieces[:n_vocab]):
        tokens[tid], scores[tid], types[tid] = text, score, kind
    added = ckpt.json_file("added_tokens.json") or {}
    if not isinstance(added, dict):
        raise ConvertError(f"{ckpt.path / 'added_tokens.json'}: expected a JSON object of text -> id")
    for text, tid in added.items():
        if isinstance(tid, int) and not isinstance(tid, bool) and 0 <= tid < n_vocab:
            tokens[tid], scores[tid], types[tid] = text, ADDED_SCORE, int(TokenType.USER_DEFINED)
    config = ckpt.json_file("tokenizer_config.json") or {}
    if not isinstance(config, dict):
        raise ConvertError(f"{ckpt.path / 'tokenizer_config.json'}: expected a JSON object")
    decoder = config.get("added_tokens_decoder") or {}
    for key, token in decoder.items() if isinstance(decoder, dict) else ():
        if not (isinstance(key, str) and key.isdigit() and isinstance(token, dict)):
            continue
        tid, text = int(key), token.get("content")
        if tid < n_vocab and isinstance(text, str):
            if token.get("special") or _looks_special(text):
                tokens[tid], types[tid] = text, int(TokenType.CONTROL)
            else:
                tokens[tid], types[tid] = text.replace("\u2581", " "), int(TokenType.USER_DEFINED)
    index = {t: i for i, t in enumerate(tokens)}
    ids = {}
    for role in ("bos", "eos", "unk", "pad"):
        text = _content(config.get(f"{role}_token"))
        if text is not None and text in index:
            ids[role] = index[text]
    flags = {f: config[f] for f in ("add_bos_token", "add_eos_token") if isinstance(config.get(f), bool)}
    return SPMVocab(tokens, scores, types, ids, flags, chat_template(ckpt, config))


def write_model_proto(pieces: list[tuple[str, float, int]]) -> bytes:
    """A minimal ``ModelProto`` holding ``pieces`` (tests and tools that make tokenizer.model files)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field_bytes(number: int, data: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(data)) + data

    out = bytearray()
    for text, score, kind in pieces:
        body = field_bytes(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score) + varint(3 << 3) + varint(kind)
        out += field_bytes(1, body)
    return bytes(out)

