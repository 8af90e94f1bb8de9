"""kettle to kettle: one real ``kettle serve`` is the registry; another store pulls from it (and
the pulled model answers) and pushes to it (and the server lists, shows and serves the pushed model),
all over the protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import cli_env
from tests.registry.conftest import MODEL_TYPE, weights
from tests.registry.fake_registry import FakeRegistry, Running, digest_of
from tests.store.live_server import live_server

SMOLLM2_DIGEST12 = "b179c9523d0e"


def kettle(store: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kettle", *args], env={**cli_env(store), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kettle_serve_is_a_registry_to_pull_from_and_push_to(tmp_path: Path) -> None:
    with live_server(tmp_path / "a", env={"KETTLE_REGISTRY_PUSH": "1", "KETTLE_CONTEXT_LENGTH": "512"}) as a, \
            a.client(timeout=300) as http:
        assert http.post("/api/pull", json={"model": "smollm2", "stream": False}).json() == {"status": "success"}
        host = a.url.removeprefix("http://")
        b = tmp_path / "b"

        pulled = kettle(b, "pull", f"{host}/library/smollm2", "--insecure")
        assert pulled.returncode == 0, pulled.stderr
        lines = pulled.stderr.splitlines()
        assert lines[0] == "pulling manifest" and lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        assert f"pulling {SMOLLM2_DIGEST12}... 100% 98 MB" in lines
        assert f"{host}/library/smollm2:latest" in kettle(b, "list").stdout

        # sampled with no num_predict: a 64-token window caps the answer at ten windows (ollama's rule)
        answered = kettle(b, "run", f"{host}/library/smollm2", "What is the capital of France? One word.",
                          KETTLE_CONTEXT_LENGTH="64")
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip()

        (tmp_path / "Modelfile").write_text(f"FROM {host}/library/smollm2\nSYSTEM Answer in one word.\n"
                                            "PARAMETER num_predict 8\nPARAMETER temperature 0\n")
        created = kettle(b, "create", f"{host}/team/terse", "-f", str(tmp_path / "Modelfile"))
        assert created.returncode == 0, created.stderr
        pushed = kettle(b, "push", f"{host}/team/terse", "--insecure")
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stderr.splitlines()[-2:] == ["pushing manifest", "success"]

        names = [m["name"] for m in http.get("/api/tags").json()["models"]]
        assert "team/terse:latest" in names
        assert http.post("/api/show", json={"model": "team/terse"}).json()["system"] == "Answer in one word."
        manifest = http.get("/v2/team/terse/manifests/latest").json()  # served back as it was pushed
        assert {layer["mediaType"] for layer in manifest["layers"]} >= {"application/vnd.ollama.image.model",
                                                                         "application/vnd.ollama.image.system"}


@pytest.mark.slow
def test_api_pull_streams_progress_from_a_registry(tmp_path: Path) -> None:
    running = Running(FakeRegistry())
    registry = running.registry
    data = weights(300_000)
    registry.add_model("library", "tiny", "latest", [(MODEL_TYPE, data)])
    try:
        with live_server(tmp_path / "a") as a, a.client() as http:
            name = f"{registry.host}/library/tiny"
            with http.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as resp:
                events = [json.loads(line) for line in resp.iter_lines() if line]
            assert events[0] == {"status": "pulling manifest"} and events[-1] == {"status": "success"}
            blob = [e for e in events if e.get("digest") == digest_of(data)]
            assert blob[-1] == {"status": f"pulling {digest_of(data)[7:19]}", "digest": digest_of(data),
                                "total": 300_000, "completed": 300_000}
            again = http.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
            assert again.json() == {"status": "success"}
            refused = http.post("/api/pull", json={"model": f"http://{name}", "stream": False})
            assert refused.status_code == 500 and "--insecure" in refused.json()["error"]
            missing = http.post("/api/pull", json={"model": f"{registry.host}/library/absent", "insecure": True,
                                                   "stream": False})
            assert missing.status_code == 404

            copy = f"{registry.host}/team/copy:v1"  # /api/push: the server sends its model to the registry
            assert http.post("/api/copy", json={"source": name, "destination": copy}).status_code == 200
            with http.stream("POST", "/api/push", json={"model": copy, "insecure": True}) as resp:
                pushed = [json.loads(line) for line in resp.iter_lines() if line]
            assert pushed[0] == {"status": "retrieving manifest"} and pushed[-2:] == [
                {"status": "pushing manifest"}, {"status": "success"}]
            assert registry.models[("team", "copy", "v1")] and registry.requests("HEAD", "/blobs/")
    finally:
        running.stop()
