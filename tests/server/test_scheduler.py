"""The scheduler's state machine with a fake loader, a fake engine and a fake clock.

No model and no sleeps: the fake engine's ``step`` can be gated so a test decides
when each batched step runs, and every wait has a timeout so a bug fails the test
instead of hanging it.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from kettle.engine.scheduler import FOREVER, MAX_KEEP_ALIVE, Action, ModelState, Scheduler, parse_keep_alive
from kettle.engine.worker import EmbedResult
from kettle.errors import Cancelled, ContextOverflow, InvalidParameter, ServerBusy

TIMEOUT = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeChunk:
    text: str
    done: bool = False
    done_reason: str | None = None


@dataclass(eq=False)
class FakeSeq:
    slot: int
    prompt: list[int]
    left: int  # tokens still to generate
    cancel: threading.Event
    made: int = 0


class FakeEngine:
    """BatchEngine's contract: ``params`` is the number of tokens to generate; each step
    yields one chunk per active sequence (text ``"<first prompt id>:<n>"``)."""

    def __init__(self, n_slots: int, gated: bool) -> None:
        self.n_slots = n_slots
        self.active: list[FakeSeq] = []
        self.gate = threading.Semaphore(0) if gated else None
        self.batches: list[list[int]] = []  # per step: the first prompt id of each active sequence

    @property
    def has_free_slot(self) -> bool:
        return len(self.active) < self.n_slots

    def add(self, prompt_ids: list[int], params: Any, cancel: threading.Event | None = None,
            constraint: Any = None) -> FakeSeq:
        if len(prompt_ids) > 100:
            raise ContextOverflow(len(prompt_ids), 100)
        if not self.has_free_slot:
            raise ServerBusy("no free slot")
        used = {s.slot for s in self.active}
        seq = FakeSeq(min(set(range(self.n_slots)) - used), prompt_ids, int(params), cancel or threading.Event())
        self.active.append(seq)
        return seq

    def release(self, seq: FakeSeq) -> None:
        if seq in self.active:
            self.active.remove(seq)

    def step(self) -> list[tuple[FakeSeq, FakeChunk]]:
        if self.gate is not None:
            assert self.gate.acquire(timeout=TIMEOUT), "the test never opened the gate"
        events = []
        for seq in [s for s in self.active if s.cancel.is_set()]:
            self.release(seq)
            events.append((seq, FakeChunk("", True, "cancel")))
        self.batches.append([s.prompt[0] for s in self.active])
        for seq in list(self.active):
            seq.made += 1
            seq.left -= 1
            done = seq.left <= 0
            if done:
                self.release(seq)
            events.append((seq, FakeChunk(f"{seq.prompt[0]}:{seq.made}", done, "length" if done else None)))
        return events


@dataclass
class FakeRunner:
    n_slots: int


@dataclass(eq=False)
class FakeModel:
    spec: Any
    load_options: Any
    engine: FakeEngine
    runner: FakeRunner
    load_duration: int = 123
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()


class FakeLoader:
    def __init__(self, gated: bool = False, fail: set[str] | None = None) -> None:
        self.loads: list[tuple[Any, Any]] = []
        self.models: list[FakeModel] = []
        self.gated = gated
        self.fail = fail or set()

    def __call__(self, spec: Any, load_options: Any, num_parallel: int) -> FakeModel:
        if spec in self.fail:
            raise InvalidParameter("model", spec, "cannot load")
        self.loads.append((spec, load_options))
        model = FakeModel(spec, load_options, FakeEngine(num_parallel, self.gated), FakeRunner(num_parallel))
        self.models.append(model)
        return model


def fake_embedder(model: FakeModel, slot: int, texts: list[str], truncate: bool) -> EmbedResult:
    return EmbedResult(np.full((len(texts), 2), slot, dtype=np.float32), sum(len(t) for t in texts))


def make(loader: FakeLoader | None = None, **kw: Any) -> tuple[Scheduler, FakeLoader, FakeClock]:
    loader = loader or FakeLoader()
    clock = FakeClock()
    defaults = dict(num_parallel=2, max_loaded=2, max_queue=8, keep_alive=300.0)
    sched = Scheduler(loader, clock=clock, embedder=fake_embedder, **{**defaults, **kw})
    return sched, loader, clock


def events(q: queue.Queue) -> list[Any]:
    """Every event of one request, up to its last."""
    out = []
    while True:
        ev = q.get(timeout=TIMEOUT)
        out.append(ev)
        if isinstance(ev, BaseException) or isinstance(ev, EmbedResult) or ev.done:
            return out


def submit(lease: Any, first_id: int, n_tokens: int) -> tuple[Any, queue.Queue]:
    q: queue.Queue = queue.Queue()
    ticket = lease.submit([first_id, 1, 2], n_tokens, q.put)
    return ticket, q


# -- keep_alive values ---------------------------------------------------------

@pytest.mark.parametrize("value, seconds", [
    (0, 0.0), (30, 30.0), (1.5, 1.5), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("0", 0.0),
    ("10", 10.0), ("-1", FOREVER), (-5, FOREVER), ("-1m", FOREVER), ("2h45m30.5s", 9930.5),
    (1e300, FOREVER), (float("inf"), FOREVER), (-float("inf"), FOREVER), ("99999999999h", FOREVER),
    pytest.param(10**400, FOREVER, id="10**400"), (MAX_KEEP_ALIVE, MAX_KEEP_ALIVE),
])
def test_parse_keep_alive(value: object, seconds: float) -> None:
    assert parse_keep_alive(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5x", "m", "1.2.3s", True, None, [], float("nan"), "5 m"])
def test_parse_keep_alive_rejects(value: object) -> None:
    with pytest.raises(InvalidParameter):
        parse_keep_alive(value)


# -- loading, keep_alive, eviction ----------------------------------------------

def test_loads_on_demand_once_and_reuses() -> None:
    sched, loader, _ = make()
    with sched.acquire("a", "A", 1) as first:
        assert first.load_duration == 123
    with sched.acquire("a", "A", 1) as second:
        assert second.load_duration == 0
        assert second.model is first.model
    assert len(loader.loads) == 1
    sched.close()


def test_keep_alive_expiry_is_driven_by_the_clock() -> None:
    sched, loader, clock = make()
    sched.acquire("a", "A", 1, keep_alive=60).release()
    clock.advance(59)
    assert sched.reap() == pytest.approx(clock() + 1)
    assert [m.name for m in sched.loaded()] == ["a"]
    assert sched.loaded()[0].expires_in == pytest.approx(1)
    clock.advance(1)
    assert sched.reap() is None
    assert sched.loaded() == []
    assert loader.models[0].closed.wait(TIMEOUT)
    sched.close()


class ReaperTrapClock(FakeClock):
    """A fake clock that raises once when the reaper thread reads it, if told to."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_in_reaper = False
        self.failed = threading.Event()

    def __call__(self) -> float:
        if self.fail_in_reaper and threading.current_thread().name == "kettle-reaper":
            self.fail_in_reaper = False
            self.failed.set()
            raise RuntimeError("a clock that fails")
        return self.t


