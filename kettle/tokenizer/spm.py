"""SentencePiece-style BPE (``tokenizer.ggml.model == "llama"``), as llama.cpp's
``llm_tokenizer_spm_session`` runs it.

The caller has already replaced every space with U+2581 ("▁"). Starting from
single characters, repeatedly merge the adjacent pair whose concatenation is a
token with the highest score (ties: the leftmost pair), over the whole
fragment (there are no words). Each final symbol is its token; a symbol that
is not a token (a lone character missing from the vocabulary) becomes one
byte token per UTF-8 byte (``<0xXX>``, else the single-byte token).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from kettle.errors import TokenizerError

__all__ = ["ESCAPED_SPACE", "byte_fallback_ids", "spm_encode"]

ESCAPED_SPACE = "\u2581"  # "▁", SentencePiece's visible space


def byte_fallback_ids(token_to_id: Mapping[str, int]) -> list[int | None]:
    """(256,) byte -> id of ``<0xXX>`` (or of the one-character token), None if neither."""
    out: list[int | None] = []
    for b in range(256):
        tid = token_to_id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = token_to_id.get(chr(b))
        out.append(tid)
    return out


def spm_encode(
    text: str,
    token_to_id: Mapping[str, int],
    scores: Sequence[float],
    byte_ids: Sequence[int | None],
    out: list[int],
) -> None:
    """Append the ids of escaped ``text`` to ``out``."""
    n = len(text)
    if n == 0:
        return
    t2i = token_to_id
    length = [1] * n  # symbol i covers text[i : i + length[i]]; 0 once merged away
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    # (-score, left, right, merged length): highest score first, then leftmost.
    heap: list[tuple[float, int, int, int]] = []
    for i in range(n - 1):
        tid = t2i.get(text[i : i + 2])
        if tid is not None:
            heap.append((-scores[tid], i, i + 1, 2))
    heapq.heapify(heap)
    push = heapq.heappush
    pop = heapq.heappop
    while heap:
        _, left, right, size = pop(heap)
        ll, lr = length[left], length[right]
        if ll == 0 or lr == 0 or ll + lr != size:
            continue  # stale: one side changed since this pair was queued
        length[left] = size
        length[right] = 0
        nr = nxt[right]
        nxt[left] = nr
        if nr >= 0:
            prv[nr] = left
        pl = prv[left]
        if pl >= 0:
            merged = length[pl] + size
            tid = t2i.get(text[pl : pl + merged])
            if tid is not None:
                push(heap, (-scores[tid], pl, left, merged))
        if nr >= 0:
            merged = size + length[nr]
            tid = t2i.get(text[left : left + merged])
            if tid is not None:
                push(heap, (-scores[tid], left, nr, merged))
    i = 0
    while i != -1:
        piece = text[i : i + length[i]]
        tid = t2i.get(piece)
        if tid is not None:
            out.append(tid)
        else:
            for b in piece.encode("utf-8"):
                bid = byte_ids[b]
                if bid is None:
                    raise TokenizerError(
                        f"cannot encode {piece!r}: the vocabulary has no byte token <0x{b:02X}>"
                    )
                out.append(bid)
        i = nxt[i]
