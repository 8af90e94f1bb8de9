"""``logprobs`` / ``top_logprobs``, ``n``, ``echo`` and ``max_tokens: 0`` on the OpenAI routes,
through the real ``openai`` SDK (which parses the logprobs into its typed objects) against a
real ``kettle serve``. Greedy unless a test says otherwise, so runs repeat exactly and each
chosen token is the most probable one."""

from __future__ import annotations

import math
import time

import httpx
import openai
import pytest

from tests.server.conftest import MODEL, Server

pytestmark = pytest.mark.slow
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
PROMPT = "Once upon a time, in a land far away, there lived"
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="kettle")


def _pairs(entries) -> list[tuple[str, float]]:
    return [(e.token, e.logprob) for e in entries]


def _same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and math.isclose(x[1], y[1], rel_tol=1e-4, abs_tol=1e-5)
                                    for x, y in zip(a, b))


def test_chat_logprobs_streamed_and_not(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=8, logprobs=True, top_logprobs=3,
                                       **GREEDY)
    choice = r.choices[0]
    assert choice.finish_reason == "length" and choice.logprobs.refusal is None
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens == 8  # one per generated token
    assert "".join(e.token for e in content) == choice.message.content
    for e in content:
        assert e.logprob <= 0 and e.bytes == list(e.token.encode()) and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].token == e.token and math.isclose(e.top_logprobs[0].logprob, e.logprob)
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
    chunks = list(client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=8, logprobs=True,
                                                 top_logprobs=3, stream=True, **GREEDY))
    streamed = [e for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert _same(_pairs(streamed), _pairs(content))
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == choice.message.content
    plain = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=8, **GREEDY)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content
    zero = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=3, logprobs=True, **GREEDY)
    assert all(e.top_logprobs == [] for e in zero.choices[0].logprobs.content)


@pytest.mark.parametrize("params, param", [
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),  # needs logprobs=true
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"n": 2, "store": True}, "n"),
])
def test_chat_out_of_range_is_refused_by_name(client: openai.OpenAI, params: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=2, **params)
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"


def test_chat_n_choices(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=6, **GREEDY)
    r = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=6, n=3, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert {c.message.content for c in r.choices} == {one.choices[0].message.content}  # greedy: all equal
    assert r.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    assert r.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    sampled = {"model": MODEL, "messages": LONG, "max_tokens": 12, "n": 3, "temperature": 1.5, "seed": 42}
    a = client.chat.completions.create(**sampled)
    assert len({c.message.content for c in a.choices}) > 1  # choice i is seeded seed + i
    first = client.chat.completions.create(**{**sampled, "n": 1})
    assert first.choices[0].message.content == a.choices[0].message.content  # choice 0 keeps the seed
    chunks = list(client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=6, n=2, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    texts = {i: "".join(ch.delta.content or "" for c in chunks for ch in c.choices if ch.index == i) for i in (0, 1)}
    assert texts == {0: one.choices[0].message.content, 1: one.choices[0].message.content}
    assert sum(1 for c in chunks for ch in c.choices if ch.finish_reason) == 2
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2 * one.usage.completion_tokens


def _check_completion_logprobs(lp, text: str, top: int, greedy_from: int = 0) -> None:
    """``greedy_from``: the first generated token (the ones before are the echoed prompt's,
    which need not be the most probable)."""
    assert "".join(lp.tokens) == text and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
    at = 0
    for token, offset in zip(lp.tokens, lp.text_offset):
        assert offset == at
        at += len(token)
    for i, (token, logprob, alternatives) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        if logprob is None:
            assert alternatives is None
            continue
        assert logprob <= 0 and len(alternatives) == top
        if token in alternatives:
            assert math.isclose(alternatives[token], logprob)
        else:
            assert min(alternatives.values()) >= logprob
        if top and i >= greedy_from:
            assert max(alternatives, key=alternatives.get) == token


def test_completion_logprobs_streamed_and_not(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, logprobs=3, **GREEDY)
    choice = r.choices[0]
    assert choice.finish_reason == "length" and len(choice.logprobs.tokens) == r.usage.completion_tokens == 8
    _check_completion_logprobs(choice.logprobs, choice.text, 3)
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, logprobs=3, stream=True,
                                            **GREEDY))
    tokens = [t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.tokens]
    offsets = [o for c in chunks for ch in c.choices if ch.logprobs for o in ch.logprobs.text_offset]
    values = [v for c in chunks for ch in c.choices if ch.logprobs for v in ch.logprobs.token_logprobs]
    assert tokens == choice.logprobs.tokens and offsets == choice.logprobs.text_offset
    assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for a, b in zip(values, choice.logprobs.token_logprobs))
    assert client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, **GREEDY).choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, logprobs=21)
    assert err.value.body["param"] == "logprobs"


