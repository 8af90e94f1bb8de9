"""Byte-level BPE tokenizers (``tokenizer.json``, GPT-2 style) -> ``tokenizer.ggml.*``, as llama.cpp writes them.

The vocabulary (``model.vocab`` plus ``added_tokens``) becomes the token list by
id, padded with ``[PAD<i>]`` (UNUSED) up to config.json's ``vocab_size``; added
tokens are CONTROL when special (or when they look special: ``<|...|>``), else
USER_DEFINED; the merges are written as ``"left right"`` strings. The
pre-tokenizer (``tokenizer.ggml.pre``) is named the way llama.cpp's converter
names it: by the sha256 of the token ids of its check text, through the
``tokenizers`` package (the hashes are facts of llama.cpp's table, for the
pre-tokenizers kettle runs); a tokenizer whose hash is not in the table is
recognised by the regex of its ``Split`` pre-tokenizer. Special ids come from
tokenizer_config.json (``bos_token``, ``eos_token``, ``pad_token``, ``unk_token``,
``add_bos_token``), the chat template from tokenizer_config.json or
``chat_template.jinja``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from kettle.convert.checkpoint import Checkpoint
from kettle.errors import ConvertError
from kettle.tokenizer.pretokenize import GPT2_RE, LLAMA3_RE, PRE_TYPES, QWEN2_RE
from kettle.tokenizer.vocab import TokenType

MAX_VOCAB = 1 << 22
MAX_MERGES = 1 << 23
MAX_TEMPLATE_BYTES = 1 << 20

# llama.cpp's check text (convert_hf_to_gguf.py, get_vocab_base_pre): its token ids' sha256 names the pre-tokenizer
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 3.3 "
    "3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
    "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 "
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!?????? I've been "
    "'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
# sha256 of str(token ids of CHECK_TEXT) -> tokenizer.ggml.pre (from llama.cpp's table; the model each came from)
KNOWN_HASHES = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3-8B
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5-7B
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3-Embedding-0.6B
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM-135M
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # gpt2
}
# a Split pre-tokenizer's regex, as tokenizer.json files spell it -> tokenizer.ggml.pre, for tokenizers the
# hash table does not know (a model's own retrained vocabulary with a known pre-tokenizer)
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_BY_REGEX = {
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    LLAMA3_RE: "llama-bpe",
    QWEN2_RE: "qwen2",
    GPT2_RE: "gpt-2",
}

SPECIAL_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
}


@dataclass
class BPEVocab:
    tokens: list[str]  # (n_vocab,) byte-level texts
    types: list[int]  # (n_vocab,) TokenType
    merges: list[str]  # "left right"
    pre: str  # tokenizer.ggml.pre
    ids: dict[str, int]  # role -> id
    flags: dict[str, bool] = field(default_factory=dict)  # add_bos_token, add_eos_token
    chat_template: str | None = None

    def write(self, writer: Any) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        writer.add_token_merges(self.merges)
        for role, tid in self.ids.items():
            writer.add_uint32(SPECIAL_KEYS[role], tid)
        for name, value in self.flags.items():
            writer.add_bool(f"tokenizer.ggml.{name}", value)
        if self.chat_template is not None:
            writer.add_chat_template(self.chat_template)


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>")


def _content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def pre_name(ckpt: Checkpoint, tj: dict[str, Any]) -> str:
    """``tokenizer.ggml.pre`` of the tokenizer: llama.cpp's hash, else its Split regex."""
    from tokenizers import Tokenizer

    path = ckpt.file("tokenizer.json")
    try:
        ids = Tokenizer.from_file(str(path)).encode(CHECK_TEXT).ids
    except Exception as e:  # the tokenizers package's own errors: a file it cannot build
        raise ConvertError(f"{path}: the tokenizers package cannot load it ({e})") from None
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    if digest in KNOWN_HASHES:
        return KNOWN_HASHES[digest]
    pre = tj.get("pre_tokenizer")
    for pattern in _split_patterns(pre):
        if pattern in _BY_REGEX:
            return _BY_REGEX[pattern]
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # GPT-2's own: the byte-level pre-tokenizer with its built-in regex
    raise ConvertError(
        f"{path}: the BPE pre-tokenizer is not one kettle knows (check-text hash {digest[:16]}..., "
        f"regexes {_split_patterns(tj.get('pre_tokenizer'))!r}); kettle runs: {', '.join(sorted(PRE_TYPES))}"
    )


