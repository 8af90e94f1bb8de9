"""Hostile and careless clients against the real server (issue 14): slow and idle
connections, oversized headers, Host tricks, wrongly typed fields, absurd numbers,
and a shutdown in the middle of streams.

The test server (conftest.SERVER_ENV) gives 2 s to send headers and keeps idle
connections 2 s; its other limits: 512 connections, 1 MiB bodies.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import GREEDY, MODEL, REPO, SERVER_ENV, Server, free_port, start_server

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = float(SERVER_ENV["KETTLE_HEADER_TIMEOUT"])
KEEPALIVE = float(SERVER_ENV["KETTLE_KEEPALIVE_TIMEOUT"])
MAX_CONNECTIONS = int(SERVER_ENV["KETTLE_MAX_CONNECTIONS"])
TINY = {**GREEDY, "num_predict": 2}
USER = [{"role": "user", "content": "Hi"}]


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit`` seconds pass), and when."""
    started = time.monotonic()
    data = b""
    while (left := limit - (time.monotonic() - started)) > 0:
        s.settimeout(left)
        try:
            part = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    return data, time.monotonic() - started


def exchange(server: Server, raw: bytes) -> bytes:
    """One raw request on a new connection (which it asks to close); the whole reply."""
    with connect(server) as s:
        s.sendall(raw)
        return read_until_closed(s, 30)[0]


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def a_request_works(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/chat", json={"model": MODEL, "messages": USER, "stream": False,
                                                   "options": TINY}, timeout=120)
    assert r.status_code == 200, r.text


# -- slow and idle connections ---------------------------------------------------------------