def test_completion_max_tokens_zero_generates_nothing(client: openai.OpenAI) -> None:
    """Before, ``max_tokens: 0`` was refused (and would have meant "no limit" to the engine)."""
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0)
    choice = r.choices[0]
    assert choice.text == "" and choice.finish_reason == "length" and choice.logprobs is None
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens > 0
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, stream=True))
    assert [(ch.text, ch.finish_reason) for c in chunks for ch in c.choices] == [("", "length")]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=-1)
    assert err.value.body["param"] == "max_tokens"


def test_completion_echo(client: openai.OpenAI) -> None:
    only = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True)
    assert only.choices[0].text == PROMPT and only.usage.completion_tokens == 0 and only.choices[0].logprobs is None
    scored = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=2)
    lp = scored.choices[0].logprobs
    assert scored.choices[0].text == PROMPT and scored.usage.completion_tokens == 0
    _check_completion_logprobs(lp, PROMPT, 2, greedy_from=len(lp.tokens))
    assert lp.token_logprobs[0] is None and all(v is not None for v in lp.token_logprobs[1:])  # as OpenAI
    assert len(lp.tokens) == scored.usage.prompt_tokens  # every prompt token, scored from the raw prompt
    again = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=2)
    assert again.choices[0].logprobs.token_logprobs == lp.token_logprobs  # no cache reuse changes them
    more = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, echo=True, logprobs=2, **GREEDY)
    text, mlp = more.choices[0].text, more.choices[0].logprobs
    assert text.startswith(PROMPT) and len(text) > len(PROMPT) and more.usage.completion_tokens == 5
    _check_completion_logprobs(mlp, text, 2, greedy_from=len(lp.tokens))
    assert mlp.tokens[: len(lp.tokens)] == lp.tokens and len(mlp.tokens) == len(lp.tokens) + 5
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, echo=True, **GREEDY)
    assert plain.choices[0].text == text and plain.choices[0].logprobs is None
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, echo=True, stream=True,
                                            **GREEDY))
    pieces = [ch.text for c in chunks for ch in c.choices]
    assert pieces[0] == PROMPT and "".join(pieces) == text
    scored_chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, echo=True, logprobs=2,
                                                   stream=True, **GREEDY))
    assert "".join(ch.text for c in scored_chunks for ch in c.choices) == text
    assert [t for c in scored_chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.tokens] == mlp.tokens


def test_completion_n_choices(client: openai.OpenAI) -> None:
    one = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, **GREEDY)
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, n=2, logprobs=1, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1] and {c.text for c in r.choices} == {one.choices[0].text}
    assert all(c.logprobs.tokens == r.choices[0].logprobs.tokens for c in r.choices)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens == 2 * one.usage.completion_tokens
    sampled = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, n=3, temperature=1.5, seed=7)
    assert len({c.text for c in sampled.choices}) > 1
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, n=2, stream=True, **GREEDY))
    texts = {i: "".join(ch.text for c in chunks for ch in c.choices if ch.index == i) for i in (0, 1)}
    assert texts == {0: one.choices[0].text, 1: one.choices[0].text}
    zero = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, n=2, echo=True)
    assert [c.text for c in zero.choices] == [PROMPT, PROMPT] and zero.usage.completion_tokens == 0
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2, n=9)
    assert err.value.body["param"] == "n"


def _gauge(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize("n", [1, 3])
def test_a_dropped_stream_of_n_choices_frees_every_one(server: Server, n: int) -> None:
    """Closing the stream cancels every choice's generation and releases its lease (slots and
    queue places back at 0 as soon as the engine's next step)."""
    body = {"model": MODEL, "messages": LONG, "max_tokens": 1900, "n": n, "stream": True, **GREEDY}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as r:
        seen = set()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen.add(line.split('"index":')[1].split(",")[0])
            if len(seen) == n:
                break  # every choice is running: go away
    started, busy = time.monotonic(), []
    while time.monotonic() - started < 30:  # the 1900 tokens of 3 choices would take longer
        busy = [_gauge(server, "kettle_slots_in_use"), _gauge(server, "kettle_requests_waiting")]
        if busy == [0, 0]:
            break
        time.sleep(0.1)
    assert busy == [0, 0]
