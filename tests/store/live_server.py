"""A real ``kettle serve`` on 127.0.0.1 over a store of the test's own, started and stopped by a test.

For the store's server-facing tests (uploads, create, blob checks) that need
a server with particular settings or limits, not the shared session server
of ``tests/server``. Nothing is pulled or loaded unless a test asks for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
POLL_S = 0.05


@dataclass(frozen=True)
class LiveServer:
    url: str
    store: Path
    log: Path
    proc: subprocess.Popen

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(store: Path, *, env: dict[str, str] | None = None, prelude: str = "") -> Iterator[LiveServer]:
    """``kettle serve`` on a free port over ``store``; ``prelude`` is Python run in the server
    process first (e.g. a resource limit)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KETTLE_", "OLLAMA_"))}
    full_env.update(env or {}, KETTLE_MODELS=str(store), PYTHONPATH=str(REPO))
    log = store.parent / f"serve-{port}.log"
    code = f"{prelude}\nfrom kettle.server import serve\nserve('127.0.0.1', {port})\n"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], env=full_env, stdout=out, stderr=out, cwd=REPO)
    server = LiveServer(f"http://127.0.0.1:{port}", store, log, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(server.url + "/api/version", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kettle serve did not start:\n{server.logs()}")
            time.sleep(POLL_S)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def blob_files(store: Path) -> list[str]:
    """Every file in the store's blobs directory (blobs and temporary files alike)."""
    blobs = store / "blobs"
    return sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []
