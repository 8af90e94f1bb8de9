"""kettle pull against a registry the test starts on 127.0.0.1: the protocol, parts, resume, progress."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kettle.errors import ModelNotFound, RegistryError
from kettle.store import Store, parse_name
from kettle.store.pull import pull_model
from kettle.store.transfer import partial_files
from tests.registry.conftest import MODEL_TYPE, leftovers, weights
from tests.registry.fake_registry import TOKEN, FakeRegistry, digest_of

FAST = {"stall_s": 2.0, "backoff_s": 0.01}


def serve_model(registry: FakeRegistry, size: int = 200_000, tag: str = "latest") -> bytes:
    data = weights(size)
    registry.add_model("library", "tiny", tag, [(MODEL_TYPE, data), ("application/vnd.ollama.image.params", b'{"a":1}')])
    return data


def pull(store: Store, registry: FakeRegistry, name: str = "library/tiny", **kw: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    pull_model(store, f"{registry.host}/{name}", events.append, insecure=True, **{**FAST, **kw})
    return events


def test_pull_stores_blobs_and_manifest_with_ollama_statuses(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry)
    events = pull(store, registry)
    name = parse_name(f"{registry.host}/library/tiny")
    manifest = store.read_manifest(name)
    assert store.blob_path(manifest.layers[0].digest).read_bytes() == data
    raw = registry.models[("library", "tiny", "latest")]  # kept byte for byte: the same ID as the registry's
    assert store.entry(name).digest == hashlib.sha256(raw).hexdigest()
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    digest = digest_of(data)
    mine = [e for e in events if e.get("digest") == digest]
    assert mine and mine[0]["status"] == f"pulling {digest[7:19]}" and mine[-1]["completed"] == len(data)
    assert all(e["total"] == len(data) for e in mine)
    get = registry.requests("GET", "/manifests/latest")[0]
    assert get["headers"]["accept"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert not [p for p in leftovers(store) if ".kettle-partial" in p or ".kettle-tmp" in p]
    fetched = len(registry.requests("GET", "/blobs/"))
    assert fetched == 3  # the weights, the params, the config
    again = pull(store, registry)  # a second pull fetches no blob again, and reports each as complete
    assert len(registry.requests("GET", "/blobs/")) == fetched
    assert [e["completed"] for e in again if e.get("digest") == digest] == [len(data)]


def test_large_blob_comes_in_parallel_ranged_parts(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=1_000_000)
    pull(store, registry, min_part=100_000)
    ranges = sorted(r["headers"]["range"] for r in registry.requests("GET", f"/blobs/{digest_of(data)}"))
    assert len(ranges) == 10 and "bytes=0-99999" in ranges and "bytes=900000-999999" in ranges
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_parallel_parts_report_counts_in_order(store: Store, registry: FakeRegistry,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part thread reports; a slow report must not let an older count arrive after a newer one."""
    from kettle.store import transfer

    monkeypatch.setattr(transfer, "REPORT_EVERY_S", 0.0)  # every chunk reports
    data = serve_model(registry, size=1_000_000)
    seen: list[int] = []

    def report(event: dict[str, Any]) -> None:
        if event.get("digest") == digest_of(data):
            time.sleep(0.001)  # widen the window between counting and reporting
            seen.append(event["completed"])

    pull_model(store, f"{registry.host}/library/tiny", report, insecure=True, min_part=100_000, **FAST)
    assert len(seen) > 10 and seen[-1] == len(data)
    assert seen == sorted(seen), [(a, b) for a, b in itertools.pairwise(seen) if b < a][:5]


def test_missing_model_is_model_not_found(store: Store, registry: FakeRegistry) -> None:
    with pytest.raises(ModelNotFound, match="has no such model"):
        pull(store, registry, "library/absent")
    assert leftovers(store) == []


def test_plain_http_needs_insecure(store: Store, registry: FakeRegistry) -> None:
    serve_model(registry)
    with pytest.raises(RegistryError, match="--insecure"):
        pull_model(store, f"http://{registry.host}/library/tiny")
    with pytest.raises(RegistryError, match="cannot reach"):  # https to a plain-http server fails to connect
        pull_model(store, f"{registry.host}/library/tiny", stall_s=2)
    assert leftovers(store) == []


def test_bearer_token_flow(store: Store, registry: FakeRegistry) -> None:
    serve_model(registry)
    registry.faults.auth = True
    pull(store, registry)
    assert registry.requests("GET", "/token")[0]["url"].endswith("service=fake&scope=repository%3Ax%3Apull")
    blob_gets = registry.requests("GET", "/blobs/")
    assert blob_gets and all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in blob_gets)


