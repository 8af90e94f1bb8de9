"""Fixtures for the tokenizer tests: the real models' metadata and tokenizers, and
the llama.cpp reference data copied into ``fixtures/`` (the suite stands alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kettle.gguf import GGUFFile
from kettle.tokenizer import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"

# short model name used in the fixtures -> file stem of its llama.cpp oracle data
ORACLE_NAMES = {"smollm2": "smollm2-135m-q4_1", "gemma3": "gemma3-270m-q4_k_m"}


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def model_meta(smollm2_path: Path, gemma3_path: Path) -> dict[str, dict[str, Any]]:
    """short name -> the GGUF metadata dict (read once per session)."""
    return {
        "smollm2": GGUFFile(smollm2_path).metadata,
        "gemma3": GGUFFile(gemma3_path).metadata,
    }


@pytest.fixture(scope="session")
def tokenizers(model_meta: dict[str, dict[str, Any]]) -> dict[str, Tokenizer]:
    """short name -> Tokenizer of the real model."""
    return {name: Tokenizer.from_metadata(meta) for name, meta in model_meta.items()}
