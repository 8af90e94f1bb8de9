"""The sampler chain: one :class:`Sampler` per request turns each logits row into a token id.

Order (llama.cpp's common sampler as ollama's runner used it)::

    penalties -> [temperature <= 0: argmax]
              -> mirostat 0: top_k -> tfs_z -> typical_p -> top_p -> min_p -> temperature -> draw
              -> mirostat 1/2: temperature -> mirostat (its own truncation) -> draw

The filters are composed once, in ``__init__``, skipping the ones the parameters disable. Each
sampler owns its ``numpy.random.Generator`` (seeded from ``params.seed``; -1 draws a fresh seed)
and, for mirostat, its running ``mu``. The greedy path never touches the generator.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from kettle.errors import InvalidParameter, SamplingError
from kettle.sampling.logprobs import TokenLogprob, token_logprob
from kettle.sampling.mirostat import MirostatV1, MirostatV2
from kettle.sampling.params import Mirostat, SamplingParams
from kettle.sampling.transforms import (
    Candidates, greedy, min_p, penalize, pick, softmax, tail_free, temperature, top_k, top_p,
    typical,
)

Transform = Callable[[Candidates], Candidates]

# repeat_last_n value meaning "the whole history" (ollama: the whole context window).
WHOLE_HISTORY = -1


def build_chain(params: SamplingParams) -> tuple[Transform, ...]:
    """The truncation filters and temperature for ``params`` (mirostat off), in order,
    leaving out the ones whose values disable them."""
    steps: list[Transform] = []
    if params.top_k > 0:
        steps.append(functools.partial(top_k, k=params.top_k))
    if params.tfs_z < 1.0:
        steps.append(functools.partial(tail_free, z=params.tfs_z))
    if params.typical_p < 1.0:
        steps.append(functools.partial(typical, p=params.typical_p))
    if params.top_p < 1.0:
        steps.append(functools.partial(top_p, p=params.top_p))
    if params.min_p > 0.0:
        steps.append(functools.partial(min_p, p=params.min_p))
    if params.temperature != 1.0:
        steps.append(functools.partial(temperature, t=params.temperature))
    return tuple(steps)


class Sampler:
    """Chooses the next token of one sequence.

    ``params``: validated per-request options. ``vocab_size``: the model's vocabulary size
    (length of every logits row). ``newline_id``: the newline token, needed only to honour
    ``penalize_newline=False`` (without it the newline is penalized like any token, as in
    llama.cpp when the vocabulary has no newline token).
    """

    def __init__(self, params: SamplingParams, vocab_size: int, *, newline_id: int | None = None) -> None:
        if not isinstance(params, SamplingParams):
            raise InvalidParameter("params", params, "expected SamplingParams")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise InvalidParameter("vocab_size", vocab_size, "must be a positive integer")
        if newline_id is not None and not 0 <= newline_id < vocab_size:
            raise InvalidParameter("newline_id", newline_id, f"must be in [0, {vocab_size})")
        self.params = params
        self.vocab_size = vocab_size
        self._keep_newline = None if params.penalize_newline else newline_id
        self._penalties_on = params.repeat_last_n != 0 and (
            params.repeat_penalty != 1.0 or params.presence_penalty != 0.0
            or params.frequency_penalty != 0.0
        )
        self._rng = np.random.default_rng(None if params.seed == -1 else params.seed % 2**64)
        self._ids = np.arange(vocab_size, dtype=np.int64)  # (V,) the full candidate set
        self._chain = build_chain(params)
        self._mirostat: MirostatV1 | MirostatV2 | None = None
        if params.mirostat == Mirostat.V1:
            self._mirostat = MirostatV1(params.mirostat_tau, params.mirostat_eta, vocab_size)
        elif params.mirostat == Mirostat.V2:
            self._mirostat = MirostatV2(params.mirostat_tau, params.mirostat_eta)

    @property
    def mu(self) -> float | None:
        """Mirostat's current surprise threshold in bits (None when mirostat is off)."""
        return None if self._mirostat is None else self._mirostat.mu

    def _check_logits(self, logits: np.ndarray) -> np.ndarray:
        arr = np.asarray(logits)
        if arr.shape != (self.vocab_size,):
            raise SamplingError(f"expected logits of shape ({self.vocab_size},), got {arr.shape}")
        if arr.dtype.kind != "f":
            raise SamplingError(f"expected floating-point logits, got {arr.dtype}")
        return arr

    def _window(self, history: Sequence[int]) -> np.ndarray:
        """(w,) int64 ids of the penalty window: the last ``repeat_last_n`` of ``history``."""
        last_n = self.params.repeat_last_n
        try:
            tail = history if last_n == WHOLE_HISTORY else history[-last_n:]
            window = np.asarray(tail, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise SamplingError(f"history must be a sequence of token ids ({exc})") from None
        if window.size and (window.min() < 0 or window.max() >= self.vocab_size):
            raise SamplingError(f"history holds a token id outside [0, {self.vocab_size})")
        return window

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """The next token id for (V,) float ``logits``, given the sequence's tokens so far.

        ``history``: every token of the sequence (prompt and generated), oldest first; only the
        last ``repeat_last_n`` matter. Raises ``SamplingError`` for NaN/+inf logits, a row with
        no finite logit, a wrong shape, or history ids outside the vocabulary.
        """
        return self._draw(logits, history)[0]

    def sample_logprobs(self, logits: np.ndarray, history: Sequence[int], top_n: int) -> tuple[int, TokenLogprob]:
        """As :meth:`sample` (the same token, the same random draws), with the chosen token's
        log probability and its ``top_n`` most likely alternatives in the distribution it was
        drawn from (see :mod:`kettle.sampling.logprobs`)."""
        token, dist = self._draw(logits, history)
        return token, token_logprob(dist.ids, dist.logits, token, top_n)

    def _draw(self, logits: np.ndarray, history: Sequence[int]) -> tuple[int, Candidates]:
        """The token and the candidates whose softmax it was drawn from (greedy: the whole row)."""
        row = self._check_logits(logits)
        p = self.params
        if self._penalties_on:
            row = penalize(row, self._window(history), repeat=p.repeat_penalty,
                           presence=p.presence_penalty, frequency=p.frequency_penalty,
                           newline_id=self._keep_newline)
        if p.greedy:
            return greedy(row), Candidates(self._ids, row)
        top = np.max(row)  # NaN anywhere propagates into the max
        if not math.isfinite(top):
            raise SamplingError(f"logits are not a distribution (maximum {top})")
        cands = Candidates(self._ids, row)
        if self._mirostat is not None:
            return self._mirostat.choose(temperature(cands, p.temperature), self._rng)
        for step in self._chain:
            cands = step(cands)
        return int(cands.ids[pick(softmax(cands.logits), self._rng.random())]), cands
