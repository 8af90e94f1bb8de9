"""The KV cache: keys and values of every layer, for a fixed number of slots.

A slot holds one sequence. Position ``p`` of a slot lives at index ``p`` (no
ring buffer: sliding-window layers mask, they do not evict). The model only
``put``s and reads ``layer(i)``; the engine owns the sequence operations
(``truncate``, ``clear``, ``copy_prefix``) and decides what to reuse.

Arrays come from ``np.zeros``, whose pages the OS maps lazily: a 4096-token
cache costs memory only for the positions actually written.
"""

from __future__ import annotations

import numpy as np

from kettle.engine.memory import available_memory
from kettle.errors import ContextOverflow, InsufficientMemory
from kettle.ops._jit import exact_kernel


@exact_kernel
def _scatter(cache, layer, slots, positions, rows):  # cache (n_layer, n_slots, n_kv, n_ctx, hd) <- rows (n, n_kv * hd)
    n_kv, hd = cache.shape[2], cache.shape[4]
    for t in range(rows.shape[0]):
        for h in range(n_kv):
            for i in range(hd):
                cache[layer, slots[t], h, positions[t], i] = rows[t, h * hd + i]


class KVCache:
    def __init__(self, n_layer: int, n_kv_head: int, head_dim: int, n_ctx: int, n_slots: int) -> None:
        self.n_layer = n_layer
        self.n_ctx = n_ctx
        self.n_slots = n_slots
        shape = (n_layer, n_slots, n_kv_head, n_ctx, head_dim)
        try:
            self.k = np.zeros(shape, dtype=np.float32)  # (n_layer, n_slots, n_kv, n_ctx, hd)
            self.v = np.zeros(shape, dtype=np.float32)
        except MemoryError:  # the estimate (engine/memory.py) could not see the limit; say it plainly
            self.k = self.v = None
            need = 2 * 4 * n_layer * n_slots * n_kv_head * n_ctx * head_dim
            raise InsufficientMemory(
                f"model requires more system memory ({need / 2**30:.1f} GiB for its KV cache) than is available: "
                f"lower num_ctx ({n_ctx}) or the number of parallel sequences ({n_slots}), or free memory",
                need, available_memory() or 0,
            ) from None
        self.lengths = np.zeros(n_slots, dtype=np.int64)  # tokens held per slot
        self.tokens: list[list[int]] = [[] for _ in range(n_slots)]  # the ids behind them

    # -- what the model uses ---------------------------------------------------

    def layer(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        return self.k[layer], self.v[layer]

    def put(self, layer: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        """k, v (n, n_kv * hd) of tokens at (slots[t], positions[t])."""
        _scatter(self.k, layer, slots, positions, np.ascontiguousarray(k))  # one call, not numpy's fancy
        _scatter(self.v, layer, slots, positions, np.ascontiguousarray(v))  # indexing (4-5 us each)

    # -- what the engine uses --------------------------------------------------

    def check_append(self, slots: np.ndarray, positions: np.ndarray, tokens: np.ndarray) -> None:
        """Each slot's tokens must continue it: positions length, length+1, ...

        Raises ``ContextOverflow`` past ``n_ctx``; records the tokens.
        """
        expected = {}
        for s, p in zip(slots.tolist(), positions.tolist()):
            if not 0 <= s < self.n_slots:
                raise ValueError(f"slot {s} out of range 0..{self.n_slots - 1}")
            want = expected.get(s, int(self.lengths[s]))
            if p != want:
                raise ValueError(f"slot {s}: position {p} does not continue the sequence (expected {want})")
            if p >= self.n_ctx:
                raise ContextOverflow(p + 1, self.n_ctx)
            expected[s] = p + 1

    def commit(self, slots: np.ndarray, tokens: np.ndarray) -> None:
        for s, t in zip(slots.tolist(), tokens.tolist()):
            self.tokens[s].append(t)
            self.lengths[s] += 1

    def truncate(self, slot: int, n: int) -> None:
        """Keep the first ``n`` positions of ``slot`` (stale values beyond are never read)."""
        n = max(0, min(n, int(self.lengths[slot])))
        self.lengths[slot] = n
        del self.tokens[slot][n:]

    def clear(self, slot: int) -> None:
        self.truncate(slot, 0)

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Make the first ``n`` positions of ``dst`` a copy of ``src``'s."""
        n = min(n, int(self.lengths[src]))
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n
        self.tokens[dst] = self.tokens[src][:n]

    def common_prefix(self, slot: int, ids: list[int]) -> int:
        """How many leading ``ids`` the slot already holds."""
        held = self.tokens[slot]
        n = 0
        for a, b in zip(held, ids):
            if a != b:
                break
            n += 1
        return n
