"""Byte-level BPE (``tokenizer.ggml.model == "gpt2"``), as llama.cpp's
``llm_tokenizer_bpe_session`` runs it.

Text -> pre-tokenizer words -> each word's UTF-8 bytes spelled in the GPT-2
byte alphabet -> merges: starting from single characters, repeatedly merge the
adjacent pair with the lowest merge rank (ties: the leftmost pair) until no
ranked pair is left. A final symbol that is not a token falls back to its
single-byte tokens, and bytes without a token are dropped (as llama.cpp does).

Words repeat a lot in real text, so the ids of each word are cached.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from kettle.errors import TokenizerError
from kettle.tokenizer.pretokenize import PreType, split_words
from kettle.tokenizer.unicode import bytes_to_bpe_text

__all__ = ["parse_merges", "BPE"]

Pair = tuple[str, str]

_CACHE_LIMIT = 1 << 16  # words kept in the per-tokenizer cache before it is cleared


def parse_merges(merges: Sequence[str], token_to_id: Mapping[str, int]) -> dict[Pair, int]:
    """``tokenizer.ggml.merges`` ("left right", rank = index) -> {(left, right): rank}.

    The split is at the first space after the first character (a merge of a
    literal space keeps it). The first rank of a repeated pair wins. Raises
    ``TokenizerError`` for an entry without a separating space or naming a
    token that is not in the vocabulary.
    """
    ranks: dict[Pair, int] = {}
    for rank, merge in enumerate(merges):
        if not isinstance(merge, str):
            raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not a string: {merge!r}")
        cut = merge.find(" ", 1)
        if cut < 0:
            raise TokenizerError(f"tokenizer.ggml.merges[{rank}] = {merge!r} has no space between two tokens")
        left, right = merge[:cut], merge[cut + 1 :]
        for part in (left, right):
            if part not in token_to_id:
                raise TokenizerError(
                    f"tokenizer.ggml.merges[{rank}] = {merge!r} names {part!r}, which is not in the vocabulary"
                )
        ranks.setdefault((left, right), rank)
    return ranks


def _merge_word(word: str, ranks: Mapping[Pair, int]) -> list[str]:
    """The final symbols of one byte-encoded word after all merges."""
    n = len(word)
    if n < 2:
        return [word]
    sym = list(word)  # symbol text; "" once merged away
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap: list[tuple[int, int, int, str]] = []  # (rank, left, right, merged text)
    get = ranks.get
    for i in range(n - 1):
        r = get((sym[i], sym[i + 1]))
        if r is not None:
            heap.append((r, i, i + 1, sym[i] + sym[i + 1]))
    heapq.heapify(heap)
    while heap:
        _, left, right, text = heapq.heappop(heap)
        a, b = sym[left], sym[right]
        if not a or not b or a + b != text:
            continue  # stale: one side changed since this pair was queued
        sym[left] = text
        sym[right] = ""
        nr = nxt[right]
        nxt[left] = nr
        if nr >= 0:
            prv[nr] = left
        pl = prv[left]
        if pl >= 0:
            r = get((sym[pl], text))
            if r is not None:
                heapq.heappush(heap, (r, pl, left, sym[pl] + text))
        if nr >= 0:
            r = get((text, sym[nr]))
            if r is not None:
                heapq.heappush(heap, (r, left, nr, text + sym[nr]))
    return [s for s in sym if s]


class BPE:
    """Encodes raw text fragments with one vocabulary's merges and pre-tokenizer."""

    def __init__(self, token_to_id: Mapping[str, int], ranks: Mapping[Pair, int], pre: PreType) -> None:
        self.token_to_id = token_to_id
        self.ranks = ranks
        self.pre = pre
        self._cache: dict[str, tuple[int, ...]] = {}

    def _word_ids(self, word: str) -> tuple[int, ...]:
        t2i = self.token_to_id
        if self.pre.ignore_merges:
            whole = t2i.get(word)
            if whole is not None:
                return (whole,)
        ids: list[int] = []
        for symbol in _merge_word(word, self.ranks):
            tid = t2i.get(symbol)
            if tid is not None:
                ids.append(tid)
                continue
            for byte in symbol.encode("utf-8"):  # llama.cpp looks up each raw byte
                tid = t2i.get(chr(byte)) if byte < 0x80 else None
                if tid is not None:
                    ids.append(tid)
        return tuple(ids)

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of raw ``text`` to ``out``."""
        cache = self._cache
        for word in split_words(text, self.pre.regexes):
            encoded = bytes_to_bpe_text(word)
            ids = cache.get(encoded)
            if ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                ids = cache[encoded] = self._word_ids(encoded)
            out.extend(ids)
