"""The scheduler: which models are loaded, for how long, and which requests run on them.

This module is the model table (load, lease, keep_alive, evict, drain, the queue's bound);
each loaded model's queue, running sequences and thread are its ``Worker``
(``kettle.engine.worker``).

An explicit state machine (after ollama's ``server/sched.go``), with the loader,
the embedder and the clock passed in, so its tests need no model and no sleeps.

Models (``Resident``), keyed by name::

    (absent) --acquire, room--> LOADING --loader ok--> READY --leases 0 and expired/keep_alive 0--> UNLOADED
                                   |                     |  \\--acquire with other spec/load options,
                                   +--loader failed--> (absent)  or unload(): DRAINING --leases 0--> UNLOADED
    READY, leases 0, least recently used --another model needs room--> UNLOADED

Requests (``Ticket``) inside a READY model::

    QUEUED --a slot frees (FIFO)--> RUNNING --last chunk--> DONE
       \\--cancel--> CANCELLED       \\--cancel: the engine ends it at its next step--> CANCELLED
                                     \\--engine error--> FAILED

* ``acquire(name, spec, load_options, keep_alive)`` returns a ``Lease`` pinning a
  READY model, loading it on demand (in the caller's thread), evicting the least
  recently used idle model when ``max_loaded`` are resident, reloading when the
  spec or a load-time option (num_ctx, num_batch, num_thread) differs. It waits on
  a condition while a model loads or drains, and raises ``ServerBusy`` at once when
  ``max_queue`` requests already wait for a slot (requests a free slot will take
  do not count, so none is refused while a slot is free).
* ``Lease.submit(prompt_ids, params, sink)`` queues a generation; the model's worker
  thread admits it into a free engine slot at its next step (continuous batching:
  every active sequence decodes in one batched ``engine.step()``), and hands each
  ``Chunk`` to ``sink`` from the worker thread (sinks must not block). The last
  event is a ``Chunk`` with ``done`` or an exception.
* ``Lease.embed(texts, truncate, sink)`` queues an embedding; the worker runs it
  between two steps on a slot no active sequence uses.
* ``Lease.release()`` cancels what the lease still has running (a client that
  disconnected) and starts the keep_alive countdown when nobody holds the model:
  ``keep_alive`` seconds, 0 unloads at once, negative keeps it forever.
* ``reap()`` unloads every idle model whose keep_alive has passed and returns the
  next deadline; ``start()`` runs it in a thread that waits on a condition until
  that deadline (no polling).
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kettle import config
from kettle.engine.worker import (
    Deliveries,
    Embedder,
    EngineLike,
    Sink,
    Ticket,
    TicketKind,
    Worker,
    deliver,
    embed_on_slot,
)
from kettle.errors import Cancelled, InvalidParameter, KettleError, ServerBusy

log = logging.getLogger("kettle.scheduler")

Clock = Callable[[], float]  # monotonic seconds
REAP_WAIT_MAX = 3600.0  # the reaper re-checks at least hourly (a wait must stay under threading.TIMEOUT_MAX)
REAP_RETRY = 1.0  # seconds before the reaper retries after an error


class RunnerLike(Protocol):
    n_slots: int  # KV cache slots: the most sequences decoded together


class LoadedModel(Protocol):
    """What the scheduler needs of ``kettle.api.Model``."""

    engine: EngineLike
    runner: RunnerLike
    load_duration: int  # ns

    def close(self) -> None: ...


Loader = Callable[[Any, Any, int], LoadedModel]  # (spec, load_options, num_parallel) -> model


# Go's time.ParseDuration units, in seconds.
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
FOREVER = -1.0  # keep_alive: never unload
MAX_KEEP_ALIVE = 2**63 / 1e9  # seconds (Go's longest time.Duration, ~292 years); longer is forever


def parse_keep_alive(value: object, name: str = "keep_alive") -> float:
    """ollama's keep_alive -> seconds: a number of seconds, or a Go duration string
    (``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0"``, ``"-1s"``; a bare integer string is
    taken as seconds). Any negative value means forever (``FOREVER``), and so does one
    longer than ``MAX_KEEP_ALIVE`` (``1e300``, infinity); 0 unloads at once.
    Raises ``InvalidParameter`` for anything else (bools, NaN, malformed strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidParameter(name, value, "expected a number of seconds or a duration such as \"5m\"")
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if re.fullmatch(r"\d+", body):
            seconds = float(body)
        elif body and _DURATION_PART.sub("", body) == "":
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(body))
        else:
            raise InvalidParameter(name, value, "expected a duration such as \"5m\", \"1h30m\" or \"-1\"")
        value = sign * seconds
    if isinstance(value, float) and math.isnan(value):
        raise InvalidParameter(name, value, "expected a number of seconds, not NaN")
    return FOREVER if value < 0 or value > MAX_KEEP_ALIVE else float(value)


