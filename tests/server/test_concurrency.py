"""Many clients at once against the real server: continuous batching gives each client
the text it gets alone; a client that goes away frees its slot; past the queue limit
requests get 503 at once; the server keeps answering afterwards.

The server has 4 slots and a queue of 8 (conftest.SERVER_ENV).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server.conftest import GREEDY, MODEL, SERVER_ENV, Server

pytestmark = pytest.mark.slow

SLOTS = int(SERVER_ENV["KETTLE_NUM_PARALLEL"])
QUEUE = int(SERVER_ENV["KETTLE_MAX_QUEUE"])
PROMPTS = [
    "Name a fruit.", "What is 3 times 3?", "Say hello in French.", "Name a large animal.",
    "What colour is grass?", "Name a planet.", "What do bees make?", "Name a musical instrument.",
]
LONG = {**GREEDY, "num_predict": 100000}


def stream_text(server: Server, prompt: str, n: int) -> str:
    body = {"model": MODEL, "prompt": prompt, "options": {**GREEDY, "num_predict": n}}
    text = []
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            obj = json.loads(line)
            assert "error" not in obj, obj
            text.append(obj["response"])
    return "".join(text)


def test_eight_streaming_clients_each_get_their_text_alone(server: Server) -> None:
    n = 16
    alone = [stream_text(server, p, n) for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: stream_text(server, p, n), PROMPTS))
    assert all(alone)
    assert together == alone


def open_stream(client: httpx.Client, prompt: str) -> httpx.Response:
    request = client.build_request("POST", "/api/generate", json={"model": MODEL, "prompt": prompt, "options": LONG})
    return client.send(request, stream=True)


def test_disconnected_clients_free_their_slots(server: Server) -> None:
    clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(SLOTS)]
    try:
        streams = [open_stream(c, f"Count to a million, number {i}.") for i, c in enumerate(clients)]
        for s in streams:  # all slots are generating
            assert s.status_code == 200 and json.loads(next(s.iter_lines()))["done"] is False
    finally:
        for c in clients:
            c.close()  # vanish without reading the rest
    started = time.monotonic()
    with server.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                          "options": {**GREEDY, "num_predict": 4}}, timeout=30)
    assert r.status_code == 200 and r.json()["done"]
    assert time.monotonic() - started < 20  # it did not wait for 100000-token generations


def test_past_the_queue_limit_requests_get_503_at_once(server: Server) -> None:
    """A generation may end early (end of text) and free a slot for a queued one, so more
    requests are sent until the first 503; at least slots + queue must get in before it."""
    clients: list[httpx.Client] = []

    def send(path: str, body: dict) -> httpx.Response:
        clients.append(httpx.Client(base_url=server.url, timeout=60))
        return clients[-1].send(clients[-1].build_request("POST", path, json=body), stream=True)

    try:
        running = [send("/api/generate", {"model": MODEL, "prompt": f"Tell a long story, part {i}.", "options": LONG})
                   for i in range(SLOTS)]
        lines = [r.iter_lines() for r in running]  # kept: a dropped iterator closes its response
        for line in lines:
            assert json.loads(next(line))["done"] is False  # in a slot
        accepted, busy = SLOTS, None
        for i in range(QUEUE + SLOTS):
            started = time.monotonic()
            r = send("/api/generate", {"model": MODEL, "prompt": f"Another story, part {i}.", "options": LONG})
            if r.status_code == 503:
                busy = r
                break
            assert r.status_code == 200
            accepted += 1
        assert busy is not None and accepted >= SLOTS + QUEUE
        assert time.monotonic() - started < 5  # refused at once, not queued
        assert "busy" in json.loads(busy.read())["error"]
        busy_openai = send("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
        assert busy_openai.status_code == 503
        assert json.loads(busy_openai.read())["error"]["type"] == "server_busy"
    finally:
        for c in clients:
            c.close()
    with server.client() as c:
        r = c.post("/api/chat", json={"model": MODEL, "stream": False, "options": {**GREEDY, "num_predict": 4},
                                      "messages": [{"role": "user", "content": "Still there?"}]}, timeout=60)
    assert r.status_code == 200 and r.json()["message"]["content"]
