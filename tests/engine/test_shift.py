"""Context shift (ollama's ``shift``, on by default): when an answer fills the window, the first
``num_keep`` tokens stay, half of the rest leaves, and decoding goes on. The kept tokens are
evaluated again at their new positions, so the answer after a shift is token for token the
greedy answer to a prompt of the shifted tokens."""

from __future__ import annotations

import pytest

import kettle
from kettle.request import Kind, PromptRequest

N_CTX = 64
PROMPT = "1, 2, 3, 4, 5, 6, 7,"


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = kettle.load(smollm2_path, num_ctx=N_CTX)
    yield m
    m.close()


def _run(model, shift: bool, **options):
    req = PromptRequest(Kind.GENERATE, prompt=PROMPT, raw=True, shift=shift,
                        options={"temperature": 0, "num_predict": 80, **options})
    chunks = list(model.submit(req))
    return chunks[-1]


def test_without_shift_the_window_ends_the_answer(model) -> None:
    last = _run(model, shift=False)
    assert last.done_reason == "length" and last.stats.shift_count == 0
    assert len(last.context) == N_CTX - 1 + 1  # the window's tokens, then the one that did not fit


def test_shift_goes_on_and_equals_a_fresh_prompt_of_the_shifted_tokens(model) -> None:
    last = _run(model, shift=True)
    prompt = model.tokenize(PROMPT, add_special=True, parse_special=True)
    generated = last.context[len(prompt):]
    assert last.done_reason == "length" and len(generated) == 80 and last.stats.shift_count >= 1
    assert last.stats.prompt_eval_count == len(prompt)  # the re-evaluated tokens are not prompt
    g = N_CTX - len(prompt)  # the generated token that found the window full
    held = prompt + generated[:g - 1]
    keep = 4
    shifted = held[:keep] + held[keep + (len(held) - keep) // 2:] + [generated[g - 1]]
    until_next = N_CTX - 1 - len(shifted)  # tokens generated before the window is full again
    fresh = list(model.generate_ids(shifted, temperature=0, num_predict=until_next))[-1]
    assert fresh.context[len(shifted):] == generated[g:g + until_next]


def test_num_keep_minus_one_keeps_the_whole_prompt(model) -> None:
    last = _run(model, shift=True, num_keep=-1)
    prompt = model.tokenize(PROMPT, add_special=True, parse_special=True)
    assert last.stats.shift_count >= 1 and len(last.context) == len(prompt) + 80


def test_the_server_passes_shift_on() -> None:
    from kettle.server.generation import parse_request, prompt_request

    for body, want in (({}, True), ({"shift": False}, False), ({"shift": True}, True)):
        for kind in (Kind.GENERATE, Kind.CHAT):
            req = parse_request({"model": "m", "prompt": "x", "messages": [], **body}, kind, 1000)
            assert req.shift is want and prompt_request(req).shift is want
