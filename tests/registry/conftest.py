from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kettle.store import Store
from tests.registry.fake_registry import MODEL_TYPE, FakeRegistry, Running


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    running = Running(FakeRegistry())
    try:
        yield running.registry
    finally:
        running.stop()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


def weights(size: int, seed: int = 1) -> bytes:
    """``size`` bytes that differ from position to position (a cut or shift shows in the hash)."""
    import random

    return random.Random(seed).randbytes(size)


def leftovers(store: Store) -> list[str]:
    """Every file under the store other than the lock: what a refused pull must not leave."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                  if p.is_file() and p.name != ".kettle-lock")


__all__ = ["MODEL_TYPE", "leftovers", "weights"]
