"""Running an embedding model (an ``Encoder``): no KV cache, no generation.

``EncoderRunner`` is what ``Runner`` is for a decoder: the model with the
load-time sizes (context window, slots, threads). It embeds one text at a
time; each text attends only to itself, so the result of a text never depends
on what else is embedded with it.

``EmbeddingOnlyEngine`` stands where a decoder's ``BatchEngine`` stands for the
scheduler: it never has a sequence running, and a generation asked of it is a
``CapabilityError`` (ollama: ``"model" does not support generate``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from kettle.engine.memory import MemoryEstimate, available_memory, check_fits
from kettle.errors import CapabilityError, ContextOverflow, InvalidParameter
from kettle.models import Encoder
from kettle.models.encoder import scratch_bytes


class EncoderRunner:
    """An encoder and the load-time sizes that shape its work."""

    def __init__(self, model: Encoder, n_ctx: int, n_slots: int = 1, n_thread: int = 0) -> None:
        if n_ctx < 1:
            raise InvalidParameter("num_ctx", n_ctx, "must be at least 1")
        self.model = model
        self.n_ctx = min(n_ctx, model.config.context_length)  # no positions beyond the trained ones
        # one text at a time, no KV cache: the working buffers of the longest text are all it allocates
        check_fits(MemoryEstimate(0, scratch_bytes(model.config, self.n_ctx)), available_memory(),
                   n_ctx=self.n_ctx, n_slots=1)
        self.n_slots = n_slots  # embeddings the scheduler may run between steps (one at a time here)
        threads = n_thread if n_thread > 0 else numba.config.NUMBA_NUM_THREADS
        self.n_thread = min(threads, numba.config.NUMBA_NUM_THREADS)
        self.lock = threading.Lock()

    def embed(self, ids: Sequence[int]) -> np.ndarray:
        """The pooled, L2-normalised embedding (n_embd,) of one non-empty token list."""
        tok = np.ascontiguousarray(ids, dtype=np.int64)  # (n,)
        n_vocab = self.model.config.n_vocab
        if tok.ndim != 1 or tok.size == 0:
            raise ValueError("embed needs a non-empty 1-D list of token ids")
        if tok.size > self.n_ctx:
            raise ContextOverflow(int(tok.size), self.n_ctx)
        if tok.min() < 0 or tok.max() >= n_vocab:
            bad = int(tok[(tok < 0) | (tok >= n_vocab)][0])
            raise InvalidParameter("tokens", bad, f"token id outside the vocabulary 0..{n_vocab - 1}")
        with self.lock:
            numba.set_num_threads(self.n_thread)
            return self.model.embed(tok)


class EmbeddingOnlyEngine:
    """The scheduler's engine for an embedding model (``EngineLike``): nothing ever runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.active: list[Any] = []

    @property
    def has_free_slot(self) -> bool:
        return True  # so a generation reaches ``add`` and fails there, with the reason

    def add(self, prompt_ids: list[int], params: Any, cancel: threading.Event | None = None,
            constraint: Any = None) -> Any:
        raise CapabilityError(f'"{self.name}" does not support generate')

    def step(self) -> list[tuple[Any, Any]]:
        return []

    def release(self, seq: Any) -> None:
        return None
