"""Mirostat 1 and 2: adaptive truncation that steers the surprise of the sampled tokens.

Both keep a running threshold ``mu`` (bits), starting at ``2 * tau``. After each draw the
observed surprise ``-log2 p`` of the chosen token (``p`` renormalized over the kept set) moves
it: ``mu -= eta * (surprise - tau)``. Formulas follow llama.cpp's ``llama-sampling.cpp``
(Basu et al. 2020, "Mirostat: a neural text decoding algorithm that directly controls
perplexity"). Each object is per-request state; it replaces the top_k..min_p filters.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from kettle.sampling.transforms import Candidates, pick, softmax, top_k

# Mirostat 1 estimates the Zipf exponent from this many of the most likely tokens (llama.cpp's m).
MIROSTAT_V1_M = 100


class _MirostatBase(abc.ABC):
    """``mu`` and its update; subclasses define :meth:`truncate`, the kept set."""

    def __init__(self, tau: float, eta: float) -> None:
        self.tau = tau
        self.eta = eta
        self.mu = 2.0 * tau  # current maximum surprise, in bits

    @abc.abstractmethod
    def truncate(self, c: Candidates) -> Candidates:
        """The candidates mirostat keeps at the current ``mu``."""

    def choose(self, c: Candidates, rng: np.random.Generator) -> tuple[int, Candidates]:
        """Sample one token id from ``c`` (temperature already applied) and adapt ``mu``:
        truncate, draw from the renormalized kept set, move ``mu`` by the observed surprise.
        Returns the id and the kept set it was drawn from."""
        kept = self.truncate(c)
        probs = softmax(kept.logits)  # (n,) renormalized over the kept set
        index = pick(probs, rng.random())
        surprise = -math.log2(probs[index])
        self.mu -= self.eta * (surprise - self.tau)
        return int(kept.ids[index]), kept


class MirostatV1(_MirostatBase):
    """Mirostat 1: estimate the Zipf exponent ``s`` from the top tokens, derive a top-k size."""

    def __init__(self, tau: float, eta: float, vocab_size: int, m: int = MIROSTAT_V1_M) -> None:
        super().__init__(tau, eta)
        self.vocab_size = vocab_size
        self.m = m

    def zipf_exponent(self, head: Candidates) -> float | None:
        """Least-squares estimate of ``s`` from sorted ``head`` (None with < 2 finite logits).

        Uses ``log(p_i / p_{i+1}) = logit_i - logit_{i+1}`` against ``log((i+2)/(i+1))``.
        """
        logits = head.logits[np.isfinite(head.logits)].astype(np.float64)  # (f,) descending
        n = min(self.m - 1, logits.size - 1)
        if n < 1:
            return None
        rank = np.arange(n, dtype=np.float64)
        t = np.log((rank + 2.0) / (rank + 1.0))  # (n,)
        b = logits[:n] - logits[1 : n + 1]  # (n,)
        return float(np.dot(t, b) / np.dot(t, t))

    def k_for(self, s_hat: float, n: int) -> int:
        """The top-k size for exponent ``s_hat`` at the current ``mu``, clamped to [1, n]."""
        if s_hat <= 0.0:  # flat (or rising) head: nothing to cut
            return n
        eps = s_hat - 1.0
        with np.errstate(all="ignore"):
            two_mu = np.float64(2.0) ** self.mu
            if abs(eps) < 1e-9:  # the limit eps -> 0 of eps / (1 - N^-eps) is 1 / ln N
                k = two_mu / math.log(self.vocab_size)
            else:
                k = (eps * two_mu / (1.0 - np.float64(self.vocab_size) ** -eps)) ** (1.0 / s_hat)
        if not np.isfinite(k):
            return n
        return int(min(max(k, 1.0), n))

    def truncate(self, c: Candidates) -> Candidates:
        """The top-k set for the current ``mu`` (a pure function of ``c`` and ``mu``)."""
        if len(c) == 1 or self.vocab_size < 2:
            return c
        s_hat = self.zipf_exponent(top_k(c, self.m))
        k = 1 if s_hat is None else self.k_for(s_hat, len(c))
        return top_k(c, k)


class MirostatV2(_MirostatBase):
    """Mirostat 2: keep the tokens whose surprise is at most ``mu`` (at least the top one)."""

    def truncate(self, c: Candidates) -> Candidates:
        """The tokens whose surprise is at most ``mu`` (a pure function of ``c`` and ``mu``)."""
        # -log2 p <= mu  <=>  logit >= logsumexp(logits) - mu * ln 2: one exp pass, no logs
        top = float(np.max(c.logits))
        log_total = top + math.log(float(np.sum(np.exp(c.logits.astype(np.float64) - top))))
        keep = c.logits >= log_total - self.mu * math.log(2.0)  # (n,) a top set
        if not keep.any():
            keep[int(np.argmax(c.logits))] = True
        return c if keep.all() else c.take(np.flatnonzero(keep), sorted=c.sorted)
