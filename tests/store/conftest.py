from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kettle.store import CONFIG_MEDIA_TYPE, Layer, Manifest, MediaType, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def small_model(store: Store, weights: bytes = b"GGUF fake weights", system: str | None = None) -> Manifest:
    """A manifest over small blobs it adds to ``store`` (not a real GGUF: the store does not care)."""
    layers = [store.add_layer(MediaType.MODEL, weights), store.add_layer(MediaType.PARAMS, b'{"temperature":0.5}')]
    if system is not None:
        layers.append(store.add_layer(MediaType.SYSTEM, system.encode()))
    config = store.add_layer(CONFIG_MEDIA_TYPE, b'{"model_format":"gguf","model_family":"llama"}')
    return Manifest(config, tuple(layers))


def assert_consistent(store: Store) -> None:
    """The store invariant: complete blobs only, every manifest's blobs present, no leftovers."""
    root = store.root
    leftovers = [p for p in root.rglob(".kettle-tmp-*")]
    assert not leftovers, leftovers
    used: set[str] = set()
    for entry in store.list_models():
        manifest = store.read_manifest(entry.name)
        for layer in manifest.blobs():
            assert store.blob_size(layer.digest) == layer.size, layer
            used.add(layer.digest)
    for path in (root / "blobs").iterdir():
        data = path.read_bytes()
        assert path.name == "sha256-" + hashlib.sha256(data).hexdigest(), f"{path.name} does not hold its hash"
        assert "sha256:" + path.name[len("sha256-"):] in used, f"orphan blob {path.name}"


@pytest.fixture
def layer_of():
    def make(media_type: str, data: bytes) -> Layer:
        return Layer(media_type, digest_of(data), len(data))

    return make
