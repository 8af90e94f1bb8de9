"""Speculative decoding with a draft model (``kettle.load(..., draft=...)``, the Modelfile's
``DRAFT``): the answer is the model's own, token for token, whatever the draft proposes; the
draft's vocabulary must be the model's."""

from __future__ import annotations

from pathlib import Path

import pytest

import kettle
import kettle.engine.draft
from kettle.errors import ModelfileError, UnsupportedModel
from kettle.gguf import GGUFFile
from kettle.modelfile import create_model, to_modelfile
from kettle.store import MediaType, Store, resolve_model
from tests.gguf_factory import tiny_model

PROMPT = "Write the numbers from one to ten in words, separated by commas:"
GREEDY = {"temperature": 0, "num_predict": 32}


def _answer(model: kettle.Model) -> tuple[str, object]:
    chunks = list(model.generate(PROMPT, **GREEDY))
    return "".join(c.text for c in chunks), chunks[-1].stats


@pytest.fixture(scope="module")
def plain(smollm2_path: Path) -> str:
    m = kettle.load(smollm2_path, num_ctx=256)
    try:
        return _answer(m)[0]
    finally:
        m.close()


def _plain(value: object) -> object:
    """A GGUF metadata value as the gguf writer takes it (lists and Python scalars)."""
    return value.tolist() if hasattr(value, "tolist") else list(value) if isinstance(value, tuple) else value


@pytest.fixture(scope="module")
def random_draft(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A random-weight llama with SmolLM2's tokenizer: a draft that is mostly wrong."""
    with GGUFFile(smollm2_path) as g:
        vocab = {k: _plain(g.metadata[k]) for k in g.metadata if k.startswith("tokenizer.")}
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    return tiny_model(tmp_path_factory.mktemp("draft") / "draft.gguf", meta=vocab, n_vocab=n_vocab, n_layer=2)


def test_the_model_as_its_own_draft_gives_its_answer(smollm2_path: Path, plain: str) -> None:
    m = kettle.load(smollm2_path, num_ctx=256, draft=smollm2_path)
    try:
        text, stats = _answer(m)
    finally:
        m.close()
    assert text == plain
    assert stats.draft_accepted > 0 and stats.draft_accepted <= stats.draft_count


def test_a_wrong_draft_changes_nothing(smollm2_path: Path, random_draft: Path, plain: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kettle.engine.draft, "P_MIN", 0.0)  # draft even when unsure: mostly rejected
    m = kettle.load(smollm2_path, num_ctx=256, draft=random_draft)
    try:
        text, stats = _answer(m)
        off = list(m.generate(PROMPT, draft_num_predict=0, **GREEDY))[-1].stats
    finally:
        m.close()
    assert text == plain
    assert stats.draft_count > 0 and stats.draft_accepted < stats.draft_count
    assert off.draft_count == 0


def test_a_draft_of_another_vocabulary_is_refused(smollm2_path: Path, tmp_path: Path) -> None:
    other = tiny_model(tmp_path / "other.gguf", vocab=True)
    with pytest.raises(UnsupportedModel, match="draft model other.gguf"):
        kettle.load(smollm2_path, num_ctx=256, draft=other)


def test_modelfile_draft_is_stored_shown_and_loaded(tmp_path: Path, smollm2_path: Path, random_draft: Path,
                                                    plain: str) -> None:
    store = Store(tmp_path / "models")
    (tmp_path / "draft.gguf").symlink_to(random_draft)
    (tmp_path / "main.gguf").symlink_to(smollm2_path)
    create_model(store, "drafted", "FROM ./main.gguf\nDRAFT ./draft.gguf\n", tmp_path)
    stored = resolve_model(store, "drafted")
    assert stored.draft is not None and stored.draft.read_bytes() == random_draft.read_bytes()
    assert any(layer.media_type == MediaType.DRAFT for layer in stored.manifest.layers)
    assert "\nDRAFT sha256:" in to_modelfile(stored)
    spec = kettle.api.ModelSpec.of(stored)
    m = kettle.Model(spec, kettle.api.parse_options({"num_ctx": 256})[0])
    try:
        assert m.engine.drafter is not None and _answer(m)[0] == plain
    finally:
        m.close()
    (tmp_path / "other.gguf").write_bytes(tiny_model(tmp_path / "o.gguf", vocab=True).read_bytes())
    with pytest.raises(ModelfileError, match="DRAFT ./other.gguf"):
        create_model(store, "bad", "FROM ./main.gguf\nDRAFT ./other.gguf\n", tmp_path)
