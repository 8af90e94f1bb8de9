"""Speculative decoding by prompt lookup: the same tokens as without it, fewer steps.

Greedy and seeded sampled outputs must be identical token for token with drafts
on and off (the kernels are batch-invariant, so a drafted token's logits are the
bits a one-token step gives), on both bundled models, alone and in a batch.
"""

from __future__ import annotations

import pytest

import kettle
from kettle.engine.batch import BatchEngine
from kettle.engine.runner import Runner
from kettle.engine.speculative import MAX_BACKOFF, PromptLookup
from kettle.sampling import SamplingParams

PARAGRAPH = ("The quick brown fox jumps over the lazy dog. It was a sunny day in the park, and the "
             "children were playing football near the old oak tree while their parents talked.")
COPY = [{"role": "user", "content": f"Repeat this paragraph exactly, word for word:\n\n{PARAGRAPH}\n\nRepeated:\n"}]
FIX = [{"role": "user", "content": "Fix the bug in this function and show the whole function:\n\n"
        "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
        "    return total / len(value)\n"}]
FREE = [{"role": "user", "content": "Write a short poem about the sea."}]


def test_prompt_lookup_drafts_the_continuation_of_the_latest_match():
    look = PromptLookup([5, 6, 7, 8, 9, 1, 2, 5, 6])
    assert look.draft(3) == [7, 8, 9]
    assert look.draft(10) == [7, 8, 9, 1, 2, 5, 6]  # never past the end
    look.extend([7, 3])
    assert look.draft(4) == []  # "7 3" never occurred before, "3" alone is too short
    look.extend([5, 6])
    assert look.draft(2) == [7, 3]  # the latest earlier "5 6" wins
    assert look.draft(0) == []


def test_prompt_lookup_backs_off_after_rejections():
    look = PromptLookup([1, 2, 3, 1, 2])
    assert look.draft(2) == [3, 1]
    look.accepted(2, 0)
    assert look.draft(2) == []  # one step of backoff
    assert look.draft(2) == [3, 1]
    waits = []
    for _ in range(8):
        look.accepted(2, 0)
        wait = 0
        while look.draft(2) == []:
            wait += 1
        waits.append(wait)
    assert waits[:6] == [2, 4, 8, 16, 32, 32] and max(waits) == MAX_BACKOFF
    look.accepted(2, 1)  # an accepted token resets the backoff
    look.accepted(2, 0)
    assert look.draft(2) == [] and look.draft(2) == [3, 1]


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    m = kettle.load(smollm2_path, num_ctx=1024)
    yield m
    m.close()


def _run(model, messages, **options):
    stream = model.chat(messages, **{"num_predict": 96, **options})
    stream.text()
    return stream.last


@pytest.mark.parametrize("messages", [COPY, FIX, FREE], ids=["copy", "fix", "free"])
def test_greedy_output_is_identical_with_drafts(smollm2, messages):
    plain = _run(smollm2, messages, temperature=0, draft_num_predict=0)
    fast = _run(smollm2, messages, temperature=0, draft_num_predict=8)
    assert fast.context == plain.context
    assert plain.stats.draft_count == 0
    if messages is COPY:
        assert fast.stats.draft_accepted >= 30, fast.stats  # most of the copy came from drafts


def test_sampled_output_is_identical_for_a_seed(smollm2):
    for seed in (1, 2):
        opts = dict(temperature=0.9, top_k=40, top_p=0.95, seed=seed, repeat_penalty=1.1)
        plain = _run(smollm2, COPY, draft_num_predict=0, **opts)
        fast = _run(smollm2, COPY, draft_num_predict=8, **opts)
        assert fast.context == plain.context
        assert fast.stats.draft_count > 0


def test_stop_strings_and_limits_inside_an_accepted_draft(smollm2):
    plain = _run(smollm2, COPY, temperature=0, draft_num_predict=0)
    text = smollm2.detokenize(plain.context[len(plain.context) - plain.stats.eval_count:])
    stop = text.split()[12]  # a word in the middle of the copied text
    for n in (1, 7, 23):
        a = smollm2.chat(COPY, temperature=0, num_predict=n, draft_num_predict=0)
        b = smollm2.chat(COPY, temperature=0, num_predict=n, draft_num_predict=8)
        assert b.text() == a.text() and b.last.stats.eval_count == n
    a = smollm2.chat(COPY, temperature=0, stop=[stop], draft_num_predict=0)
    b = smollm2.chat(COPY, temperature=0, stop=[stop], draft_num_predict=8)
    assert b.text() == a.text() and b.last.done_reason == "stop"


def test_drafts_in_a_batch_match_each_sequence_alone(smollm2):
    prompts = [smollm2.prompts.tokenize_prompt(smollm2.prompts.render_chat(m)) for m in (COPY, FREE, FIX)]

    def run(batch, draft):
        params = SamplingParams(temperature=0, num_predict=48, draft_num_predict=draft)
        engine = BatchEngine(Runner(smollm2.transformer, n_ctx=1024, n_slots=len(batch)), smollm2.tokenizer)
        seqs = [engine.add(ids, params) for ids in batch]
        finals = {}
        while engine.active:
            for seq, chunk in engine.step():
                if chunk.done:
                    finals[seqs.index(seq)] = chunk.context
        return [finals[i] for i in range(len(batch))], sum(s.stats.draft_accepted for s in seqs)

    alone = [run([ids], 0)[0][0] for ids in prompts]
    together, accepted = run(prompts, 6)
    assert together == alone and accepted > 0


@pytest.mark.slow
def test_gemma3_greedy_output_is_identical_with_drafts(gemma3_path):
    m = kettle.load(gemma3_path, num_ctx=1024)
    try:
        for messages in (COPY, FIX):
            plain = _run(m, messages, temperature=0, draft_num_predict=0)
            fast = _run(m, messages, temperature=0, draft_num_predict=8)
            assert fast.context == plain.context
            assert fast.stats.draft_accepted > 0
    finally:
        m.close()
