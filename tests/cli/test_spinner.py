"""The wait spinner: frames on a terminal until the first text, nothing elsewhere."""

from __future__ import annotations

import io
import time

from kettle.cli.reply import Spinner, stream_reply


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class SlowGeneration:
    """A reply whose first chunk comes after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __iter__(self):
        time.sleep(self.delay)
        yield {"response": "Hello"}
        yield {"response": " there", "done": True, "done_reason": "stop"}

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_spins_on_a_terminal_until_the_first_text_then_erases_itself():
    err, out = Terminal(), io.StringIO()
    reply = stream_reply(SlowGeneration(0.35), out, None, err)
    assert reply.text == "Hello there" and out.getvalue() == "Hello there"
    drawn = err.getvalue()
    frames = [c for c in drawn if c in Spinner.FRAMES]
    assert len(frames) >= 3 and drawn.endswith("\r \r")
    assert drawn.count("\r \r") == 1  # erased once, nothing drawn after


def test_silent_when_stderr_is_not_a_terminal():
    err = io.StringIO()
    stream_reply(SlowGeneration(0.2), io.StringIO(), None, err)
    assert err.getvalue() == ""
    stream_reply(SlowGeneration(0.0), io.StringIO(), None, None)


def test_stop_is_idempotent_and_immediate():
    err = Terminal()
    spinner = Spinner(err).start()
    spinner.stop()
    spinner.stop()
    after = err.getvalue()
    time.sleep(0.25)
    assert err.getvalue() == after
