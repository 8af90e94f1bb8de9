"""Fixtures for the ctransformers / mlc compatibility tests.

Every test here runs against a private model store (``KETTLE_MODELS`` points at a
temporary directory for the whole package), into which the bundled smollm2 is pulled by
name on first use, exactly as a user's script would get it. Loaded models are shared per
module where the tests only read them or reset them first.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from kettle import gpu

MODEL = "smollm2"  # the store name the examples use instead of their Hub names
CONTEXT = 512  # a small window keeps the KV cache small


@pytest.fixture(scope="package", autouse=True)
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``KETTLE_MODELS`` -> a temporary store for every test in this package."""
    root = tmp_path_factory.mktemp("kettle-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KETTLE_MODELS", str(root))
        yield root


@pytest.fixture
def fresh_gpu_warning() -> Iterator[None]:
    """Forget that the CPU-only warning was given (it is once per process)."""
    gpu.reset_warning()
    yield
    gpu.reset_warning()


def run_script(source: str, **names: object) -> tuple[str, dict[str, object]]:
    """Execute an example script's source as ``__main__`` (``names`` predefined); return
    what it printed and its globals."""
    out = io.StringIO()
    scope: dict[str, object] = {"__name__": "__main__", **names}
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<example>", "exec"), scope)
    return out.getvalue(), scope
