"""A loaded model's requests and the thread that runs them (continuous batching).

``Worker`` holds one model's queue (``pending``, FIFO) and its running sequences, and runs
its thread::

    wait for work -> admit queued tickets into free engine slots -> one batched engine.step()
                  -> hand each Chunk to its ticket's sink -> again, until stopped

A ticket at the head of the queue that is an embedding runs between two steps, on a slot no
active sequence uses. The worker shares the scheduler's lock (``kettle.engine.scheduler``,
the model table): every method that says "lock held" is called under it, and the thread
takes it only to admit and to record what a step produced, never while the engine runs.
Events reach the sinks outside the lock; a failing sink (its reader is gone) never stops the
worker. When stopped (the model was unloaded) it cancels what it still holds and closes the model.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kettle.errors import Cancelled

if TYPE_CHECKING:
    from kettle.engine.scheduler import Lease

log = logging.getLogger("kettle.scheduler")


class EngineLike(Protocol):
    """What the scheduler needs of ``kettle.engine.batch.BatchEngine``."""

    active: list[Any]

    @property
    def has_free_slot(self) -> bool: ...

    def add(self, prompt_ids: list[int], params: Any, cancel: threading.Event | None = None,
            constraint: Any = None) -> Any: ...

    def step(self) -> list[tuple[Any, Any]]: ...

    def release(self, seq: Any) -> None: ...


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray  # (n_texts, n_embd) float32, L2-normalised
    prompt_tokens: int  # tokens evaluated, all texts together


Embedder = Callable[[Any, int, Sequence[str], bool], EmbedResult]  # (model, free slot, texts, truncate)
Sink = Callable[[Any], None]  # receives Chunk / EmbedResult, or an exception as the last event


Embedder = Callable[[Any, int, Sequence[str], bool], EmbedResult]  # (model, free slot, texts, truncate)
Sink = Callable[[Any], None]  # receives Chunk / EmbedResult, or an exception as the last event


def embed_on_slot(model: Any, slot: int, texts: Sequence[str], truncate: bool) -> EmbedResult:
    """``Model.embed`` on KV slot ``slot`` (which no active sequence uses)."""
    batch = [model.tokenize(text, add_special=True, parse_special=True) for text in texts]
    vectors, used = model.embed_ids(batch, slot=slot, truncate=truncate)
    return EmbedResult(vectors, used)


class RequestState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL = frozenset({RequestState.DONE, RequestState.CANCELLED, RequestState.FAILED})


class TicketKind(enum.Enum):
    GENERATE = "generate"
    EMBED = "embed"


@dataclass(eq=False)
class Ticket:
    """One generation or embedding inside a loaded model."""

    kind: TicketKind
    lease: Lease
    sink: Sink
    prompt_ids: list[int] = field(default_factory=list)
    params: Any = None
    constraint: Any = None
    texts: Sequence[str] = ()
    truncate: bool = True
    cancel_event: threading.Event = field(default_factory=threading.Event)
    state: RequestState = RequestState.QUEUED
    seq: Any = None  # the engine's Sequence while RUNNING

    def cancel(self) -> None:
        """Stop this request (from any thread); its slot frees at the engine's next step."""
        self.lease.scheduler._cancel(self)


Deliveries = list[tuple[Ticket, Any]]


