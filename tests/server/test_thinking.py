"""``think`` on ``/api/chat`` and ``/api/generate`` through the real ``ollama`` client against a
real ``kettle serve``: the template is told whether to think, the answer's thinking comes in
``message.thinking`` / ``thinking``, and a model that cannot think refuses ``think: true``.

The bundled SmolLM2 writes no thinking markers of its own, so the thinking model here is
SmolLM2 with a Modelfile TEMPLATE that opens the thinking in the prompt, as deepseek-r1's and
qwen3's templates do (``<think>`` when thinking, an empty ``<think></think>`` when not). Every
answer is checked against the same prompt text sent with ``raw: true``: the thinking (or the
content) must be exactly what the model wrote there. How the parsers split text written with
both markers is tested on recorded outputs in ``tests/thinking``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.server.conftest import MODEL, Server

pytestmark = pytest.mark.slow
THINKER = "thinker"
OPTIONS = {"temperature": 0, "num_predict": 12}
TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end -}}"
    "<|im_start|>assistant\n"
    "{{ if .Think }}{{ if eq .ThinkLevel \"high\" }}Think hard.\n{{ end }}<think>\n"
    "{{ else }}<think>\n\n</think>\n\n{{ end }}"
)
QUESTION = "What is the capital of France?"


def _prompt(think: bool, level: str = "medium") -> str:
    head = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    if not think:
        return head + "<think>\n\n</think>\n\n"
    return head + ("Think hard.\n" if level == "high" else "") + "<think>\n"


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[ollama.Client]:
    with server.client() as c:
        r = c.post("/api/create", json={"model": THINKER, "from": MODEL, "template": TEMPLATE, "stream": False})
        assert r.status_code == 200, r.text
        assert "thinking" in c.post("/api/show", json={"model": THINKER}).json()["capabilities"]
    yield ollama.Client(host=server.url)
    with server.client() as c:  # unloaded and gone: later tests see the server as they expect
        c.post("/api/generate", json={"model": THINKER, "keep_alive": 0})
        c.request("DELETE", "/api/delete", json={"model": THINKER})


def _raw(client: ollama.Client, prompt: str) -> str:
    return client.generate(model=THINKER, prompt=prompt, raw=True, options=OPTIONS).response


def test_chat_thinks_by_default_and_on_request(client: ollama.Client) -> None:
    written = _raw(client, _prompt(True))
    assert written.strip()
    messages = [{"role": "user", "content": QUESTION}]
    for think in (None, True, "medium"):
        r = client.chat(model=THINKER, messages=messages, options=OPTIONS, think=think)
        assert r.message.thinking == written.lstrip() and r.message.content == ""
    high = client.chat(model=THINKER, messages=messages, options=OPTIONS, think="high")
    assert high.message.thinking == _raw(client, _prompt(True, "high")).lstrip()


def test_think_false_answers_without_thinking(client: ollama.Client) -> None:
    r = client.chat(model=THINKER, messages=[{"role": "user", "content": QUESTION}], options=OPTIONS, think=False)
    assert r.message.thinking is None
    assert r.message.content == _raw(client, _prompt(False))


def test_streamed_thinking_equals_the_whole(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat(model=THINKER, messages=messages, options=OPTIONS, think=True)
    chunks = list(client.chat(model=THINKER, messages=messages, options=OPTIONS, think=True, stream=True))
    assert "".join(c.message.thinking or "" for c in chunks) == whole.message.thinking
    assert "".join(c.message.content for c in chunks) == ""
    assert chunks[-1].done and chunks[-1].eval_count == whole.eval_count


def test_generate_returns_thinking(client: ollama.Client) -> None:
    r = client.generate(model=THINKER, prompt=QUESTION, options=OPTIONS, think=True)
    assert r.thinking == _raw(client, _prompt(True)).lstrip() and r.response == ""
    plain = client.generate(model=THINKER, prompt=QUESTION, options=OPTIONS, think=False)
    assert plain.thinking is None and plain.response == _raw(client, _prompt(False))
    raw = client.generate(model=THINKER, prompt=_prompt(True), raw=True, options=OPTIONS, think=True)
    assert raw.thinking is None  # raw: no template, nothing to split


def test_a_model_that_cannot_think_refuses(server: Server, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], think=True, options=OPTIONS)
    assert e.value.status_code == 400 and "does not support thinking" in e.value.error
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], think=False, options=OPTIONS)
    assert r.message.content and r.message.thinking is None
    r = httpx.post(f"{server.url}/api/chat", json={"model": THINKER, "messages": [], "think": "hardest"}, timeout=60)
    assert r.status_code == 400 and "think" in r.json()["error"]


def test_openai_reasoning_effort_and_reasoning_content(server: Server, client: ollama.Client) -> None:
    import openai

    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    thinking = _raw(client, _prompt(True)).lstrip()
    messages = [{"role": "user", "content": QUESTION}]
    kw = {"model": THINKER, "messages": messages, "temperature": 0, "max_tokens": OPTIONS["num_predict"]}
    r = oa.chat.completions.create(reasoning_effort="medium", **kw)
    message = r.choices[0].message
    assert message.model_extra["reasoning_content"] == thinking and message.content == ""
    deltas = [c.choices[0].delta for c in oa.chat.completions.create(reasoning_effort="medium", stream=True, **kw)
              if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == thinking
    off = oa.chat.completions.create(reasoning_effort="none", **kw).choices[0].message
    assert off.content == _raw(client, _prompt(False)) and "reasoning_content" not in (off.model_extra or {})
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(reasoning_effort="extreme", **kw)
    assert "reasoning_effort" in str(e.value)


def test_responses_api_reasoning_items(server: Server, client: ollama.Client) -> None:
    import openai

    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    thinking = _raw(client, _prompt(True)).lstrip()
    kw = {"model": THINKER, "input": QUESTION, "temperature": 0, "max_output_tokens": OPTIONS["num_predict"],
          "reasoning": {"effort": "medium"}}
    r = oa.responses.create(**kw)
    assert r.output[0].type == "reasoning" and r.output[0].content[0].text == thinking
    events = list(oa.responses.create(stream=True, **kw))
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == thinking
    done = events[-1].response
    assert done.output[0].type == "reasoning" and done.output[0].content[0].text == thinking


def test_anthropic_thinking_blocks(server: Server, client: ollama.Client) -> None:
    import anthropic

    an = anthropic.Anthropic(base_url=server.url, api_key="unused")
    thinking = _raw(client, _prompt(True)).lstrip()
    kw = {"model": THINKER, "max_tokens": OPTIONS["num_predict"], "messages": [{"role": "user", "content": QUESTION}],
          "extra_body": {"temperature": 0}}
    r = an.messages.create(thinking={"type": "enabled", "budget_tokens": 1024}, **kw)
    assert r.content[0].type == "thinking" and r.content[0].thinking == thinking
    off = an.messages.create(thinking={"type": "disabled"}, **kw)
    assert [b.type for b in off.content] == ["text"] and off.content[0].text == _raw(client, _prompt(False))
