"""``/api/create`` with ollama's ``quantize`` field on a real ``kettle serve``: progress, llama.cpp's bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.quant.quantize_cases import make_model
from tests.quant.test_quantize_file import ORACLE
from tests.store.live_server import live_server


@pytest.mark.slow
def test_api_create_quantize(tmp_path: Path) -> None:
    data = make_model(tmp_path, "llama256_f16").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with live_server(tmp_path / "models") as server, server.client() as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
        bad = c.post("/api/create", json={"model": "m", "files": {"m.gguf": digest}, "quantize": "q9_X"})
        assert bad.status_code == 400 and "unknown quantization type" in bad.text
        r = c.post("/api/create", json={"model": "m", "files": {"m.gguf": digest}, "quantize": "q5_K_M"})
        assert r.status_code == 200, r.text
        statuses = [json.loads(line)["status"] for line in r.text.splitlines() if line.strip()]
        assert any(s.endswith("model to Q5_K_M") for s in statuses) and statuses[-1] == "success", statuses
        shown = c.post("/api/show", json={"model": "m"}).json()
        assert shown["details"]["quantization_level"].upper().startswith("Q5_K"), shown["details"]
    want = ORACLE["llama256_f16"]["Q5_K_M"]["file"]
    assert any(p.name.endswith(want) for p in (tmp_path / "models" / "blobs").iterdir())
