"""Through the server, a model whose blob changed on disk is refused with the digest, not run."""

from __future__ import annotations

from pathlib import Path

from kettle.store import Store, pull_bundled

from tests.store.live_server import live_server
from tests.store.test_store_verify import flip_byte


def test_a_corrupt_model_blob_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    pull_bundled(store, "smollm2")
    model = store.resolve("smollm2")
    flip_byte(model.model_path, -100)  # in the last tensor's data: the file still parses
    body = {"model": "smollm2", "prompt": "Hi", "raw": True, "stream": False,
            "options": {"num_predict": 1, "num_ctx": 64, "temperature": 0}}
    with live_server(store.root) as server, server.client(timeout=120) as c:
        for path, payload in (("/api/generate", body), ("/api/show", {"model": "smollm2"})):
            r = c.post(path, json=payload)
            assert r.status_code == 500, (path, r.status_code, r.text[:300])
            error = r.json()["error"]
            assert model.model_digest in error and "corrupt" in error and "kettle rm smollm2" in error, error
