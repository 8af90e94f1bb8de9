"""Log probabilities from the sampler: the distribution it drew from, the alternatives, bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kettle.errors import InvalidParameter, SamplingError
from kettle.sampling import Sampler, SamplingParams
from kettle.sampling.logprobs import MAX_TOP_LOGPROBS, check_top, log_softmax, raw_logprob, token_logprob

ROW = np.array([1.0, 3.0, 2.0, 3.0, -np.inf, 0.5], dtype=np.float32)  # (6,) a tie, a masked token


def test_raw_logprob_is_log_softmax_with_sorted_alternatives() -> None:
    lp = raw_logprob(ROW, 2, 3)
    expect = np.log(np.exp(ROW.astype(np.float64)) / np.exp(ROW.astype(np.float64)).sum())
    assert lp.token == 2 and lp.logprob == pytest.approx(expect[2])
    assert [t for t, _ in lp.top] == [1, 3, 2]  # the tie: lower id first
    assert [v for _, v in lp.top] == pytest.approx([expect[1], expect[3], expect[2]])
    assert math.fsum(math.exp(v) for v in log_softmax(ROW)) == pytest.approx(1.0)


def test_zero_probability_tokens_are_never_alternatives() -> None:
    lp = raw_logprob(ROW, 1, MAX_TOP_LOGPROBS)
    assert len(lp.top) == 5 and 4 not in [t for t, _ in lp.top]
    assert raw_logprob(ROW, 1, 0).top == ()


def test_chosen_token_must_be_in_the_distribution() -> None:
    with pytest.raises(SamplingError, match="not in the distribution"):
        token_logprob(np.array([1, 3]), np.array([0.0, 1.0]), 2, 1)


@pytest.mark.parametrize("bad", [-1, 21, 2.0, True, "3"])
def test_top_count_bounds(bad: object) -> None:
    with pytest.raises(InvalidParameter, match="between 0 and 20"):
        check_top(bad)
    with pytest.raises(InvalidParameter):
        SamplingParams(logprobs=bad)  # type: ignore[arg-type]


def test_prompt_logprobs_need_logprobs() -> None:
    with pytest.raises(InvalidParameter, match="prompt_logprobs"):
        SamplingParams(prompt_logprobs=True)
    assert SamplingParams(logprobs=0, prompt_logprobs=True).prompt_logprobs


def _rows(n: int, vocab: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.normal(0, 3, vocab).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("params", [
    {"temperature": 0.7, "top_k": 10, "top_p": 0.9, "seed": 3},
    {"temperature": 1.3, "top_k": 0, "min_p": 0.05, "seed": 4},
    {"temperature": 0.9, "mirostat": 2, "seed": 5},
    {"temperature": 0.8, "repeat_penalty": 1.3, "seed": 6},
])
def test_recording_draws_the_same_tokens_from_the_post_sampling_distribution(params: dict) -> None:
    plain = Sampler(SamplingParams(**params), 300)
    recording = Sampler(SamplingParams(**params), 300)
    history: list[int] = [1, 2, 3]
    for row in _rows(20):
        token = plain.sample(row, history)
        got, lp = recording.sample_logprobs(row, history, 20)
        assert got == token == lp.token
        alts = dict(lp.top)
        assert token in alts or lp.logprob <= lp.top[-1][1]  # else it would be among the top 20
        assert alts.get(token, lp.logprob) == lp.logprob  # listed with the same value, or not in the top 20
        assert math.fsum(math.exp(v) for v in alts.values()) <= 1.0 + 1e-9
        if params.get("top_k"):
            assert len(lp.top) <= params["top_k"]
        history.append(token)


def test_top_k_distribution_is_renormalized_and_temperature_applied() -> None:
    row = _rows(1)[0]
    sampler = Sampler(SamplingParams(temperature=0.5, top_k=3, top_p=1.0, seed=1), 300)
    _, lp = sampler.sample_logprobs(row, (), 5)
    best = np.sort(row.astype(np.float64))[::-1][:3] / 0.5
    expect = best - np.log(np.exp(best - best[0]).sum()) - best[0]
    assert [v for _, v in lp.top] == pytest.approx(expect)
    assert math.fsum(math.exp(v) for _, v in lp.top) == pytest.approx(1.0)


def test_greedy_uses_the_raw_logits() -> None:
    row = _rows(1)[0]
    token, lp = Sampler(SamplingParams(temperature=0), 300).sample_logprobs(row, (), 2)
    assert token == int(np.argmax(row)) == lp.top[0][0]
    assert lp.logprob == lp.top[0][1] == pytest.approx(log_softmax(row)[token])
