"""Printing a streamed answer as it arrives, and stopping it with Ctrl-C.

While a reply streams, SIGINT calls the generation's ``interrupt()`` instead
of raising KeyboardInterrupt at an arbitrary point: in-process this ends the
sequence cleanly at the engine's next step (so the model's KV cache and lock
stay consistent); over HTTP it raises KeyboardInterrupt out of the blocking
read, and the connection is closed (the server then cancels the request).
Either way the caller gets a ``Reply`` with ``cancelled`` set and goes on:
the REPL returns to its prompt, as ollama's does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from kettle.cli.backend import Generation
from kettle.cli.display import WordWrapper, metrics_summary

CANCEL_REASON = "cancel"
THINKING_START, THINKING_END = "Thinking...\n", "\n...done thinking.\n\n"  # around shown thinking (ollama's)


@dataclass
class Reply:
    """What a streamed answer amounted to."""

    text: str
    final: dict[str, Any] | None  # the ``"done": true`` object (stats), None when cut off
    cancelled: bool
    thinking: str = ""  # a thinking model's reasoning (shown unless hidden)


@contextmanager
def sigint_calls(handler: Callable[[], None]) -> Iterator[None]:
    """Within the block, Ctrl-C calls ``handler`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def chunk_text(obj: dict[str, Any]) -> str:
    """The text of a ``/api/chat`` or ``/api/generate`` chunk."""
    message = obj.get("message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    response = obj.get("response")
    return response if isinstance(response, str) else ""


def chunk_thinking(obj: dict[str, Any]) -> str:
    """The thinking text of a ``/api/chat`` or ``/api/generate`` chunk ("" when none)."""
    message = obj.get("message")
    thinking = message.get("thinking") if isinstance(message, dict) else obj.get("thinking")
    return thinking if isinstance(thinking, str) else ""


class Spinner:
    """ollama's wait indicator: braille frames on a terminal's stderr until ``stop()``.

    A first reply can take a while (loading the model; on a first run, compiling
    the kernels): the spinner says kettle is working. Nothing is drawn when
    ``err`` is not a terminal, so pipes and logs stay clean.
    """

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    INTERVAL = 0.1  # seconds per frame

    def __init__(self, err: TextIO | None) -> None:
        self._err = err if err is not None and err.isatty() else None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a frame is never drawn after the spinner is cleared

    def start(self) -> Spinner:
        if self._err is not None:
            self._thread = threading.Thread(target=self._spin, name="kettle-spinner", daemon=True)
            self._thread.start()
        return self

    def _spin(self) -> None:
        i = 0
        while not self._stopped.wait(self.INTERVAL if i else 0):
            with self._lock:
                if self._stopped.is_set():
                    return
                self._err.write("\r" + self.FRAMES[i % len(self.FRAMES)])  # type: ignore[union-attr]
                self._err.flush()  # type: ignore[union-attr]
            i += 1

    def stop(self) -> None:
        """Stop and erase the spinner (idempotent)."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            if self._thread is not None and self._err is not None:
                self._err.write("\r \r")
                self._err.flush()


def stream_reply(generation: Generation, out: TextIO, wrap_width: int | None = None,
                 err: TextIO | None = None, hide_thinking: bool = False) -> Reply:
    """Write each chunk's text to ``out`` as it comes; Ctrl-C stops the reply.

    A thinking model's thinking is written first, between ``Thinking...`` and ``...done
    thinking.`` as ollama does, unless ``hide_thinking``. With ``err`` a terminal, a
    ``Spinner`` turns there until the first text arrives.
    """
    writer = WordWrapper(out, wrap_width)
    parts: list[str] = []
    thoughts: list[str] = []
    final = None
    cancelled = False
    thinking_shown = False  # inside the Thinking... block
    spinner = Spinner(err).start()
    try:
        with sigint_calls(generation.interrupt):
            for obj in generation:
                thinking, text = chunk_thinking(obj), chunk_text(obj)
                if thinking:
                    thoughts.append(thinking)
                    if not hide_thinking:
                        spinner.stop()
                        if not thinking_shown:
                            out.write(THINKING_START)
                            thinking_shown = True
                        writer.write(thinking)
                if text and thinking_shown:
                    writer.write(THINKING_END)
                    thinking_shown = False
                if text:
                    spinner.stop()
                    writer.write(text)
                    parts.append(text)
                if obj.get("done"):
                    final = obj
    except KeyboardInterrupt:
        cancelled = True
        generation.close()
    finally:
        spinner.stop()
    out.flush()
    if final is not None and final.get("done_reason") == CANCEL_REASON:
        cancelled = True
    if thinking_shown and final is not None:
        writer.write(THINKING_END)  # the answer was all thinking
    return Reply("".join(parts), final, cancelled, "".join(thoughts))


def print_summary(final: dict[str, Any] | None, err: TextIO) -> None:
    """The ``--verbose`` / ``/set verbose`` statistics of a finished reply."""
    if final is None:
        return
    for line in metrics_summary(final):
        err.write(line + "\n")
    err.flush()
