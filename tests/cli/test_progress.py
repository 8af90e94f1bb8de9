"""The pull/push progress display: ollama's lines on a pipe, rich bars on a terminal."""

from __future__ import annotations

import io

from kettle.cli.progress import ProgressDisplay

DIGEST = "sha256:" + "ab12cd34ef56" + "0" * 52


def feed(display: ProgressDisplay, verb: str) -> None:
    display({"status": "pulling manifest" if verb == "pulling" else "retrieving manifest"})
    for done in (0, 40_000_000, 98_000_000):
        display({"status": f"{verb} ab12cd34ef56", "digest": DIGEST, "total": 98_000_000, "completed": done})
    display({"status": "verifying sha256 digest" if verb == "pulling" else "pushing manifest"})
    display({"status": "success"})
    display.close()


def test_a_pipe_gets_one_line_per_status_and_per_finished_layer() -> None:
    out = io.StringIO()
    feed(ProgressDisplay(out, tty=False), "pulling")
    assert out.getvalue().splitlines() == [
        "pulling manifest", "pulling ab12cd34ef56... 100% 98 MB", "verifying sha256 digest", "success"]
    out = io.StringIO()
    feed(ProgressDisplay(out, tty=False, verb="pushing"), "pushing")
    assert out.getvalue().splitlines() == [
        "retrieving manifest", "pushing ab12cd34ef56... 100% 98 MB", "pushing manifest", "success"]


def test_a_terminal_gets_a_bar_with_size_and_speed() -> None:
    out = io.StringIO()
    feed(ProgressDisplay(out, tty=True), "pulling")
    text = out.getvalue()
    assert "pulling manifest" in text and "pulling ab12cd34ef56..." in text and "100%" in text
    assert "98.0/98.0 MB" in text and "success" in text


def test_a_terminal_prints_statuses_below_the_bars_before_them() -> None:
    """Several layers, then the statuses after them: each line comes out in the order reported
    (rich alone would print "verifying sha256 digest" above the live bars)."""
    out = io.StringIO()
    display = ProgressDisplay(out, tty=True)
    other = "sha256:" + "99ff" * 16
    display({"status": "pulling manifest"})
    for digest in (DIGEST, other):
        for done in (0, 1000, 2000):
            display({"status": "pulling", "digest": digest, "total": 2000, "completed": done})
    for status in ("verifying sha256 digest", "writing manifest", "success"):
        display({"status": status})
    display.close()
    text = out.getvalue()
    marks = [text.find("pulling manifest"), text.rfind("pulling ab12cd34ef56"), text.rfind("pulling 99ff99ff99ff"),
             text.find("verifying sha256 digest"), text.find("writing manifest"), text.find("success")]
    assert all(m >= 0 for m in marks), text
    assert marks == sorted(marks), text
