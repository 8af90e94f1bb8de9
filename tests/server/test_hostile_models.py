"""A crafted model file through the server: upload, create, generate.

``/api/create`` reads only a file's header, so hostile *metadata* reaches the
loader at the first request. Each case must be answered with an error naming
the key, with the server alive and its other models unchanged (before the
metadata validator, one of these crashed the server with SIGSEGV, one grew it
to 3.6 GB, and ``head_count_kv`` 3 of 4 let a request read another request's
KV cache slot).
"""

from __future__ import annotations

import hashlib

import pytest

from tests.gguf_factory import tiny_model
from tests.server.conftest import GREEDY, MODEL, Server

pytestmark = pytest.mark.slow

L = "llama."
CASES = {
    "block_count 1e9": ({}, {L + "block_count": 10**9}, L + "block_count"),
    "head_count_kv 3 of 4": ({"n_head": 4, "n_kv_head": 3}, {}, L + "attention.head_count_kv"),
    "rope wider than the head": ({}, {L + "rope.dimension_count": 4096}, L + "rope.dimension_count"),
    "head_count 0": ({}, {L + "attention.head_count": 0}, L + "attention.head_count"),
}


def _create(server: Server, name: str, path) -> None:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client() as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
        r = c.post("/api/create", json={"model": name, "files": {"model.gguf": digest}, "stream": False})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_a_hostile_model_is_refused_and_the_server_keeps_serving(server: Server, tmp_path, case: str) -> None:
    dims, meta, key = CASES[case]
    path = tiny_model(tmp_path / "evil.gguf", qtype="F32", vocab=True, meta=meta, **dims)
    name = "evil-" + case.replace(" ", "-").replace("_", "-").lower()
    _create(server, name, path)
    with server.client() as c:
        r = c.post("/api/generate", json={"model": name, "prompt": "hello", "stream": False,
                                          "options": {**GREEDY, "num_predict": 2}})
        assert r.status_code >= 400 and key in r.json()["error"], r.text
        assert str(server.store) not in r.text and "Traceback" not in r.text
        assert c.get("/api/version").status_code == 200
        ok = c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                           "options": {**GREEDY, "num_predict": 2}})
        assert ok.status_code == 200 and ok.json()["done"], ok.text
        assert c.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
