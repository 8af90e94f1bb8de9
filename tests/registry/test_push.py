"""kettle push to a registry the test starts on 127.0.0.1: HEAD, POST, PATCH, PUT ?digest=, manifest PUT."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kettle.errors import ModelNotFound, RegistryError
from kettle.store import CONFIG_MEDIA_TYPE, Manifest, MediaType, Store
from kettle.store.push import push_model
from tests.registry.conftest import weights
from tests.registry.fake_registry import TOKEN, FakeRegistry, digest_of


def stored_model(store: Store, name: str, size: int = 250_000) -> Manifest:
    layers = (store.add_layer(MediaType.MODEL, weights(size, seed=7)), store.add_layer(MediaType.SYSTEM, b"Be brief."))
    manifest = Manifest(store.add_layer(CONFIG_MEDIA_TYPE, b'{"model_format":"gguf"}'), layers)
    store.write_manifest(name, manifest)
    return manifest


def push(store: Store, name: str, **kw: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    push_model(store, name, events.append, insecure=True, stall_s=2.0, **kw)
    return events


def test_push_uploads_each_blob_then_the_manifest(store: Store, registry: FakeRegistry) -> None:
    name = f"{registry.host}/team/mine:v1"
    manifest = stored_model(store, name)
    events = push(store, name, part_bytes=100_000)
    for layer in manifest.blobs():
        assert registry.blobs[layer.digest] == store.blob_path(layer.digest).read_bytes()
    assert json.loads(registry.models[("team", "mine", "v1")]) == manifest.to_json()
    statuses = [e["status"] for e in events]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    big = manifest.layers[0]
    assert f"pushing {big.digest[7:19]}" in statuses
    assert [e["completed"] for e in events if e.get("digest") == big.digest][-1] == big.size
    patches = [r["headers"]["content-range"] for r in registry.requests("PATCH")]
    assert "0-99999" in patches and "200000-249999" in patches  # three parts of the big blob
    puts = registry.requests("PUT", "/blobs/uploads/")
    assert any(f"digest={big.digest.replace(':', '%3A')}" in r["url"] or f"digest={big.digest}" in r["url"] for r in puts)
    assert registry.requests("PUT", "/manifests/v1")[0]["headers"]["content-type"] == \
        "application/vnd.docker.distribution.manifest.v2+json"
    registry.log.clear()
    push(store, name)  # the registry has every blob now: HEAD only
    assert registry.requests("POST") == [] and len(registry.requests("HEAD")) == 3


def test_push_with_the_token_flow(store: Store, registry: FakeRegistry) -> None:
    name = f"{registry.host}/team/mine"
    stored_model(store, name, size=10_000)
    registry.faults.auth = True
    push(store, name)
    assert registry.requests("GET", "/token")
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in registry.requests("PATCH"))


def test_push_refuses_a_foreign_realm_and_unknown_models(store: Store, registry: FakeRegistry) -> None:
    name = f"{registry.host}/team/mine"
    stored_model(store, name, size=1000)
    registry.faults.auth = True
    registry.faults.realm = f"http://localhost:{registry.port}/token"
    with pytest.raises(RegistryError, match="another host"):
        push(store, name)
    assert registry.requests("GET", "/token") == [] and registry.blobs == {}
    with pytest.raises(ModelNotFound):
        push(store, f"{registry.host}/team/absent")


def test_push_never_sends_a_corrupt_blob(store: Store, registry: FakeRegistry) -> None:
    name = f"{registry.host}/team/mine"
    manifest = stored_model(store, name, size=1000)
    path = store.blob_path(manifest.layers[0].digest)
    path.chmod(0o644)
    path.write_bytes(b"y" * 1000)
    with pytest.raises(Exception, match="corrupt|mismatch|hash"):
        push(store, name)
    assert registry.requests("POST") == []
    assert digest_of(b"y" * 1000) not in registry.blobs
