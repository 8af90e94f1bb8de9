"""Prompt-lookup drafting for speculative decoding.

When the output starts copying (from the prompt, or from itself: code edits,
quoting summaries, JSON that repeats its keys), the tokens that followed the
latest earlier occurrence of the sequence's last few tokens are a good guess
of what comes next. ``PromptLookup`` proposes them; the engine evaluates the
proposal together with the token it was going to evaluate anyway, in one
forward pass, and keeps the drafted tokens for as long as the sampler picks
them from their logits (see ``BatchEngine.step``).

Why the output does not change: the kernels are batch-invariant, so a drafted
token's logits are the bits a one-token step would give; the sampler sees the
same rows in the same order and draws its random numbers as it would; a draft
token is kept only where the sampler chose it. With a deterministic draft
this *is* speculative sampling's acceptance rule (accept d with probability
p(d), else draw from p without d), so sampled output follows the model's
distribution, and for a given seed it is the same text.

Cost control: a draft costs the extra tokens' compute. Drafts are proposed
only from a match of ``MIN_NGRAM`` or more tokens, never past the request's
limits, and after a draft is rejected outright the sequence waits
``backoff`` steps before the next one (doubled at each outright rejection,
reset by an accepted token), so text that never copies pays almost nothing.
"""

from __future__ import annotations

MAX_NGRAM = 4  # longest tail looked up
MIN_NGRAM = 2  # shortest tail that may propose a draft
MAX_BACKOFF = 32  # steps without drafting after repeated outright rejections


class PromptLookup:
    """The n-gram index of one sequence's tokens, kept up to date as tokens are appended."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        # n -> {n-gram: position just after its latest occurrence}; and the one before it
        self._last: list[dict[tuple[int, ...], int]] = [{} for _ in range(MAX_NGRAM + 1)]
        self._prev: list[dict[tuple[int, ...], int]] = [{} for _ in range(MAX_NGRAM + 1)]
        self.wait = 0  # steps left before the next draft
        self.backoff = 1
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for n in range(MIN_NGRAM, MAX_NGRAM + 1):
                if end >= n:
                    gram = tuple(self.tokens[end - n:end])
                    last = self._last[n].get(gram)
                    if last is not None:
                        self._prev[n][gram] = last
                    self._last[n][gram] = end

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the longest
        matching tail (``MAX_NGRAM`` down to ``MIN_NGRAM`` tokens); [] when none matches
        or the sequence is backing off."""
        if k <= 0:
            return []
        if self.wait > 0:
            self.wait -= 1
            return []
        end = len(self.tokens)
        for n in range(min(MAX_NGRAM, end - 1), MIN_NGRAM - 1, -1):
            at = self._prev[n].get(tuple(self.tokens[end - n:end]))
            if at is not None:
                return self.tokens[at:min(at + k, end)]
        return []

    def accepted(self, n_drafted: int, n_kept: int) -> None:
        """Record how a draft fared: back off after an outright rejection."""
        if n_drafted == 0:
            return
        if n_kept == 0:
            self.wait = self.backoff
            self.backoff = min(2 * self.backoff, MAX_BACKOFF)
        else:
            self.backoff = 1
