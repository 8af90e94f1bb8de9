"""Stop strings over a stream of text pieces.

Generated text arrives a token's piece at a time, and a stop string can span pieces
(``"<|im"`` + ``"_end|>"``). :class:`StopMatcher` emits only text that cannot belong to a stop
string: it holds back the longest tail of the text that is a proper prefix of some stop string,
and releases it once the next piece rules the stop out (or at :meth:`StopMatcher.flush`).

When several stop strings occur, the one that *ends* first wins (that is where a generator
producing one character at a time would have stopped), and among those ending at the same
place the one starting first (the longest). The result therefore does not depend on how the
text was split into pieces.
"""

from __future__ import annotations

from collections.abc import Sequence

from kettle.errors import InvalidParameter


class StopMatcher:
    """Streaming stop-string filter for one generation (not thread-safe; one per sequence).

    ``stops``: the stop strings (non-empty; duplicates are ignored; may be empty, then every
    piece passes straight through).
    """

    def __init__(self, stops: Sequence[str]) -> None:
        if isinstance(stops, str):
            stops = (stops,)
        for stop in stops:
            if not isinstance(stop, str) or not stop:
                raise InvalidParameter("stop", stop, "stop strings must be non-empty strings")
        self.stops: tuple[str, ...] = tuple(dict.fromkeys(stops))
        self._held = ""  # tail of the text seen so far that may begin a stop string
        self.matched: str | None = None  # the stop string that ended generation, once hit

    @property
    def stopped(self) -> bool:
        """True once a stop string has been seen (every later :meth:`feed` returns ``("", True)``)."""
        return self.matched is not None

    def _first_match(self, text: str) -> tuple[int, str] | None:
        """(start, stop) of the stop occurrence in ``text`` that ends first (longest on ties)."""
        best: tuple[int, int, str] | None = None  # (end, start, stop)
        for stop in self.stops:
            start = text.find(stop)
            if start < 0:
                continue
            key = (start + len(stop), start, stop)
            if best is None or key[:2] < best[:2]:
                best = key
        return None if best is None else (best[1], best[2])

    def _prefix_tail(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def feed(self, text: str) -> tuple[str, bool]:
        """Add the next piece; return (text safe to emit now, whether a stop string was hit).

        On a hit, the returned text ends just before the stop string, and nothing after it is
        ever returned.
        """
        if self.stopped:
            return "", True
        buffer = self._held + text
        match = self._first_match(buffer)
        if match is not None:
            start, self.matched = match
            self._held = ""
            return buffer[:start], True
        cut = len(buffer) - self._prefix_tail(buffer)
        self._held = buffer[cut:]
        return buffer[:cut], False

    def flush(self) -> str:
        """The held-back text, at the end of generation (empty after a stop hit)."""
        held, self._held = self._held, ""
        return held