def test_headers_sent_a_byte_at_a_time_are_cut_off(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        reply = b""
        for byte in b"X-Slow: " + b"a" * 100:  # one byte every 0.25 s: 27 s in all, were it allowed
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            ready, _, _ = select.select([s], [], [], 0.25)
            if ready:
                reply = read_until_closed(s, 5)[0]
                break
        waited = time.monotonic() - started
    assert status(reply) == 408 and b"KETTLE_HEADER_TIMEOUT" in reply, reply
    assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 4


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as s:
        reply, waited = read_until_closed(s, 20)
    assert reply == b"" and HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 4


def test_an_idle_kept_alive_connection_is_closed(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"}" not in head:
            head += s.recv(4096)
        assert status(head) == 200
        rest, waited = read_until_closed(s, 20)
    assert rest == b"" and KEEPALIVE - 0.5 < waited < KEEPALIVE + 4


def test_idle_connections_do_not_starve_real_requests(server: Server) -> None:
    idle = [connect(server) for _ in range(MAX_CONNECTIONS + 88)]  # more than the server serves at once
    try:
        deadline = time.monotonic() + HEADER_TIMEOUT + 15
        for s in idle:
            reply, _ = read_until_closed(s, max(0.1, deadline - time.monotonic()))
            assert reply == b""
        assert time.monotonic() < deadline, "the server kept idle connections open"
        started = time.monotonic()
        a_request_works(server)
        assert time.monotonic() - started < 30
    finally:
        for s in idle:
            s.close()


# -- header size and count ---------------------------------------------------------------------

def test_huge_headers_get_431_before_they_are_read_whole(server: Server) -> None:
    big = b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70000  # no end yet
    with connect(server) as s:
        s.sendall(big)
        reply, waited = read_until_closed(s, 10)
    assert status(reply) == 431 and b"KETTLE_MAX_HEADER_BYTES" in reply, reply[:200]
    assert waited < 5


@pytest.mark.parametrize("n, expected", [(90, 200), (150, 431)])
def test_header_count_is_capped(server: Server, n: int, expected: int) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(n))
    reply = exchange(server, b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + fields + b"\r\n")
    assert status(reply) == expected, reply[:300]
    if expected == 431:
        assert b"KETTLE_MAX_HEADERS" in reply


# -- Host header -------------------------------------------------------------------------------

@pytest.mark.parametrize("host_lines, expected", [
    (b"Host: localhost\r\n", {200}),
    (b"Host: :%d\r\n", {403}),  # ollama#17721
    (b"Host: \r\n", {403}),
    (b"Host: evil.example\r\nHost: localhost\r\n", {403}),  # a repeated Host, the foreign one first
    (b"Host: localhost\r\nhost: evil.example\r\n", {403}),
])
def test_host_header_tricks_are_refused(server: Server, host_lines: bytes, expected: set[int]) -> None:
    lines = host_lines.replace(b"%d", str(server.port).encode())
    reply = exchange(server, b"GET /api/version HTTP/1.1\r\n" + lines + b"Connection: close\r\n\r\n")
    assert status(reply) in expected, reply[:300]
    if 200 not in expected:
        assert b'"version"' not in reply
    no_host = exchange(server, b"GET /api/version HTTP/1.0\r\n\r\n")
    assert status(no_host) == 403


# -- wrongly typed fields and absurd numbers --------------------------------------------------

def post(server: Server, path: str, body: object = None, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(server.url + path, content=content, timeout=120)
    return httpx.post(server.url + path, json=body, timeout=120)


BIG_INT = b"7" * 5000


@pytest.mark.parametrize("path, content", [
    ("/api/generate", b'{"model": "smollm2", "prompt": "hi", "options": {"seed": ' + BIG_INT + b"}}"),
    ("/api/chat", b'{"model": "smollm2", "messages": [], "keep_alive": ' + BIG_INT + b"}"),
    ("/api/embed", b'{"model": "smollm2", "input": "x", "dimensions": ' + BIG_INT + b"}"),
    ("/api/show", b'{"model": "smollm2", "verbose": ' + BIG_INT + b"}"),
    ("/api/create", b'{"model": "x", "parameters": {"seed": ' + BIG_INT + b"}}"),
    ("/v1/chat/completions", b'{"model": "smollm2", "messages": [], "max_tokens": -' + BIG_INT + b"}"),
    ("/v1/embeddings", b'{"model": "smollm2", "input": [' + BIG_INT + b"]}"),
])
def test_a_5000_digit_integer_is_a_400(server: Server, path: str, content: bytes) -> None:
    r = post(server, path, content=content)
    assert r.status_code == 400, r.text
    assert "integer literal of 5000 digits" in r.text


def test_keep_alive_beyond_any_clock_is_forever(server: Server) -> None:
    try:
        for ka in (1e300, 10**30, "9999999999999h"):
            r = post(server, "/api/generate", {"model": MODEL, "keep_alive": ka})
            assert r.status_code == 200, r.text
            ps = httpx.get(server.url + "/api/ps", timeout=30)
            assert ps.status_code == 200 and ps.json()["models"][0]["name"].startswith(MODEL), ps.text
        r = post(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False, "options": TINY,
                                           "keep_alive": 1e308})
        assert r.status_code == 200 and r.json()["done"]
    finally:
        post(server, "/api/generate", {"model": MODEL, "keep_alive": -1})  # the session's setting


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"messages": USER, "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {"messages": USER, "max_completion_tokens": 0}, "max_completion_tokens"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": -1}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ("/v1/chat/completions", {"messages": [*USER, {"role": "assistant", "tool_calls": "f()"}]},
     "messages[1].tool_calls"),
    ("/v1/chat/completions", {"messages": USER, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"x": "string"}}}}]},
     "tools[0].function.parameters.properties.x"),
])
def test_openai_wrong_types_are_400s_naming_the_field(server: Server, path: str, body: dict, field: str) -> None:
    r = post(server, path, {"model": MODEL, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"] and error["param"] == field


@pytest.mark.parametrize("body, field", [
    ({"messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f",
                                                                                          "arguments": "{}"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [7]}]}, "messages[1].tool_calls[0]"),
    ({"messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": 3}}]}]},
     "messages[1].tool_calls[0].function.name"),
    ({"messages": USER, "tools": [{"type": "function", "function": {"name": "f", "parameters": "none"}}]},
     "tools[0].function.parameters"),
    ({"messages": USER, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "required": "x"}}}]}, "tools[0].function.parameters.required"),
    ({"messages": USER, "tools": ["get_weather"]}, "tools[0]"),
])
def test_ollama_wrong_types_are_400s_naming_the_field(server: Server, body: dict, field: str) -> None:
    r = post(server, "/api/chat", {"model": MODEL, "stream": False, "options": TINY, **body})
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"prompt": "A name:", "format": {"type": "object", "properties": {
        "name": {"type": "string", "pattern": "[a-"}}}}),
    ("/api/chat", {"messages": USER, "format": {"type": "string", "pattern": "(unclosed"}}),
    ("/v1/chat/completions", {"messages": USER, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "pattern": "a{2,1}"}}}}),
])
def test_an_invalid_pattern_in_a_format_schema_is_a_400(server: Server, path: str, body: dict) -> None:
    r = post(server, path, {"model": MODEL, "stream": False, "options": TINY, **body})
    assert r.status_code == 400, r.text
    assert "format" in r.text and "pattern" in r.text, r.text


