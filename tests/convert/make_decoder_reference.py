"""Make the committed decoder-convert fixtures: ``python -m tests.convert.make_decoder_reference``.

1. (``--tokenizers``) trains the two small byte-level BPE tokenizers under
   ``decoders/`` with the ``tokenizers`` package (Llama 3's and Qwen2's
   pre-tokenizer regexes, their special tokens, a chat template);
2. writes each family's checkpoint (``decoder_case.py``) and records
   transformers' logits on ``IDS`` (the SentencePiece cases: ``GEMMA3_IDS``)
   and the Hugging Face tokenizer's ids of ``TEXTS`` in ``decoders/reference.npz``.
``--only gemma2 phi3 ...`` remakes those cases' entries and keeps the others
as they are. Needs torch and transformers (the suite does not).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from tests.convert.decoder_case import (
    FAMILIES,
    GEMMA3_IDS,
    HERE,
    IDS,
    REFERENCE,
    TEXTS,
    write_checkpoint,
    write_gemma2_checkpoint,
    write_gemma3_checkpoint,
    write_phi3_checkpoint,
)

# the cases with their own builders: name -> (write the folder, the ids, record the BPE tokenizer's ids)
CASES = {
    "gemma3": (write_gemma3_checkpoint, GEMMA3_IDS, False),
    "gemma2": (write_gemma2_checkpoint, GEMMA3_IDS, False),
    "phi3": (lambda folder: write_phi3_checkpoint(folder, "phi3"), GEMMA3_IDS, False),
    "phi4": (lambda folder: write_phi3_checkpoint(folder, "phi4"), IDS, True),
}

REGEX = {
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
TEMPLATE = {
    "llama3": "{{ bos_token }}{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|eot_id|>{% endfor %}",
    "qwen2": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}


def train_tokenizers() -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    text = (Path(__file__).parents[1] / "oracle" / "texts" / "gpl3-first-14000.txt").read_text()
    lines = [line for line in text.splitlines() if line.strip()] + TEXTS
    for name, regex in REGEX.items():
        tok = Tokenizer(models.BPE(ignore_merges=name == "llama3"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=320 - len(SPECIALS[name]), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(lines, trainer)
        tok.add_special_tokens(SPECIALS[name])
        if name == "llama3":
            bos = SPECIALS[name][0]
            tok.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
        folder = HERE / name
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(folder / "tokenizer.json"))
        cfg = {"bos_token": SPECIALS[name][0] if name == "llama3" else None,
               "eos_token": SPECIALS[name][2 if name == "qwen2" else 1],
               "add_bos_token": name == "llama3", "chat_template": TEMPLATE[name]}
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def _logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    import transformers

    # eager attention: transformers' only one with Gemma 2's soft-capping
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy().astype(np.float32)


def _tokenizer_ids(folder: Path, name: str, out: dict[str, np.ndarray]) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for i, text in enumerate(TEXTS):
        out[f"{name}/text{i}"] = np.array(tok.encode(text).ids, dtype=np.int64)


def reference(only: list[str] | None = None) -> None:
    import transformers

    out = dict(np.load(REFERENCE)) if only and REFERENCE.exists() else {}
    out["ids"] = np.array(IDS, dtype=np.int64)
    with tempfile.TemporaryDirectory() as d:
        for family in FAMILIES:
            if only and family not in only:
                continue
            folder = write_checkpoint(Path(d) / family, family)
            out[f"{family}/logits"] = _logits(folder, IDS)
            _tokenizer_ids(folder, family, out)
            print(family, out[f"{family}/logits"].shape, transformers.__version__)
        for name, (write, ids, bpe) in CASES.items():
            if only and name not in only:
                continue
            folder = write(Path(d) / name)
            out[f"{name}/logits"] = _logits(folder, ids)
            if bpe:
                _tokenizer_ids(folder, name, out)
            print(name, out[f"{name}/logits"].shape, transformers.__version__)
    np.savez_compressed(REFERENCE, **out)
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizers", action="store_true", help="retrain the tokenizers first")
    ap.add_argument("--only", nargs="+", choices=[*FAMILIES, *CASES], help="remake only these cases' entries")
    args = ap.parse_args()
    if args.tokenizers or not (HERE / "llama3" / "tokenizer.json").exists():
        train_tokenizers()
    reference(args.only)
