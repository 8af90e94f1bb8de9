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


@dataclass
class Reply:
    """What a streamed answer amounted to."""

    text: str
    final: dict[str, Any] | None  # the ``"done": true`` object (stats), None when cut off
    cancelled: bool


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


def stream_reply(generation: Generation, out: TextIO, wrap_width: int | None = None) -> Reply:
    """Write each chunk's text to ``out`` as it comes; Ctrl-C stops the reply."""
    writer = WordWrapper(out, wrap_width)
    parts: list[str] = []
    final = None
    cancelled = False
    try:
        with sigint_calls(generation.interrupt):
            for obj in generation:
                text = chunk_text(obj)
                if text:
                    writer.write(text)
                    parts.append(text)
                if obj.get("done"):
                    final = obj
    except KeyboardInterrupt:
        cancelled = True
        generation.close()
    out.flush()
    if final is not None and final.get("done_reason") == CANCEL_REASON:
        cancelled = True
    return Reply("".join(parts), final, cancelled)


def print_summary(final: dict[str, Any] | None, err: TextIO) -> None:
    """The ``--verbose`` / ``/set verbose`` statistics of a finished reply."""
    if final is None:
        return
    for line in metrics_summary(final):
        err.write(line + "\n")
    err.flush()
