"""mlc's progress callbacks for ``ChatModule.generate`` (``mlc_chat.callback``).

``ChatModule.generate`` calls ``progress_callback(message)`` every ``callback_interval``
decode steps with the *whole* answer so far, and ``progress_callback(stopped=True)`` at the
end. A :class:`DeltaCallback` turns the whole message into what is new since its last call
and hands that to ``delta_callback``::

    from kettle import ChatModule
    from kettle.callback import StreamToStdout
    cm = ChatModule(model="smollm2")
    cm.generate(prompt="Hi!", progress_callback=StreamToStdout(callback_interval=2))
"""

from __future__ import annotations

import queue

from kettle.errors import InvalidParameter

__all__ = ["DeltaCallback", "StreamToStdout", "StreamIterator", "get_delta_message"]

# What mlc prints to take back one character on a terminal: back, blank, back.
ERASE_ONE = "\b \b"


def get_delta_message(curr_message: str, new_message: str) -> str:
    """What turns ``curr_message`` into ``new_message`` on a terminal.

    Characters after the common prefix are erased (``"\\b \\b"`` each), then the rest of
    ``new_message`` follows. kettle's answers only grow, so this is usually just the tail.
    """
    common = 0
    for a, b in zip(curr_message, new_message):
        if a != b:
            break
        common += 1
    return ERASE_ONE * (len(curr_message) - common) + new_message[common:]


class DeltaCallback:
    """Base class: override ``delta_callback`` (and ``stopped_callback`` if needed)."""

    callback_interval: int = 2

    def __init__(self) -> None:
        self.curr_message = ""

    def __call__(self, message: str = "", stopped: bool = False) -> None:
        """``message``: the whole answer so far; ``stopped``: generation ended (resets)."""
        if stopped:
            self.stopped_callback()
            self.curr_message = ""
            return
        delta = get_delta_message(self.curr_message, message)
        self.curr_message = message
        self.delta_callback(delta)

    def delta_callback(self, delta_message: str) -> None:
        """Do something with the new part of the answer."""
        raise NotImplementedError

    def stopped_callback(self) -> None:
        """Called once when the answer is complete; does nothing by default."""


def _check_interval(callback_interval: object) -> int:
    if isinstance(callback_interval, bool) or not isinstance(callback_interval, int) or callback_interval < 1:
        raise InvalidParameter("callback_interval", callback_interval, "expected a positive integer")
    return callback_interval


class StreamToStdout(DeltaCallback):
    """Print each new part of the answer as it comes, and a newline at the end."""

    def __init__(self, callback_interval: int = 2) -> None:
        super().__init__()
        self.callback_interval = _check_interval(callback_interval)

    def delta_callback(self, delta_message: str) -> None:
        print(delta_message, end="", flush=True)

    def stopped_callback(self) -> None:
        print()


class StreamIterator(DeltaCallback):
    """Collect the new parts in a queue; iterate (from another thread) to read them.

    Iteration ends when the answer is complete. ``timeout`` (seconds) bounds each wait.
    """

    def __init__(self, callback_interval: int = 2, timeout: float | None = None) -> None:
        super().__init__()
        self.callback_interval = _check_interval(callback_interval)
        self.timeout = timeout
        self.delta_messages: queue.Queue[str | None] = queue.Queue()

    def delta_callback(self, delta_message: str) -> None:
        self.delta_messages.put(delta_message, timeout=self.timeout)

    def stopped_callback(self) -> None:
        self.delta_messages.put(None, timeout=self.timeout)

    def __iter__(self) -> StreamIterator:
        return self

    def __next__(self) -> str:
        value = self.delta_messages.get(timeout=self.timeout)
        if value is None:
            raise StopIteration
        return value
