"""Hostile or broken registries: each case is refused with a clear error and leaves nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from kettle.errors import DigestMismatch, RegistryError, StoreError, StoreFull
from kettle.store import Store
from kettle.store.pull import pull_model
from tests.registry.conftest import MODEL_TYPE, leftovers, weights
from tests.registry.fake_registry import CONFIG_TYPE, MANIFEST_TYPE, FakeRegistry, digest_of

FAST = {"stall_s": 2.0, "backoff_s": 0.01, "insecure": True}


def model(registry: FakeRegistry, size: int = 50_000) -> bytes:
    data = weights(size)
    registry.add_model("library", "bad", "latest", [(MODEL_TYPE, data)])
    return data


def manifest_with(layers: list[dict], config: dict | None = None) -> bytes:
    config = config or {"mediaType": CONFIG_TYPE, "digest": digest_of(b"{}"), "size": 2}
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": layers}).encode()


def refused(store: Store, registry: FakeRegistry, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        pull_model(store, f"{registry.host}/library/bad", **FAST)
    assert leftovers(store) == []


@pytest.mark.parametrize("digest", [
    "sha256:../../../../etc/passwd",
    "sha256-../" + "0" * 61,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 128,
    "md5:" + "a" * 32,
    "sha256:" + "g" * 64,
])
def test_bad_digests_are_refused_before_any_path(store: Store, registry: FakeRegistry, digest: str) -> None:
    model(registry)
    registry.faults.manifest_body = manifest_with([{"mediaType": MODEL_TYPE, "digest": digest, "size": 10}])
    refused(store, registry, StoreError, "invalid digest")
    assert registry.requests("GET", "/blobs/") == []


def test_bytes_that_do_not_match_their_digest(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.corrupt_blob = True
    refused(store, registry, DigestMismatch, "digest mismatch")


def test_more_bytes_than_declared(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.extra_bytes = 1000
    refused(store, registry, RegistryError, "more bytes than|says it has")


def test_content_range_total_that_differs_from_the_manifest(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.lie_total = True
    refused(store, registry, RegistryError, "the manifest says 50000")


def test_manifest_size_larger_than_the_blob(store: Store, registry: FakeRegistry) -> None:
    data = model(registry)
    registry.faults.manifest_body = manifest_with(
        [{"mediaType": MODEL_TYPE, "digest": digest_of(data), "size": len(data) + 500}],
        {"mediaType": CONFIG_TYPE, "digest": digest_of(b'{"model_format":"gguf"}'), "size": 23})
    refused(store, registry, RegistryError, "registry says it has 50000 bytes")


def test_manifest_of_50_mb(store: Store, registry: FakeRegistry) -> None:
    registry.faults.huge_manifest = 50_000_000
    refused(store, registry, RegistryError, "more than the 1048576 bytes")


def test_gzip_bomb_manifest(store: Store, registry: FakeRegistry) -> None:
    registry.faults.gzip_bomb = 40_000_000  # about 40 KB on the wire
    refused(store, registry, RegistryError, "more than the 1048576 bytes")


def test_gzip_encoded_blob(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.gzip_blob = True
    refused(store, registry, RegistryError, "Content-Encoding 'gzip'")
    assert all(r["headers"]["accept-encoding"] == "identity" for r in registry.requests("GET", "/blobs/"))


def test_deeply_nested_manifest(store: Store, registry: FakeRegistry) -> None:
    registry.faults.manifest_body = b"[" * 200_000 + b"]" * 200_000
    refused(store, registry, RegistryError, "nested deeper than")


def test_too_many_layers(store: Store, registry: FakeRegistry) -> None:
    layer = {"mediaType": MODEL_TYPE, "digest": digest_of(b"x"), "size": 1}
    registry.faults.manifest_body = manifest_with([layer] * 2000)
    refused(store, registry, RegistryError, "at most 1024")


def test_declared_size_beyond_the_free_disk(store: Store, registry: FakeRegistry) -> None:
    registry.faults.manifest_body = manifest_with([{"mediaType": MODEL_TYPE, "digest": digest_of(b"y"), "size": 10**16}])
    refused(store, registry, StoreFull, "needs 1000000000000000")
    assert registry.requests("GET", "/blobs/") == []


def test_endless_redirects(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.redirect_loop = True
    refused(store, registry, RegistryError, "more than 10 redirects")
    assert len(registry.requests("GET", "/blobs/")) <= 11 * 2  # bounded (blob and config)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/"])
def test_redirect_to_another_scheme(store: Store, registry: FakeRegistry, target: str) -> None:
    model(registry)
    registry.faults.redirect_to = target
    refused(store, registry, RegistryError, "refused a redirect to")


def test_401_whose_realm_is_on_another_host(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.auth = True
    registry.faults.realm = f"http://localhost:{registry.port}/token"  # same server, another host name
    refused(store, registry, RegistryError, "realm is on another host")
    assert registry.requests("GET", "/token") == []


def test_401_without_a_challenge_that_can_be_answered(store: Store, registry: FakeRegistry) -> None:
    model(registry)
    registry.faults.auth = True
    registry.faults.realm = "file:///etc/passwd"
    refused(store, registry, RegistryError, "refused the token realm")


def test_a_refused_part_stops_the_others_at_once(store: Store, registry: FakeRegistry) -> None:
    model(registry, size=200_000)
    registry.faults.forbid_from, registry.faults.hang_from = 0, 100_000  # one part refused, one hanging
    started = time.monotonic()
    with pytest.raises(RegistryError, match="403"):
        pull_model(store, f"{registry.host}/library/bad", insecure=True, stall_s=30, backoff_s=0.01, min_part=100_000)
    assert time.monotonic() - started < 10  # the hanging part was closed, not waited out
    assert leftovers(store) == []
