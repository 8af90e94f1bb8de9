"""Bounds on template work, shared by the Go and the Jinja engines.

A template comes from a Modelfile or a GGUF file, so it is untrusted input. Rendering it must
end in bounded time and memory whatever it says: every render gets a :class:`Budget` built from
:class:`TemplateLimits`, and the engines charge it for output, loop iterations and elapsed time.
The Jinja engine also measures every value it builds (a string, a list) before building it when
it can, against ``max_output_chars`` and ``max_items``, and adds up what it built against
``max_built_bytes``. Going over any bound raises :class:`kettle.errors.TemplateError` (with the
template line when the engine knows it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kettle.errors import TemplateError

MIB = 1 << 20
TIME_CHECK_EVERY = 256  # loop iterations between two looks at the clock (a power of two)


@dataclass(frozen=True)
class TemplateLimits:
    """Per-render bounds. The defaults are far above what a real chat template needs."""

    max_output_chars: int = 16 * MIB
    """Characters one render may produce (a prompt past this size could not fit any context)."""

    max_iterations: int = 1_000_000
    """Loop iterations (Go ``range`` steps, Jinja loop steps) one render may run."""

    max_depth: int = 100
    """Nesting of control structures and parenthesized pipelines in a Go template (parse time)."""

    time_limit_s: float = 2.0
    """Wall-clock seconds one render may take; checked inside loops and calls."""

    max_source_chars: int = 1 * MIB
    """Length of a template's source text (checked at compile time)."""

    max_items: int = 1_000_000
    """Items one list, tuple or dict built by a Jinja template may hold (a longer one could
    never be looped over within ``max_iterations`` anyway)."""

    max_built_bytes: int = 256 * MIB
    """Bytes of all the values one Jinja render builds, added up (a string counts one byte a
    character, a list or tuple 8 bytes an item, a dict or set 64; the buffers of macros and
    ``{% set %}`` blocks included): bounds the memory of values a template keeps alive together.
    Reading a value does not count, building one does."""

    def __post_init__(self) -> None:
        for name in ("max_output_chars", "max_iterations", "max_depth", "max_source_chars", "max_items",
                     "max_built_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TemplateLimits.{name} must be positive")
        if not self.time_limit_s > 0:
            raise ValueError("TemplateLimits.time_limit_s must be positive")


DEFAULT_LIMITS = TemplateLimits()


class Budget:
    """The running account of one render against its :class:`TemplateLimits`."""

    __slots__ = ("limits", "deadline", "output", "iterations", "built")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.time_limit_s
        self.output = 0
        self.iterations = 0
        self.built = 0

    def check_time(self, line: int | None = None) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"template rendering took longer than {self.limits.time_limit_s:g}s", line
            )

    def spend_output(self, n: int, line: int | None = None) -> None:
        self.output += n
        if self.output > self.limits.max_output_chars:
            raise TemplateError(
                f"template output exceeds {self.limits.max_output_chars} characters", line
            )

    def spend_iteration(self, line: int | None = None) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise TemplateError(
                f"template loops ran more than {self.limits.max_iterations} iterations", line
            )
        if self.iterations % TIME_CHECK_EVERY == 0:
            self.check_time(line)

    def spend_built(self, n: int, line: int | None = None) -> None:
        self.built += n
        if self.built > self.limits.max_built_bytes:
            raise TemplateError(
                f"template built more than {self.limits.max_built_bytes} bytes of values (max_built_bytes)", line
            )
