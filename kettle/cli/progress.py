"""Progress of ``pull``, ``push`` and ``create`` on stderr, from ollama's status objects.

Each object is ``{"status": ...}`` or, while a blob transfers,
``{"status": "pulling <digest12>", "digest", "total", "completed"}``. On a
terminal a byte-counting bar is drawn per digest (with ``rich``) and each other
status gets its own line below the bars before it, in the order reported, as ollama's CLI
shows them; elsewhere (a pipe, a
log) each status is written once, and a transfer once when it completes.
"""

from __future__ import annotations

from typing import Any, TextIO

from kettle.cli.display import human_bytes

DIGEST_SHOWN = 12  # hex digits of a digest shown in a status ("pulling b179c9523d0e")


def _label(digest: str, verb: str = "pulling") -> str:
    return f"{verb} {digest.removeprefix('sha256:')[:DIGEST_SHOWN]}..."


class ProgressDisplay:
    """A ``backend.Report`` callback that draws what it is told; ``close()`` when done."""

    def __init__(self, err: TextIO, tty: bool | None = None, verb: str = "pulling") -> None:
        self.err = err
        self.verb = verb  # "pulling" or "pushing": the word before a transfer's digest
        self.tty = err.isatty() if tty is None else tty
        self._status: str | None = None
        self._bars: dict[str, Any] = {}  # digest -> rich task id
        self._done: set[str] = set()
        self._progress: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        digest = event.get("digest")
        total = event.get("total") or 0
        if isinstance(digest, str) and digest and isinstance(total, int) and total > 0:
            self._transfer(digest, int(event.get("completed") or 0), total)
            return
        status = str(event.get("status", ""))
        if status and status != self._status:
            self._status = status
            self._line(status)

    def _line(self, text: str) -> None:
        # A status after transfers ("verifying sha256 digest") comes below their bars: the bars
        # are finished where they stand first (rich would print the line above a live display).
        self.close()
        self.err.write(text + "\n")
        self.err.flush()

    def _transfer(self, digest: str, completed: int, total: int) -> None:
        if not self.tty:
            if completed >= total and digest not in self._done:
                self._done.add(digest)
                self._line(f"{_label(digest, self.verb)} 100% {human_bytes(total)}")
            return
        progress = self._rich()
        task = self._bars.get(digest)
        if task is None:
            task = self._bars[digest] = progress.add_task(_label(digest, self.verb), total=total)
        progress.update(task, completed=completed, total=total)

    def _rich(self) -> Any:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn,
                TimeRemainingColumn, TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), TaskProgressColumn(), BarColumn(),
                DownloadColumn(binary_units=False), TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(file=self.err),
            )
            self._progress.start()
        return self._progress

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._bars.clear()  # a later transfer gets a new bar, below what was printed since
