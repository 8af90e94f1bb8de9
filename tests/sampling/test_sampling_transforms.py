"""Each transform against a hand-computed expectation, then against llama.cpp itself."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kettle.errors import SamplingError
from kettle.sampling.mirostat import MirostatV1, MirostatV2
from kettle.sampling.transforms import (
    Candidates,
    greedy,
    min_p,
    penalize,
    pick,
    softmax,
    sort_desc,
    tail_free,
    temperature,
    top_k,
    top_p,
    typical,
)
from tests.sampling.make_llama_oracle import (
    FILTERS,
    MIROSTAT_V1,
    MIROSTAT_V2,
    PENALTIES,
    histories,
    rows,
)


def cands(probs_or_logits, *, logits=False) -> Candidates:
    values = np.asarray(probs_or_logits, dtype=np.float64)
    row = values if logits else np.log(values)
    return Candidates(np.arange(row.size, dtype=np.int64), row.astype(np.float32))


def kept(c: Candidates) -> list[int]:
    return c.ids.tolist()


# Probabilities laid out out of order so sorting matters: ids 0..3 have p = .15 .5 .05 .3
P4 = [0.15, 0.5, 0.05, 0.3]


# ---------------------------------------------------------------- hand-computed


@pytest.mark.parametrize("k,expected", [
    (1, [1]), (2, [1, 3]), (3, [1, 3, 0]), (0, [0, 1, 2, 3]), (4, [0, 1, 2, 3]), (9, [0, 1, 2, 3]),
])
def test_top_k(k, expected):
    assert kept(top_k(cands(P4), k)) == expected


def test_top_k_ties_prefer_lower_ids():
    c = cands([1.0, 3.0, 2.0, 3.0, 0.0, 3.0], logits=True)
    assert kept(top_k(c, 2)) == [1, 3]
    assert kept(top_k(c, 4)) == [1, 3, 5, 2]


def test_top_k_large_row_matches_full_sort():
    rng = np.random.default_rng(3)
    row = rng.standard_normal(300_000).astype(np.float32)
    c = Candidates(np.arange(row.size), row)
    for k in (1, 40, 1000, 9000):
        assert kept(top_k(c, k)) == np.argsort(-row, kind="stable")[:k].tolist()


def test_top_k_masked_row():
    row = np.full(1000, -np.inf, dtype=np.float32)
    row[[7, 500, 900]] = [1.0, 3.0, 2.0]
    c = Candidates(np.arange(row.size), row)
    assert kept(top_k(c, 2)) == [500, 900]
    assert kept(top_k(c, 5)) == [500, 900, 7, 0, 1]  # padded with -inf tokens by id


@pytest.mark.parametrize("p,expected", [
    (0.0, [1]),  # the top token always stays
    (0.45, [1]),  # .5 >= .45
    (0.75, [1, 3]),  # .5 + .3 = .8 >= .75
    (0.85, [1, 3, 0]),  # .95
    (0.99, [1, 3, 0, 2]),
    (1.0, [0, 1, 2, 3]),  # disabled: untouched, unsorted
])
def test_top_p(p, expected):
    assert kept(top_p(cands(P4), p)) == expected


def test_top_p_large_unsorted_row_matches_full_sort():
    rng = np.random.default_rng(4)
    row = (rng.standard_normal(50_000) * 4).astype(np.float32)
    c = Candidates(np.arange(row.size), row)
    order = np.argsort(-row, kind="stable")
    cum = np.cumsum(softmax(row)[order])
    for p in (0.1, 0.5, 0.9, 0.999):
        n = int(np.argmax(cum >= p)) + 1
        assert kept(top_p(c, p)) == order[:n].tolist()


@pytest.mark.parametrize("p,expected", [
    (0.0, [0, 1, 2, 3]),
    (0.2, [0, 1, 3]),  # threshold .2 * .5 = .1: drops .05
    (0.35, [1, 3]),  # threshold .175: drops .15 and .05
    (0.9, [1]),
    (1.0, [1]),
])
def test_min_p(p, expected):
    assert kept(min_p(cands(P4), p)) == expected  # order preserved


# entropy of (.5 .3 .15 .05) in nats: H = 1.1421; surprises -ln p = .693 1.204 1.897 2.996;
# |surprise - H| = .449 .062 .755 1.854, so the typical order is p = .3, .5, .15, .05 with
# running mass .3, .8, .95, 1.0 (ids 3, 1, 0, 2).
@pytest.mark.parametrize("p,expected", [
    (0.2, [3]),  # .3 > .2: the most *typical* token, not the most likely one
    (0.5, [3, 1]),
    (0.9, [3, 1, 0]),
    (0.97, [3, 1, 0, 2]),
    (1.0, [0, 1, 2, 3]),
])
def test_typical(p, expected):
    assert kept(typical(cands(P4), p)) == expected


# sorted p = .35 .3 .25 .08 .02 (ids 4 3 2 1 0); first differences .05 .05 .17 .06;
# |second differences| 0 .12 .11 -> normalized 0 .5217 .4783 -> running sum 0 .5217 1.0.
# The cut is at the first i >= 1 whose running sum exceeds z, keeping i tokens.
TFS5 = [0.02, 0.08, 0.25, 0.3, 0.35]


@pytest.mark.parametrize("z,expected", [(0.5, [4]), (0.6, [4, 3]), (0.99, [4, 3]), (1.0, [0, 1, 2, 3, 4])])
def test_tail_free(z, expected):
    assert kept(tail_free(cands(TFS5), z)) == expected


def test_tail_free_flat_and_tiny():
    assert len(tail_free(cands([0.25] * 4), 0.5)) == 1  # flat: derivatives spread evenly
    assert len(tail_free(cands([0.6, 0.4]), 0.1)) == 2  # n <= 2: nothing to estimate


def test_temperature():
    c = temperature(cands([1.0, 2.0, 3.0], logits=True), 2.0)
    np.testing.assert_allclose(c.logits, [-1.0, -0.5, 0.0])
    np.testing.assert_allclose(softmax(c.logits), softmax(np.array([0.5, 1.0, 1.5])))
    tiny = temperature(cands([1.0, 2.0, 3.0], logits=True), 1e-300)  # no overflow
    assert softmax(tiny.logits).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(SamplingError):
        temperature(cands([1.0], logits=True), 0.0)


def test_penalties():
    logits = np.array([2.0, -1.0, 0.5, 0.0], dtype=np.float32)
    window = np.array([0, 1, 1, 3])
    out = penalize(logits, window, repeat=2.0, presence=0.5, frequency=0.25)
    # token 0 (seen once): 2/2 - (.25 + .5); token 1 (twice): -1*2 - (.5 + .5);
    # token 2 unseen; token 3 (once, logit 0 <= 0 so multiplied): 0 - .75
    np.testing.assert_allclose(out, [0.25, -3.0, 0.5, -0.75])
    assert logits.tolist() == [2.0, -1.0, 0.5, 0.0]  # pure: input untouched
    kept_nl = penalize(logits, window, repeat=2.0, presence=0.5, frequency=0.25, newline_id=3)
    np.testing.assert_allclose(kept_nl, [0.25, -3.0, 0.5, 0.0])
    assert penalize(logits, np.array([], dtype=np.int64), repeat=2.0, presence=1.0, frequency=1.0) is logits


def test_greedy_ties_and_errors():
    assert greedy(np.array([1.0, 5.0, 5.0, 2.0], dtype=np.float32)) == 1
    assert greedy(np.array([-np.inf, -np.inf, 0.0], dtype=np.float32)) == 2
    for bad in ([1.0, np.nan, 2.0], [-np.inf, -np.inf], [0.0, np.inf]):
        with pytest.raises(SamplingError):
            greedy(np.array(bad, dtype=np.float32))


def test_softmax_and_pick():
    probs = softmax(np.array([0.0, np.log(3.0)], dtype=np.float32))
    np.testing.assert_allclose(probs, [0.25, 0.75], rtol=1e-6)
    assert [pick(probs, u) for u in (0.0, 0.2499, 0.25, 0.9999)] == [0, 0, 1, 1]
    assert pick(np.array([0.0, 1.0, 0.0]), 0.0) == 1  # zero-probability tokens never drawn
    with pytest.raises(SamplingError):
        softmax(np.array([-np.inf, -np.inf]))
    with pytest.raises(SamplingError):
        pick(np.array([np.nan, 0.5]), 0.5)


def test_sort_desc_is_stable():
    c = sort_desc(cands([1.0, 2.0, 1.0, 2.0], logits=True))
    assert kept(c) == [1, 3, 0, 2] and c.sorted


def test_mirostat_v2_truncation():
    # tau 1 -> mu 2 bits: keep tokens with -log2 p <= 2, i.e. p >= .25
    assert sorted(kept(MirostatV2(tau=1.0, eta=0.1).truncate(cands(P4)))) == [1, 3]
    # mu below every surprise keeps the top token alone
    assert kept(MirostatV2(tau=0.01, eta=0.1).truncate(cands(P4))) == [1]


def test_mirostat_v1_k_formula():
    m = MirostatV1(tau=5.0, eta=0.1, vocab_size=32000)
    # Zipf row p_i ~ 1/(i+1)^1.2 has s_hat = 1.2 exactly
    row = -1.2 * np.log(np.arange(1, 501, dtype=np.float64))
    head = top_k(Candidates(np.arange(500), row.astype(np.float32)), 100)
    assert m.zipf_exponent(head) == pytest.approx(1.2, rel=1e-5)
    eps = 0.2
    k = (eps * 2.0**10 / (1 - 32000.0**-eps)) ** (1 / 1.2)
    assert m.k_for(1.2, 10_000) == int(k)
    assert m.k_for(1.2, 5) == 5 and m.k_for(0.0, 77) == 77
    assert m.k_for(1.0, 10_000) == int(2.0**10 / math.log(32000))  # the eps -> 0 limit


# ---------------------------------------------------------------- llama.cpp as the reference
# What llama.cpp's own samplers left of the same rows, recorded by make_llama_oracle.py.

ORACLE = json.loads(gzip.decompress((Path(__file__).parent / "fixtures" / "llama_samplers.json.gz").read_bytes()))


@pytest.mark.parametrize("name,value", FILTERS)
def test_filters_match_llama_cpp(name, value):
    ours = {"top_k": top_k, "top_p": top_p, "min_p": min_p, "typical": typical}[name]
    refs = ORACLE["filters"][f"{name}={value}"]
    for row, ref_ids in zip(rows(20), refs, strict=True):
        got = ours(Candidates(np.arange(row.size), row), value)
        assert sorted(got.ids.tolist()) == sorted(ref_ids)


def test_temperature_matches_llama_cpp():
    for row, (ids, ref) in zip(rows(5), ORACLE["temperature"], strict=True):
        got = temperature(Candidates(np.arange(row.size), row), 0.7)
        ref = np.asarray(ref, dtype=np.float32)
        np.testing.assert_allclose(softmax(got.logits)[ids], softmax(ref), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("last_n,repeat,freq,present", PENALTIES)
def test_penalties_match_llama_cpp(last_n, repeat, freq, present):
    refs = ORACLE["penalties"][",".join(map(str, (last_n, repeat, freq, present)))]
    for row, history, (ids, ref) in zip(rows(5, n=50), histories(5), refs, strict=True):
        window = np.array(history[-last_n:])
        got = penalize(row, window, repeat=repeat, presence=present, frequency=freq)
        np.testing.assert_allclose(got[ids], np.asarray(ref, dtype=np.float32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tau", MIROSTAT_V2)
def test_mirostat_v2_first_step_matches_llama_cpp(tau):
    for row, ids in zip(rows(10, n=500), ORACLE["mirostat_v2"][str(tau)], strict=True):
        got = MirostatV2(tau, 0.1).truncate(Candidates(np.arange(row.size), row))
        assert sorted(got.ids.tolist()) == sorted(ids)


@pytest.mark.parametrize("tau", MIROSTAT_V1)
def test_mirostat_v1_first_step_matches_llama_cpp(tau):
    for row, ids in zip(rows(10, n=500), ORACLE["mirostat_v1"][str(tau)], strict=True):
        got = MirostatV1(tau, 0.1, vocab_size=500).truncate(Candidates(np.arange(row.size), row))
        assert sorted(got.ids.tolist()) == sorted(ids)
