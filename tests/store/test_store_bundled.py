"""Bundled models: pulled from their Python packages into the store, digest-verified."""

from __future__ import annotations

import pytest

from kettle.errors import StoreError
from kettle.store import BUNDLED, Store, bundled_names, ensure_default, find_bundled, pull_bundled

from .conftest import assert_consistent

SMOLLM2_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA3_DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_pull_smollm2_both_tags_share_one_blob(store: Store) -> None:
    events: list[tuple[str, int, int]] = []
    digest = pull_bundled(store, "smollm2", lambda *e: events.append(e))
    statuses = [s for s, _, _ in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    copies = [(done, total) for s, done, total in events if s == "pulling b179c9523d0e"]
    assert copies[-1][0] == copies[-1][1] == 98362432

    assert pull_bundled(store, "smollm2:135m") == digest  # same layers -> same manifest
    model = store.resolve("smollm2:135m")
    assert model.model_digest == SMOLLM2_DIGEST
    assert model.params["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert model.template is None  # the GGUF's own chat template applies
    assert model.license and "Apache" in model.license[0]
    assert (model.details.family, model.details.quantization_level, model.details.parameter_size) == (
        "llama", "Q4_1", "134.52M",
    )
    assert [p.name for p in (store.root / "blobs").iterdir()].count(model.model_path.name) == 1
    entries = {e.name.display(): e for e in store.list_models()}
    assert set(entries) == {"smollm2:latest", "smollm2:135m"}
    assert_consistent(store)


def test_pulling_again_reuses_the_blob(store: Store) -> None:
    pull_bundled(store, "smollm2")
    inode = store.blob_path(SMOLLM2_DIGEST).stat().st_ino
    events: list[tuple[str, int, int]] = []
    pull_bundled(store, "registry.ollama.ai/library/smollm2:latest", lambda *e: events.append(e))
    assert store.blob_path(SMOLLM2_DIGEST).stat().st_ino == inode
    assert ("pulling b179c9523d0e", 98362432, 98362432) in events


@pytest.mark.parametrize("name", ["llama3.2", "gemma3", "smollm2:360m", "me/smollm2", "example.com/library/smollm2"])
def test_other_names_say_registries_are_not_available(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match="network registry is not available") as info:
        pull_bundled(store, name)
    for known in bundled_names():
        assert known in str(info.value)
    assert store.list_models() == [] and list((store.root / "blobs").iterdir()) == []


def test_find_bundled_is_case_insensitive() -> None:
    assert find_bundled("SmolLM2:135M") is BUNDLED[0]
    assert find_bundled("gemma3:270m") is BUNDLED[1]
    assert find_bundled("gemma3") is None


def test_ensure_default_pulls_once(store: Store) -> None:
    name = ensure_default(store)
    assert name.display() == "smollm2:latest" and store.exists(name)
    before = store.entry(name).modified_at
    ensure_default(store)
    assert store.entry(name).modified_at == before


def test_bundled_params_are_valid_options() -> None:
    from kettle.options import parse_options

    for model in BUNDLED:
        parse_options(None, model.params)  # raises InvalidParameter if a value is off


@pytest.mark.slow
def test_pull_gemma3(store: Store) -> None:
    digest = pull_bundled(store, "gemma3:270m")
    model = store.resolve("gemma3:270m")
    assert model.model_digest == GEMMA3_DIGEST
    assert model.params["stop"] == ["<end_of_turn>"] and model.params["top_k"] == 64
    assert model.details.family == "gemma3" and model.details.quantization_level == "Q4_K_M"
    assert store.entry("gemma3:270m").digest == digest
    assert_consistent(store)


def test_resolve_model_pulls_bundled_models_on_first_use(store: Store) -> None:
    from kettle.errors import ModelNotFound
    from kettle.store import resolve_model

    assert resolve_model(store).name.display() == "smollm2:latest"
    assert resolve_model(store, "smollm2:135m").model_digest == SMOLLM2_DIGEST
    with pytest.raises(ModelNotFound):
        resolve_model(store, "llama3.2")


def test_api_resolves_a_store_name_to_its_model_spec(store: Store) -> None:
    from kettle.api import resolve

    spec = resolve("smollm2", store)
    assert spec.path == store.blob_path(SMOLLM2_DIGEST) and spec.name == "smollm2:latest"
    assert spec.params["stop"] == ["<|im_start|>", "<|im_end|>"] and spec.template is None
