"""Through the server, a load larger than memory is a clear 500 in ollama's words, and a later
smaller load of the same model works (the failed one left nothing behind)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kettle.store import Store, pull_bundled

from tests.store.live_server import LiveServer, live_server

SLOTS = 1024  # KETTLE_NUM_PARALLEL: smollm2 at num_ctx 8192 then needs ~360 GiB of KV cache


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("load-memory")
    pull_bundled(Store(root / "models"), "smollm2")
    env = {"KETTLE_NUM_PARALLEL": str(SLOTS), "KETTLE_KEEP_ALIVE": "-1"}
    with live_server(root / "models", env=env) as srv:
        yield srv


def generate(server: LiveServer, num_ctx: int):
    body = {"model": "smollm2", "prompt": "The sky", "raw": True, "stream": False,
            "options": {"num_ctx": num_ctx, "num_predict": 2, "temperature": 0}}
    with server.client(timeout=120) as c:
        return c.post("/api/generate", json=body)


def test_too_big_then_small(server: LiveServer) -> None:
    for _ in range(2):  # and again: the first refusal changed nothing
        r = generate(server, 8192)
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error.startswith("model requires more system memory (") and "than is available (" in error, error
        assert "num_ctx=8192" in error and "KETTLE_NUM_PARALLEL" in error
        with server.client() as c:
            assert c.get("/api/ps").json()["models"] == []
    r = generate(server, 16)
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True and r.json()["eval_count"] >= 1
