"""The pure parts of ``kettle.server.openai_choices``: the logprobs shapes, the prompt's scores
with and without a BOS, the seeds of ``n`` choices and the merging of their streams."""

from __future__ import annotations

import asyncio

import pytest

from kettle.sampling.logprobs import TokenLogprob
from kettle.server import openai_choices as oc
from kettle.server import openai_routes as oa


class Pieces:
    """A tokenizer of three pieces: 0 is ``<s>`` (the BOS), 1 ``ab``, 2 ``c``."""

    bos_id = 0

    def token_to_piece(self, token: int) -> bytes:
        return (b"<s>", b"ab", b"c")[token]


SCORES = [None, TokenLogprob(1, -0.5, ((1, -0.5), (2, -1.0))), TokenLogprob(2, -2.0, ((1, -0.2), (2, -2.0)))]


def test_prompt_scores_leave_out_an_added_bos() -> None:
    entries = oc.prompt_logprobs(Pieces(), "abc", [0, 1, 2], SCORES)
    assert [(e["token"], e["logprob"]) for e in entries] == [("ab", -0.5), ("c", -2.0)]  # scored after the BOS
    out = oc.completion_logprobs(entries)
    assert out == {"tokens": ["ab", "c"], "token_logprobs": [-0.5, -2.0],
                   "top_logprobs": [{"ab": -0.5, "c": -1.0}, {"ab": -0.2, "c": -2.0}], "text_offset": [0, 2]}


def test_prompt_scores_without_a_bos_start_unscored() -> None:
    entries = oc.prompt_logprobs(Pieces(), "abc", [1, 2], [None, SCORES[2]])
    out = oc.completion_logprobs(entries, start=0)
    assert out["tokens"] == ["ab", "c"] and out["token_logprobs"] == [None, -2.0]
    assert out["top_logprobs"] == [None, {"ab": -0.2, "c": -2.0}]
    kept = oc.prompt_logprobs(Pieces(), "<s>abc", [0, 1, 2], SCORES)  # the BOS is the prompt's own text
    assert [e["token"] for e in kept] == ["<s>", "ab", "c"] and kept[0]["logprob"] is None


def test_chat_logprobs_shape() -> None:
    entry = {"token": "hi", "logprob": -0.1, "bytes": [104, 105]}
    assert oc.chat_logprobs(None) is None
    assert oc.chat_logprobs([entry]) == {"content": [{**entry, "top_logprobs": []}], "refusal": None}


def test_choice_seeds_move_on_within_64_bits() -> None:
    body = {"options": {"seed": 2**63 - 1}}
    assert oc.nth_choice(body, 0) is body
    assert oc.nth_choice(body, 1)["options"]["seed"] == -(2**63)
    assert oc.nth_choice({"options": {"seed": 5}}, 2)["options"]["seed"] == 7
    assert oc.nth_choice({"options": {"seed": -1}}, 2)["options"]["seed"] == -1  # random stays random
    assert oc.nth_choice({"options": {}}, 3) == {"options": {}}


def test_combined_usage_counts_the_prompt_once() -> None:
    finals = [{"prompt_eval_count": 5, "eval_count": 2}, {"prompt_eval_count": 5, "eval_count": 3}]
    outs = [{"id": "x", "choices": [{"index": 0, "text": t}], "usage": {}} for t in ("a", "b")]
    out = oa.combined(outs, finals)
    assert [c["index"] for c in out["choices"]] == [0, 1] and [c["text"] for c in out["choices"]] == ["a", "b"]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


async def _items(*items: object, fail: bool = False):
    for item in items:
        await asyncio.sleep(0)
        yield item
    if fail:
        raise ValueError("broken")


def test_merged_streams_keep_each_choice_in_order() -> None:
    async def run() -> list[tuple[int, object]]:
        return [x async for x in oc.merged([_items("a1", "a2"), _items("b1", "b2", "b3")])]
    got = asyncio.run(run())
    assert [o for i, o in got if i == 0] == ["a1", "a2"] and [o for i, o in got if i == 1] == ["b1", "b2", "b3"]


def test_merged_streams_raise_a_choice_error() -> None:
    async def run() -> None:
        async for _ in oc.merged([_items("a", fail=True), _items("b1", "b2")]):
            pass
    with pytest.raises(ValueError, match="broken"):
        asyncio.run(run())


def test_completion_choices_of_a_body() -> None:
    plan = oa.completion_choices({"prompt": ["Hi"], "echo": True, "logprobs": 0, "max_tokens": 0, "n": 2})
    assert plan == oc.Choices(n=2, echo="Hi", score_prompt=True, generate=False)
    assert oa.completion_request({"model": "m", "prompt": "Hi", "echo": True})["raw"] is True
    assert oa.completion_choices({"prompt": "Hi"}) == oc.Choices()


def test_echo_with_a_suffix_is_refused_by_name() -> None:
    with pytest.raises(oa.RequestError) as err:
        oa.completion_request({"model": "m", "prompt": "a", "suffix": "b", "echo": True})
    assert err.value.field == "echo"