def test_the_reaper_survives_a_huge_deadline_and_its_own_errors() -> None:
    loader = FakeLoader()
    clock = ReaperTrapClock()
    sched = Scheduler(loader, clock=clock, embedder=fake_embedder, num_parallel=2, max_loaded=2, max_queue=8,
                      keep_alive=300.0)
    sched.start()
    reaper = sched._reaper
    assert reaper is not None
    sched.acquire("huge", "H", 1, keep_alive=1e300).release()  # a deadline no wait() accepts
    reaper.join(0.5)
    assert reaper.is_alive()
    clock.fail_in_reaper = True
    sched.wake_waiters()
    assert clock.failed.wait(TIMEOUT)
    reaper.join(0.5)
    assert reaper.is_alive()
    sched.acquire("b", "B", 1, keep_alive=60).release()  # and it still unloads what expires
    clock.advance(61)
    sched.wake_waiters()
    assert loader.models[-1].closed.wait(TIMEOUT)
    assert [m.name for m in sched.loaded()] == ["huge"]
    sched.close()


def test_keep_alive_zero_unloads_after_the_request_and_negative_keeps_forever() -> None:
    sched, loader, clock = make()
    sched.acquire("zero", "Z", 1, keep_alive=0).release()
    assert sched.loaded() == []
    assert loader.models[0].closed.wait(TIMEOUT)
    sched.acquire("forever", "F", 1, keep_alive=FOREVER).release()
    clock.advance(10**9)
    assert sched.reap() is None
    assert [m.name for m in sched.loaded()] == ["forever"]
    assert sched.loaded()[0].expires_in is None
    sched.close()


