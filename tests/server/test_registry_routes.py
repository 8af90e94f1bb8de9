"""kettle serve's registry endpoints (/v2/...), through the real app and its guard, in process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kettle.server.app import create_app
from kettle.store import CONFIG_MEDIA_TYPE, Manifest, MediaType, Store

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
WEIGHTS = bytes(range(256)) * 40


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "models")
    manifest = Manifest(store.add_layer(CONFIG_MEDIA_TYPE, b'{"model_format":"gguf"}'),
                        (store.add_layer(MediaType.MODEL, WEIGHTS),))
    store.write_manifest("library/tiny", manifest)
    return store


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, bind_host="127.0.0.1"), base_url="http://127.0.0.1:11434") as c:
        yield c


def test_manifests_and_blobs_are_served(client: TestClient, store: Store) -> None:
    assert client.get("/v2/").status_code == 200
    r = client.get("/v2/library/tiny/manifests/latest")
    data = store.manifest_bytes("library/tiny")
    assert digest_of(data) == "sha256:" + store.entry("library/tiny").digest  # the ID kettle list shows
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == MANIFEST_TYPE and r.headers["docker-content-digest"] == digest_of(data)
    head = client.head("/v2/library/tiny/manifests/latest")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
    whole = client.get(f"/v2/library/tiny/blobs/{digest_of(WEIGHTS)}")
    assert whole.status_code == 200 and whole.content == WEIGHTS
    part = client.get(f"/v2/library/tiny/blobs/{digest_of(WEIGHTS)}", headers={"Range": "bytes=300-309"})
    assert part.status_code == 206 and part.content == WEIGHTS[300:310]
    assert part.headers["content-range"] == f"bytes 300-309/{len(WEIGHTS)}"


@pytest.mark.parametrize("path, status, code", [
    ("/v2/library/absent/manifests/latest", 404, "MANIFEST_UNKNOWN"),
    ("/v2/-bad/tiny/manifests/latest", 404, "NAME_INVALID"),
    ("/v2/library/tiny/manifests/.hidden", 404, "NAME_INVALID"),
    ("/v2/library/tiny/blobs/sha256:abc", 400, "DIGEST_INVALID"),
    ("/v2/library/tiny/blobs/sha512:" + "a" * 128, 400, "DIGEST_INVALID"),
    ("/v2/library/tiny/blobs/sha256:..%2F..%2Fetc%2Fpasswd", 404, None),  # no route takes a "/" in a part
    ("/v2/library/tiny/blobs/..%2F..%2Fmanifests", 404, None),
    ("/v2/library/tiny/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
])
def test_nothing_outside_the_store_can_be_named(client: TestClient, path: str, status: int, code: str | None) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["errors"][0]["code"] == code, r.text


def test_a_corrupt_blob_is_not_served(client: TestClient, store: Store) -> None:
    path = store.blob_path(digest_of(WEIGHTS))
    path.chmod(0o644)
    path.write_bytes(b"z" * len(WEIGHTS))
    assert client.get(f"/v2/library/tiny/blobs/{digest_of(WEIGHTS)}").status_code == 404


def test_the_api_host_rule_applies(client: TestClient) -> None:
    assert client.get("/v2/library/tiny/manifests/latest", headers={"Host": "evil.example"}).status_code == 403


def test_pushes_are_refused_unless_turned_on(client: TestClient) -> None:
    assert client.post("/v2/library/new/blobs/uploads/").status_code == 405
    r = client.put("/v2/library/new/manifests/latest", content=b"{}")
    assert r.status_code == 405 and "KETTLE_REGISTRY_PUSH=1" in r.json()["errors"][0]["message"]


def test_pushes_when_turned_on(client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_REGISTRY_PUSH", "1")
    blob = b"new weights" * 100
    start = client.post("/v2/library/new/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["location"]
    assert client.patch(location, content=blob[:500], headers={"Content-Range": "0-499"}).status_code == 202
    assert client.patch(location, content=blob[500:], headers={"Content-Range": "7-9"}).status_code == 416
    assert client.patch(location, content=blob[500:], headers={"Content-Range": f"500-{len(blob) - 1}"}).status_code == 202
    wrong = client.put(f"{location}?digest={digest_of(b'other')}")
    assert wrong.status_code == 400 and not store.has_blob(digest_of(b"other")) and not store.has_blob(digest_of(blob))
    assert not list((store.root / ".kettle-partial").glob("upload-*"))

    start = client.post("/v2/library/new/blobs/uploads/")
    done = client.put(f"{start.headers['location']}?digest={digest_of(blob)}", content=blob)
    assert done.status_code == 201 and store.blob_path(digest_of(blob)).read_bytes() == blob

    config = store.read_manifest("library/tiny").config
    good = Manifest(config, (store.layer_for_blob(MediaType.MODEL, digest_of(blob)),))
    missing = Manifest(config, (store.layer_for_blob(MediaType.MODEL, digest_of(blob)).__class__(
        MediaType.MODEL, digest_of(b"absent"), 6),))
    r = client.put("/v2/library/new/manifests/v1", content=missing.to_bytes())
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert client.put("/v2/library/new/manifests/v1", content=b"[" * 5000).status_code == 400
    assert client.put("/v2/library/new/manifests/v1", content=good.to_bytes()).status_code == 201
    assert store.read_manifest("library/new:v1") == good
