"""Perplexity as llama.cpp's ``perplexity`` tool computes it: the text's ids cut into chunks
of ``n_ctx`` tokens (each may start with BOS in place of its first token), each chunk
evaluated from an empty cache, and the tokens after position ``first`` of each chunk scored.

    ppl = perplexity(model.logits, chunks(ids, n_ctx, n_chunks, bos), first=n_ctx // 2)

``logits(chunk)`` gives one row of logits per position of the chunk (``Model.logits``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def chunks(ids: Sequence[int], n_ctx: int, n_chunks: int | None = None, bos: int | None = None) -> list[list[int]]:
    """The first ``n_chunks`` (default: all whole) chunks of ``n_ctx`` ids; with ``bos``, each
    chunk's first token is replaced by it (llama.cpp's ``add_bos`` models)."""
    n = len(ids) // n_ctx if n_chunks is None else min(n_chunks, len(ids) // n_ctx)
    out = [list(ids[k * n_ctx:(k + 1) * n_ctx]) for k in range(n)]
    return [[bos] + c[1:] for c in out] if bos is not None else out


def perplexity(logits: Callable[[list[int]], np.ndarray], parts: Sequence[list[int]], first: int) -> float:
    """exp(mean negative log-likelihood) of each chunk's tokens after position ``first``,
    each predicted by the logits (float64, log-sum-exp) of the position before it."""
    nll: list[float] = []
    for chunk in parts:
        lg = np.asarray(logits(chunk), dtype=np.float64)
        for j in range(first, len(chunk) - 1):
            row = lg[j]
            m = row.max()
            nll.append(-(row[chunk[j + 1]] - m - math.log(np.exp(row - m).sum())))
    if not nll:
        raise ValueError("perplexity: no token to score (chunks shorter than first + 2)")
    return math.exp(sum(nll) / len(nll))
