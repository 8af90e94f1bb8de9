"""Pure logit transforms: each takes candidates and returns new candidates, never mutating.

The semantics (and the chain order used by :class:`kettle.sampling.sampler.Sampler`) follow
llama.cpp's sampling as ollama's runner used it: penalties -> top_k -> tfs_z -> typical_p ->
top_p -> min_p -> temperature -> draw, each truncating filter keeping at least one token.

A candidate set is a pair of parallel arrays (token ids, logits), like llama.cpp's
``llama_token_data_array``; filters shrink it, so after ``top_k`` every later step works on k
entries instead of the whole vocabulary. ``sorted`` records that the logits are descending so
the sort is done once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kettle.errors import SamplingError

# Every truncating filter keeps at least this many candidates (llama.cpp: max(1, min_keep)).
MIN_KEEP = 1
# Tail-free: below this sum the second derivatives count as flat and are spread evenly.
TFS_FLAT_SUM = 1e-6
# top_k: size of the strided sample that bounds the k-th largest logit.
TOP_K_SAMPLE = 8192
# top_k: a pool larger than this is partitioned before it is sorted.
TOP_K_POOL_SORT = 65536
# top_p on an unsorted set: sort the best this-many first, then 4x, ... until the mass is reached.
TOP_P_FIRST_K = 256


@dataclass(frozen=True, slots=True)
class Candidates:
    """Tokens still in the running, with their logits."""

    ids: np.ndarray  # (n,) int token ids, distinct
    logits: np.ndarray  # (n,) float32 or float64 logits of those tokens
    sorted: bool = False  # logits are in descending order

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, index: np.ndarray | slice, *, sorted: bool) -> Candidates:
        """The candidates at ``index`` (an index array or a slice), in that order."""
        return Candidates(self.ids[index], self.logits[index], sorted)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(n,) logits -> (n,) float64 probabilities; ``SamplingError`` if no logit is finite."""
    top = np.max(logits)
    if not math.isfinite(top):
        raise SamplingError(f"cannot normalize logits whose maximum is {top}")
    weights = np.exp(logits.astype(np.float64) - top)
    return weights / weights.sum()


def sort_desc(c: Candidates) -> Candidates:
    """The same candidates ordered by descending logit (ties keep their current order)."""
    if c.sorted:
        return c
    return c.take(np.argsort(-c.logits, kind="stable"), sorted=True)


def greedy(logits: np.ndarray) -> int:
    """Index of the largest of (V,) logits, the lowest one on ties, in one O(V) pass."""
    best = int(np.argmax(logits))  # the first NaN wins argmax, so NaN is caught below
    if not math.isfinite(logits[best]):
        raise SamplingError(f"the best logit is {logits[best]} (token {best})")
    return best


def penalize(logits: np.ndarray, window: np.ndarray, *, repeat: float, presence: float,
             frequency: float, newline_id: int | None = None) -> np.ndarray:
    """Repetition penalties: (V,) logits, (w,) ids of the penalty window -> new (V,) logits.

    For each distinct token in ``window`` seen ``count`` times: a logit <= 0 is multiplied by
    ``repeat`` and a positive one divided by it, then ``count * frequency + presence`` is
    subtracted. ``newline_id``, when given, keeps its original logit (penalize_newline false).
    """
    if window.size == 0:
        return logits
    tokens, counts = np.unique(window, return_counts=True)  # (u,), (u,)
    out = logits.copy()
    seen = out[tokens].astype(np.float64)
    seen = np.where(seen <= 0.0, seen * repeat, seen / repeat)
    seen -= counts * frequency + presence
    out[tokens] = seen
    if newline_id is not None:
        out[newline_id] = logits[newline_id]
    return out


