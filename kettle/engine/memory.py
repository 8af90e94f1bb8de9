"""Will a load fit? What it will allocate, estimated before it does, against the memory free now.

A load that does not fit is refused with ``InsufficientMemory`` before its
big buffers exist, as ollama refuses one ("model requires more system memory
(X GiB) than is available (Y GiB)"), instead of failing halfway with an
allocation error, or succeeding on paper (numpy maps zeroed pages lazily) and
being killed by the OOM killer once a long conversation fills the cache.

What counts is what kettle allocates. The weights are memory-mapped: their
pages are page cache, which the kernel reads in and drops as it needs (and
``MemAvailable`` already counts as reclaimable), so the file does not count.
Allocated are:

* the KV cache, all of it: ``n_layer * 2 (k, v) * n_slots * n_kv_head * n_ctx
  * head_dim * b`` bytes, ``b`` the cache type's bytes per value (f16: 2, q8_0:
  1.0625, f32: 4; ``KETTLE_KV_CACHE_TYPE``);
* the working buffers of one forward step of ``n_batch`` tokens: the
  activations (residual, norms, q, k, v, attention output, the ffn's gate, up
  and product), one row of logits per slot, and each thread's attention
  scores over the context.

Vectors dequantized at load (norm weights) exist before the estimate is
made, so ``MemAvailable`` has already paid for them.

Available is ``/proc/meminfo``'s ``MemAvailable``, lowered to the room left
under the process's cgroup memory limit when it has one (v2 ``memory.max``
minus ``memory.current``; v1 ``memory.limit_in_bytes`` minus
``memory.usage_in_bytes``; reclaimable file pages, ``inactive_file``, count
as room in both). Where none of these can be read, nothing is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kettle.errors import InsufficientMemory
from kettle.models import TransformerConfig
from kettle.ops.kv_elements import BYTES_PER_VALUE

F32 = 4  # bytes
GIB = 1 << 30
NO_LIMIT = 1 << 60  # cgroup v1 writes "unlimited" as a number near 2^63
ATTENTION_HEADS_PER_TASK = 4  # kettle/ops/attention.py scores four query heads of one kv head at once

MEMINFO = Path("/proc/meminfo")
CGROUP_OF_SELF = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a load will allocate."""

    kv_cache: int  # the whole KV cache, k and v
    scratch: int  # one forward step's working buffers

    @property
    def total(self) -> int:
        return self.kv_cache + self.scratch


def kv_cache_bytes(cfg: TransformerConfig, n_ctx: int, n_slots: int, kind: str | None = None) -> int:
    """k and v of every layer, slot and position: (n_layer, n_slots, n_kv, n_ctx, hd) values of
    the cache type ``kind`` (``KETTLE_KV_CACHE_TYPE`` when None), twice."""
    from kettle.engine.kv_cache import kv_cache_type

    per_value = BYTES_PER_VALUE[kind or kv_cache_type()]
    return int(cfg.n_layer * 2 * n_slots * cfg.n_kv_head * n_ctx * cfg.head_dim * per_value)


def estimate(cfg: TransformerConfig, *, n_ctx: int, n_slots: int, n_batch: int, n_thread: int) -> MemoryEstimate:
    """What loading ``cfg`` with these load-time sizes allocates (see the module doc)."""
    q_width = cfg.n_head * cfg.head_dim
    per_token = 4 * cfg.n_embd + 2 * q_width + 2 * cfg.kv_width + 3 * cfg.n_ff  # floats per batch row
    if cfg.moe is not None:  # each token's weighted output of each chosen expert (models/moe.py)
        per_token += cfg.moe.n_expert_used * cfg.n_embd
    scratch = F32 * (
        min(n_batch, n_ctx * n_slots) * per_token
        + n_slots * cfg.n_vocab
        + max(n_thread, 1) * ATTENTION_HEADS_PER_TASK * n_ctx
    )
    return MemoryEstimate(kv_cache_bytes(cfg, n_ctx, n_slots), scratch)


# -- what the system has ------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max": no limit


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return 0


def mem_available(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` in bytes, or None where the kernel does not report it."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    return None


def _room_in(directories: list[Path], limit_name: str, usage_name: str, inactive: str) -> int | None:
    """The room under the first directory that reports both limit and usage (None: no limit)."""
    for directory in directories:
        limit, usage = _read_int(directory / limit_name), _read_int(directory / usage_name)
        if usage is None:
            continue
        if limit is None or limit >= NO_LIMIT:
            return None
        used = max(0, usage - _stat_value(directory / "memory.stat", inactive))
        return max(0, limit - used)
    return None


def cgroup_room(cgroup_of_self: Path = CGROUP_OF_SELF, root: Path = CGROUP_ROOT) -> int | None:
    """Bytes left under this process's cgroup memory limit, or None when it has none."""
    try:
        lines = cgroup_of_self.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    rooms = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2, the unified hierarchy
            hierarchy, names = root, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            hierarchy, names = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        # Inside a container the process's path may not exist in its view: the hierarchy's root is its cgroup.
        room = _room_in([hierarchy / rel, hierarchy] if rel else [hierarchy], *names)
        if room is not None:
            rooms.append(room)
    return min(rooms) if rooms else None


def available_memory() -> int | None:
    """Bytes this process may still allocate (see the module doc), or None when unknown."""
    known = [v for v in (mem_available(), cgroup_room()) if v is not None]
    return min(known) if known else None


def check_fits(need: MemoryEstimate, available: int | None, *, n_ctx: int, n_slots: int) -> None:
    """``InsufficientMemory`` when ``need`` is more than ``available`` (None: unknown, nothing refused)."""
    if available is None or need.total <= available:
        return
    raise InsufficientMemory(
        f"model requires more system memory ({need.total / GIB:.1f} GiB) than is available "
        f"({available / GIB:.1f} GiB): its KV cache for num_ctx={n_ctx} and {n_slots} parallel "
        f"sequence{'s' if n_slots != 1 else ''} takes {need.kv_cache / GIB:.1f} GiB; lower num_ctx "
        f"(or KETTLE_NUM_PARALLEL), or free memory",
        need.total, available,
    )


def check_load_fits(cfg: TransformerConfig, *, n_ctx: int, n_slots: int, n_batch: int, n_thread: int) -> MemoryEstimate:
    """Refuse (``InsufficientMemory``) a load whose buffers would not fit in the memory free now."""
    need = estimate(cfg, n_ctx=n_ctx, n_slots=n_slots, n_batch=n_batch, n_thread=n_thread)
    check_fits(need, available_memory(), n_ctx=n_ctx, n_slots=n_slots)
    return need