def test_a_held_model_never_expires_and_the_last_request_sets_keep_alive() -> None:
    sched, _, clock = make()
    a = sched.acquire("a", "A", 1, keep_alive=10)
    clock.advance(100)
    sched.reap()
    assert [m.name for m in sched.loaded()] == ["a"]
    sched.acquire("a", "A", 1, keep_alive=0).release()  # a is still held: no unload yet
    assert [m.name for m in sched.loaded()] == ["a"]
    a.release()
    assert sched.loaded() == []
    sched.close()


def test_least_recently_used_idle_model_is_evicted() -> None:
    sched, loader, clock = make(max_loaded=2)
    sched.acquire("a", "A", 1).release()
    clock.advance(1)
    sched.acquire("b", "B", 1).release()
    clock.advance(1)
    sched.acquire("a", "A", 1).release()  # a is now more recent than b
    assert sched.plan("c", "C", 1) == (Action.EVICT, "b")
    sched.acquire("c", "C", 1).release()
    assert sorted(m.name for m in sched.loaded()) == ["a", "c"]
    assert loader.models[1].closed.wait(TIMEOUT)
    assert not loader.models[0].closed.is_set()
    sched.close()


def test_a_model_in_use_is_never_evicted() -> None:
    sched, _, _ = make(max_loaded=1)
    held = sched.acquire("a", "A", 1)
    assert sched.plan("b", "B", 1) == (Action.WAIT, None)
    got: queue.Queue = queue.Queue()
    waiter = threading.Thread(target=lambda: got.put(sched.acquire("b", "B", 1)))
    waiter.start()
    held.release()  # now a is idle: the waiter evicts it and loads b
    lease = got.get(timeout=TIMEOUT)
    assert [m.name for m in sched.loaded()] == ["b"]
    lease.release()
    waiter.join(TIMEOUT)
    sched.close()


def test_a_load_time_option_change_reloads() -> None:
    sched, loader, _ = make()
    sched.acquire("a", "A", ("num_ctx", 2048)).release()
    assert sched.plan("a", "A", ("num_ctx", 4096)) == (Action.EVICT, "a")
    with sched.acquire("a", "A", ("num_ctx", 4096)) as lease:
        assert lease.load_duration == 123
        assert sched.plan("a", "A", ("num_ctx", 8192)) == (Action.DRAIN, "a")
    assert [opts for _, opts in loader.loads] == [("num_ctx", 2048), ("num_ctx", 4096)]
    assert loader.models[0].closed.wait(TIMEOUT)
    sched.close()


def test_a_busy_model_drains_before_reloading() -> None:
    sched, loader, _ = make()
    held = sched.acquire("a", "A", 1)
    got: queue.Queue = queue.Queue()
    waiter = threading.Thread(target=lambda: got.put(sched.acquire("a", "A", 2)))
    waiter.start()
    held.release()
    lease = got.get(timeout=TIMEOUT)
    assert lease.resident.load_options == 2 and len(loader.loads) == 2
    lease.release()
    waiter.join(TIMEOUT)
    sched.close()


