"""ThreadGovernor: the thread count of small steps follows the measured step times."""

from __future__ import annotations

from kettle.engine.threads import ADAPTIVE_TOKENS, PROBE_FIRST, PROBE_MAX, WARMUP, ThreadGovernor


def drive(gov: ThreadGovernor, n_tokens: int, cost: dict[int, float], steps: int) -> list[int]:
    """Run ``steps`` steps whose time on t threads is cost[t]; return the choices made."""
    chosen = []
    for _ in range(steps):
        t = gov.choose(n_tokens)
        gov.record(n_tokens, t, cost[t])
        chosen.append(t)
    return chosen


def test_settles_on_the_faster_choice_and_tries_the_other_now_and_then():
    gov = ThreadGovernor(2)
    chosen = drive(gov, 1, {2: 0.010, 1: 0.014}, 1000)
    assert set(chosen[:WARMUP]) == {1, 2}
    assert gov.preferred(1) == 2
    tries = [i for i, t in enumerate(chosen) if t == 1 and i >= WARMUP]
    # on every thread a busy core shows as a drift, so one thread is tried only every PROBE_MAX steps
    assert len(tries) == 3 and {b - a for a, b in zip(tries, tries[1:], strict=False)} == {PROBE_MAX}


def test_on_one_thread_it_tries_every_thread_sooner_and_backs_off():
    gov = ThreadGovernor(2)
    chosen = drive(gov, 1, {2: 0.014, 1: 0.010}, 1000)
    assert gov.preferred(1) == 1
    tries = [i for i, t in enumerate(chosen) if t == 2 and i >= WARMUP]
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert tries[0] <= WARMUP + PROBE_FIRST and gaps[:4] == [16, 32, 64, 128] and gaps[-1] == PROBE_MAX


def test_follows_a_change_of_load():
    gov = ThreadGovernor(2)
    drive(gov, 4, {2: 0.016, 1: 0.025}, 300)
    assert gov.preferred(4) == 2
    chosen = drive(gov, 4, {2: 0.100, 1: 0.027}, 300)  # another process takes a core
    assert gov.preferred(4) == 1 and chosen[-100:].count(2) <= 2
    drive(gov, 4, {2: 0.016, 1: 0.025}, 2 * PROBE_MAX)  # and leaves: the next try notices
    assert gov.preferred(4) == 2


def test_sizes_are_separate_and_large_steps_use_every_thread():
    gov = ThreadGovernor(2)
    drive(gov, 1, {2: 0.010, 1: 0.005}, 50)
    drive(gov, 4, {2: 0.010, 1: 0.020}, 50)
    assert (gov.preferred(1), gov.preferred(4)) == (1, 2)
    assert gov.choose(ADAPTIVE_TOKENS + 1) == 2 and gov.preferred(ADAPTIVE_TOKENS + 1) is None
    assert ThreadGovernor(1).choose(1) == 1


def test_first_timing_of_each_choice_is_discarded():
    gov = ThreadGovernor(2)
    first = {2: 5.0, 1: 5.0}  # compile and page faults
    for _ in range(2):
        t = gov.choose(1)
        gov.record(1, t, first[t])
    drive(gov, 1, {2: 0.010, 1: 0.014}, WARMUP)
    assert gov.preferred(1) == 2


def test_a_slowdown_of_the_current_choice_triggers_a_try_at_once():
    gov = ThreadGovernor(2)
    drive(gov, 1, {2: 0.010, 1: 0.014}, 2000)  # settled: tries are PROBE_MAX steps apart
    chosen = drive(gov, 1, {2: 0.060, 1: 0.015}, 12)  # another process takes a core
    # the median of the last steps turns after three slow ones; the try wins; tries again after 8
    assert gov.preferred(1) == 1 and chosen.index(1) == 3 and set(chosen[4:11]) == {1}


def test_one_slow_step_changes_nothing():
    hiccup, calm = ThreadGovernor(2), ThreadGovernor(2)
    for gov in (hiccup, calm):
        drive(gov, 4, {2: 0.010, 1: 0.020}, 500)
    a = drive(hiccup, 4, {2: 0.080, 1: 0.020}, 1) + drive(hiccup, 4, {2: 0.010, 1: 0.020}, 30)
    b = drive(calm, 4, {2: 0.010, 1: 0.020}, 31)
    assert a == b and hiccup.preferred(4) == 2


def test_noise_within_the_margin_does_not_flip_the_choice():
    gov = ThreadGovernor(2)
    drive(gov, 4, {2: 0.0100, 1: 0.0105}, 40)
    first = gov.preferred(4)
    chosen = drive(gov, 4, {2: 0.0105, 1: 0.0100}, 2000)  # 5% the other way: within the margin
    assert gov.preferred(4) == first and chosen.count(first) > 1980
