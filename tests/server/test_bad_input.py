"""Bad input against the real server: each gets the right status and a clear message,
no reply shows a path or a stack trace, and the server keeps serving.

Limits of the test server (conftest.SERVER_ENV): 1 MiB bodies, 200k-character
prompts, 512 connections.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server.conftest import GREEDY, MODEL, Server

pytestmark = pytest.mark.slow

TINY = {**GREEDY, "num_predict": 2}


def assert_clean(r: httpx.Response, server: Server) -> None:
    text = r.text
    assert "Traceback" not in text and str(server.store) not in text and "/tmp/" not in text, text


def post(server: Server, path: str, body: object = None, *, content: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    with server.client() as c:
        if content is not None:
            r = c.post(path, content=content, headers=headers)
        else:
            r = c.post(path, json=body, headers=headers)
    assert_clean(r, server)
    return r


@pytest.mark.parametrize("content, message", [
    (b"", "missing request body"),
    (b"{", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"text"', "expected a JSON object"),
    (b'{"model": "smollm2", "options": {"temperature": NaN}}', "NaN is not a JSON number"),
    (b'{"model": "smollm2", "prompt": "\xff\xfe"}', "not UTF-8"),
    (b'{"model": "smollm2", "prompt": "\\ud800"}', "surrogate"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper"),
])
def test_malformed_bodies(server: Server, content: bytes, message: str) -> None:
    r = post(server, "/api/generate", content=content)
    assert r.status_code == 400 and message in r.json()["error"]


@pytest.mark.parametrize("body, needle", [
    ({"prompt": "hi"}, "model is required"),
    ({"model": 5, "prompt": "hi"}, "'model'"),
    ({"model": MODEL, "prompt": 5}, "'prompt'"),
    ({"model": MODEL, "prompt": "hi", "stream": "yes"}, "'stream'"),
    ({"model": MODEL, "prompt": "hi", "options": [1]}, "'options'"),
    ({"model": MODEL, "prompt": "hi", "context": ["a"]}, "'context'"),
    ({"model": MODEL, "prompt": "hi", "keep_alive": "soon"}, "keep_alive"),
    ({"model": MODEL, "prompt": "hi", "format": 3}, "'format'"),
    ({"model": MODEL, "prompt": "hi", "format": {"type": "nonsense"}}, "format"),
    ({"model": MODEL, "prompt": "hi", "options": {"temprature": 0.5}}, "did you mean 'temperature'"),
    ({"model": MODEL, "prompt": "hi", "options": {"temperature": "hot"}}, "temperature"),
    ({"model": MODEL, "prompt": "hi", "options": {"top_p": 1.5}}, "top_p"),
    ({"model": MODEL, "prompt": "hi", "options": {"top_p": -0.1}}, "top_p"),
    ({"model": MODEL, "prompt": "hi", "options": {"num_predict": -5}}, "num_predict"),
    ({"model": MODEL, "prompt": "hi", "options": {"num_ctx": -1}}, "num_ctx"),
    ({"model": MODEL, "prompt": "hi", "options": {"seed": 1.5}}, "seed"),
    ({"model": MODEL, "prompt": "hi", "context": [10**9]}, "context"),
    ({"model": MODEL, "prompt": "hi", "think": True}, "thinking"),
])
def test_wrong_types_and_absurd_values(server: Server, body: dict, needle: str) -> None:
    r = post(server, "/api/generate", body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_template_override_and_suffix(server: Server) -> None:
    r = post(server, "/api/generate", {"model": MODEL, "prompt": "1, 2, 3,", "template": "{{ .Prompt }}",
                                       "stream": False, "options": TINY})
    assert r.status_code == 200 and r.json()["response"]
    r = post(server, "/api/generate", {"model": MODEL, "prompt": "def f(", "suffix": "return x", "options": TINY})
    assert r.status_code == 400 and "does not support insert" in r.json()["error"]
    r = post(server, "/api/generate", {"model": MODEL, "prompt": "x", "template": "{{ .Prompt", "options": TINY})
    assert r.status_code == 400


def test_chat_field_checks(server: Server) -> None:
    for messages in ("hi", [1], [{"content": "no role"}], [{"role": "user", "content": 3}]):
        r = post(server, "/api/chat", {"model": MODEL, "messages": messages})
        assert r.status_code == 400, (messages, r.text)


def test_null_fields_mean_unset_and_unknown_fields_are_ignored(server: Server) -> None:
    """What langchain_community sends: nulls everywhere."""
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "images": [], "format": None, "system": None,
            "template": None, "keep_alive": None, "raw": None, "context": None, "suffix": None,
            "options": {**TINY, "mirostat": None, "num_ctx": None, "top_k": None, "stop": None, "tfs_z": None},
            "some_future_field": {"x": 1}}
    r = post(server, "/api/generate", body)
    assert r.status_code == 200 and r.json()["done"], r.text


def test_huge_values_are_bounded(server: Server) -> None:
    with server.client() as c:
        with c.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Go on forever.",
                                                    "options": {**GREEDY, "num_predict": 10**12}}) as r:
            assert r.status_code == 200 and not json.loads(next(r.iter_lines()))["done"]
        # num_ctx far past the model's trained 8192 is capped, not allocated
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                          "options": {**TINY, "num_ctx": 10**9}})
        assert r.status_code == 200, r.text
        assert c.get("/api/ps").json()["models"][0]["context_length"] == 8192
        assert c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                             "options": TINY}).status_code == 200


def test_prompt_longer_than_the_context(server: Server) -> None:
    small = {**TINY, "num_ctx": 256}  # a small window keeps the prefill of the truncated chat short
    r = post(server, "/api/generate", {"model": MODEL, "prompt": "word " * 400, "options": small})
    assert r.status_code == 400 and "context window holds 256" in r.json()["error"]
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"old turn {i} " * 20} for i in range(10)]
    messages = [{"role": "system", "content": "Be brief."}, *history, {"role": "user", "content": "What is 1+1?"}]
    r = post(server, "/api/chat", {"model": MODEL, "messages": messages, "stream": False, "options": small})
    assert r.status_code == 200, r.text  # oldest turns dropped; system and newest kept
    assert 0 < r.json()["prompt_eval_count"] < 256
    r = post(server, "/api/chat", {"model": MODEL, "messages": messages, "truncate": False, "options": small})
    assert r.status_code == 400 and "context window" in r.json()["error"]


def test_limits_on_body_and_prompt(server: Server) -> None:
    r = post(server, "/api/generate", content=b'{"model": "x", "prompt": "' + b"a" * (2 << 20) + b'"}')
    assert r.status_code == 413 and "KETTLE_MAX_BODY" in r.json()["error"]

    def chunks():
        yield b'{"model": "x", "prompt": "'
        for _ in range(40):
            yield b"a" * 65536  # no Content-Length: the limit applies while streaming
        yield b'"}'

    with server.client() as c:
        r = c.post("/api/generate", content=chunks())
    assert r.status_code == 413
    r = post(server, "/api/generate", {"model": MODEL, "prompt": "a" * 200001})
    assert r.status_code == 413 and "KETTLE_MAX_PROMPT" in r.json()["error"]


def test_unknown_and_invalid_models(server: Server) -> None:
    r = post(server, "/api/generate", {"model": "no-such-model", "prompt": "hi"})
    assert r.status_code == 404 and r.json()["error"] == "model 'no-such-model' not found"
    r = post(server, "/api/chat", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404
    for name in ("../../etc/passwd", "a:b:c", "/abs", "x" * 500):
        r = post(server, "/api/show", {"model": name})
        assert r.status_code == 400 and "invalid model name" in r.json()["error"], (name, r.text)
    r = post(server, "/api/create", {"model": "evil", "from": "/etc/passwd"})
    assert r.status_code == 400
    r = post(server, "/api/create", {"model": "evil", "modelfile": "FROM ../../../../etc/passwd"})
    assert r.status_code == 400


@pytest.mark.parametrize("digest", [
    "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha256:" + "g" * 64, "md5:" + "0" * 32,
    "sha256:..%2F..%2Fetc%2Fpasswd", "..%2F..%2Fmanifests",
])
def test_bad_digests(server: Server, digest: str) -> None:
    with server.client() as c:
        head = c.head(f"/api/blobs/{digest}")
        up = c.post(f"/api/blobs/{digest}", content=b"data")
    assert head.status_code in (400, 404) and up.status_code in (400, 404), (head.status_code, up.text)
    if up.status_code == 400:
        assert "digest" in up.json()["error"]


def test_blob_upload_checks_the_digest(server: Server) -> None:
    with server.client() as c:
        missing = "sha256:" + "ab" * 32
        assert c.head(f"/api/blobs/{missing}").status_code == 404
        r = c.post(f"/api/blobs/{missing}", content=b"not matching")
        assert r.status_code == 400 and "mismatch" in r.json()["error"]
        assert c.head(f"/api/blobs/{missing}").status_code == 404


def test_foreign_host_and_origin(server: Server) -> None:
    with server.client() as c:
        assert c.get("/api/version", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/api/version", headers={"Host": f"localhost:{server.port}"}).status_code == 200
        assert c.get("/api/version", headers={"Host": f"[::1]:{server.port}"}).status_code == 200
        r = c.post("/api/delete", json={"model": MODEL}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and c.get("/api/tags").json()["models"]  # nothing was deleted
        ok = c.get("/api/tags", headers={"Origin": "http://localhost:3000"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert c.get("/api/tags", headers={"Origin": "chrome-extension://abc"}).status_code == 200  # KETTLE_ORIGINS
        pre = c.options("/api/chat", headers={"Origin": "app://desk", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]


def test_slow_and_vanishing_clients_do_not_block_others(server: Server) -> None:
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{\"mod")
    vanish = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"model": MODEL, "prompt": "Talk a lot.", "options": {**GREEDY, "num_predict": 5000}}).encode()
    vanish.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    vanish.recv(64)
    vanish.close()
    try:
        r = post(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False, "options": TINY})
        assert r.status_code == 200
    finally:
        slow.close()


def test_a_stalled_body_gets_408_and_frees_the_connection(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{\"mod")
        started = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            part = s.recv(4096)
            if not part:
                break
            reply += part
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"KETTLE_READ_TIMEOUT" in reply and 2.5 < waited < 20
    assert post(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False, "options": TINY}).status_code == 200


def test_a_thousand_simultaneous_connections(server: Server) -> None:
    def knock(_: int) -> int:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
            s.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return int(head.split()[1])

    started = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(knock, range(1000)))
    assert set(statuses) <= {200, 503} and statuses.count(200) > 0
    assert time.monotonic() - started < 60
    r = post(server, "/api/chat", {"model": MODEL, "stream": False, "options": TINY,
                                   "messages": [{"role": "user", "content": "Still fine?"}]})
    assert r.status_code == 200


def test_openai_errors_have_openai_shape(server: Server) -> None:
    r = post(server, "/v1/chat/completions", {"model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                              "temperature": "hot"})
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = post(server, "/v1/embeddings", {"model": "no-such-model", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
