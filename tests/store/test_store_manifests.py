"""Manifests: ollama's layout and format, list/copy/remove, pruning, case, cleanup."""

from __future__ import annotations

import json
import os

import pytest

from kettle.errors import ModelNotFound, StoreError
from kettle.store import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Layer, Manifest, MediaType, Store, parse_name

from .conftest import assert_consistent, digest_of, small_model


def test_manifest_is_written_in_ollama_s_layout_and_format(store: Store) -> None:
    manifest = small_model(store)
    digest = store.write_manifest("smollm2:135m", manifest)
    path = store.root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    data = path.read_bytes()
    assert digest == digest_of(data).removeprefix("sha256:")
    obj = json.loads(data)
    assert obj["schemaVersion"] == 2 and obj["mediaType"] == MANIFEST_MEDIA_TYPE
    assert obj["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in obj["layers"]] == [MediaType.MODEL, MediaType.PARAMS]
    for item in [obj["config"], *obj["layers"]]:
        assert set(item) == {"mediaType", "digest", "size"}
        assert (store.root / "blobs" / item["digest"].replace(":", "-")).stat().st_size == item["size"]
    assert store.read_manifest("smollm2:135m") == manifest
    assert Manifest.from_bytes(data) == manifest


def test_manifest_needs_every_blob_complete(store: Store, layer_of) -> None:
    manifest = small_model(store)
    missing = Manifest(manifest.config, (*manifest.layers, layer_of(MediaType.SYSTEM, b"never stored")))
    with pytest.raises(StoreError, match="is missing"):
        store.write_manifest("m", missing)
    wrong_size = Manifest(manifest.config, (Layer(MediaType.MODEL, manifest.layers[0].digest, 1),))
    with pytest.raises(StoreError, match="the manifest says 1"):
        store.write_manifest("m", wrong_size)
    assert not store.exists("m") and list((store.root / "manifests").rglob("*")) == []


@pytest.mark.parametrize("name", ["../x", "", "a/b/c/d", "model:", "x" * 81])
def test_invalid_names_write_nothing(store: Store, name: str) -> None:
    manifest = small_model(store)
    with pytest.raises(StoreError, match="invalid model name"):
        store.write_manifest(name, manifest)
    with pytest.raises(StoreError, match="invalid model name"):
        store.resolve(name)
    assert list((store.root / "manifests").iterdir()) == []
    assert not (store.root.parent / "x").exists()


def test_missing_model_is_model_not_found(store: Store) -> None:
    with pytest.raises(ModelNotFound, match="model 'nothere' not found"):
        store.resolve("nothere")
    with pytest.raises(ModelNotFound):
        store.remove("nothere")
    with pytest.raises(ModelNotFound):
        store.copy("nothere", "b")


def test_list_copy_remove_and_prune_shared_blobs(store: Store) -> None:
    shared = small_model(store, system="shared")
    other = small_model(store, weights=b"other weights")
    store.write_manifest("a", shared)
    store.write_manifest("me/b:1", other)
    store.copy("a", "c:v2")
    names = {e.name.display(): e for e in store.list_models()}
    assert set(names) == {"a:latest", "me/b:1", "c:v2"}
    assert names["a:latest"].digest == names["c:v2"].digest  # same manifest bytes
    assert names["a:latest"].size == shared.size()
    assert names["a:latest"].details.family == "llama"
    assert names["a:latest"].modified_at.tzinfo is not None

    report = store.remove("a")  # c still uses every blob of a
    assert report.blobs == () and not store.exists("a")
    assert_consistent(store)
    report = store.remove("c:v2")  # now a's model and system blobs are unused; params/config are b's too
    assert set(report.blobs) == {shared.layers[0].digest, shared.layers[2].digest}
    assert_consistent(store)
    store.remove("me/b:1")
    assert list((store.root / "blobs").iterdir()) == []
    assert list((store.root / "manifests").iterdir()) == []  # empty directories go too


def test_names_are_case_insensitive(store: Store) -> None:
    store.write_manifest("Mario:Latest", small_model(store))
    assert store.exists("mario") and store.resolve("MARIO").name.model == "Mario"
    store.write_manifest("mario", small_model(store, system="replaced"))  # replaces, no second entry
    assert [e.name.display() for e in store.list_models()] == ["Mario:Latest"]
    assert store.resolve("mario").system == "replaced"


def test_resolve_reads_the_layers(store: Store) -> None:
    store.write_manifest("m", small_model(store, weights=b"W", system="be brief"))
    model = store.resolve("m")
    assert model.model_path.read_bytes() == b"W"
    assert model.params == {"temperature": 0.5}
    assert model.system == "be brief" and model.template is None
    assert model.details.family == "llama"


def test_unreadable_manifest_stops_blob_pruning(store: Store) -> None:
    manifest = small_model(store)
    store.write_manifest("good", manifest)
    bad = store.root / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    orphan = store.add_blob_bytes(b"orphan")
    with pytest.raises(StoreError, match="not valid JSON"):
        store.resolve("bad")
    assert [e.name.model for e in store.list_models()] == ["good"]
    assert store.cleanup().blobs == () and store.has_blob(orphan)  # bad may use it: keep
    store.remove("bad")  # a broken manifest can still be removed
    assert store.cleanup().blobs == (orphan,)


def test_cleanup_removes_our_leftovers_only(store: Store) -> None:
    store.write_manifest("keep", small_model(store))
    orphan = store.add_blob_bytes(b"orphan")
    tmp_blob = store.temp_path()
    tmp_blob.write_bytes(b"half")
    tmp_manifest = store.root / "manifests" / "registry.ollama.ai" / "library" / "keep" / ".kettle-tmp-x"
    tmp_manifest.write_bytes(b"{")
    foreign = store.root / "blobs" / ("sha256-" + "0" * 64 + "-partial")  # an ollama download in progress
    foreign.write_bytes(b"ollama's")
    report = Store(store.root, cleanup=False).cleanup()
    assert report.temp_files == 2 and report.blobs == (orphan,)
    assert foreign.exists() and not tmp_blob.exists() and not tmp_manifest.exists()
    assert store.exists("keep")
    foreign.unlink()
    assert_consistent(store)


def test_cleanup_is_skipped_while_someone_writes(store: Store) -> None:
    orphan = store.add_blob_bytes(b"about to be used")
    with store.writing():
        assert store.cleanup().skipped
        assert store.prune([orphan]).skipped
    assert store.has_blob(orphan)
    assert store.cleanup().blobs == (orphan,)


def test_store_defaults_to_kettle_models(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KETTLE_MODELS", str(tmp_path / "env-store"))
    assert Store().root == tmp_path / "env-store"
    assert (tmp_path / "env-store" / "blobs").is_dir()


def test_manifest_reader_is_bounded_and_strict() -> None:
    good = {"schemaVersion": 2, "config": {"mediaType": "c", "digest": "sha256:" + "a" * 64, "size": 1}, "layers": []}
    assert Manifest.from_bytes(json.dumps(good).encode()).layers == ()
    bad_cases = [
        {**good, "schemaVersion": 1},
        {**good, "layers": {}},
        {**good, "config": {"mediaType": "c", "digest": "sha256:../x", "size": 1}},
        {**good, "config": {"mediaType": "c", "digest": "sha256:" + "a" * 64, "size": -1}},
        {**good, "config": {"mediaType": "c", "digest": "sha256:" + "a" * 64, "size": True}},
        {**good, "layers": [{"digest": "sha256:" + "a" * 64, "size": 1}]},
        {**good, "layers": [{"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 1}] * 1025},
        [],
    ]
    for case in bad_cases:
        with pytest.raises(StoreError):
            Manifest.from_bytes(json.dumps(case).encode())
    with pytest.raises(StoreError, match="larger than"):
        Manifest.from_bytes(b" " * (1 << 20) + b"{}")


def test_walk_ignores_junk_in_the_manifest_tree(store: Store) -> None:
    store.write_manifest("ok", small_model(store))
    junk = store.root / "manifests" / "registry.ollama.ai" / "library" / "ok" / "bad tag"
    junk.write_bytes(b"{}")
    os.symlink("/etc/passwd", store.root / "manifests" / "registry.ollama.ai" / "library" / "ok" / "link")
    assert [e.name.display() for e in store.list_models()] == ["ok:latest"]
    assert parse_name("ok:link").is_valid() and not store.exists("ok:link")  # symlinks are not manifests
