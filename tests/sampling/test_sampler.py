"""The Sampler: chain order, greedy, seeding, mirostat, penalties through history, bad rows."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from kettle.errors import InvalidParameter, SamplingError
from kettle.sampling import Sampler, SamplingParams, build_chain

# Everything off: plain softmax sampling at temperature 1.
PLAIN = dict(top_k=0, top_p=1.0, temperature=1.0, seed=0)


def row(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def draws(sampler: Sampler, logits: np.ndarray, n: int, history=()) -> Counter:
    return Counter(sampler.sample(logits, history) for _ in range(n))


def test_chain_is_composed_once_skipping_disabled_steps():
    names = lambda p: [step.func.__name__ for step in build_chain(p)]  # noqa: E731
    assert names(SamplingParams()) == ["top_k", "top_p", "temperature"]
    assert names(SamplingParams(**PLAIN)) == []
    everything = SamplingParams(top_k=5, tfs_z=0.9, typical_p=0.9, top_p=0.8, min_p=0.1, temperature=0.7)
    assert names(everything) == ["top_k", "tail_free", "typical", "top_p", "min_p", "temperature"]


# ---------------------------------------------------------------- greedy


def test_greedy_is_argmax_with_lowest_id_on_ties():
    sampler = Sampler(SamplingParams(temperature=0), 5)
    assert sampler.sample(row([0.1, 2.0, -1.0, 2.0, 1.9])) == 1


def test_greedy_never_touches_the_generator():
    sampler = Sampler(SamplingParams(temperature=0.0, seed=3), 4)
    before = sampler._rng.bit_generator.state
    for _ in range(10):
        sampler.sample(row([1, 2, 3, 0]))
    assert sampler._rng.bit_generator.state == before


def test_greedy_applies_penalties_first():
    params = SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=2)
    sampler = Sampler(params, 3)
    logits = row([3.0, 2.0, 0.0])
    assert sampler.sample(logits, [2, 2]) == 0
    assert sampler.sample(logits, [0]) == 1  # 3/2 < 2
    assert sampler.sample(logits, [0, 1, 2, 2]) == 0  # window is the last 2: token 0 unpenalized


def test_repeat_last_n_whole_history_and_disabled():
    logits = row([3.0, 2.0, -5.0])
    history = [0] + [2] * 1000  # token 0 seen long ago
    whole = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=-1), 3)
    assert whole.sample(logits, history) == 1  # 3/2 < 2
    recent = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=64), 3)
    assert recent.sample(logits, history) == 0
    off = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=0), 3)
    assert off.sample(logits, [0]) == 0


def test_penalize_newline_false_spares_the_newline_token():
    logits = row([1.0, 1.2])  # token 1 is the newline
    params = SamplingParams(temperature=0, repeat_penalty=2.0, penalize_newline=False)
    assert Sampler(params, 2, newline_id=1).sample(logits, [1, 1]) == 1
    assert Sampler(params, 2).sample(logits, [1, 1]) == 0  # without the id it is penalized


def test_presence_and_frequency_through_sampler():
    logits = row([1.0, 0.9, 0.0])
    freq = Sampler(SamplingParams(temperature=0, frequency_penalty=0.2), 3)
    assert freq.sample(logits, [0]) == 1  # 0.8 < 0.9
    presence = Sampler(SamplingParams(temperature=0, presence_penalty=0.05), 3)
    assert presence.sample(logits, [0, 0, 0]) == 0  # once, not per occurrence: 0.95 > 0.9


# ---------------------------------------------------------------- random sampling


def test_same_seed_same_tokens_different_seed_different_tokens():
    rng = np.random.default_rng(0)
    rows = [row(rng.standard_normal(1000) * 2) for _ in range(60)]

    def run(seed: int) -> list[int]:
        sampler = Sampler(SamplingParams(seed=seed, top_k=0, top_p=0.95), 1000)
        return [sampler.sample(r) for r in rows]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_random_seed_when_unset():
    params = SamplingParams(seed=-1, **{k: v for k, v in PLAIN.items() if k != "seed"})
    logits = row(np.zeros(10_000))
    first = [Sampler(params, 10_000).sample(logits) for _ in range(5)]
    assert len(set(first)) > 1


def test_frequencies_follow_the_softmax():
    logits = row(np.log([0.1, 0.2, 0.3, 0.4]))
    counts = draws(Sampler(SamplingParams(**PLAIN), 4), logits, 20_000)
    for token, p in enumerate([0.1, 0.2, 0.3, 0.4]):
        sigma = np.sqrt(p * (1 - p) / 20_000)
        assert abs(counts[token] / 20_000 - p) < 4 * sigma


def test_temperature_sharpens_and_flattens():
    logits = row(np.log([0.2, 0.8]))
    cold = draws(Sampler(SamplingParams(**{**PLAIN, "temperature": 0.5}), 2), logits, 10_000)
    hot = draws(Sampler(SamplingParams(**{**PLAIN, "temperature": 4.0}), 2), logits, 10_000)
    # T = 0.5 squares the odds: 16:1 -> p1 = 16/17; T = 4 takes the 4th root: sqrt(2):1
    assert abs(cold[1] / 10_000 - 16 / 17) < 0.01
    assert abs(hot[1] / 10_000 - np.sqrt(2) / (1 + np.sqrt(2))) < 0.02


def test_top_k_renormalizes_before_top_p():
    # p = .4 .3 .2 .1; top_k 2 leaves .571 .429, so top_p .5 keeps one token.
    # (Without top_k, top_p .5 would keep two.)
    logits = row(np.log([0.4, 0.3, 0.2, 0.1]))
    sampler = Sampler(SamplingParams(top_k=2, top_p=0.5, seed=1), 4)
    assert set(draws(sampler, logits, 300)) == {0}
    no_k = Sampler(SamplingParams(top_k=0, top_p=0.5, seed=1), 4)
    assert set(draws(no_k, logits, 300)) == {0, 1}


def test_temperature_comes_after_the_filters():
    # min_p .5 of .4 drops p < .2, i.e. token 3, before the (very hot) temperature flattens
    logits = row(np.log([0.4, 0.3, 0.2, 0.1]))
    sampler = Sampler(SamplingParams(top_k=0, top_p=1.0, min_p=0.5, temperature=100.0, seed=2), 4)
    seen = draws(sampler, logits, 2000)
    assert set(seen) == {0, 1, 2}
    assert min(seen.values()) > 500  # flattened among the survivors


def test_masked_rows_sample_only_finite_tokens():
    logits = np.full(50_000, -np.inf, dtype=np.float32)
    logits[[10, 20, 30]] = [0.0, 0.5, 1.0]
    for params in (SamplingParams(seed=1), SamplingParams(seed=1, top_k=0),
                   SamplingParams(seed=1, mirostat=1), SamplingParams(seed=1, mirostat=2),
                   SamplingParams(seed=1, top_k=0, typical_p=0.9, tfs_z=0.9)):
        assert set(draws(Sampler(params, 50_000), logits, 200)) <= {10, 20, 30}


# ---------------------------------------------------------------- mirostat


def zipf(vocab: int, s: float) -> np.ndarray:
    return row(-s * np.log(np.arange(1, vocab + 1)))


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_tracks_the_target_surprise(version):
    tau, eta = 3.0, 0.1
    sampler = Sampler(SamplingParams(mirostat=version, mirostat_tau=tau, mirostat_eta=eta, seed=7), 2000)
    assert sampler.mu == 2 * tau
    logits = zipf(2000, 1.1)  # peaked: p(top) ~ .2, long tail
    surprises = []
    for _ in range(1500):
        before = sampler.mu
        sampler.sample(logits)
        surprises.append(tau + (before - sampler.mu) / eta)  # mu moves by eta * (tau - surprise)
    assert abs(np.mean(surprises[500:]) - tau) < 0.3
    assert 0.0 < sampler.mu < 4 * tau


def test_mirostat_replaces_the_truncation_filters():
    logits = zipf(500, 1.0)
    sampler = Sampler(SamplingParams(mirostat=2, mirostat_tau=6.0, top_k=1, top_p=0.01, seed=3), 500)
    assert len(draws(sampler, logits, 300)) > 5  # top_k=1 would allow a single token


def test_mirostat_with_zero_temperature_is_greedy():
    sampler = Sampler(SamplingParams(mirostat=2, temperature=0), 4)
    assert sampler.sample(row([0.0, 3.0, 1.0, 3.0])) == 1
    assert sampler.mu == 10.0  # untouched


def test_mu_is_none_without_mirostat():
    assert Sampler(SamplingParams(), 3).mu is None


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0), SamplingParams(seed=1), SamplingParams(seed=1, top_k=0),
    SamplingParams(seed=1, mirostat=1), SamplingParams(seed=1, mirostat=2),
    SamplingParams(seed=1, repeat_penalty=1.2),
])
@pytest.mark.parametrize("bad", [[0.0, np.nan, 1.0], [np.nan] * 3, [-np.inf] * 3, [0.0, np.inf, 1.0]])
def test_broken_distributions_raise(params, bad):
    with pytest.raises(SamplingError):
        Sampler(params, 3).sample(row(bad), [0, 1])


@pytest.mark.parametrize("logits,history", [
    (np.zeros(4, dtype=np.float32), ()),  # wrong length
    (np.zeros((1, 3), dtype=np.float32), ()),  # wrong shape
    (np.zeros(3, dtype=np.int32), ()),  # not floats
    (np.zeros(3, dtype=np.float32), [0, 3]),  # id outside the vocabulary
    (np.zeros(3, dtype=np.float32), [-1]),
    (np.zeros(3, dtype=np.float32), ["a"]),
])
def test_bad_rows_and_histories_raise(logits, history):
    sampler = Sampler(SamplingParams(seed=1, repeat_penalty=1.5), 3)
    with pytest.raises(SamplingError):
        sampler.sample(logits, history)


@pytest.mark.parametrize("kwargs", [
    dict(vocab_size=0), dict(vocab_size=True), dict(vocab_size=4, newline_id=4),
    dict(vocab_size=4, params={"top_k": 1}),
])
def test_bad_construction_raises(kwargs):
    params = kwargs.pop("params", SamplingParams())
    with pytest.raises(InvalidParameter):
        Sampler(params, **kwargs)


# ---------------------------------------------------------------- speed on a large vocabulary


def test_large_vocab_is_fast():
    vocab = 262_144
    rng = np.random.default_rng(0)
    logits = row(rng.standard_normal(vocab) * 3)
    history = rng.integers(0, vocab, 256).tolist()
    for params, budget in ((SamplingParams(temperature=0, repeat_penalty=1.1), 0.05),
                           (SamplingParams(seed=1, repeat_penalty=1.1), 0.05),
                           (SamplingParams(seed=1, mirostat=2), 0.1)):
        sampler = Sampler(params, vocab)
        start = time.perf_counter()
        for _ in range(10):
            sampler.sample(logits, history)
        per_token = (time.perf_counter() - start) / 10
        assert per_token < budget, (params, per_token)  # measured ~0.05-3 ms; full sorts take ~30 ms
