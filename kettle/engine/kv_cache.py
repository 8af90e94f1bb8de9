"""The KV cache: keys and values of every layer, for a fixed number of slots.

A slot holds one sequence. Position ``p`` of a slot lives at index ``p`` (no
ring buffer: sliding-window layers mask, they do not evict). The model only
``put``s and reads ``layer(i)``; the engine owns the sequence operations
(``truncate``, ``clear``, ``copy_prefix``) and decides what to reuse.

Arrays come from ``np.zeros``, whose pages the OS maps lazily: a 4096-token
cache costs memory only for the positions actually written.

``kind`` is the element type, as llama.cpp's ``-ctk/-ctv`` (``kettle.ops.kv_elements``):
``f16`` (the default, as llama.cpp's and ollama's), ``f32`` (twice the memory; exact against
float32 references, which the converter and LoRA tests pin), or ``q8_0``
(about a quarter: int8 codes and one f16 scale per 32 values). Keys and values are stored in that type when
``put`` and read by the attention kernels as they are, never widened into a copy.
"""

from __future__ import annotations

import numpy as np

from kettle import config
from kettle.engine.memory import available_memory
from kettle.errors import ContextOverflow, InsufficientMemory, InvalidParameter
from kettle.ops._jit import exact_kernel
from kettle.ops.kv_elements import BYTES_PER_VALUE, KV_TYPES, storage, store_row

DEFAULT_KIND = "f16"  # llama.cpp's and ollama's default; f32 for float32-exact comparisons


def kv_cache_type() -> str:
    """``KETTLE_KV_CACHE_TYPE`` (f16, q8_0 or f32), checked."""
    kind = config.get("KETTLE_KV_CACHE_TYPE").strip().lower() or DEFAULT_KIND
    if kind not in KV_TYPES:
        raise InvalidParameter("KETTLE_KV_CACHE_TYPE", kind, f"expected one of {', '.join(KV_TYPES)}")
    return kind


@exact_kernel
def _scatter(cache, scales, layer, scale_layer, slots, positions, rows):
    # cache (n_layer, n_slots, n_kv, n_ctx, hd) <- rows (n, n_kv * hd), in the cache's type
    n_kv, hd = cache.shape[2], cache.shape[4]
    for t in range(rows.shape[0]):
        for h in range(n_kv):
            store_row(cache[layer, slots[t], h], scales[scale_layer, slots[t], h], positions[t],
                      rows[t, h * hd:(h + 1) * hd])


class KVCache:
    def __init__(self, n_layer: int, n_kv_head: int, head_dim: int, n_ctx: int, n_slots: int,
                 kind: str = DEFAULT_KIND) -> None:
        self.n_layer = n_layer
        self.n_ctx = n_ctx
        self.n_slots = n_slots
        self.kind = kind
        dtype, block = storage(kind)
        if block and head_dim % block:
            raise ValueError(f"a {kind} KV cache needs a head size that is a multiple of {block}, this model's is "
                             f"{head_dim}: use kv_cache_type f16")
        shape = (n_layer, n_slots, n_kv_head, n_ctx, head_dim)
        # q8_0: one f16 scale per 32 values of a row; else a placeholder the kernels never read
        scale_shape = (n_layer, n_slots, n_kv_head, n_ctx, head_dim // block) if block else (1, n_slots, n_kv_head, 1, 1)
        try:
            self.k = np.zeros(shape, dtype=dtype)  # (n_layer, n_slots, n_kv, n_ctx, hd)
            self.v = np.zeros(shape, dtype=dtype)
            self.k_scales = np.zeros(scale_shape, dtype=np.uint16)
            self.v_scales = np.zeros(scale_shape, dtype=np.uint16)
        except MemoryError:  # the estimate (engine/memory.py) could not see the limit; say it plainly
            self.k = self.v = None
            need = int(2 * BYTES_PER_VALUE[kind] * n_layer * n_slots * n_kv_head * n_ctx * head_dim)
            raise InsufficientMemory(
                f"model requires more system memory ({need / 2**30:.1f} GiB for its KV cache) than is available: "
                f"lower num_ctx ({n_ctx}) or the number of parallel sequences ({n_slots}), or free memory",
                need, available_memory() or 0,
            ) from None
        self.lengths = np.zeros(n_slots, dtype=np.int64)  # tokens held per slot
        self.tokens: list[list[int]] = [[] for _ in range(n_slots)]  # the ids behind them

    # -- what the model uses ---------------------------------------------------

    def layer(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """k, v (n_slots, n_kv, n_ctx, hd) of ``layer`` and their scales: for q8_0 (n_slots,
        n_kv, n_ctx, hd / 32), else the (n_slots, n_kv, 1, 1) placeholder the kernels never read."""
        at = layer if self.kind == "q8_0" else 0
        return self.k[layer], self.v[layer], self.k_scales[at], self.v_scales[at]

    def put(self, layer: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        """k, v (n, n_kv * hd) float32 of tokens at (slots[t], positions[t]), stored in the cache's type."""
        at = layer if self.kind == "q8_0" else 0  # the placeholder scales have one layer
        # one call each, not numpy's fancy indexing (4-5 us each)
        _scatter(self.k, self.k_scales, layer, at, slots, positions, np.ascontiguousarray(k, dtype=np.float32))
        _scatter(self.v, self.v_scales, layer, at, slots, positions, np.ascontiguousarray(v, dtype=np.float32))

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
        if self.kind == "q8_0":
            self.k_scales[:, dst, :, :n] = self.k_scales[:, src, :, :n]
            self.v_scales[:, dst, :, :n] = self.v_scales[:, src, :, :n]
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