def test_redirect_to_another_host_drops_the_token(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry)
    registry.faults.auth = True
    registry.faults.redirect_to = f"http://localhost:{registry.port}/cdn/{{digest}}"
    pull(store, registry)
    cdn = registry.requests("GET", "/cdn/")
    assert cdn and all("authorization" not in r["headers"] for r in cdn)
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_registry_that_ignores_range_still_works(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=300_000)
    registry.faults.ignore_range = True
    pull(store, registry, min_part=100_000)
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_cut_at_30_percent_resumes_in_the_same_pull(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=400_000)
    registry.faults.cut_at, registry.faults.cut_times = 0.3, 1
    pull(store, registry)
    ranges = [r["headers"]["range"] for r in registry.requests("GET", f"/blobs/{digest_of(data)}")]
    assert ranges[0] == "bytes=0-399999" and len(ranges) == 2
    assert 0 < int(ranges[1][6:].split("-")[0]) <= 120_000  # resumed from what arrived before the cut
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_cut_pull_resumes_in_the_next_pull(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=400_000)
    registry.faults.cut_at, registry.faults.cut_times = 0.3, 100  # every try is cut: the pull gives up
    with pytest.raises(RegistryError, match="run the pull again to resume"):
        pull(store, registry)
    name = parse_name(f"{registry.host}/library/tiny")
    assert not store.exists(name)
    files = partial_files(store, digest_of(data))
    assert files.data.exists() and files.state.exists()  # kept for the next pull
    kept = files.data.stat().st_size
    kept = sum(p[2] for p in json.loads(files.state.read_text())["parts"])
    assert 0 < kept <= 120_000
    registry.faults.cut_times = 0
    registry.log.clear()
    pull(Store(store.root), registry)  # a new Store, as a new process opens it
    first = registry.requests("GET", f"/blobs/{digest_of(data)}")[0]["headers"]["range"]
    assert int(first[6:].split("-")[0]) == kept
    assert store.blob_path(digest_of(data)).read_bytes() == data
    assert not files.data.exists() and not files.state.exists()


def test_trickling_server_moves_progress(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=60_000)
    registry.faults.trickle = (2_000, 0.02)
    events = pull(store, registry)
    done = [e["completed"] for e in events if e.get("digest") == digest_of(data)]
    assert len(set(done)) >= 4 and done == sorted(done) and done[-1] == len(data)


def test_stall_times_out_and_retries(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=200_000)
    registry.faults.stall_once = 5.0
    pull(store, registry, stall_s=0.5)
    gets = registry.requests("GET", f"/blobs/{digest_of(data)}")
    assert len(gets) == 2 and gets[1]["headers"]["range"] != "bytes=0-199999"
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_stall_timeout_setting(store: Store, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    data = serve_model(registry, size=100_000)
    registry.faults.stall_once = 30.0
    monkeypatch.setenv("KETTLE_STALL_TIMEOUT", "1")
    started = time.monotonic()
    pull_model(store, f"{registry.host}/library/tiny", insecure=True, backoff_s=0.01)
    assert time.monotonic() - started < 10
    assert len(registry.requests("GET", f"/blobs/{digest_of(data)}")) == 2


def test_two_pulls_of_one_model_at_once(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=300_000)
    registry.faults.trickle = (30_000, 0.01)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pull_model(Store(store.root, cleanup=False), f"{registry.host}/library/tiny", insecure=True, **FAST)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(registry.requests("GET", f"/blobs/{digest_of(data)}")) == 1  # the second waited, then found it
    assert store.blob_path(digest_of(data)).read_bytes() == data


@pytest.mark.slow
def test_kill_9_mid_pull_then_the_next_process_resumes(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=400_000)
    registry.faults.trickle = (4_000, 0.02)  # about 2 s in all
    name = f"{registry.host}/library/tiny"
    env = {**os.environ, "KETTLE_MODELS": str(store.root), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "kettle", "pull", name, "--insecure"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = partial_files(store, digest_of(data))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if files.state.exists() and sum(p[2] for p in json.loads(files.state.read_text() or "{}").get("parts", [])) > 40_000:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    kept = sum(p[2] for p in json.loads(files.state.read_text())["parts"])
    assert 40_000 <= kept < 400_000
    registry.faults.trickle = None
    registry.log.clear()
    pull_model(Store(store.root), name, insecure=True, **FAST)
    first = registry.requests("GET", f"/blobs/{digest_of(data)}")[0]["headers"]["range"]
    assert int(first[6:].split("-")[0]) == kept
    assert store.blob_path(digest_of(data)).read_bytes() == data


def test_an_empty_layer(store: Store, registry: FakeRegistry) -> None:
    registry.add_model("library", "tiny", "latest", [(MODEL_TYPE, b"w" * 1000), ("application/vnd.ollama.image.system", b"")])
    pull(store, registry)
    assert store.blob_size(digest_of(b"")) == 0
    assert not [p for p in leftovers(store) if ".kettle-partial" in p]


@pytest.mark.slow
def test_ctrl_c_ends_a_stalled_pull_at_once_and_keeps_what_arrived(store: Store, registry: FakeRegistry) -> None:
    data = serve_model(registry, size=300_000)
    registry.faults.hang_from = 0  # 100 bytes, then nothing (the stall timeout is 30 s)
    env = {**os.environ, "KETTLE_MODELS": str(store.root), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "kettle", "pull", f"{registry.host}/library/tiny", "--insecure"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    files = partial_files(store, digest_of(data))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not registry.requests("GET", "/blobs/"):
            time.sleep(0.05)
        time.sleep(0.5)  # the 100 bytes arrive, then the read blocks
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        assert time.monotonic() - interrupted < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode != 0
    assert json.loads(files.state.read_text())["parts"][0][2] == 100  # kept for the next pull