def _best_indices(c: Candidates, k: int) -> np.ndarray:
    """(k,) indices of the ``k`` highest logits (0 < k < n), by descending logit then id.

    The k-th largest logit of a strided sample is a lower bound on the k-th largest overall,
    so ``logits >= bound`` is a small pool that surely holds the top k; only the pool is
    partitioned and sorted. O(n) with a small constant.
    """
    n = len(c)
    sample = c.logits[:: max(1, n // TOP_K_SAMPLE)]  # (s,)
    if sample.size > k:
        bound = np.partition(sample, sample.size - k)[sample.size - k]
    else:
        bound = np.min(c.logits)
    if bound == -np.inf:  # a masked row: the finite logits, padded with -inf ones by id
        pool = np.flatnonzero(c.logits > bound)
        if pool.size < k:
            pad = np.flatnonzero(c.logits == bound)[: k - pool.size]
            return np.concatenate([pool[np.lexsort((c.ids[pool], -c.logits[pool]))], pad])
    else:
        pool = np.flatnonzero(c.logits >= bound)  # (m,) m >= k
    if pool.size > TOP_K_POOL_SORT:  # many ties at the bound, or an unlucky sample: partition
        pool = pool[np.argpartition(c.logits[pool], pool.size - k)[pool.size - k :]]
    order = pool[np.lexsort((c.ids[pool], -c.logits[pool]))]  # by logit, then by id
    return order[:k]


def top_k(c: Candidates, k: int) -> Candidates:
    """Keep the ``k`` highest logits, sorted (ties: lower id first); ``k <= 0`` or ``k >= n``
    keeps all."""
    n = len(c)
    if k <= 0 or k >= n:
        return c
    k = max(k, MIN_KEEP)
    if c.sorted:
        return c.take(slice(0, k), sorted=True)
    return c.take(_best_indices(c, k), sorted=True)


def _sorted_prefix(c: Candidates, probs: np.ndarray, mass: float) -> tuple[Candidates, np.ndarray]:
    """The most likely candidates, sorted, with their (n,) ``probs``, holding at least ``mass``
    of the probability (all of them if it is never reached): avoids sorting the whole set."""
    if c.sorted:
        return c, probs
    k = TOP_P_FIRST_K
    while k < len(c):
        best = _best_indices(c, k)
        if probs[best].sum() >= mass:
            return c.take(best, sorted=True), probs[best]
        k *= 4
    order = np.argsort(-c.logits, kind="stable")
    return c.take(order, sorted=True), probs[order]


def tail_free(c: Candidates, z: float) -> Candidates:
    """Tail-free sampling: cut where the normalized |second derivative| of the sorted
    probabilities has accumulated more than ``z``; ``z >= 1`` (or n <= 2) keeps all."""
    if z >= 1.0 or len(c) <= 2:
        return c
    c = sort_desc(c)
    probs = softmax(c.logits)  # (n,)
    second = np.abs(np.diff(probs, n=2))  # (n-2,); sign of the difference does not matter
    total = second.sum()
    if total > TFS_FLAT_SUM:
        second /= total
    else:
        second[:] = 1.0 / second.size
    over = (np.cumsum(second) > z) & (np.arange(second.size) >= MIN_KEEP)
    keep = int(np.argmax(over)) if over.any() else len(c)
    return c.take(slice(0, keep), sorted=True)


def typical(c: Candidates, p: float) -> Candidates:
    """Locally typical sampling: order by |surprise - entropy|, keep until the mass exceeds
    ``p``; ``p >= 1`` keeps all. The result is in typicality order (not sorted)."""
    if p >= 1.0:
        return c
    c = sort_desc(c)
    probs = softmax(c.logits)  # (n,)
    with np.errstate(divide="ignore"):
        surprise = -np.log(probs)  # (n,) inf where a probability underflowed to 0
    entropy = float(np.sum(probs[probs > 0] * surprise[probs > 0]))
    order = np.argsort(np.abs(surprise - entropy), kind="stable")  # (n,)
    over = np.cumsum(probs[order]) > p
    over[: MIN_KEEP - 1] = False
    keep = int(np.argmax(over)) + 1 if over.any() else len(c)
    return c.take(order[:keep], sorted=False)


def top_p(c: Candidates, p: float) -> Candidates:
    """Nucleus sampling: keep the most likely tokens until their mass reaches ``p``
    (the token that crosses it included); ``p >= 1`` keeps all."""
    if p >= 1.0:
        return c
    c, probs = _sorted_prefix(c, softmax(c.logits), p)
    reached = np.cumsum(probs) >= p
    reached[: MIN_KEEP - 1] = False
    keep = int(np.argmax(reached)) + 1 if reached.any() else len(c)
    return c.take(slice(0, keep), sorted=True)


def min_p(c: Candidates, p: float) -> Candidates:
    """Keep tokens with probability >= ``p`` times the top probability (compared as logits:
    logit >= max + log p); ``p <= 0`` keeps all. Order is preserved."""
    if p <= 0.0:
        return c
    keep = c.logits >= np.max(c.logits) + math.log(p)  # (n,) the top token always passes
    if keep.all():
        return c
    return c.take(np.flatnonzero(keep), sorted=c.sorted)


def temperature(c: Candidates, t: float) -> Candidates:
    """Divide the logits by ``t > 0``, after shifting the maximum to 0 (softmax is unchanged
    by the shift, and tiny ``t`` cannot overflow: the best logit stays 0, the rest go to -inf).
    """
    if t <= 0.0:
        raise SamplingError(f"temperature {t} is the greedy path, not a transform")
    shifted = c.logits.astype(np.float64) - np.max(c.logits)
    with np.errstate(over="ignore"):
        return Candidates(c.ids, shifted / t, c.sorted)


def pick(probs: np.ndarray, u: float) -> int:
    """Index drawn from (n,) ``probs`` by the uniform variate ``u`` in [0, 1) (inverse CDF)."""
    cdf = np.cumsum(probs)  # (n,)
    total = cdf[-1]
    if not (math.isfinite(total) and total > 0.0):
        raise SamplingError(f"the distribution sums to {total}")
    return min(int(np.searchsorted(cdf, u * total, side="right")), len(probs) - 1)
