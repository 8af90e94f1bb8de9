"""The generation loop on the real default model: streaming, stop strings,
limits, seeds, cancellation, prefix reuse and continuous batching."""

from __future__ import annotations

import threading

import pytest

import kettle
from kettle.engine.batch import BatchEngine
from kettle.engine.runner import Runner
from kettle.errors import ContextOverflow, InvalidParameter
from kettle.sampling import SamplingParams

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = kettle.load(smollm2_path, num_ctx=512)
    yield m
    m.close()


def test_generate_greedy_and_stats(model):
    chunks = list(model.generate(PROMPT, temperature=0, num_predict=12))
    last = chunks[-1]
    assert last.done and last.done_reason == "length"
    text = "".join(c.text for c in chunks)
    assert text.startswith(" Paris.")
    s = last.stats
    assert s.prompt_eval_count == 5 and s.eval_count == 12
    assert s.prompt_eval_duration > 0 and s.eval_duration > 0 and s.total_duration >= s.eval_duration
    assert last.context[:5] == model.tokenize(PROMPT)


def test_stop_string_across_tokens_is_not_emitted(model):
    prompt = "Once upon a time, there was a little"
    chunks = list(model.generate(prompt, temperature=0, num_predict=30))
    full = "".join(c.text for c in chunks)
    # a stop string made of the end of one token and the start of the next
    stops = [
        chunks[k].text[-2:] + chunks[k + 1].text[:2]
        for k in range(2, len(chunks) - 1)
        if len(chunks[k].text) >= 2 and len(chunks[k + 1].text) >= 2
    ]
    stop = stops[0]
    stream = model.generate(prompt, temperature=0, num_predict=30, stop=[stop])
    text = stream.text()
    assert stream.last.done_reason == "stop"
    assert text == full[: full.index(stop)]


def test_seed_reproducible(model):
    a = model.generate(PROMPT, temperature=1.0, seed=42, num_predict=16).text()
    b = model.generate(PROMPT, temperature=1.0, seed=42, num_predict=16).text()
    assert a == b


def test_cancel_from_another_thread(model):
    stream = model.generate(PROMPT, temperature=0, num_predict=400)
    first = next(stream)
    threading.Timer(0.05, stream.cancel).start()
    rest = list(stream)
    assert rest[-1].done and rest[-1].done_reason == "cancel"
    assert rest[-1].stats.eval_count < 400
    assert first is not None


def test_invalid_options(model):
    with pytest.raises(InvalidParameter):
        model.generate(PROMPT, temperature=float("nan"))
    with pytest.raises(InvalidParameter):
        model.generate(PROMPT, top_p=2)
    with pytest.raises(InvalidParameter):
        model.generate(PROMPT, num_ctx=8192)


def test_context_overflow(model):
    with pytest.raises(ContextOverflow):
        list(model.generate("word " * 600, num_predict=1))


def test_prefix_reuse(model):
    engine = BatchEngine(Runner(model.transformer, n_ctx=256, n_slots=2), model.tokenizer)
    params = SamplingParams(temperature=0, num_predict=4)
    ids = model.tokenize("Once upon a time, in a land far away, there lived")
    seq = engine.add(ids, params)
    list(engine.run(seq))
    seq2 = engine.add(ids + model.tokenize(" a king"), params)
    to_eval = len(seq2.pending)
    assert 1 <= to_eval <= 3  # only the new suffix is evaluated
    out = list(engine.run(seq2))
    stats = out[-1].stats
    assert stats.prompt_eval_count == len(seq2.prompt_ids)  # the whole prompt, as ollama counts it
    assert stats.prompt_cached_count == len(seq2.prompt_ids) - to_eval  # of which reused


def test_continuous_batching_matches_single(model):
    prompts = ["The capital of France is", "One, two, three,", "def fibonacci(n):"]
    params = SamplingParams(temperature=0, num_predict=10)
    alone = [model.generate(p, temperature=0, num_predict=10).text() for p in prompts]
    engine = BatchEngine(Runner(model.transformer, n_ctx=256, n_slots=3), model.tokenizer)
    texts = {i: "" for i in range(3)}
    seqs = {}
    seqs[engine.add(model.tokenize(prompts[0]), params)] = 0
    steps = 0
    while engine.active or len(seqs) < 3:
        if steps in (2, 4) and len(seqs) < 3:  # join while others are decoding
            seqs[engine.add(model.tokenize(prompts[len(seqs)]), params)] = len(seqs)
        for seq, chunk in engine.step():
            texts[seqs[seq]] += chunk.text
        steps += 1
    assert [texts[i] for i in range(3)] == alone
