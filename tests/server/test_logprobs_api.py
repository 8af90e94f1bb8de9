"""``logprobs`` / ``top_logprobs`` on ``/api/generate`` and ``/api/chat``, through the real
``ollama`` client against a real ``kettle serve``: greedy, so each chosen token is the most
probable one and its text is the answer's."""

from __future__ import annotations

import math

import ollama
import pytest

from tests.server.conftest import MODEL, Server

pytestmark = pytest.mark.slow
GREEDY = {"temperature": 0, "num_predict": 8}


def _check(entries, text: str, top: int) -> None:
    assert entries and "".join(e.token for e in entries) == text
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs or []) == top  # omitted when 0, as ollama
        if top:
            assert e.top_logprobs[0].token == e.token and math.isclose(e.top_logprobs[0].logprob, e.logprob)
            assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)


def test_generate_and_chat_return_logprobs(server: Server) -> None:
    client = ollama.Client(host=server.url)
    r = client.generate(model=MODEL, prompt="The sky is", options=GREEDY, logprobs=True, top_logprobs=3)
    _check(r.logprobs, r.response, 3)
    chunks = list(client.generate(model=MODEL, prompt="The sky is", options=GREEDY, logprobs=True, top_logprobs=3,
                                  stream=True))
    streamed = [e for c in chunks for e in (c.logprobs or [])]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in r.logprobs]
    chat = client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], options=GREEDY, logprobs=True)
    _check(chat.logprobs, chat.message.content, 0)
    plain = client.generate(model=MODEL, prompt="The sky is", options=GREEDY)
    assert plain.logprobs is None and plain.response == r.response


def test_top_logprobs_out_of_range_is_refused(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "x", "logprobs": True, "top_logprobs": 21})
        assert r.status_code == 400 and "top_logprobs" in r.json()["error"]
