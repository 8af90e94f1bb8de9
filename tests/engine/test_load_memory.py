"""A load that would not fit in memory is refused before it allocates, and a failed load keeps nothing."""

from __future__ import annotations

import gc
import traceback
from pathlib import Path

import pytest

import kettle
from kettle.api import Model
from kettle.engine.memory import GIB, MemoryEstimate, cgroup_room, check_fits, estimate, mem_available
from kettle.errors import InsufficientMemory

HUGE_SLOTS = 1 << 20  # smollm2's KV cache for 4096 tokens in a million slots: ~90 TiB, more than any machine


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CGROUPS = [
    # (label, /proc/self/cgroup, files under the cgroup root, expected room)
    ("v2 limit", "0::/app\n", {"app/memory.max": "1000\n", "app/memory.current": "400\n",
                               "app/memory.stat": "anon 300\ninactive_file 100\n"}, 700),
    ("v2 no limit", "0::/app\n", {"app/memory.max": "max\n", "app/memory.current": "400\n"}, None),
    ("v2 container root", "0::/elsewhere\n", {"memory.max": "2000\n", "memory.current": "500\n"}, 1500),
    ("v1 limit", "4:memory:/job\n2:cpu:/job\n", {"memory/job/memory.limit_in_bytes": "1000\n",
                                                 "memory/job/memory.usage_in_bytes": "900\n",
                                                 "memory/job/memory.stat": "total_inactive_file 400\n"}, 500),
    ("v1 unlimited", "4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n",
                                      "memory/memory.usage_in_bytes": "5\n"}, None),
    ("over the limit", "0::/\n", {"memory.max": "100\n", "memory.current": "300\n"}, 0),
    ("no memory controller", "2:cpu:/x\n", {}, None),
]


@pytest.mark.parametrize(("label", "self_cgroup", "files", "room"), CGROUPS, ids=[c[0] for c in CGROUPS])
def test_cgroup_room(tmp_path: Path, label: str, self_cgroup: str, files: dict[str, str], room: int | None) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        write(root / rel, text)
    assert cgroup_room(write(tmp_path / "self", self_cgroup), root) == room, label


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = write(tmp_path / "meminfo", "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n")
    assert mem_available(meminfo) == 2048 * 1024
    assert mem_available(write(tmp_path / "old", "MemTotal: 100 kB\n")) is None
    assert mem_available() is None or mem_available() > 0


@pytest.mark.parametrize(("need", "available", "refused"), [
    (MemoryEstimate(GIB, GIB), 3 * GIB, False),
    (MemoryEstimate(GIB, GIB), 2 * GIB, False),
    (MemoryEstimate(GIB, GIB), 2 * GIB - 1, True),
    (MemoryEstimate(100 * GIB, 0), None, False),  # unknown: nothing refused
])
def test_check_fits(need: MemoryEstimate, available: int | None, refused: bool) -> None:
    if not refused:
        check_fits(need, available, n_ctx=8, n_slots=1)
        return
    with pytest.raises(InsufficientMemory, match=r"^model requires more system memory \(2\.0 GiB\) than is available \(2\.0 GiB\)"):
        check_fits(need, available, n_ctx=8, n_slots=1)


def test_the_estimate_counts_the_kv_cache_as_allocated(smollm2_path: Path) -> None:
    model = kettle.load(smollm2_path, num_ctx=64, num_parallel=3)
    try:
        cache = model.runner.cache
        need = estimate(model.transformer.config, n_ctx=64, n_slots=3, n_batch=512, n_thread=2)
        assert need.kv_cache == cache.k.nbytes + cache.v.nbytes
        assert 0 < need.scratch < 64 << 20
    finally:
        model.close()


def _partial_models(exc: BaseException) -> list[Model]:
    return [frame.f_locals["self"] for frame, _ in traceback.walk_tb(exc.__traceback__)
            if isinstance(frame.f_locals.get("self"), Model)]


def test_a_load_too_big_is_refused_and_a_smaller_one_then_works(smollm2_path: Path) -> None:
    with pytest.raises(InsufficientMemory) as info:
        kettle.load(smollm2_path, num_parallel=HUGE_SLOTS)
    message = str(info.value)
    assert message.startswith("model requires more system memory (") and "than is available (" in message
    assert "num_ctx" in message and info.value.required > info.value.available
    # The exception (and its traceback) is still alive here, as a server's log or a caller's
    # variable would keep it: the partial model it references holds nothing.
    partial = _partial_models(info.value)
    assert partial and all(vars(m) == {} for m in partial)
    del partial
    gc.collect()
    model = kettle.load(smollm2_path, num_ctx=256)
    try:
        assert model.generate("The sky is", num_predict=2, temperature=0).text()
    finally:
        model.close()


def test_a_kv_cache_the_system_cannot_allocate_is_insufficient_memory() -> None:
    from kettle.engine.kv_cache import KVCache

    with pytest.raises(InsufficientMemory, match=r"^model requires more system memory \(\d+\.\d GiB for its KV cache\)"):
        KVCache(n_layer=1024, n_kv_head=64, head_dim=128, n_ctx=1 << 20, n_slots=64)  # 2 x 2 PiB
    cache = KVCache(n_layer=2, n_kv_head=1, head_dim=4, n_ctx=8, n_slots=1)
    assert cache.k.shape == (2, 1, 1, 8, 4)
