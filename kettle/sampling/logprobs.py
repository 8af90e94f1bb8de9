"""Log probabilities of chosen tokens and their most likely alternatives.

Which distribution (as llama.cpp's ``post_sampling_probs``): for a sampled token, the one the
sampler actually drew from, after the penalties, the grammar mask, the truncating filters
(top_k, tfs_z, typical_p, top_p, min_p, or mirostat's own cut) and the temperature, renormalized
over the tokens that survived; a token the filters removed has no entry. For greedy decoding
(temperature <= 0) there is nothing to draw from, so it is the softmax of the logits the argmax
saw: the model's raw logits, after the penalties and the grammar mask when those are on. For a
prompt token (``echo``), it is the softmax of the raw logits of the position before it.

Alternatives are the ``n`` most probable tokens of that distribution (ties: lower id first),
never ones of probability 0. Ids only: turning them into text is the caller's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kettle.errors import InvalidParameter, SamplingError

MAX_TOP_LOGPROBS = 20  # the most alternatives recorded per token (OpenAI's and ollama's bound)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token's log probability and the most likely tokens at its position."""

    token: int  # the chosen (or, for the prompt, the actual) token id
    logprob: float  # natural log of its probability
    top: tuple[tuple[int, float], ...] = ()  # (id, logprob), most probable first
    offset: int = 0  # characters of text before this token's text (set by the engine)


def check_top(n: object, name: str = "top_logprobs") -> int:
    """``n`` as a count of alternatives in [0, MAX_TOP_LOGPROBS], else ``InvalidParameter``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TOP_LOGPROBS:
        raise InvalidParameter(name, n, f"must be an integer between 0 and {MAX_TOP_LOGPROBS}")
    return n


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(n,) logits -> (n,) float64 log probabilities (-inf where a logit is -inf)."""
    top = np.max(logits)
    if not math.isfinite(top):
        raise SamplingError(f"cannot normalize logits whose maximum is {top}")
    shifted = logits.astype(np.float64) - top
    return shifted - math.log(float(np.sum(np.exp(shifted))))


def token_logprob(ids: np.ndarray, logits: np.ndarray, chosen: int, n: int) -> TokenLogprob:
    """The entry of token ``chosen`` in the distribution softmax(``logits``) over ``ids``.

    ``ids`` (m,) distinct token ids and ``logits`` (m,) their logits; ``chosen`` must be one of
    ``ids``; ``n`` alternatives (0..20) are listed.
    """
    logp = log_softmax(logits)  # (m,)
    where = np.flatnonzero(ids == chosen)
    if where.size == 0:
        raise SamplingError(f"token {chosen} is not in the distribution it was drawn from")
    top: tuple[tuple[int, float], ...] = ()
    if n > 0:
        k = min(n, logp.size)
        best = np.argpartition(-logp, k - 1)[:k] if k < logp.size else np.arange(logp.size)
        best = best[np.lexsort((ids[best], -logp[best]))]  # by logprob, then by id
        top = tuple((int(ids[i]), float(logp[i])) for i in best if logp[i] > -np.inf)
    return TokenLogprob(int(chosen), float(logp[where[0]]), top)


def raw_logprob(logits: np.ndarray, chosen: int, n: int) -> TokenLogprob:
    """The entry of ``chosen`` in softmax of a whole (V,) logits row (a prompt token's)."""
    return token_logprob(np.arange(logits.shape[0]), logits, chosen, n)
