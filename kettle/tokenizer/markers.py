"""Token texts llama.cpp uses to recognise special tokens that the GGUF
metadata does not name (``llama_vocab::impl::load``).

These are facts about model vocabularies, kept as data: which texts mark the
end of a turn (EOT), of a message (EOM), the fill-in-the-middle roles, and
which tokens end generation (EOG). A token found this way is also made a
control token.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SPECIAL_ID_KEYS",
    "TEXT_DETECTED_ROLES",
    "EOG_TEXTS",
    "FORCED_USER_DEFINED",
    "END_TEXT",
    "END_TOKEN_EXCEPTIONS",
    "TOOL_RESPONSE_EXCEPTION",
    "EOS_TEXT",
    "RSTRIP_MODEL_NAMES",
    "RSTRIP_ON",
    "RSTRIP_OFF",
]

# role -> metadata keys read for its id, in order (later keys override earlier ones).
SPECIAL_ID_KEYS: dict[str, tuple[str, ...]] = {
    "bos": ("tokenizer.ggml.bos_token_id",),
    "eos": ("tokenizer.ggml.eos_token_id",),
    "eot": ("tokenizer.ggml.eot_token_id",),
    "eom": ("tokenizer.ggml.eom_token_id",),
    "unk": ("tokenizer.ggml.unknown_token_id",),
    "sep": ("tokenizer.ggml.seperator_token_id",),  # sic: the GGUF key is misspelt
    "pad": ("tokenizer.ggml.padding_token_id",),
    "mask": ("tokenizer.ggml.mask_token_id",),
    "fim_pre": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "fim_suf": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "fim_mid": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
    "fim_pad": ("tokenizer.ggml.fim_pad_token_id",),
    "fim_rep": ("tokenizer.ggml.fim_rep_token_id",),
    "fim_sep": ("tokenizer.ggml.fim_sep_token_id",),
}

# role -> texts that identify it when its id is not set; the lowest matching id wins.
TEXT_DETECTED_ROLES: dict[str, frozenset[str]] = {
    "eot": frozenset({
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
        "<end_of_utterance>",
    }),
    "eom": frozenset({"<|eom_id|>"}),
    "fim_pre": frozenset({
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
        "<|code_prefix|>", "<|prefix|>",
    }),
    "fim_suf": frozenset({
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
        "<|code_suffix|>", "<|suffix|>",
    }),
    "fim_mid": frozenset({
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
        "<|code_middle|>", "<|middle|>",
    }),
    "fim_pad": frozenset({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}),
    "fim_rep": frozenset({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}),
    "fim_sep": frozenset({"<|file_sep|>"}),
}

FIM_ROLES = ("fim_pre", "fim_suf", "fim_mid")  # the tokens of fill-in-the-middle (llama-server's infill)


def has_fim(metadata: Any) -> bool:
    """Whether a GGUF's vocabulary has the three fill-in-the-middle tokens, named by metadata
    key or found by text as the vocabulary loader finds them (without building it)."""
    tokens: set[str] | None = None
    for role in FIM_ROLES:
        if any(metadata.get(key) is not None for key in SPECIAL_ID_KEYS[role]):
            continue
        if tokens is None:
            tokens = set(str(t) for t in (metadata.get("tokenizer.ggml.tokens") or ()))
        if not TEXT_DETECTED_ROLES[role] & tokens:
            return False
    return True


# Every token with one of these texts ends generation (and becomes a control token).
EOG_TEXTS: frozenset[str] = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
})

# Always rendered: their attribute is forced to exactly USER_DEFINED (gpt-oss).
FORCED_USER_DEFINED: frozenset[str] = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})

# "<|end|>" is taken out of the EOG set and made USER_DEFINED when, for one of
# these groups, every member set meets the EOG texts (o200k_harmony, solar-open).
END_TEXT = "<|end|>"
_CALL = frozenset({"<|call|>", "<|calls|>"})
END_TOKEN_EXCEPTIONS: tuple[tuple[frozenset[str], ...], ...] = (
    (frozenset({"<|return|>"}), _CALL),
    (_CALL, frozenset({"<|flush|>"})),
)

# If the EOG set holds this text, "</s>" is taken out of it and made NORMAL (gemma4, paddleocr).
TOOL_RESPONSE_EXCEPTION = "<|tool_response>"
EOS_TEXT = "</s>"

# Models whose lower-cased general.name contains one of these strings get RSTRIP on
# every special token and on RSTRIP_ON, and lose it on RSTRIP_OFF (Phi-3).
RSTRIP_MODEL_NAMES: tuple[str, ...] = ("phi-3", "phi3")
RSTRIP_ON: tuple[str, ...] = ("</s>",)
RSTRIP_OFF: tuple[str, ...] = ("<unk>", "<s>", "<|endoftext|>")
