"""KETTLE_API_KEY: a real ``kettle serve`` with two keys, the real ollama and openai clients, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from kettle.server.app import exposure_warning
from tests.server.conftest import REPO, Server, start_server

KEYS = "first-key, second-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("kettle-keyed"), KETTLE_API_KEY=KEYS)
    try:
        yield running.server
    finally:
        running.stop()


def test_every_endpoint_but_the_liveness_checks_needs_a_key(keyed: Server) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        assert c.get("/").status_code == 200 and c.get("/health").status_code == 200
        for method, path in [("GET", "/api/tags"), ("GET", "/api/version"), ("POST", "/api/generate"),
                             ("GET", "/v1/models"), ("POST", "/api/delete")]:
            r = c.request(method, path)
            assert r.status_code == 401 and "KETTLE_API_KEY" in r.json()["error"], path
            assert r.headers["www-authenticate"] == "Bearer"
        for bad in ["Bearer wrong", "first-key", "Basic first-key", "Bearer", "Bearer first-key-not"]:
            assert c.get("/api/tags", headers={"Authorization": bad}).status_code == 401, bad
        for key in ("first-key", "second-key"):
            assert c.get("/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_the_clients_pass_the_key(keyed: Server) -> None:
    assert ollama.Client(host=keyed.url, headers={"Authorization": "Bearer second-key"}).list().models == []
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=keyed.url).list()
    assert err.value.status_code == 401
    assert openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="first-key").models.list().data == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="nope").models.list()
    # the anthropic SDK sends the key as x-api-key
    with pytest.raises(anthropic.AuthenticationError) as err:
        anthropic.Anthropic(base_url=keyed.url, api_key="nope").messages.count_tokens(
            model="smollm2", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 401
    with keyed.client() as c:
        assert c.get("/api/tags", headers={"x-api-key": "second-key"}).status_code == 200
        assert c.get("/api/tags", headers={"x-api-key": ""}).status_code == 401


def test_the_cli_sends_the_first_key(keyed: Server, tmp_path: Path) -> None:
    def kettle_list(key: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KETTLE_")}
        env.update(KETTLE_HOST=keyed.url, KETTLE_MODELS=str(tmp_path), PYTHONPATH=str(REPO))
        if key is not None:
            env["KETTLE_API_KEY"] = key
        return subprocess.run([sys.executable, "-m", "kettle", "list"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)

    ok = kettle_list(KEYS)
    assert ok.returncode == 0 and ok.stdout.startswith("NAME"), ok.stderr
    refused = kettle_list(None)
    assert refused.returncode == 1 and "KETTLE_API_KEY" in refused.stderr


def test_serve_warns_on_an_open_address_only_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KETTLE_API_KEY", raising=False)
    assert exposure_warning("127.0.0.1", 11434) is None
    assert "KETTLE_API_KEY" in exposure_warning("0.0.0.0", 11434)
    monkeypatch.setenv("KETTLE_API_KEY", "k")
    assert exposure_warning("0.0.0.0", 11434) is None
