"""Many sequences, one forward pass: the generation loop kettle serves from.

``BatchEngine`` owns a ``Runner`` (model + KV cache with ``n_slots`` slots).
``add`` admits a request into a free slot, reusing the longest prefix of its
prompt that a slot still holds (the next turn of a chat does not recompute the
conversation). Each ``step`` runs *one* batched forward for every active
sequence: one decode token for each sequence that is generating, plus as much
pending prompt as the ``num_batch`` budget allows for those still in prefill;
then samples, detokenizes and matches stop strings per sequence, returning the
chunks produced. A new request joins at the next step without waiting for the
others (continuous batching).

Layers (STYLE.md item 11): step -> ``Chunk`` stream (text + stats) -> full text.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kettle.engine.draft import Drafter
from kettle.engine.runner import Runner
from kettle.engine.speculative import PromptLookup
from kettle.errors import ContextOverflow, KettleError, ServerBusy
from kettle.sampling import Sampler, SamplingParams, StopMatcher
from kettle.sampling.logprobs import TokenLogprob, raw_logprob
from kettle.tokenizer import StreamDecoder, Tokenizer


@dataclass
class Stats:
    """ollama's counters; durations in nanoseconds."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0  # the whole prompt, its cached prefix included (as ollama counts it)
    prompt_eval_duration: int = 0
    prompt_cached_count: int = 0  # of those, the prefix reused from the slot's cache (not recomputed)
    eval_count: int = 0
    eval_duration: int = 0
    draft_count: int = 0  # tokens proposed by speculative decoding
    draft_accepted: int = 0  # of those, the ones the sampler chose (each saved a step)
    shift_count: int = 0  # context shifts made room for more of the answer (SamplingParams.shift)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Chunk:
    """A piece of generated text; the last one has ``done`` and the stats."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    done: bool = False
    done_reason: str | None = None  # "stop" | "length" | "cancel"
    stats: Stats | None = None
    context: list[int] | None = None  # prompt + generated ids, on the last chunk
    # With params.logprobs: the generated tokens whose text starts in this chunk (the end-of-
    # generation token and the tokens of a stop string are not reported).
    logprobs: list[TokenLogprob] | None = None
    # With params.prompt_logprobs, on the last chunk: one per prompt token (the first is None).
    prompt_logprobs: list[TokenLogprob | None] | None = None
    # A thinking model's reasoning, split out of ``text`` by the caller (``kettle.thinking``).
    thinking: str = ""


class Constraint(Protocol):
    """Grammar-constrained decoding (JSON, JSON schema): masks what may come next."""

    def mask(self, logits: np.ndarray) -> None:
        """Set the logits (n_vocab,) of forbidden tokens to -inf, in place."""

    def accept(self, token: int) -> None:
        """Advance past a sampled token."""

    def is_complete(self) -> bool:
        """True when the output is complete (generation should stop)."""


class Sequence:
    """One request's state inside the engine."""

    def __init__(self, engine: BatchEngine, prompt_ids: list[int], params: SamplingParams,
                 cancel: threading.Event | None, constraint: Constraint | None = None):
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.sampler = Sampler(params, engine.runner.model.config.n_vocab, newline_id=engine.newline_id)
        self.limit = params.token_limit(engine.runner.n_ctx, len(prompt_ids))  # new tokens allowed
        self.stop = StopMatcher(params.stop)
        self.decoder = StreamDecoder(engine.tokenizer)
        self.cancel = cancel if cancel is not None else threading.Event()
        self.constraint = constraint
        self.slot = -1
        self.pending: list[int] = []  # prompt ids not yet evaluated
        self.next_token: int | None = None  # sampled, to be evaluated at the next step
        self.generated: list[int] = []
        self.history: list[int] = list(prompt_ids)  # for repeat penalties
        self.done = False
        self.stats = Stats()
        self.t_start = time.perf_counter_ns()
        self.t_first: int | None = None  # when the prompt finished
        drafting = params.draft_num_predict > 0 and engine.drafter is None  # a draft model needs no index
        self.lookup = PromptLookup(self.prompt_ids) if drafting else None
        self.draft: list[int] = []  # tokens proposed for this step, evaluated after next_token
        # logprobs (params.logprobs): recorded, not yet sent; characters fed to / let out of
        # the stop matcher, which place each token's text
        self.pending_logprobs: list[TokenLogprob] = []
        self.fed_chars = 0
        self.emitted_chars = 0
        self.prompt_logprobs: list[TokenLogprob | None] | None = [None] if params.prompt_logprobs else None
        self.shifting = False  # re-evaluating the tokens kept by a context shift (not prompt work)