def test_a_failed_load_leaves_nothing_behind() -> None:
    sched, loader, _ = make(FakeLoader(fail={"BAD"}))
    with pytest.raises(InvalidParameter):
        sched.acquire("bad", "BAD", 1)
    assert sched.loaded() == [] and sched.plan("bad", "BAD", 1) == (Action.LOAD, None)
    with pytest.raises(InvalidParameter):
        sched.acquire("bad", "BAD", 1)
    sched.acquire("a", "A", 1).release()  # the queue count was given back
    sched.close()


def test_queue_limit_answers_busy_at_once_and_recovers() -> None:
    sched, _, _ = make(max_queue=2)  # 2 slots: 2 requests take them, 2 may wait
    first = sched.acquire("a", "A", 1)
    second = sched.acquire("a", "A", 1)
    held = [sched.acquire("a", "A", 1) for _ in range(2)]
    with pytest.raises(ServerBusy):
        sched.acquire("a", "A", 1)
    first.release()
    sched.acquire("a", "A", 1).release()
    second.release()
    for lease in held:
        lease.release()
    sched.close()


def test_a_burst_no_larger_than_the_slots_is_never_refused() -> None:
    """KETTLE_NUM_PARALLEL=8, KETTLE_MAX_QUEUE=4: a burst of 8 all get in (the queue
    counts only requests that wait for a slot), and all 8 run together."""
    sched, _, _ = make(num_parallel=8, max_queue=4)
    leases = [sched.acquire("a", "A", 1) for _ in range(8)]
    runs = [submit(lease, 10 * i, 3) for i, lease in enumerate(leases)]
    for _, q in runs:
        assert events(q)[-1].done
    more = [sched.acquire("a", "A", 1) for _ in range(8 + 4)]  # 8 for the slots, 4 wait
    with pytest.raises(ServerBusy):
        sched.acquire("a", "A", 1)
    for lease in leases + more:
        lease.release()
    sched.close()


