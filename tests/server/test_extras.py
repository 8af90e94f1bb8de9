"""llama-server's extras on kettle's port: ``/tokenize``, ``/detokenize`` and ``/metrics``,
against a real ``kettle serve`` with the bundled smollm2 (the session's ``server``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kettle.gguf import GGUFFile
from kettle.server.app import create_app
from kettle.store import Store
from kettle.store.bundled import resolve_model
from kettle.tokenizer import Tokenizer
from tests.server.conftest import MODEL, Server

pytestmark = pytest.mark.slow

TEXTS = [
    "Hello world",
    "  leading spaces,\ttabs and\nnew lines  ",
    "héllo wörld: 日本語のテキスト, emoji 🙂🫖, Ελληνικά",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def tokenizer(server: Server) -> Iterator[Tokenizer]:
    """The model's own tokenizer, read from the GGUF the server serves."""
    stored = resolve_model(Store(server.store), MODEL)
    with GGUFFile(stored.model_path) as f:
        yield Tokenizer.from_metadata(f.metadata)


def test_tokenize_matches_the_models_tokenizer(server: Server, tokenizer: Tokenizer) -> None:
    with server.client() as c:
        for text in TEXTS:
            r = c.post("/tokenize", json={"model": MODEL, "content": text})
            assert r.status_code == 200, r.text
            ids = r.json()["tokens"]
            assert ids == tokenizer.encode(text, add_special=False, parse_special=True)
            for add_special in (False, True):
                for parse_special in (False, True):
                    body = {"model": MODEL, "content": text, "add_special": add_special,
                            "parse_special": parse_special}
                    got = c.post("/tokenize", json=body).json()["tokens"]
                    assert got == tokenizer.encode(text, add_special=add_special, parse_special=parse_special)
            back = c.post("/detokenize", json={"model": MODEL, "tokens": ids})
            assert back.status_code == 200, back.text
            assert back.json() == {"content": tokenizer.decode(ids)} and back.json()["content"] == text
        # The special tokens are single ids only with parse_special (the default).
        im_start = tokenizer.encode("<|im_start|>", add_special=False, parse_special=True)
        assert len(im_start) == 1
        plain = c.post("/tokenize", json={"model": MODEL, "content": "<|im_start|>", "parse_special": False})
        assert plain.json()["tokens"] != im_start
        # Without "model", the one loaded model answers; with several loaded, 400.
        loaded = c.get("/api/ps").json()["models"]
        r = c.post("/tokenize", json={"content": TEXTS[0]})
        if len(loaded) == 1:
            assert r.json()["tokens"] == tokenizer.encode(TEXTS[0], add_special=False, parse_special=True)
            assert c.post("/detokenize", json={"tokens": []}).json() == {"content": ""}
        else:
            assert r.status_code == 400 and "model is required" in r.json()["error"]


def test_tokenize_with_pieces(server: Server, tokenizer: Tokenizer) -> None:
    text = TEXTS[2]
    with server.client() as c:
        r = c.post("/tokenize", json={"model": MODEL, "content": text, "with_pieces": True})
        assert r.status_code == 200, r.text
        tokens = r.json()["tokens"]
    assert [t["id"] for t in tokens] == tokenizer.encode(text, add_special=False, parse_special=True)
    raw = b""
    split = 0
    for t in tokens:
        piece = tokenizer.token_to_piece(t["id"])
        if isinstance(t["piece"], list):  # not valid UTF-8 on its own: the bytes
            split += 1
            assert t["piece"] == list(piece)
            with pytest.raises(UnicodeDecodeError):
                piece.decode("utf-8")
        else:
            assert t["piece"] == piece.decode("utf-8")
        raw += piece
    assert raw.decode("utf-8") == text
    assert split > 0  # the emoji and CJK characters split into byte tokens


