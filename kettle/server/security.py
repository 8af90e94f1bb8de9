"""Safe defaults, as one ASGI middleware in front of the app.

* **Host allow-list** (against DNS rebinding: a web page whose name resolves to
  127.0.0.1 must not reach the server). While the server is bound to a loopback
  address, a request whose ``Host`` is not ``localhost``, ``*.localhost`` or a
  loopback address gets 403; so does a request with no Host, an empty one, one with
  a port but no name (``Host: :11434``, ollama#17721) or more than one Host header
  (a proxy and the app may read different ones). Binding to another address
  (``KETTLE_HOST=0.0.0.0``) opens the server on purpose, and then every Host passes,
  as in ollama.
* **CORS allow-list**: a request carrying an ``Origin`` that is not allowed gets 403
  (refusing it outright, not just withholding the CORS headers, keeps a page from
  triggering side effects with "simple" cross-site POSTs). Always allowed: http(s)
  on localhost / 127.0.0.1 / 0.0.0.0 / [::1] with any port, and the app schemes
  ``app:``, ``file:``, ``tauri:``, ``vscode-webview:``, ``vscode-file:``; more from
  ``KETTLE_ORIGINS`` (comma-separated; ``*`` matches anything, so ``*`` alone allows
  every origin and ``chrome-extension://*`` every extension). Preflight ``OPTIONS``
  requests are answered here.
* **API keys** (``api_keys``, from ``KETTLE_API_KEY``; none by default): when given,
  every path but ``OPEN_PATHS`` (``/``, ``/health``) needs ``Authorization: Bearer
  <key>`` matching one of them (constant-time comparison), else 401.
* **Body size**: a ``Content-Length`` over ``max_body`` gets 413 before the body is
  read, and a body that grows past it while streaming is cut off with 413. Paths
  in ``unlimited_paths`` (blob uploads, streamed to disk) are exempt. (``BodyTooLarge``
  is a ``RequestError``, so the app's error handler answers it.)
* **Stalled bodies**: a client that stops sending in the middle of a request body
  for ``read_timeout`` seconds gets 408 and loses its connection, so slow clients
  cannot hold connections (and their slots in ``KETTLE_MAX_CONNECTIONS``) forever.
  Once the body is complete nothing is timed (a streamed response may run long).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kettle.server.wire import RequestError

DEFAULT_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")
    for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Stainless-Lang, " \
    "X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, " \
    "X-Stainless-Runtime-Version, X-Stainless-Async, OpenAI-Beta, X-Stainless-Retry-Count, " \
    "X-Stainless-Timeout, X-Stainless-Helper-Method"


def is_loopback_host(host: str) -> bool:
    """True for a Host header value (port allowed) naming this machine's loopback; an empty
    name (``""``, ``":11434"``, ``"[]"``) is not one."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:port
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if not host:
        return False
    if host == "localhost" or (host.endswith(".localhost") and host != ".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_is_open(bind_host: str) -> bool:
    """True when the bind address is not loopback (the server was opened on purpose)."""
    return not is_loopback_host(bind_host)


def parse_origins(extra: str) -> tuple[str, ...]:
    return DEFAULT_ORIGINS + tuple(o.strip() for o in extra.split(",") if o.strip())


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    origin = origin.strip().lower()
    return any(fnmatch.fnmatchcase(origin, p.lower()) for p in patterns)


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, bind_host: str, origins: Iterable[str], max_body: int,
                 unlimited_paths: tuple[str, ...] = (), read_timeout: float = 60.0,
                 api_keys: Iterable[str] = ()) -> None:
        self.app = app
        self.api_keys = tuple(k.encode() for k in api_keys if k)
        self.read_timeout = read_timeout
        self.open = bind_is_open(bind_host)
        self.origins = tuple(origins)
        self.max_body = max_body
        self.unlimited_paths = unlimited_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.open:
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"]
            if len(hosts) != 1 or not is_loopback_host(hosts[0]):
                what = "is not this machine" if len(hosts) == 1 else "is missing" if not hosts else "is repeated"
                await _reply(send, 403, {"error": f"forbidden: the Host header {what} (DNS rebinding guard)"})
                return
        origin = headers.get("origin")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if not origin_allowed(origin, self.origins):
                await _reply(send, 403, {"error": "forbidden: origin not allowed (see KETTLE_ORIGINS)"})
                return
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await _reply(send, 204, None, cors + [
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                    (b"access-control-max-age", b"43200"),
                ])
                return
        if self.api_keys and scope["path"] not in OPEN_PATHS and not self._authorized(headers.get("authorization"), headers.get("x-api-key")):
            await _reply(send, 401, {"error": "unauthorized: send 'Authorization: Bearer <key>' with a key of "
                                              "KETTLE_API_KEY"}, cors + [(b"www-authenticate", b"Bearer")])
            return
        receive = _paced(receive, self.read_timeout)
        limited = not scope["path"].startswith(self.unlimited_paths) if self.unlimited_paths else True
        if limited:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _reply(send, 413, {"error": f"request body larger than {self.max_body} bytes (KETTLE_MAX_BODY)"},
                             cors)
                return
            receive = _limited(receive, self.max_body)

        async def send_with_cors(message: Message) -> None:
            if cors and message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + cors}
            await send(message)

        await self.app(scope, receive, send_with_cors)


    def _authorized(self, header: str | None, api_key: str | None = None) -> bool:
        """A ``Bearer`` token, or an ``x-api-key`` header (what Anthropic's clients send), equal
        to one of the keys (compared in constant time)."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            given = token.strip().encode("latin-1")
        elif api_key and api_key.strip():
            given = api_key.strip().encode("latin-1")
        else:
            return False
        return any(hmac.compare_digest(given, key) for key in self.api_keys)


# Paths that answer without an API key: the liveness checks.
OPEN_PATHS = frozenset({"/", "/health"})


class BodyTooLarge(RequestError):
    """Raised from ``receive`` when a streamed body passes the limit (the app answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes (KETTLE_MAX_BODY)", 413)


class BodyStalled(RequestError):
    """Raised from ``receive`` when a request body stops arriving (the app answers 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body stopped arriving for {seconds:g} s (KETTLE_READ_TIMEOUT)", 408)


def _paced(receive: Receive, timeout: float) -> Receive:
    """``receive``, where each part of the body must come within ``timeout`` seconds."""
    body_done = False

    async def wrapped() -> Message:
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except TimeoutError:
            raise BodyStalled(timeout) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return wrapped


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def _reply(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-length", str(len(data)).encode())] + (extra or [])
    if body is not None:
        headers.append((b"content-type", b"application/json; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
