"""Where the CLI's work happens: a kettle server over HTTP, or this process.

``connect()`` asks ``KETTLE_HOST`` once, with a short timeout, whether a server
answers ``GET /`` ("Ollama is running", as ollama's health check reads). If
one does, every command goes to it over HTTP, as ollama's CLI does
(``HttpBackend``); if none does, the same work runs in-process on the store
and ``kettle.load`` (``LocalBackend``), so ``kettle run`` works on a fresh
machine without a server.

Both backends speak ollama's JSON shapes, so the commands and the REPL do not
know which one they use: requests are ``/api/...`` bodies (dicts), streamed
answers are iterators of the NDJSON objects ``/api/chat`` and ``/api/generate``
send, ``pull`` and ``create`` pass each status object of ``/api/pull`` and
``/api/create`` to a ``report`` callback, ``show`` returns ``/api/show``'s
object, ``list``/``ps`` the ``models`` arrays of ``/api/tags``/``/api/ps``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kettle import config
from kettle.errors import KettleError

if TYPE_CHECKING:
    from kettle.modelfile import Modelfile

# Receives each progress object ({"status", "digest"?, "total"?, "completed"?}).
Report = Callable[[dict[str, Any]], None]

PROBE_TIMEOUT_S = 0.5  # a local server answers in milliseconds; a missing one refuses at once
HEALTH_TEXT = "is running"  # "Ollama is running": the body of GET /


class ServerError(KettleError):
    """A server answered with an error (``{"error": ...}``); ``status`` is the HTTP code.

    A mid-stream error line keeps the stream's status (200), as ollama sends it.
    """

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class NoServer(KettleError):
    """The command needs a running server (``ps``, ``stop``) and none answers."""

    def __init__(self, address: str, what: str) -> None:
        super().__init__(f"no kettle server is running at {address}, {what} (start one with `kettle serve`)")


class Generation(Protocol):
    """A streamed answer: ollama chunk objects, the last with ``"done": true`` and the stats.

    ``interrupt()`` is called from a SIGINT handler; afterwards the stream ends
    soon (the local engine finishes with ``done_reason`` "cancel"; an HTTP
    stream raises KeyboardInterrupt, which the caller turns into ``close()``).
    """

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """The operations the CLI needs; each named after the ollama route it mirrors."""

    address: str  # where the work happens, for messages ("http://127.0.0.1:11434" or "this process")
    remote: bool  # True over HTTP

    def version(self) -> str: ...

    def list(self) -> list[dict[str, Any]]: ...

    def ps(self) -> list[dict[str, Any]]: ...

    def show(self, model: str) -> dict[str, Any]: ...

    def exists(self, model: str) -> bool: ...

    def pull(self, model: str, report: Report, *, insecure: bool = False) -> None: ...

    def push(self, model: str, report: Report, *, insecure: bool = False) -> None: ...

    def create(self, model: str, modelfile: Modelfile, base_dir: Path, report: Report,
               quantize: str | None = None) -> None: ...

    def copy(self, source: str, destination: str) -> None: ...

    def delete(self, model: str) -> None: ...

    def stop(self, model: str) -> None: ...

    def load(self, model: str, options: dict[str, Any] | None = None) -> None: ...

    def chat(self, request: dict[str, Any]) -> Generation: ...

    def generate(self, request: dict[str, Any]) -> Generation: ...

    def embed(self, model: str, inputs: list[str]) -> list[list[float]]: ...

    def close(self) -> None: ...


def server_url() -> str:
    """``KETTLE_HOST`` as a base URL (``http://127.0.0.1:11434``)."""
    raw = config.get("KETTLE_HOST").strip()
    scheme = "https" if raw.startswith("https://") else "http"
    host, port = config.host()
    if host in ("0.0.0.0", "::", ""):  # a bind-all address: talk to this machine
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a kettle (or ollama) server answers ``GET /`` at ``url``."""
    import httpx

    try:
        resp = httpx.get(url + "/", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and HEALTH_TEXT in resp.text


def connect(*, local: bool = False) -> Backend:
    """The server at ``KETTLE_HOST`` when one answers, else the in-process backend.

    ``local=True`` skips the probe (``KETTLE_HOST`` is still read for messages).
    """
    url = server_url()
    if not local and probe(url):
        from kettle.cli.http_backend import HttpBackend

        return HttpBackend(url)
    from kettle.cli.local_backend import LocalBackend

    return LocalBackend(url)