def test_bad_requests(server: Server, tokenizer: Tokenizer) -> None:
    n = tokenizer.vocab_size
    with server.client() as c:
        r = c.post("/detokenize", json={"model": MODEL, "tokens": [1, 2, n]})
        assert r.status_code == 400 and "tokens[2]" in r.json()["error"], r.text
        r = c.post("/detokenize", json={"model": MODEL, "tokens": [-1]})
        assert r.status_code == 400 and "tokens[0]" in r.json()["error"], r.text
        r = c.post("/detokenize", json={"model": MODEL, "tokens": ["a"]})
        assert r.status_code == 400, r.text
        r = c.post("/tokenize", json={"model": "no-such-model", "content": "x"})
        assert r.status_code == 404, r.text
        r = c.post("/detokenize", json={"model": "no-such-model", "tokens": [1]})
        assert r.status_code == 404, r.text
        r = c.post("/tokenize", json={"model": MODEL, "content": 3})
        assert r.status_code == 400 and "content" in r.json()["error"], r.text
        r = c.post("/tokenize", json={"model": MODEL, "content": "x" * 200_001})  # KETTLE_MAX_PROMPT
        assert r.status_code == 413, r.text


def test_a_model_is_required_when_none_is_loaded(tmp_path) -> None:
    app = create_app(store=Store(tmp_path))
    with TestClient(app, base_url="http://localhost") as c:
        for path, body in (("/tokenize", {"content": "x"}), ("/detokenize", {"tokens": [1]})):
            r = c.post(path, json=body)
            assert r.status_code == 400 and "model is required" in r.json()["error"], r.text


def test_metrics_need_the_api_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_API_KEY", "k1")
    app = create_app(store=Store(tmp_path))
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/metrics").status_code == 401
        assert c.post("/tokenize", json={"content": "x"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": "Bearer k1"})
        assert r.status_code == 200
        values = _samples(r.text)
        assert values[("kettle_requests_total", (("code", "401"), ("path", "/metrics")))] == 1


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _scrape(c) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return _samples(r.text)


def _total(samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_count_tokens_requests_and_slots(server: Server) -> None:
    with server.client() as c:
        before = _scrape(c)
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Count to five:", "stream": False,
                                          "options": {"temperature": 0, "num_predict": 7}})
        assert r.status_code == 200, r.text
        out = r.json()
        after = _scrape(c)
    name = "smollm2:latest"
    assert after[("kettle_prompt_tokens_total", (("model", name),))] - before.get(
        ("kettle_prompt_tokens_total", (("model", name),)), 0) == out["prompt_eval_count"]
    assert _total(after, "kettle_prompt_tokens_total") - _total(before, "kettle_prompt_tokens_total") == \
        out["prompt_eval_count"]
    assert _total(after, "kettle_generated_tokens_total") - _total(before, "kettle_generated_tokens_total") == \
        out["eval_count"] > 0
    generate_ok = ("kettle_requests_total", (("code", "200"), ("path", "/api/generate")))
    assert after[generate_ok] - before.get(generate_ok, 0) == 1
    metrics_ok = ("kettle_requests_total", (("code", "200"), ("path", "/metrics")))
    assert after[metrics_ok] - before.get(metrics_ok, 0) == 1  # the first scrape (this one counts once answered)
    assert after[("kettle_models_loaded", ())] >= 1
    assert after[("kettle_slots_total", (("model", name),))] == 4  # KETTLE_NUM_PARALLEL
    assert after[("kettle_slots_in_use", (("model", name),))] == 0
    assert after[("kettle_requests_waiting", ())] == 0
    assert after[("kettle_model_load_seconds", (("model", name),))] > 0


def test_metrics_count_the_cached_prefix(server: Server) -> None:
    body = {"model": MODEL, "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "user", "content": "Name the planets of the solar system, in order. " * 3}]}
    with server.client() as c:
        before = _scrape(c)
        cached = []
        for _ in range(2):
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            cached.append(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"])
        after = _scrape(c)
    assert cached[1] > 0  # the repeated prompt reused the first one's KV cache
    grown = _total(after, "kettle_prompt_cached_tokens_total") - _total(before, "kettle_prompt_cached_tokens_total")
    assert grown == sum(cached)
