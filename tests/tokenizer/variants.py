"""Vocabulary variants made from the two real models' metadata.

Each variant changes a few ``tokenizer.ggml.*`` keys of SmolLM2's (BPE) or
Gemma 3's (SentencePiece) metadata, to exercise what the real models do not:
other pre-tokenizers, default add_bos, EOS appending, a space prefix, and the
end-of-generation rules. ``make_golden.py`` writes each variant as a GGUF and
records llama.cpp's answers in ``fixtures/variants_golden.json``; the tests
apply the same change to the metadata dict and compare.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Meta = dict[str, Any]

# Token renames for the end-of-generation variant (ids of SmolLM2's vocabulary).
EOG_RENAMES: dict[int, str] = {
    5: "<|end|>", 6: "<|return|>", 7: "<|call|>", 8: "<|fim_prefix|>", 9: "<|channel|>",
    10: "<|eom_id|>", 11: "<|file_sep|>", 12: "<unused_x>", 13: "</s>",
    49151: "<|eot_id|>",  # a NORMAL token no merge uses: becomes control through its text
}


def _set(**changes: Any) -> Callable[[Meta], Meta]:
    def apply(meta: Meta) -> Meta:
        out = dict(meta)
        for key, value in changes.items():
            full = "tokenizer.ggml." + key
            if value is None:
                out.pop(full, None)
            else:
                out[full] = value
        return out

    return apply


def _eog_variant(meta: Meta) -> Meta:
    out = _set(pre="gpt-2", add_eos_token=True)(meta)
    tokens = list(out["tokenizer.ggml.tokens"])
    for tid, text in EOG_RENAMES.items():
        tokens[tid] = text
    out["tokenizer.ggml.tokens"] = tokens
    return out


# name -> (base model, metadata change)
VARIANTS: dict[str, tuple[str, Callable[[Meta], Meta]]] = {
    "smollm2-pre-llama-bpe": ("smollm2", _set(pre="llama-bpe")),
    "smollm2-pre-qwen2": ("smollm2", _set(pre="qwen2")),
    "smollm2-pre-default": ("smollm2", _set(pre="default")),
    "smollm2-pre-gpt-2": ("smollm2", _set(pre="gpt-2")),
    "smollm2-pre-starcoder": ("smollm2", _set(pre="starcoder")),
    "smollm2-pre-falcon": ("smollm2", _set(pre="falcon")),
    "smollm2-llama3-defaults": ("smollm2", _set(pre="llama-bpe", add_bos_token=None, add_space_prefix=None)),
    "smollm2-eog": ("smollm2", _eog_variant),
    "gemma3-prefix-eos": ("gemma3", _set(add_space_prefix=True, add_eos_token=True)),
}

# Strings that stress the pre-tokenizers, special-token splitting and clean-up.
HANDPICKED: list[str] = [
    "", " ", "\n", "Hello world", " Hello  world ", "DON'T you'LL we'RE it's I'M they'D", "'s 't 're",
    "1234567 12 3.14159 ٣٤٥ ²³ ½ Ⅻ", "a\r\nb\r\n\r\n  c\n \n", "tabs\t\tand\x0bvt\x0cff", "x \xa0 y\u3000z\u2003",
    "what ? yes ! no . a , b", "it ' s a ' test", "he 's , she 'm , they 're , we 've , I 'll , you 'd",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<start_of_turn>user\n<bos>hi<end_of_turn>\n",
    "<s></s><unk>[multimodal]<table>", "<|end|><|return|><|call|><|eot_id|><|eom_id|><|channel|>x",
    "e\u0301t\u00e9 na\u00efve \u0915\u094d\u0937", "$100+20%=<120>^~|`", "(a)[b]{c}<d>", "mañana…—“quotes”",
    "   leading", "trailing   ", "\n\n\n\n", "     five", "a  b   c    d", "中文，日本語。한국어!",
    "🙂👍🏽👨\u200d👩\u200d👧🇫🇷", "\U00031350\U0002EBF0\u0cf3", "▁already▁escaped", "<0x41><0xFF>",
]

_POOL = (
    list("abcXYZ019") + [" ", "  ", "\t", "\n", "\r\n", "\xa0", "\u2000", "\u200b"]
    + ["'s", "'LL", "'re", "'", "DON'T"] + list(".,!?;:-_()[]<>/\\|@#$%^&*+=~`\"")
    + list("éüßñ") + ["e\u0301"] + list("你好日本語한국어Приветمرحبا")
    + ["٣", "²", "Ⅻ", "🙂", "👍🏽", "\U00031350"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "</s>",
       "<s>", "<0x41>", "▁", "\n\n", "  ", "<|end|>", "<|eot_id|>"]
    + ["hello", " the", "HTTP", "1234567", "3.14"]
)


def random_strings(n: int, seed: int = 1234) -> list[str]:
    """``n`` reproducible random strings built from ``_POOL``."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_POOL) for _ in range(rng.randint(1, 18))) for _ in range(n)]


def golden_strings() -> list[str]:
    return HANDPICKED + random_strings(48)
