"""What every handler shares: the scheduler, the model catalog, limits, and a thread pool.

Blocking work (waiting for a model to load or for room to load it, reading the
store, rendering and tokenizing prompts, compiling a JSON schema) runs in worker
threads through ``ServerState.blocking``, never on the event loop, so one slow
request does not stall the streams of the others. Its limiter is sized to the
queue: every request the scheduler may hold can wait in a thread at once.

``Shutdown`` holds what to stop when the server is told to exit: each running
generation registers its cancel, and ``begin`` (from the signal handler's thread)
cancels them all, so the engine ends each at its next step and its stream ends with
``done_reason: "shutdown"``; requests still waiting for a model get 503.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from kettle.engine.scheduler import Scheduler
from kettle import config
from kettle.server.conversations import Conversations
from kettle.server.metrics import Metrics
from kettle.server.models import Catalog
from kettle.server.stored_completions import StoredCompletions

T = TypeVar("T")

EXTRA_THREADS = 16  # beyond the queue: store reads, show, create, pull


class Shutdown:
    """See the module docstring; thread-safe."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()

    def register(self, cancel: Callable[[], None]) -> Callable[[], None]:
        """Run ``cancel`` when the shutdown begins (at once if it has); returns the unregister."""
        key = next(self._ids)
        with self._lock:
            self._cancels[key] = cancel
        if self.started.is_set():
            cancel()

        def unregister() -> None:
            with self._lock:
                self._cancels.pop(key, None)

        return unregister

    def begin(self) -> None:
        self.started.set()
        with self._lock:
            cancels = list(self._cancels.values())
        for cancel in cancels:
            cancel()


@dataclass
class ServerState:
    scheduler: Scheduler
    catalog: Catalog
    max_prompt: int  # characters in one prompt, message, system or template
    limiter: CapacityLimiter = field(init=False)
    shutdown: Shutdown = field(default_factory=Shutdown)
    conversations: Conversations = field(default_factory=Conversations)  # /v1/responses' stored answers
    completions: StoredCompletions = field(init=False)  # /v1/chat/completions with store: true
    metrics: Metrics = field(default_factory=Metrics)  # GET /metrics; watches the scheduler

    def __post_init__(self) -> None:
        sched = self.scheduler
        self.limiter = CapacityLimiter(sched.max_queue + sched.num_parallel * sched.max_loaded + EXTRA_THREADS)
        self.metrics.watch(sched)
        self.completions = StoredCompletions(self.catalog.store.root / "completions",
                                             config.get_int("KETTLE_MAX_STORED_COMPLETIONS"))

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def cancel_waiter(self, cancel: threading.Event) -> Callable[[], None]:
        """What to run when a client disconnects while its request waits in ``acquire``."""

        def run() -> None:
            cancel.set()
            self.scheduler.wake_waiters()

        return run
