"""Tokenizer metadata from a checkpoint's tokenizer files, written as llama.cpp's converter does.

WordPiece (BERT): the vocabulary of ``tokenizer.json`` (``model.type ==
"WordPiece"``) or ``vocab.txt``, turned into phantom-space form (a word-initial
piece gets ``▁``, a ``##`` continuation loses its prefix, special tokens stay as
they are; see ``kettle/tokenizer/wpm.py``), with token types (special added
tokens are CONTROL, ids nobody uses are UNUSED ``[PADi]``), the special ids
(``[CLS]`` is also the BOS token, ``[SEP]`` also the EOS token, as gguf-py's
``SpecialVocab`` sets them) and the normalizer's lowercase / strip-accents flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kettle.convert.checkpoint import Checkpoint
from kettle.errors import ConvertError
from kettle.tokenizer.vocab import TokenType
from kettle.tokenizer.wpm import PHANTOM_SPACE

MAX_VOCAB = 1 << 22
SUBWORD_PREFIX = "##"
MAX_VOCAB_TXT_BYTES = 64 << 20

# special role -> the GGUF key of its id (sic: "seperator" is the key's spelling)
SPECIAL_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "sep": "tokenizer.ggml.seperator_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
    "cls": "tokenizer.ggml.cls_token_id",
    "mask": "tokenizer.ggml.mask_token_id",
}
# role -> the tokenizer_config.json / special_tokens_map.json field naming its text
_ROLE_FIELDS = {"unk": "unk_token", "sep": "sep_token", "pad": "pad_token", "cls": "cls_token", "mask": "mask_token"}
_BERT_DEFAULTS = {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]", "mask": "[MASK]"}


@dataclass
class WordPieceVocab:
    tokens: list[str]  # (n_vocab,) phantom-space texts
    types: list[int]  # (n_vocab,) TokenType
    ids: dict[str, int]  # role -> id
    lowercase: bool
    strip_accents: bool | None  # None: the file does not say (llama.cpp then follows lowercase)
    flags: dict[str, bool] = field(default_factory=dict)  # add_bos_token, add_eos_token, add_sep_token

    def write(self, writer: Any) -> None:
        """Add the ``tokenizer.ggml.*`` keys to a ``gguf.GGUFWriter``."""
        writer.add_tokenizer_model("bert")
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        for role, tid in self.ids.items():
            writer.add_uint32(SPECIAL_KEYS[role], tid)
        for name, value in self.flags.items():
            writer.add_bool(f"tokenizer.ggml.{name}", value)
        writer.add_bool("tokenizer.ggml.normalizer.lowercase", self.lowercase)
        if self.strip_accents is not None:
            writer.add_bool("tokenizer.ggml.normalizer.strip_accents", self.strip_accents)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def wordpiece_vocab(ckpt: Checkpoint, n_vocab: int) -> WordPieceVocab:
    """The WordPiece vocabulary of ``ckpt`` padded to ``n_vocab`` (config.json's ``vocab_size``)."""
    if not 1 <= n_vocab <= MAX_VOCAB:
        raise ConvertError(f"{ckpt.path}: vocab_size {n_vocab} is not from 1 to {MAX_VOCAB}")
    config = ckpt.json_file("tokenizer_config.json") or {}
    specials_map = ckpt.json_file("special_tokens_map.json") or {}
    if not isinstance(config, dict) or not isinstance(specials_map, dict):
        raise ConvertError(f"{ckpt.path}: tokenizer_config.json and special_tokens_map.json must be JSON objects")
    vocab: dict[str, int]
    special_texts: set[str] = set()
    tj = ckpt.json_file("tokenizer.json")
    lowercase: bool = bool(config.get("do_lower_case", True))
    strip_accents = config.get("strip_accents")
    if tj is not None:
        model = tj.get("model") if isinstance(tj, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: expected a WordPiece model with a vocab "
                               f"(found {model.get('type') if isinstance(model, dict) else model!r})")
        if model.get("continuing_subword_prefix", SUBWORD_PREFIX) != SUBWORD_PREFIX:
            raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: a continuing_subword_prefix other than '##'")
        vocab = model["vocab"]
        for added in tj.get("added_tokens") or []:
            if isinstance(added, dict) and isinstance(added.get("content"), str) and isinstance(added.get("id"), int):
                vocab.setdefault(added["content"], added["id"])
                if added.get("special"):
                    special_texts.add(added["content"])
        normalizer = tj.get("normalizer")
        if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
            lowercase = bool(normalizer.get("lowercase", lowercase))
            strip_accents = normalizer.get("strip_accents", strip_accents)
    else:
        vocab = _vocab_txt(ckpt)
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in vocab.items()):
        raise ConvertError(f"{ckpt.path}: the vocabulary must map token texts to integer ids")
    if vocab and (min(vocab.values()) < 0 or max(vocab.values()) >= n_vocab):
        raise ConvertError(f"{ckpt.path}: a token id lies outside 0..{n_vocab - 1} (config.json's vocab_size)")

    ids: dict[str, int] = {}
    for role, fieldname in _ROLE_FIELDS.items():
        text = _text(config.get(fieldname)) or _text(specials_map.get(fieldname)) or _BERT_DEFAULTS[role]
        if text in vocab:
            ids[role] = vocab[text]
            special_texts.add(text)
    for role in ("cls", "sep", "unk"):
        if role not in ids:
            raise ConvertError(f"{ckpt.path}: the vocabulary has no {_BERT_DEFAULTS[role]} token ({role})")
    ids["bos"], ids["eos"] = ids["cls"], ids["sep"]

    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(TokenType.UNUSED)] * n_vocab
    for text, tid in vocab.items():
        if text in special_texts:
            tokens[tid], types[tid] = text, int(TokenType.CONTROL)
        else:
            tokens[tid] = text[len(SUBWORD_PREFIX):] if text.startswith(SUBWORD_PREFIX) else PHANTOM_SPACE + text
            types[tid] = int(TokenType.NORMAL)
    seen: dict[str, int] = {}
    for tid, text in enumerate(tokens):
        if text in seen:
            raise ConvertError(f"{ckpt.path}: tokens {seen[text]} and {tid} are both {text!r} in phantom-space form")
        seen[text] = tid
    if strip_accents is not None and not isinstance(strip_accents, bool):
        raise ConvertError(f"{ckpt.path}: strip_accents must be true, false or null, got {strip_accents!r}")
    return WordPieceVocab(tokens, types, ids, lowercase, strip_accents,
                          {"add_bos_token": True, "add_eos_token": True, "add_sep_token": True})


def _vocab_txt(ckpt: Checkpoint) -> dict[str, int]:
    path = ckpt.file("vocab.txt")
    if path is None:
        raise ConvertError(f"{ckpt.path}: no tokenizer.json or vocab.txt")
    if path.stat().st_size > MAX_VOCAB_TXT_BYTES:
        raise ConvertError(f"{path}: larger than {MAX_VOCAB_TXT_BYTES} bytes")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}
