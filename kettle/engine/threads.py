"""How many threads a forward step uses, chosen by measuring.

A small step (a decode of one or a few sequences) is hundreds of short kernel
calls. With the cores free, spreading each call over every thread is up to
1.5x faster; with another process busy on a core, every parallel call waits
for a descheduled worker and the step runs 3-8x *slower* than on one thread
(measured on the 2-core dev box: SmolLM2, 4 sequences, 64 vs 11 steps/s).
No setting fits both, and the load changes while a server runs, so
``ThreadGovernor`` keeps timing both choices: per step size (grouped by powers
of two) it runs the one that has been faster, and now and then tries the other
once. On one thread it tries every thread after 8 steps, then less often while
the tries confirm the choice. On every thread a busy core shows by itself (the
steps slow by more than ``DRIFT``, which calls a try at once), so it tries one
thread only every ``PROBE_MAX`` steps, in case the warm-up measured a busy spell:
a try of one thread costs a step nearly twice as long (8B: +0.2 s), and at 8, 16,
32, 64 steps apart it took 3-5% of a short answer's time (1B, 8B shapes).

Results do not depend on the choice: every kernel computes the same bits on
any number of threads (see ``kettle.quant.kernels``).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

ADAPTIVE_TOKENS = 16  # steps of more tokens always use every thread (their calls are large)
WARMUP = 6  # first steps of a size: alternate the two choices (each one's first timing is discarded)
PROBE_FIRST, PROBE_MAX = 8, 256  # then, steps between two tries of the other choice: doubled
# each time a try confirms the choice (a try of the parallel one on a busy machine costs 3-8 steps)
MARGIN = 0.15  # a try must beat the current choice by this fraction to replace it (noise is +-10%)
DRIFT = 1.5  # the current choice slowing by this factor since it was chosen calls a try at once
RECENT = 5  # step times kept per choice; their median is its time (one slow step moves nothing)


@dataclass
class _Timings:
    recent: dict[int, deque[float]] = field(default_factory=dict)  # threads -> latest step times
    average: dict[int, float] = field(default_factory=dict)  # threads -> their median, seconds
    timed: set[int] = field(default_factory=set)  # the choices whose first step has been seen
    steps: int = 0
    current: int | None = None  # the choice steps run on, once warm
    baseline: float = 0.0  # its average when chosen or confirmed
    probe_every: int = PROBE_FIRST
    next_probe: int = 0
    probing: bool = False


def _bucket(n_tokens: int) -> int:
    """Step sizes timed together: 1, 2-3, 4-7, 8-15, 16 (a server's steps vary by a token or two)."""
    return n_tokens.bit_length()


class ThreadGovernor:
    """Picks 1 or ``n_thread`` threads for each step of ``n_tokens`` tokens (see module doc)."""

    def __init__(self, n_thread: int) -> None:
        self.n_thread = n_thread
        self._sizes: dict[int, _Timings] = {}

    def _adaptive(self, n_tokens: int) -> bool:
        return self.n_thread > 1 and n_tokens <= ADAPTIVE_TOKENS

    def _first_interval(self, current: int) -> int:
        """Steps to the first try after choosing ``current`` (see the module doc)."""
        return PROBE_MAX if current == self.n_thread else PROBE_FIRST

    def _other(self, threads: int) -> int:
        return 1 if threads == self.n_thread else self.n_thread

    def choose(self, n_tokens: int) -> int:
        """The thread count for the next step of ``n_tokens`` tokens."""
        if not self._adaptive(n_tokens):
            return self.n_thread
        t = self._sizes.setdefault(_bucket(n_tokens), _Timings())
        t.steps += 1
        if t.current is None:
            if t.steps <= WARMUP or len(t.average) < 2:
                return self.n_thread if t.steps % 2 else 1
            t.current = min(t.average, key=t.average.__getitem__)
            t.probe_every = self._first_interval(t.current)
            t.baseline, t.next_probe = t.average[t.current], t.steps + t.probe_every
        if t.steps >= t.next_probe or t.average[t.current] > DRIFT * t.baseline:
            t.probing = True
            return self._other(t.current)
        return t.current

    def record(self, n_tokens: int, threads: int, seconds: float) -> None:
        """Report how long a step of ``n_tokens`` tokens took on ``threads`` threads."""
        if not self._adaptive(n_tokens):
            return
        t = self._sizes.setdefault(_bucket(n_tokens), _Timings())
        if threads not in t.timed:
            t.timed.add(threads)
            return  # a first step pays for compiling, faulting pages in, filling caches
        recent = t.recent.setdefault(threads, deque(maxlen=RECENT))
        if t.probing and threads != t.current:
            recent.clear()  # a try replaces the stale times of its choice
        recent.append(seconds)
        t.average[threads] = statistics.median(recent)
        if t.probing and t.current is not None and threads != t.current:
            t.probing = False
            if t.average[threads] < (1 - MARGIN) * t.average[t.current]:
                t.current = threads  # the load changed: switch
                t.probe_every = self._first_interval(threads)
            else:
                t.probe_every = min(2 * t.probe_every, PROBE_MAX)  # confirmed: back off
            t.baseline, t.next_probe = t.average[t.current], t.steps + t.probe_every

    def preferred(self, n_tokens: int) -> int | None:
        """The thread count steps of ``n_tokens`` tokens now run on (None: not measured yet)."""
        t = self._sizes.get(_bucket(n_tokens))
        if not self._adaptive(n_tokens) or t is None:
            return None
        return t.current