class Worker:
    """One loaded model's queue, running sequences and thread (see the module docstring).

    ``admitted(lease)`` (lock held) is called when a lease's first ticket leaves the queue;
    ``idle()`` (lock held) when no sequence runs any more.
    """

    def __init__(self, model: Any, lock: threading.Lock, embedder: Embedder, name: str,
                 admitted: Callable[[Lease], None], idle: Callable[[], None]) -> None:
        self.model = model
        self.engine: EngineLike = model.engine
        self.wake = threading.Condition(lock)  # the thread waits on it for work
        self.pending: deque[Ticket] = deque()
        self.running: dict[int, Ticket] = {}  # id(seq) -> ticket
        self.stopping = False
        self._lock = lock
        self._embedder = embedder
        self._admitted = admitted
        self._idle = idle
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- called by the scheduler (lock held) -------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def free_slots(self) -> int:
        return max(0, self.model.runner.n_slots - len(self.running))

    def enqueue(self, ticket: Ticket) -> None:
        self.pending.append(ticket)
        self.wake.notify()

    def cancel(self, t: Ticket, deliveries: Deliveries) -> None:
        """Cancel ``t``: a queued one at once, a running one at the engine's next step."""
        if t.state in TERMINAL:
            return
        t.cancel_event.set()
        if t.state is RequestState.QUEUED:
            if t in self.pending:
                self.pending.remove(t)
            t.state = RequestState.CANCELLED
            deliveries.append((t, Cancelled("cancelled before it started")))
        self.wake.notify()

    def notify(self) -> None:
        self.wake.notify()

    def stop(self) -> None:
        """End the thread: what runs is cancelled, what waits gets ``Cancelled``; the model closes."""
        self.stopping = True
        for t in self.running.values():
            t.cancel_event.set()
        self.wake.notify()

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        engine = self.engine
        deliveries: Deliveries = []
        try:
            while True:
                with self._lock:
                    while not self.stopping and not engine.active and not self.pending:
                        self.wake.wait()
                    if self.stopping:
                        self._drop_all(deliveries)
                        break
                    job = self._admit(deliveries)
                deliver(deliveries)
                if job is not None:
                    self._run_embed(job)
                elif engine.active:
                    self._step()
        finally:
            deliver(deliveries)
            self.model.close()

    def _admit(self, deliveries: Deliveries) -> Ticket | None:
        """Move queued tickets into free slots, FIFO (lock held). Returns an embedding to run
        now, if the queue's head is one (admission stops there: it uses a free slot)."""
        engine = self.engine
        while self.pending:
            t = self.pending[0]
            if t.kind is TicketKind.EMBED:
                if self._free_slot() is None:
                    return None
                self.pending.popleft()
                t.state = RequestState.RUNNING
                self._admitted(t.lease)
                return t
            if not engine.has_free_slot:
                return None
            self.pending.popleft()
            try:
                t.seq = engine.add(t.prompt_ids, t.params, t.cancel_event, t.constraint)
            except Exception as e:  # noqa: BLE001 - ContextOverflow and the like: this request fails
                t.state = RequestState.FAILED
                deliveries.append((t, e))
                continue
            t.state = RequestState.RUNNING
            self.running[id(t.seq)] = t
            self._admitted(t.lease)
        return None

    def _free_slot(self) -> int | None:
        """A KV slot no active sequence uses, or None."""
        used = {seq.slot for seq in self.engine.active}
        return next((s for s in range(self.model.runner.n_slots) if s not in used), None)

    def _run_embed(self, t: Ticket) -> None:
        slot = self._free_slot()
        try:
            result: Any = self._embedder(self.model, slot, t.texts, t.truncate)
            state = RequestState.DONE
        except Exception as e:  # noqa: BLE001 - handed to the request, not swallowed
            result, state = e, RequestState.FAILED
        with self._lock:
            if t.state is not RequestState.RUNNING:
                return
            t.state = state
        deliver([(t, result)])

    def _step(self) -> None:
        engine = self.engine
        try:
            events = engine.step()
        except Exception as e:  # noqa: BLE001 - the engine failed: fail what it was running
            with self._lock:
                failed = list(self.running.values())
                self.running.clear()
                for t in failed:
                    t.state = RequestState.FAILED
                    engine.release(t.seq)
            deliver([(t, e) for t in failed])
            return
        deliveries: Deliveries = []
        with self._lock:
            for seq, chunk in events:
                t = self.running.get(id(seq))
                if t is None:
                    continue
                if chunk.done:
                    del self.running[id(seq)]
                    t.state = RequestState.CANCELLED if chunk.done_reason == "cancel" else RequestState.DONE
                deliveries.append((t, chunk))
            if not self.running:
                self._idle()
        deliver(deliveries)

    def _drop_all(self, deliveries: Deliveries) -> None:
        for t in list(self.running.values()):
            self.engine.release(t.seq)
            t.state = RequestState.CANCELLED
            deliveries.append((t, Cancelled("the model was unloaded")))
        self.running.clear()
        while self.pending:
            t = self.pending.popleft()
            t.state = RequestState.CANCELLED
            deliveries.append((t, Cancelled("the model was unloaded")))


def deliver(deliveries: Deliveries) -> None:
    """Hand events to their sinks; a failing sink (its reader is gone) never stops the worker."""
    for ticket, event in deliveries:
        try:
            ticket.sink(event)
        except Exception:  # noqa: BLE001
            log.exception("a request's sink failed")
    deliveries.clear()
