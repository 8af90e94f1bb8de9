"""Log probabilities from the engine on the real default model: greedy entries are the
log_softmax of the model's own logits, every generated token is reported once (not the stop
string's, not the end token's), prompt scoring, and drafts change nothing."""

from __future__ import annotations

import numpy as np
import pytest

import kettle
from kettle.engine.batch import BatchEngine, Chunk
from kettle.engine.runner import Runner
from kettle.sampling import SamplingParams
from kettle.sampling.logprobs import log_softmax

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = kettle.load(smollm2_path, num_ctx=512)
    yield m
    m.close()


def _run(model, ids: list[int], **params) -> tuple[list[Chunk], list[int]]:
    engine = BatchEngine(Runner(model.transformer, n_ctx=512, n_slots=2, n_batch=4), model.tokenizer)
    seq = engine.add(ids, SamplingParams(**params))
    return list(engine.run(seq)), seq.generated


def test_greedy_logprobs_are_log_softmax_of_the_logits(model):
    ids = model.tokenize(PROMPT)
    chunks, generated = _run(model, ids, temperature=0, num_predict=10, logprobs=5)
    entries = [lp for c in chunks for lp in c.logprobs]
    assert [lp.token for lp in entries] == generated
    logits = model.logits(ids + generated)  # (n, V) the same model, evaluated from scratch
    for i, lp in enumerate(entries):
        expect = log_softmax(logits[len(ids) - 1 + i])
        assert lp.top[0] == (lp.token, lp.logprob)  # greedy: the chosen token is the top one
        assert lp.logprob == pytest.approx(expect[lp.token], abs=1e-4)
        assert [t for t, _ in lp.top] == list(np.argsort(-expect, kind="stable")[:5])
    text = "".join(c.text for c in chunks)
    offsets = [lp.offset for lp in entries]
    pieces = [model.tokenizer.decode([t], special=False) for t in generated]
    assert offsets == [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    assert text == "".join(pieces)


def test_without_logprobs_nothing_is_recorded(model):
    chunks, _ = _run(model, model.tokenize(PROMPT), temperature=0, num_predict=4)
    assert all(c.logprobs is None and c.prompt_logprobs is None for c in chunks)


def test_stop_string_tokens_are_not_reported(model):
    ids = model.tokenize(PROMPT)
    chunks, generated = _run(model, ids, temperature=0, num_predict=10, logprobs=0, stop=["."])
    entries = [lp for c in chunks for lp in c.logprobs]
    assert "".join(c.text for c in chunks) == " Paris" and chunks[-1].done_reason == "stop"
    assert [lp.token for lp in entries] == generated[:-1]  # the "." that stopped it is not there
    assert all(lp.top == () for lp in entries)


def test_prompt_logprobs_score_every_prompt_token(model):
    ids = model.tokenize("Once upon a time, there was a little girl")  # longer than n_batch=4
    chunks, _ = _run(model, ids, temperature=0, num_predict=1, logprobs=2, prompt_logprobs=True)
    scores = chunks[-1].prompt_logprobs
    assert len(scores) == len(ids) and scores[0] is None
    logits = model.logits(ids)
    for i, lp in enumerate(scores[1:], start=1):
        assert lp.token == ids[i]
        assert lp.logprob == pytest.approx(log_softmax(logits[i - 1])[ids[i]], abs=1e-4)
        assert len(lp.top) == 2


def test_sampled_logprobs_same_with_and_without_drafts(model):
    ids = model.tokenize("Repeat: one two three four five six seven. Repeat: one two three")
    runs = [_run(model, ids, temperature=0.7, seed=9, num_predict=16, logprobs=3, draft_num_predict=d)
            for d in (0, 8)]
    (a, gen_a), (b, gen_b) = runs
    assert gen_a == gen_b
    assert [lp for c in a for lp in c.logprobs] == [lp for c in b for lp in c.logprobs]
    for lp in (lp for c in a for lp in c.logprobs):  # top_k 40, top_p 0.9: a renormalized subset
        assert sum(np.exp(v) for _, v in lp.top) <= 1 + 1e-9