class ModelState(enum.Enum):
    LOADING = "loading"  # the loader runs; acquirers wait
    READY = "ready"  # serving (idle when no lease holds it)
    DRAINING = "draining"  # no new leases; unloaded when the last lease goes
    UNLOADED = "unloaded"  # out of the table; its worker ends and closes the model


class Action(enum.Enum):
    """What ``acquire`` does next (``Scheduler.plan``)."""

    USE = "use"  # the model is READY with this spec and load options: lease it
    LOAD = "load"  # there is room: load it in the caller's thread
    EVICT = "evict"  # unload this idle model (least recently used, or a stale load of this name)
    DRAIN = "drain"  # this name is loaded differently and in use: let it finish, then reload
    WAIT = "wait"  # wait for a load, a drain or a release


@dataclass(eq=False)
class Resident:
    """A model in the table, and everything the scheduler tracks about it."""

    name: str
    spec: Any
    load_options: Any
    state: ModelState
    model: LoadedModel | None = None
    leases: int = 0
    keep_alive: float = 300.0  # seconds; 0 unload when idle, < 0 forever
    expires_at: float | None = None  # clock time; None: held, or forever
    last_used: float = 0.0
    worker: Worker | None = None  # its queue, running sequences and thread, once READY

    @property
    def running(self) -> int:
        return len(self.worker.running) if self.worker is not None else 0

    def matches(self, spec: Any, load_options: Any) -> bool:
        return self.spec == spec and self.load_options == load_options


@dataclass(frozen=True)
class ResidentInfo:
    """A loaded model, as ``/api/ps`` shows it."""

    name: str
    spec: Any
    load_options: Any
    state: ModelState
    expires_in: float | None  # seconds from now; None: forever or in use
    keep_alive: float  # seconds once idle; FOREVER (-1): never unloaded
    active: int  # requests holding it
    running: int  # sequences in engine slots


