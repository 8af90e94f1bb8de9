"""The batched forward pass over a model and its KV cache.

``Runner.forward(tokens, positions, seq_ids)`` evaluates tokens from any
number of sequences in one call: several sequences decoding together (the
server's continuous batching), a long prompt split into ``num_batch`` chunks
(chunked prefill), or both. Sequence ids are cache slots ``0..n_slots-1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numba
import numpy as np

from kettle.engine.kv_cache import KVCache, kv_cache_type
from kettle.engine.threads import ThreadGovernor
from kettle.errors import Cancelled, ContextOverflow, InvalidParameter
from kettle.models import Transformer


class Runner:
    """A model, its KV cache, and the load-time sizes that shaped them."""

    def __init__(self, model: Transformer, n_ctx: int, n_slots: int = 1, n_batch: int = 512, n_thread: int = 0) -> None:
        if n_ctx < 1:
            raise InvalidParameter("num_ctx", n_ctx, "must be at least 1")
        if n_batch < 1:
            raise InvalidParameter("num_batch", n_batch, "must be at least 1")
        cfg = model.config
        self.model = model
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self._governors: dict[int, ThreadGovernor] = {}  # thread count -> its measurements
        self.n_thread = n_thread  # sets self.threads
        self.cache = KVCache(cfg.n_layer, cfg.n_kv_head, cfg.head_dim, n_ctx, n_slots, kv_cache_type())
        # One forward at a time: the cache is shared state.
        self.lock = threading.Lock()

    @property
    def n_slots(self) -> int:
        return self.cache.n_slots

    @property
    def n_thread(self) -> int:
        """The most threads a step runs on (the governor picks 1 or this many per small step)."""
        return self.threads.n_thread

    @n_thread.setter
    def n_thread(self, n_thread: int) -> None:
        """``n_thread`` threads from the next step on (<= 0: every core; capped at numba's count).
        Each count keeps its own governor, so switching back and forth keeps what was measured."""
        n = n_thread if n_thread > 0 else numba.config.NUMBA_NUM_THREADS
        n = min(n, numba.config.NUMBA_NUM_THREADS)
        self.threads = self._governors.setdefault(n, ThreadGovernor(n))  # 1 or n per step, by measurement

    def forward(
        self,
        tokens: Sequence[int] | np.ndarray,
        positions: Sequence[int] | np.ndarray,
        seq_ids: Sequence[int] | np.ndarray,
        outputs: Sequence[int] | np.ndarray | None = None,
        hidden: bool = False,
        cancel: threading.Event | None = None,
    ) -> np.ndarray:
        """Evaluate a batch; return logits (m, n_vocab) for the rows in ``outputs``.

        ``outputs`` defaults to the last token of each sequence in the batch, in
        order of first appearance. Each sequence's tokens must continue it
        (positions = its length, length + 1, ...). With ``hidden``, the final
        normed hidden states (m, n_embd) are returned instead of logits.
        """
        tok = np.ascontiguousarray(tokens, dtype=np.int32)  # (n,)
        pos = np.ascontiguousarray(positions, dtype=np.int32)  # (n,)
        seq = np.ascontiguousarray(seq_ids, dtype=np.int32)  # (n,)
        n = tok.shape[0]
        if n == 0 or pos.shape != (n,) or seq.shape != (n,):
            raise ValueError("tokens, positions and seq_ids must be non-empty and of one length")
        n_vocab = self.model.config.n_vocab
        if tok.min() < 0 or tok.max() >= n_vocab:
            bad = int(tok[(tok < 0) | (tok >= n_vocab)][0])
            raise InvalidParameter("tokens", bad, f"token id outside the vocabulary 0..{n_vocab - 1}")
        if outputs is None:
            last: dict[int, int] = {}
            for i, s in enumerate(seq.tolist()):
                last[s] = i
            out = np.array(list(last.values()), dtype=np.int64)  # dicts keep first-insertion order
        else:
            out = np.asarray(outputs, dtype=np.int64)
            if out.size and (out.min() < 0 or out.max() >= n):
                raise ValueError("outputs must index rows of the batch")
        with self.lock:
            governor = self.threads  # one governor for the whole call, whatever n_thread becomes
            self.cache.check_append(seq, pos, tok)
            width = self.model.config.n_embd if hidden else n_vocab
            result = np.empty((out.shape[0], width), dtype=np.float32)
            for start in range(0, n, self.n_batch):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled")
                stop = min(start + self.n_batch, n)
                mask = (out >= start) & (out < stop)
                rows = out[mask] - start
                sl = slice(start, stop)
                threads = governor.choose(stop - start)
                numba.set_num_threads(threads)
                t0 = time.perf_counter()
                chunk = self.model.forward(tok[sl], pos[sl], seq[sl], self.cache, rows, hidden=hidden)
                governor.record(stop - start, threads, time.perf_counter() - t0)
                self.cache.commit(seq[sl], tok[sl])
                result[mask] = chunk
            return result

    def check_fits(self, n_tokens: int) -> None:
        if n_tokens > self.n_ctx:
            raise ContextOverflow(n_tokens, self.n_ctx)
