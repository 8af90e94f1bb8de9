"""A real ``kettle serve`` subprocess on 127.0.0.1, once per test session.

It runs on a random free port with its own temporary store (``KETTLE_MODELS``);
the bundled smollm2 is pulled into it on first use. Limits are set so the tests
can reach them quickly: 4 slots, a queue of 8, a 1 MiB body, 200k-character
prompts, 2 s to send headers, 2 s of idle keep-alive. The model is kept loaded for the whole session (``KETTLE_KEEP_ALIVE=-1``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2"
READY_LINE = "Uvicorn running on"
START_TIMEOUT = 120.0

SERVER_ENV = {
    "KETTLE_NUM_PARALLEL": "4",
    "KETTLE_MAX_QUEUE": "8",
    "KETTLE_MAX_LOADED_MODELS": "2",
    "KETTLE_KEEP_ALIVE": "-1",
    "KETTLE_CONTEXT_LENGTH": "2048",
    "KETTLE_MAX_BODY": str(1 << 20),
    "KETTLE_MAX_PROMPT": "200000",
    "KETTLE_MAX_CONNECTIONS": "512",
    "KETTLE_READ_TIMEOUT": "3",
    "KETTLE_HEADER_TIMEOUT": "2",
    "KETTLE_KEEPALIVE_TIMEOUT": "2",
    "KETTLE_ORIGINS": "chrome-extension://*",
}
GREEDY = {"temperature": 0, "seed": 1}


@dataclass
class Server:
    url: str
    port: int
    store: Path
    log: deque[str]

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)  # type: ignore[arg-type]

    def tail(self) -> str:
        return "\n".join(self.log)


def greedy_chat(server: Server, messages: list[dict], num_predict: int) -> dict:
    """``/api/chat``'s greedy answer: what the translated APIs' answers must equal."""
    with server.client() as c:
        r = c.post("/api/chat", json={"model": MODEL, "messages": messages, "stream": False,
                                      "options": {"temperature": 0, "num_predict": num_predict}})
    assert r.status_code == 200, r.text
    return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    """A ``kettle serve`` process and its output (see ``start_server``)."""

    proc: subprocess.Popen[str]
    server: Server

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(20)


def start_server(store: Path, **env_overrides: str) -> Running:
    """A real ``kettle serve`` on a free port of 127.0.0.1 with SERVER_ENV (plus overrides),
    once it logs that it is ready; fails the test if it does not start."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KETTLE_", "OLLAMA_"))}
    env.update(SERVER_ENV, KETTLE_MODELS=str(store), PYTHONPATH=str(REPO))
    env.update(env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from kettle.server import serve; serve('127.0.0.1', {port})"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    log: deque[str] = deque(maxlen=200)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip())
            if READY_LINE in line:
                ready.set()
        ready.set()  # exited: let the caller see it

    threading.Thread(target=drain, daemon=True).start()
    running = Running(proc, Server(f"http://127.0.0.1:{port}", port, store, log))
    if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
        running.stop()
        pytest.fail(f"kettle serve did not start:\n{running.server.tail()}")
    return running


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("kettle-store"))
    try:
        with running.server.client() as c:  # pull and load the model once
            r = c.post("/api/generate", json={"model": MODEL})
            assert r.status_code == 200, r.text
        yield running.server
    finally:
        running.stop()