def test_cancelled_waiter_leaves_the_queue() -> None:
    sched, _, _ = make(max_loaded=1)
    held = sched.acquire("a", "A", 1)
    cancel = threading.Event()
    got: queue.Queue = queue.Queue()

    def wait() -> None:
        try:
            got.put(sched.acquire("b", "B", 1, cancel=cancel))
        except Cancelled as e:
            got.put(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    cancel.set()
    sched.wake_waiters()
    assert isinstance(got.get(timeout=TIMEOUT), Cancelled)
    waiter.join(TIMEOUT)
    assert [m.name for m in sched.loaded()] == ["a"]
    held.release()
    sched.close()


# -- requests: continuous batching, cancel, errors, embeddings -----------------

def test_requests_stream_their_own_chunks() -> None:
    sched, _, _ = make()
    with sched.acquire("a", "A", 1) as one, sched.acquire("a", "A", 1) as two:
        _, q1 = submit(one, 7, 3)
        _, q2 = submit(two, 9, 2)
        e1, e2 = events(q1), events(q2)
    assert [c.text for c in e1] == ["7:1", "7:2", "7:3"] and e1[-1].done_reason == "length"
    assert [c.text for c in e2] == ["9:1", "9:2"]
    sched.close()


def test_a_new_request_joins_the_running_batch() -> None:
    sched, loader, _ = make(FakeLoader(gated=True))
    with sched.acquire("a", "A", 1) as one, sched.acquire("a", "A", 1) as two:
        engine = loader.models[0].engine
        _, q1 = submit(one, 7, 10)
        engine.gate.release()
        assert q1.get(timeout=TIMEOUT).text == "7:1"
        _, q2 = submit(two, 9, 2)
        engine.gate.release(12)
        e1, e2 = events(q1), events(q2)
    assert len(e1) == 9 and len(e2) == 2
    joined = [i for i, batch in enumerate(engine.batches) if batch == [7, 9]]
    assert joined and joined[0] <= 2, engine.batches  # joined at the next step or the one after
    sched.close()


def test_a_request_waits_for_a_slot_then_runs() -> None:
    sched, loader, _ = make(num_parallel=1)
    with sched.acquire("a", "A", 1) as one, sched.acquire("a", "A", 1) as two:
        _, q1 = submit(one, 1, 3)
        _, q2 = submit(two, 2, 3)
        assert len(events(q1)) == 3 and len(events(q2)) == 3
    assert all(len(batch) == 1 for batch in loader.models[0].engine.batches)
    sched.close()


def test_cancel_frees_the_slot_for_the_queued_request() -> None:
    sched, loader, _ = make(FakeLoader(gated=True), num_parallel=1)
    with sched.acquire("a", "A", 1) as one, sched.acquire("a", "A", 1) as two, sched.acquire("a", "A", 1) as three:
        engine = loader.models[0].engine
        t1, q1 = submit(one, 1, 1000)
        t2, q2 = submit(two, 2, 2)
        t3, q3 = submit(three, 3, 1)
        engine.gate.release()
        assert q1.get(timeout=TIMEOUT).text == "1:1"
        t3.cancel()  # queued: gone at once
        assert isinstance(q3.get(timeout=TIMEOUT), Cancelled)
        t1.cancel()  # running: ends at the engine's next step
        engine.gate.release(3)
        last = events(q1)[-1]
        assert last.done and last.done_reason == "cancel"
        assert [c.text for c in events(q2)] == ["2:1", "2:2"]
    sched.close()


def test_releasing_a_lease_cancels_its_request() -> None:
    sched, loader, _ = make(FakeLoader(gated=True), num_parallel=1)
    lease = sched.acquire("a", "A", 1)
    engine = loader.models[0].engine
    _, q = submit(lease, 5, 1000)
    engine.gate.release()
    assert q.get(timeout=TIMEOUT).text == "5:1"
    lease.release()  # the client went away
    engine.gate.release()
    assert events(q)[-1].done_reason == "cancel"
    with sched.acquire("a", "A", 1) as again:
        _, q2 = submit(again, 6, 1)
        engine.gate.release()
        assert events(q2)[-1].text == "6:1"
    sched.close()


def test_an_engine_error_fails_only_that_request() -> None:
    sched, _, _ = make()
    with sched.acquire("a", "A", 1) as one, sched.acquire("a", "A", 1) as two:
        q1: queue.Queue = queue.Queue()
        one.submit(list(range(200)), 3, q1.put)  # longer than the fake's context
        _, q2 = submit(two, 4, 2)
        assert isinstance(q1.get(timeout=TIMEOUT), ContextOverflow)
        assert [c.text for c in events(q2)] == ["4:1", "4:2"]
    sched.close()


def test_embeddings_run_between_steps_on_a_free_slot() -> None:
    sched, loader, _ = make(FakeLoader(gated=True), num_parallel=2)
    with sched.acquire("a", "A", 1) as gen, sched.acquire("a", "A", 1) as emb:
        engine = loader.models[0].engine
        _, q1 = submit(gen, 1, 5)
        engine.gate.release()
        assert q1.get(timeout=TIMEOUT).text == "1:1"
        q2: queue.Queue = queue.Queue()
        emb.embed(["xy", "z"], q2.put)
        engine.gate.release(5)
        result = q2.get(timeout=TIMEOUT)
        assert isinstance(result, EmbedResult) and result.prompt_tokens == 3
        assert result.vectors.shape == (2, 2) and result.vectors[0, 0] == 1  # slot 0 is the generation's
        assert len(events(q1)) == 4
    sched.close()


def test_ps_reports_state_and_close_unloads_everything() -> None:
    sched, loader, _ = make()
    lease = sched.acquire("a", "A", 1)
    (info,) = sched.loaded()
    assert (info.name, info.state, info.active, info.expires_in) == ("a", ModelState.READY, 1, None)
    lease.release()
    sched.close()
    assert loader.models[0].closed.wait(TIMEOUT)
    with pytest.raises(ServerBusy):
        sched.acquire("a", "A", 1)