class Lease:
    """A request's hold on a READY model (a context manager; ``release`` is idempotent)."""

    def __init__(self, scheduler: Scheduler, resident: Resident, keep_alive: float, load_duration: int) -> None:
        self.scheduler = scheduler
        self.resident = resident
        self.keep_alive = keep_alive
        self.load_duration = load_duration  # ns this request spent loading the model (0: it was loaded)
        self.queued = True  # counted in the queue until a slot takes its first ticket
        self.released = False
        self.tickets: list[Ticket] = []

    @property
    def model(self) -> Any:
        return self.resident.model

    def submit(self, prompt_ids: list[int], params: Any, sink: Sink, constraint: Any = None) -> Ticket:
        ticket = Ticket(TicketKind.GENERATE, self, sink, prompt_ids=list(prompt_ids), params=params,
                        constraint=constraint)
        return self.scheduler._enqueue(ticket)

    def embed(self, texts: Sequence[str], sink: Sink, truncate: bool = True) -> Ticket:
        ticket = Ticket(TicketKind.EMBED, self, sink, texts=list(texts), truncate=truncate)
        return self.scheduler._enqueue(ticket)

    def release(self) -> None:
        self.scheduler._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Scheduler:
    """Loaded models, keep_alive, slots and the queue; see the module docstring."""

    def __init__(
        self,
        loader: Loader,
        *,
        clock: Clock = time.monotonic,
        embedder: Embedder = embed_on_slot,
        num_parallel: int | None = None,
        max_loaded: int | None = None,
        max_queue: int | None = None,
        keep_alive: float | None = None,
    ) -> None:
        self._loader = loader
        self._clock = clock
        self._embedder = embedder
        self.num_parallel = _positive("KETTLE_NUM_PARALLEL", num_parallel)
        self.max_loaded = _positive("KETTLE_MAX_LOADED_MODELS", max_loaded)
        self.max_queue = max_queue if max_queue is not None else config.get_int("KETTLE_MAX_QUEUE")
        self.default_keep_alive = (
            keep_alive if keep_alive is not None
            else parse_keep_alive(config.get("KETTLE_KEEP_ALIVE"), "KETTLE_KEEP_ALIVE")
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # acquirers and the reaper wait on it
        self._models: dict[str, Resident] = {}
        self._queued = 0  # leases that hold no slot yet
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._ids = itertools.count()

    # -- models -----------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def acquire(self, name: str, spec: Any, load_options: Any, keep_alive: float | None = None,
                cancel: threading.Event | None = None) -> Lease:
        """A lease on model ``name`` loaded from ``spec`` with ``load_options`` (see module doc).

        Raises ``ServerBusy`` when the queue is full, ``Cancelled`` when ``cancel`` is set
        while waiting (call ``wake_waiters`` after setting it), and whatever the loader raises.
        """
        ka = self.default_keep_alive if keep_alive is None else keep_alive
        with self._lock:
            if self._closed:
                raise ServerBusy("the server is shutting down")
            waiting = self._queued - self._free_slots(name)  # leases a free slot will take do not wait
            if waiting >= self.max_queue:
                raise ServerBusy(f"server busy: {waiting} requests are already waiting for a slot (KETTLE_MAX_QUEUE)")
            self._queued += 1
            try:
                return self._acquire_locked(name, spec, load_options, ka, cancel)
            except BaseException:
                self._queued -= 1
                self._changed.notify_all()
                raise

    def _free_slots(self, name: str) -> int:
        """Slots of model ``name`` no running request holds (lock held); a model not yet
        loaded will have ``num_parallel``."""
        r = self._models.get(name)
        if r is None:
            return self.num_parallel
        return r.worker.free_slots() if r.worker is not None else self.num_parallel

    def plan(self, name: str, spec: Any, load_options: Any) -> tuple[Action, str | None]:
        """What ``acquire`` would do next for this request: (action, the model it acts on)."""
        with self._lock:
            action, r = self._plan(name, spec, load_options)
            return action, (r.name if r is not None else None)

    def _plan(self, name: str, spec: Any, load_options: Any) -> tuple[Action, Resident | None]:
        """The transition table of ``acquire`` (lock held; decides, changes nothing)."""
        r = self._models.get(name)
        if r is not None:
            if r.state is ModelState.READY and r.matches(spec, load_options):
                return Action.USE, r
            if r.state is ModelState.READY:  # another spec or other load-time options: reload
                return (Action.EVICT, r) if r.leases == 0 else (Action.DRAIN, r)
            return Action.WAIT, r  # LOADING or DRAINING
        if len(self._models) < self.max_loaded:
            return Action.LOAD, None
        idle = [m for m in self._models.values() if m.state is ModelState.READY and m.leases == 0]
        if idle:
            return Action.EVICT, min(idle, key=lambda m: m.last_used)
        return Action.WAIT, None  # every resident model is in use

    def _acquire_locked(self, name: str, spec: Any, load_options: Any, ka: float,
                        cancel: threading.Event | None) -> Lease:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("the client went away while waiting for the model")
            if self._closed:
                raise ServerBusy("the server is shutting down")
            action, r = self._plan(name, spec, load_options)
            if action is Action.USE:
                assert r is not None
                return self._lease(r, ka, 0)
            if action is Action.LOAD:
                return self._load(name, spec, load_options, ka)
            if action is Action.EVICT:
                assert r is not None
                self._unload(r)
            elif action is Action.DRAIN:
                assert r is not None
                r.state = ModelState.DRAINING
                self._changed.wait()
            else:
                self._changed.wait()

    def _load(self, name: str, spec: Any, load_options: Any, ka: float) -> Lease:
        r = Resident(name, spec, load_options, ModelState.LOADING)
        self._models[name] = r
        self._lock.release()
        try:
            model = self._loader(spec, load_options, self.num_parallel)
        except BaseException:
            self._lock.acquire()
            del self._models[name]
            self._changed.notify_all()
            raise
        self._lock.acquire()
        r.model = model
        r.state = ModelState.READY
        r.worker = Worker(model, self._lock, self._embedder, f"kettle-model-{next(self._ids)}",
                          admitted=self._unqueue, idle=self._changed.notify_all)
        r.worker.start()
        self._changed.notify_all()
        return self._lease(r, ka, int(model.load_duration))

    def _lease(self, r: Resident, ka: float, load_ns: int) -> Lease:
        r.leases += 1
        r.keep_alive = ka
        r.expires_at = None
        r.last_used = self._clock()
        return Lease(self, r, ka, load_ns)

    def _release(self, lease: Lease) -> None:
        deliveries: Deliveries = []
        with self._lock:
            if lease.released:
                return
            lease.released = True
            for t in lease.tickets:
                self._cancel_locked(t, deliveries)
            if lease.queued:
                lease.queued = False
                self._queued -= 1
            r = lease.resident
            r.leases -= 1
            r.last_used = self._clock()
            if r.leases == 0 and r.state is not ModelState.UNLOADED:
                if r.state is ModelState.DRAINING or r.keep_alive == 0:
                    self._unload(r)
                elif r.keep_alive > 0:
                    r.expires_at = r.last_used + r.keep_alive
            if r.worker is not None:
                r.worker.notify()
            self._changed.notify_all()
        deliver(deliveries)

    def unload(self, name: str) -> bool:
        """Unload ``name`` now if idle, else once its last request ends; False if not loaded."""
        with self._lock:
            r = self._models.get(name)
            if r is None:
                return False
            if r.state is ModelState.READY and r.leases == 0:
                self._unload(r)
            else:
                r.keep_alive = 0
            return True

    def _unload(self, r: Resident) -> None:
        """Take ``r`` out of the table (lock held); its worker finishes and closes the model."""
        r.state = ModelState.UNLOADED
        if self._models.get(r.name) is r:
            del self._models[r.name]
        if r.worker is not None:
            r.worker.stop()
        self._changed.notify_all()

    def reap(self) -> float | None:
        """Unload idle models whose keep_alive has passed; the next deadline, or None."""
        with self._lock:
            return self._reap_locked()

    def _reap_locked(self) -> float | None:
        now = self._clock()
        deadline: float | None = None
        for r in list(self._models.values()):
            if r.state is not ModelState.READY or r.leases or r.expires_at is None:
                continue
            if r.expires_at <= now:
                self._unload(r)
            else:
                deadline = r.expires_at if deadline is None else min(deadline, r.expires_at)
        return deadline

    def loaded(self) -> list[ResidentInfo]:
        with self._lock:
            now = self._clock()
            return [
                ResidentInfo(r.name, r.spec, r.load_options, r.state,
                             None if r.expires_at is None else max(0.0, r.expires_at - now),
                             r.keep_alive, r.leases, r.running)
                for r in self._models.values() if r.state is not ModelState.LOADING
            ]

    def wake_waiters(self) -> None:
        """Wake threads waiting in ``acquire`` (after setting their cancel event)."""
        with self._lock:
            self._changed.notify_all()

    # -- requests ---------------------------------------------------------------

    def _enqueue(self, ticket: Ticket) -> Ticket:
        lease = ticket.lease
        with self._lock:
            if lease.released or lease.resident.state is ModelState.UNLOADED:
                raise KettleError("the model was unloaded before the request could run")
            assert lease.resident.worker is not None  # a lease holds a READY model
            lease.tickets.append(ticket)
            lease.resident.worker.enqueue(ticket)
        return ticket

    def _cancel(self, ticket: Ticket) -> None:
        deliveries: Deliveries = []
        with self._lock:
            self._cancel_locked(ticket, deliveries)
        deliver(deliveries)

    def _cancel_locked(self, t: Ticket, deliveries: Deliveries) -> None:
        worker = t.lease.resident.worker
        if worker is not None:
            worker.cancel(t, deliveries)

    @property
    def waiting(self) -> int:
        """Requests that hold no slot yet (waiting for one, or for their model to load)."""
        return self._queued

    def _unqueue(self, lease: Lease) -> None:
        if lease.queued:
            lease.queued = False
            self._queued -= 1
            self._changed.notify_all()

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Run ``reap`` in a thread, waking at each keep_alive deadline."""
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="kettle-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        """``reap`` until closed; an error is logged and the loop goes on (the thread must live)."""
        with self._lock:
            while not self._closed:
                try:
                    deadline = self._reap_locked()
                    wait = None if deadline is None else min(max(0.0, deadline - self._clock()), REAP_WAIT_MAX)
                except Exception:  # noqa: BLE001 - unloading idle models must go on
                    log.exception("the idle-model reaper failed; it retries in %g s", REAP_RETRY)
                    wait = REAP_RETRY
                self._changed.wait(wait)

    def close(self, timeout: float = 10.0) -> None:
        """Unload every model and stop the threads."""
        with self._lock:
            self._closed = True
            residents = list(self._models.values())
            for r in residents:
                self._unload(r)  # its worker cancels what runs and ends
            self._changed.notify_all()
        for r in residents:
            if r.worker is not None:
                r.worker.thread.join(timeout)
        if self._reaper is not None:
            self._reaper.join(timeout)


def _positive(name: str, value: int | None) -> int:
    n = value if value is not None else config.get_int(name)
    if n < 1:
        raise KettleError(f"{name} must be at least 1, got {n}")
    return n
