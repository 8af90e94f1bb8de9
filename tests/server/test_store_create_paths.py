"""``/api/create`` is no oracle on the server's disk (CVE-2024-39719).

A path in ``from``, in a legacy ``modelfile``'s FROM or ADAPTER, gets one
answer whether the file exists, is readable, is a real GGUF model or is
missing, and the answer does not repeat the path. Nothing is created.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modelfile.conftest import write_tiny_gguf
from tests.store.live_server import LiveServer, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("create-paths")
    with live_server(root / "models") as srv:
        yield srv


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files on the server's disk: a real GGUF model and a private text file."""
    root = tmp_path_factory.mktemp("server-disk")
    secret = root / "secret.txt"
    secret.write_text("password\n")
    return {"gguf": write_tiny_gguf(root / "real.gguf"), "secret": secret, "missing": root / "missing.gguf"}


def answers(server: LiveServer, bodies: list[dict]) -> set[tuple[int, str]]:
    out = set()
    with server.client() as c:
        for body in bodies:
            for stream in (True, False):
                r = c.post("/api/create", json={"model": "x", "stream": stream, **body})
                out.add((r.status_code, r.text))
    return out


def test_from_paths_all_get_the_same_answer(server: LiveServer, on_disk: dict[str, Path]) -> None:
    values = ["/etc/passwd", "../../../etc/passwd", "/nonexistent/passwd", "~/.bashrc", "etc/passwd", "nosuch:7b",
              str(on_disk["gguf"]), str(on_disk["secret"]), str(on_disk["missing"]), "./real.gguf", "real.gguf"]
    seen = answers(server, [{"from": v} for v in values])
    assert len(seen) == 1, seen
    status, text = seen.pop()
    assert status == 400 and "not a model file or not found" in text
    assert "/" not in text.split("POST /api/blobs/")[0] and "passwd" not in text and "real" not in text
    seen = answers(server, [{"modelfile": f"FROM {v}\n"} for v in values])
    assert len(seen) == 1 and seen.pop()[0] == 400, seen
    assert not (server.store / "manifests").exists() or not any((server.store / "manifests").rglob("*x*"))


def test_adapter_paths_all_get_the_same_answer(server: LiveServer, on_disk: dict[str, Path]) -> None:
    data = on_disk["gguf"].read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client() as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    values = ["/etc/passwd", "../../../etc/passwd", "../../../../nonexistent", str(on_disk["gguf"]),
              str(on_disk["missing"]), "real.gguf", "~/x.gguf"]
    seen = answers(server, [{"modelfile": f"FROM {digest}\nADAPTER {v}\n"} for v in values])
    assert len(seen) == 1, seen
    status, text = seen.pop()
    assert status == 400 and "ADAPTER: not a model file or not found" in text and "passwd" not in text