# -- exposure and shutdown ------------------------------------------------------------------------

def test_serve_on_a_non_loopback_address_warns(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails after the warning,
    so nothing is ever opened to the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KETTLE_", "OLLAMA_"))}
    env.update(KETTLE_HOST=f"192.0.2.1:{free_port()}", KETTLE_MODELS=str(tmp_path), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "kettle", "serve"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert "not a loopback address" in done.stderr and "KETTLE_HOST=127.0.0.1:" in done.stderr, done.stderr
    assert done.returncode != 0  # and it could not bind


def test_sigterm_ends_streams_with_a_last_chunk(server: Server) -> None:
    running = start_server(server.store)  # the session's store, with smollm2 in it
    other = running.server
    try:
        r = httpx.post(f"{other.url}/api/generate", json={"model": MODEL}, timeout=120)
        assert r.status_code == 200, r.text
        lines: list[dict] = []
        sse: list[str] = []
        started = threading.Barrier(3, timeout=120)

        def ollama_stream() -> None:
            body = {"model": MODEL, "prompt": "Count to a thousand.", "options": {**GREEDY, "num_predict": 100000}}
            with httpx.stream("POST", f"{other.url}/api/generate", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    lines.append(json.loads(line))
                    if len(lines) == 3:
                        started.wait()

        def openai_stream() -> None:
            body = {"model": MODEL, "messages": USER, "stream": True, "max_tokens": 100000, "temperature": 0}
            with httpx.stream("POST", f"{other.url}/v1/chat/completions", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    if line:
                        sse.append(line)
                        if len(sse) == 3:
                            started.wait()

        threads = [threading.Thread(target=ollama_stream), threading.Thread(target=openai_stream)]
        for t in threads:
            t.start()
        started.wait()
        sent = time.monotonic()
        running.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        running.proc.wait(30)
        exited = time.monotonic() - sent
        assert not any(t.is_alive() for t in threads), (len(lines), lines[-1:], sse[-2:], other.tail())
        last = lines[-1]
        assert last["done"] is True and last["done_reason"] == "shutdown" and last["eval_count"] > 0, last
        assert sse[-1] == "data: [DONE]"
        final = json.loads(sse[-2].removeprefix("data: "))
        assert final["choices"][0]["finish_reason"] == "stop", final
        assert exited < 15, other.tail()
        assert not [p.name for p in (server.store / "blobs").iterdir() if p.name.startswith(".kettle-tmp-")]
    finally:
        if running.proc.poll() is None:
            running.stop()
    a_request_works(server)  # the session's server, on the same store, still serves