class BatchEngine:
    def __init__(self, runner: Runner, tokenizer: Tokenizer, drafter: Drafter | None = None) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.drafter = drafter  # a draft model proposes the tokens to check; None: prompt lookup
        self.active: list[Sequence] = []
        self._free = list(range(runner.n_slots))
        newline = tokenizer.encode("\n", add_special=False)
        self.newline_id = newline[0] if len(newline) == 1 else None  # for penalize_newline

    @property
    def has_free_slot(self) -> bool:
        return bool(self._free)

    def add(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None = None,
            constraint: Constraint | None = None) -> Sequence:
        """Admit a request; raises ``ServerBusy`` with no free slot, ``ContextOverflow``
        if the prompt cannot fit."""
        if not prompt_ids:
            raise KettleError("the prompt is empty: nothing to continue from")
        if len(prompt_ids) >= self.runner.n_ctx:
            raise ContextOverflow(len(prompt_ids) + 1, self.runner.n_ctx)
        if not self._free:
            raise ServerBusy("no free slot")
        seq = Sequence(self, prompt_ids, params, cancel, constraint)
        cache = self.runner.cache
        # Reuse the slot whose cached tokens share the longest prefix.
        best = max(self._free, key=lambda s: cache.common_prefix(s, prompt_ids))
        self._free.remove(best)
        keep = min(cache.common_prefix(best, prompt_ids), len(prompt_ids) - 1)
        if params.prompt_logprobs:  # every prompt position's logits are needed: no reuse
            keep = 0
        cache.truncate(best, keep)
        seq.slot = best
        seq.pending = list(prompt_ids[keep:])
        seq.stats.prompt_eval_count = seq.stats.prompt_cached_count = keep  # prefill adds the rest
        self.active.append(seq)
        return seq

    def release(self, seq: Sequence) -> None:
        """Free the sequence's slot; its cache stays for prefix reuse."""
        if seq in self.active:
            self.active.remove(seq)
            self._free.append(seq.slot)
        seq.done = True

    def step(self) -> list[tuple[Sequence, Chunk]]:
        """One batched forward over every active sequence; returns the chunks made."""
        events: list[tuple[Sequence, Chunk]] = []
        for seq in [s for s in self.active if s.cancel.is_set()]:
            events.append((seq, self._finish(seq, "cancel")))
        if not self.active:
            return events
        cache = self.runner.cache
        tokens: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        outputs: list[int] = []
        takers: list[Sequence] = []
        budget = self.runner.n_batch
        for seq in self.active:  # decoding sequences first: one token each
            if seq.next_token is not None:
                outputs.append(len(tokens))
                tokens.append(seq.next_token)
                positions.append(int(cache.lengths[seq.slot]))
                slots.append(seq.slot)
                takers.append(seq)
                budget -= 1
        n_decoding = len(takers)
        for seq in takers:  # then drafts of those that copy, while the budget lasts
            seq.draft = self._draft(seq, budget)
            start = int(cache.lengths[seq.slot]) + 1
            for i, token in enumerate(seq.draft):
                outputs.append(len(tokens))
                tokens.append(token)
                positions.append(start + i)
                slots.append(seq.slot)
            budget -= len(seq.draft)
        prefilled: list[tuple[Sequence, int, int]] = []  # sequence, tokens taken, prompt rows scored
        for seq in self.active:  # then prompts, within the budget
            if seq.next_token is None and seq.pending and budget > 0:
                take = seq.pending[:budget]
                start = int(cache.lengths[seq.slot])
                first = len(tokens)
                tokens.extend(take)
                positions.extend(range(start, start + len(take)))
                slots.extend([seq.slot] * len(take))
                del seq.pending[: len(take)]
                budget -= len(take)
                scored = 0
                if seq.prompt_logprobs is not None:  # each row predicts the next prompt token
                    scored = len(take) - 1 if not seq.pending else len(take)
                    outputs.extend(range(first, first + scored))
                prefilled.append((seq, len(take), scored))
                if not seq.pending:
                    outputs.append(len(tokens) - 1)
                    takers.append(seq)
        if not tokens:
            return events
        t0 = time.perf_counter_ns()
        logits = self.runner.forward(tokens, positions, slots, outputs=outputs)
        elapsed = time.perf_counter_ns() - t0
        for seq, n, _ in prefilled:
            if seq.shifting:  # part of generating, not of reading the prompt
                seq.stats.eval_duration += elapsed
                continue
            seq.stats.prompt_eval_count += n
            seq.stats.prompt_eval_duration += elapsed
        # Rows in the order of ``outputs``: the decoding sequences', their drafts', then per
        # prefilled sequence its scored prompt rows and, when its prompt is done, its last row.
        rows = iter(logits)
        decoding = takers[:n_decoding]
        firsts = [next(rows) for _ in decoding]
        drafted = [[next(rows) for _ in seq.draft] for seq in decoding]
        for seq, row, draft_rows in zip(decoding, firsts, drafted, strict=True):
            seq.stats.eval_duration += elapsed
            events.extend((seq, chunk) for chunk in self._verify(seq, row, draft_rows))
        for seq, _, scored in prefilled:
            if seq.prompt_logprobs is not None:
                self._score_prompt(seq, [next(rows) for _ in range(scored)])
            if seq.pending:
                continue
            if seq.shifting:
                seq.shifting = False
            else:
                seq.t_first = time.perf_counter_ns()
            chunk = self._advance(seq, next(rows))
            if chunk is not None:
                events.append((seq, chunk))
        return events

    def _score_prompt(self, seq: Sequence, rows: list[np.ndarray]) -> None:
        """Record the prompt tokens that ``rows`` (the logits of the positions before them) predict."""
        scores, top_n = seq.prompt_logprobs, seq.params.logprobs or 0
        if scores is None:
            return
        for row in rows:
            scores.append(raw_logprob(row, seq.prompt_ids[len(scores)], top_n))

    def _draft(self, seq: Sequence, budget: int) -> list[int]:
        """Tokens proposed to follow ``seq.next_token`` (by the draft model, else by prompt
        lookup), within the batch budget, the request's token limit and the context window."""
        if seq.lookup is None and (self.drafter is None or seq.params.draft_num_predict < 1):
            return []
        room = min(budget, seq.limit - len(seq.generated) - 1,
                   self.runner.n_ctx - int(self.runner.cache.lengths[seq.slot]) - 2)
        k = min(seq.params.draft_num_predict, room)
        if self.drafter is not None:
            assert seq.next_token is not None
            return self.drafter.propose(seq.slot, [*self.runner.cache.tokens[seq.slot], seq.next_token], k)
        assert seq.lookup is not None
        return seq.lookup.draft(k)

    def _verify(self, seq: Sequence, row: np.ndarray, draft_rows: list[np.ndarray]) -> list[Chunk]:
        """Sample from ``row`` (the logits after ``next_token``) and, while the sampled token
        is the next drafted one, from that draft token's row too. The cache keeps
        ``next_token`` and the drafted tokens that were chosen; the others are dropped."""
        cache = self.runner.cache
        draft, seq.draft = seq.draft, []
        keep = int(cache.lengths[seq.slot]) - len(draft)  # next_token is in; the drafts are not yet
        cache.truncate(seq.slot, keep)
        chunks: list[Chunk] = []
        kept = 0
        for i, logits in enumerate([row, *draft_rows]):
            chunk = self._advance(seq, logits)
            if chunk is not None:
                chunks.append(chunk)
            if seq.done or i == len(draft) or seq.next_token != draft[i]:
                break
            # The sampler chose the drafted token: its keys and values are already computed.
            cache.commit(np.array([seq.slot]), np.array([draft[i]]))
            kept += 1
        seq.stats.draft_count += len(draft)
        seq.stats.draft_accepted += kept
        if seq.lookup is not None:
            seq.lookup.accepted(len(draft), kept)
        return chunks

    def _advance(self, seq: Sequence, logits: np.ndarray) -> Chunk | None:
        """Sample the next token of ``seq`` from its logits row; maybe finish it."""
        if seq.constraint is not None:
            seq.constraint.mask(logits)
        recorded: TokenLogprob | None = None
        if seq.params.logprobs is None:
            token = seq.sampler.sample(logits, seq.history)
        else:
            token, recorded = seq.sampler.sample_logprobs(logits, seq.history, seq.params.logprobs)
        if seq.constraint is not None:
            seq.constraint.accept(token)
        seq.generated.append(token)
        seq.history.append(token)
        if seq.lookup is not None:
            seq.lookup.extend([token])
        seq.stats.eval_count += 1
        if self.tokenizer.is_eog(token):
            return self._finish(seq, "stop")
        piece = seq.decoder.feed(token)
        if recorded is not None:
            seq.pending_logprobs.append(dataclasses.replace(recorded, offset=seq.fed_chars))
            seq.fed_chars += len(piece)
        text, hit = seq.stop.feed(piece)
        if hit:
            return self._finish(seq, "stop", text, [token], flush=False)
        if seq.constraint is not None and seq.constraint.is_complete():
            return self._finish(seq, "stop", text, [token])
        if len(seq.generated) >= seq.limit:
            return self._finish(seq, "length", text, [token])
        if int(self.runner.cache.lengths[seq.slot]) + 1 >= self.runner.n_ctx and not self._shift(seq, token):
            return self._finish(seq, "length", text, [token])
        if not seq.shifting:
            seq.next_token = token
        return Chunk(text, [token], logprobs=self._logprobs(seq, text)) if text else None

    def _shift(self, seq: Sequence, token: int) -> bool:
        """Make room in a full context window for ``token`` and what follows (``params.shift``):
        keep the first ``num_keep`` tokens (-1: the whole prompt; a leading BOS always), leave
        out half of the rest, oldest first, as ollama does, and queue the kept tail with
        ``token`` to be evaluated again at its new positions. False when it cannot (shift off,
        prompt scores wanted, or nothing left to leave out)."""
        if not seq.params.shift or seq.prompt_logprobs is not None:
            return False
        cache = self.runner.cache
        held = list(cache.tokens[seq.slot])
        keep = len(seq.prompt_ids) if seq.params.num_keep < 0 else seq.params.num_keep
        if held and held[0] == self.tokenizer.bos_id:
            keep = max(keep, 1)
        keep = min(keep, len(held))
        discard = (len(held) - keep) // 2
        if discard < 1:
            return False
        cache.truncate(seq.slot, keep)
        seq.pending = held[keep + discard:] + [token]
        seq.next_token = None
        seq.shifting = True
        seq.stats.shift_count += 1
        return True

    @staticmethod
    def _logprobs(seq: Sequence, text: str, last: bool = False) -> list[TokenLogprob] | None:
        """The pending logprobs of the tokens whose text starts within the text let out so far,
        ``text`` included (``last``: every pending one); None when the request has none."""
        if seq.params.logprobs is None:
            return None
        seq.emitted_chars += len(text)
        cut = len(seq.pending_logprobs)
        if not last:
            cut = next((i for i, lp in enumerate(seq.pending_logprobs) if lp.offset >= seq.emitted_chars), cut)
        out, seq.pending_logprobs = seq.pending_logprobs[:cut], seq.pending_logprobs[cut:]
        return out

    def _finish(self, seq: Sequence, reason: str, text: str = "", tokens: list[int] | None = None,
                flush: bool = True) -> Chunk:
        """End ``seq``. ``flush`` emits text held back by the decoder and the stop
        matcher (not after a stop string: what follows it is never emitted)."""
        stopped = not flush
        if flush:
            more, stopped = seq.stop.feed(seq.decoder.flush())
            text += more if stopped else more + seq.stop.flush()
        self.release(seq)
        now = time.perf_counter_ns()
        seq.stats.total_duration = now - seq.t_start
        # after a stop string, the tokens whose text lies in it (or after it) are not reported
        logprobs = self._logprobs(seq, text, last=not stopped)
        return Chunk(text, tokens or [], done=True, done_reason=reason, stats=seq.stats,
                     context=seq.prompt_ids + seq.generated, logprobs=logprobs,
                     prompt_logprobs=seq.prompt_logprobs)

    def run(self, seq: Sequence) -> Iterator[Chunk]:
        """Drive the engine until ``seq`` is done, yielding its chunks (single user)."""
        while not seq.done:
            for s, chunk in self.step():
                if s is seq:
                    yield chunk