def _split_patterns(node: Any, depth: int = 0) -> list[str]:
    if depth > 8 or not isinstance(node, dict):
        return []
    found = []
    if node.get("type") == "Split" and isinstance(node.get("pattern"), dict):
        regex = node["pattern"].get("Regex")
        if isinstance(regex, str):
            found.append(regex)
    for child in node.get("pretokenizers") or []:
        found += _split_patterns(child, depth + 1)
    return found


def bpe_vocab(ckpt: Checkpoint, n_vocab: int) -> BPEVocab:
    """The byte-level BPE vocabulary of ``ckpt`` padded to ``n_vocab`` (config.json's ``vocab_size``)."""
    if not 1 <= n_vocab <= MAX_VOCAB:
        raise ConvertError(f"{ckpt.path}: vocab_size {n_vocab} is not from 1 to {MAX_VOCAB}")
    tj = ckpt.json_file("tokenizer.json")
    if tj is None:
        raise ConvertError(f"{ckpt.path}: no tokenizer.json (SentencePiece tokenizer.model files are not converted yet)")
    model = tj.get("model") if isinstance(tj, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: expected a BPE model with a vocab")
    if model.get("byte_fallback"):
        raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: a byte-fallback (SentencePiece-style) BPE is not "
                           "converted yet; only byte-level (GPT-2 style) BPE")
    vocab: dict[str, int] = dict(model["vocab"])
    added: dict[str, bool] = {}  # text -> special
    for token in tj.get("added_tokens") or []:
        if isinstance(token, dict) and isinstance(token.get("content"), str) and isinstance(token.get("id"), int):
            vocab[token["content"]] = token["id"]
            added[token["content"]] = bool(token.get("special"))
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in vocab.items()):
        raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: the vocabulary must map token texts to integer ids")
    if vocab and (min(vocab.values()) < 0 or max(vocab.values()) >= n_vocab):
        raise ConvertError(f"{ckpt.path}: a token id lies outside 0..{n_vocab - 1} (config.json's vocab_size)")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(TokenType.UNUSED)] * n_vocab
    for text, tid in vocab.items():
        tokens[tid] = text
        if text in added:
            types[tid] = int(TokenType.CONTROL if added[text] or _looks_special(text) else TokenType.USER_DEFINED)
        else:
            types[tid] = int(TokenType.NORMAL)
    merges = model.get("merges") or []
    if not isinstance(merges, list) or len(merges) > MAX_MERGES:
        raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: 'merges' must be a list of at most {MAX_MERGES}")
    merge_texts = []
    for m in merges:
        if isinstance(m, str) and m.count(" ") == 1:
            merge_texts.append(m)
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) and " " not in p for p in m):
            merge_texts.append(f"{m[0]} {m[1]}")
        else:
            raise ConvertError(f"{ckpt.path / 'tokenizer.json'}: merge {m!r} is not two token texts")
    config = ckpt.json_file("tokenizer_config.json") or {}
    if not isinstance(config, dict):
        raise ConvertError(f"{ckpt.path / 'tokenizer_config.json'}: expected a JSON object")
    ids: dict[str, int] = {}
    for role in ("bos", "eos", "unk", "pad"):
        text = _content(config.get(f"{role}_token"))
        if text is not None and text in vocab:
            ids[role] = vocab[text]
    flags = {}
    for flag in ("add_bos_token", "add_eos_token"):
        if isinstance(config.get(flag), bool):
            flags[flag] = config[flag]
    return BPEVocab(tokens, types, merge_texts, pre_name(ckpt, tj), ids, flags, chat_template(ckpt, config))


def chat_template(ckpt: Checkpoint, config: dict[str, Any]) -> str | None:
    """tokenizer_config.json's ``chat_template`` (a string, or the ``default`` of a named list),
    else ``chat_template.jinja``."""
    value = config.get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if value is None:
        path = ckpt.file("chat_template.jinja")
        if path is not None:
            if path.stat().st_size > MAX_TEMPLATE_BYTES:
                raise ConvertError(f"{path}: larger than {MAX_TEMPLATE_BYTES} bytes")
            value = path.read_text(encoding="utf-8")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEMPLATE_BYTES):
        raise ConvertError(f"{ckpt.path / 'tokenizer_config.json'}: chat_template must be text under "
                           f"{MAX_TEMPLATE_BYTES} bytes")
    return value
