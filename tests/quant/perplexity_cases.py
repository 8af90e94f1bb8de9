"""The quantized-perplexity test's source model, types and perplexity, shared by the test and its fixture generator.

The source is an F32 SmolLM2: the bundled Q4_1 file dequantized by kettle
(``kettle quantize --allow-requantize IN OUT F32``), so every weight is exactly a
Q4_1 (or Q8_0, for the token embedding) value. It is quantized to ``TYPES`` by
kettle and by llama.cpp; their files are the same bytes, so the perplexity of the
oracle text through kettle on kettle's file must equal llama.cpp's on its own.

Perplexity is computed as in ``tests/oracle/README.md`` section 4 (llama.cpp's
``llama-perplexity -c 128 --chunks 16``): the text tokenized once, 16 chunks of 128
tokens, each from an empty cache, the second half of each scored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kettle.perplexity import chunks as perplexity_chunks
from kettle.perplexity import perplexity as kettle_perplexity

TYPES = ["Q8_0", "Q6_K", "Q4_K_M", "Q4_0"]
TEXT = Path(__file__).parents[1] / "oracle" / "texts" / "gpl3-first-14000.txt"
N_CTX = 128  # tokens per chunk
FIRST_SCORED = 64  # rows FIRST_SCORED..N_CTX-2 score the next token: 63 per chunk
N_CHUNKS = 16


def make_f32(src: Path, dst: Path) -> Path:
    """``src`` (the bundled Q4_1 SmolLM2) dequantized to F32 by kettle."""
    from kettle.quant.file import quantize_file

    quantize_file(src, dst, "F32", allow_requantize=True)
    return dst


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def text() -> str:
    s = TEXT.read_text()
    return s.removesuffix("\n")  # as llama-perplexity -f reads it


def chunks(ids: Sequence[int], bos: int | None) -> list[list[int]]:
    """The N_CHUNKS chunks of ``ids``; with a ``bos`` (the model's add_bos), each chunk starts with it."""
    return perplexity_chunks(ids, N_CTX, N_CHUNKS, bos)


def perplexity(logits: Callable[[list[int]], np.ndarray], parts: Sequence[list[int]]) -> float:
    """exp(mean nll) of each chunk's tokens FIRST_SCORED+1.. given ``logits(chunk)`` -> (N_CTX, n_vocab)."""
    return kettle_perplexity(logits, parts, FIRST_SCORED)
