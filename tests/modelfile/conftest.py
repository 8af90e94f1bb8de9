from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from kettle.store import Store, pull_bundled


def write_tiny_gguf(path: Path, arch: str = "llama", rows: int = 4) -> Path:
    """A minimal valid GGUF (one F32 tensor), written with gguf-py."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_file_type(0)
    writer.add_tensor("token_embd.weight", np.arange(rows * 32, dtype=np.float32).reshape(rows, 32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def _pulled_smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smollm2-store")
    pull_bundled(Store(root), "smollm2")
    return root


@pytest.fixture
def smol_store(_pulled_smollm2: Path, tmp_path: Path) -> Store:
    """A fresh store that already holds smollm2 (blobs hard-linked from one pull: read-only)."""
    root = tmp_path / "models"
    shutil.copytree(_pulled_smollm2, root, copy_function=os.link)
    return Store(root)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture
def needs_templates() -> None:
    try:
        from kettle.templates import compile_template  # noqa: F401
    except ImportError:
        pytest.skip("kettle.templates.compile_template is not available yet")


def snapshot(store: Store) -> list[str]:
    """Every file in the store, for 'nothing was written' checks."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file() and p.name != ".kettle-lock")
