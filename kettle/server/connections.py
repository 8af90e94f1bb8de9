"""HTTP connections with bounded headers and deadlines: uvicorn's h11 protocol plus the
limits it lacks.

uvicorn times out only a kept-alive connection that stays silent, and any byte
resets that timer; a connection that never sends a request, or sends its headers a
byte at a time (slowloris), is held forever, and enough of them fill
``KETTLE_MAX_CONNECTIONS`` so real requests get 503. httptools (uvicorn's choice
when installed) also reads request headers of any size. ``guarded_protocol``
builds an h11 protocol class that adds:

* **a header deadline**: a request's line and headers must be complete within
  ``header_timeout`` seconds, counted from the connection's start (so a connection
  that never sends a request is closed then) or, on a kept-alive connection, from
  the first byte of its next request. No byte extends it. When it passes the
  connection closes, with a 408 if part of a request had arrived.
* **idle keep-alive**: a kept-alive connection with nothing new for
  ``keepalive_timeout`` seconds closes (uvicorn's ``timeout_keep_alive``).
* **header size and count**: more than ``max_header_bytes`` bytes before the blank
  line that ends the headers, or more than ``max_headers`` header fields, get 431
  and the connection closes, before the parser buffers any more of them. (h11's own
  buffer bound sits just above, as a second line.)

The body that follows is not timed here: ``security.Guard`` answers a stalled body
with 408 (``KETTLE_READ_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from kettle import config
from kettle.errors import InvalidParameter

_HEADERS_END = re.compile(rb"\n\r?\n")  # the blank line after the headers, as h11 finds it
_HOST_FIELD = re.compile(rb"\n[Hh][Oo][Ss][Tt][ \t]*:")  # a Host header field (never the request line)
H11_SLACK = 4096  # h11's buffer bound, beyond max_header_bytes (ours answers first)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    """Seconds from a connection's start (or a kept-alive one's next first byte) until its
    headers must be complete; > 0. ``KETTLE_HEADER_TIMEOUT``, default 10."""
    keepalive_timeout: float
    """Seconds an idle kept-alive connection stays open; > 0. ``KETTLE_KEEPALIVE_TIMEOUT``, default 5."""
    max_header_bytes: int
    """Bytes of request line and headers; >= 1024. ``KETTLE_MAX_HEADER_BYTES``, default 65536."""
    max_headers: int
    """Header fields in one request; >= 16. ``KETTLE_MAX_HEADERS``, default 100."""

    def validate(self) -> ConnectionLimits:
        for name, value in (("KETTLE_HEADER_TIMEOUT", self.header_timeout),
                            ("KETTLE_KEEPALIVE_TIMEOUT", self.keepalive_timeout)):
            if not value > 0:
                raise InvalidParameter(name, value, "must be a positive number of seconds")
        if self.max_header_bytes < 1024:
            raise InvalidParameter("KETTLE_MAX_HEADER_BYTES", self.max_header_bytes, "must be at least 1024")
        if self.max_headers < 16:
            raise InvalidParameter("KETTLE_MAX_HEADERS", self.max_headers, "must be at least 16")
        return self

    @classmethod
    def from_config(cls) -> ConnectionLimits:
        return cls(
            header_timeout=float(config.get_int("KETTLE_HEADER_TIMEOUT")),
            keepalive_timeout=float(config.get_int("KETTLE_KEEPALIVE_TIMEOUT")),
            max_header_bytes=config.get_int("KETTLE_MAX_HEADER_BYTES"),
            max_headers=config.get_int("KETTLE_MAX_HEADERS"),
        ).validate()

    @property
    def h11_max_incomplete_event_size(self) -> int:
        return self.max_header_bytes + H11_SLACK


def _reply(status: int, phrase: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass enforcing ``limits`` (see the module docstring)."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._reading_headers = False  # between a request's start and its headers' end
            self._header_bytes = 0
            self._header_lines = 0  # newlines seen: the request line's, one per field, the blank line's
            self._tail = b""  # the last bytes seen, where a blank line may begin
            self._head = b""  # the header bytes so far (at most max_header_bytes)
            self._deadline: asyncio.TimerHandle | None = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_request()
            self._arm()  # a connection that never sends a request is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _await_request(self) -> None:
            self._reading_headers = True
            self._header_bytes = self._header_lines = 0
            self._tail = self._head = b""

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_too_slow(self) -> None:
            self._deadline = None
            if not self._reading_headers or self.transport.is_closing():
                return
            if self._header_bytes:
                self._refuse(408, "Request Timeout", f"the request headers did not arrive within "
                             f"{limits.header_timeout:g} s (KETTLE_HEADER_TIMEOUT)")
            else:
                self._refused = True
                self.transport.close()

        def _refuse(self, status: int, phrase: str, message: str) -> None:
            self._refused = True
            self._reading_headers = False
            self._disarm()
            self.transport.write(_reply(status, phrase, message))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._reading_headers and not self._count(data):
                return
            super().data_received(data)

        def _count(self, data: bytes) -> bool:
            """Count header bytes and lines in ``data``; False (and 431) past a limit."""
            if self._deadline is None:  # a kept-alive connection's next request begins
                self._arm()
            seen = self._tail + data
            end = _HEADERS_END.search(seen)
            part = data if end is None else data[:max(0, end.end() - len(self._tail))]
            self._header_bytes += len(part)
            self._header_lines += part.count(b"\n")
            self._tail = seen[-2:]
            fields = self._header_lines - 1 - (end is not None)
            if self._header_bytes > limits.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", f"the request headers are larger than "
                             f"{limits.max_header_bytes} bytes (KETTLE_MAX_HEADER_BYTES)")
                return False
            if fields > limits.max_headers:
                self._refuse(431, "Request Header Fields Too Large", f"the request has more than "
                             f"{limits.max_headers} header fields (KETTLE_MAX_HEADERS)")
                return False
            self._head += part
            if end is not None and len(_HOST_FIELD.findall(self._head)) > 1:
                # A second Host is how a rebinding page hides a foreign name behind ours: 403, as
                # for a foreign Host (the HTTP parser would answer a bare 400).
                self._refuse(403, "Forbidden", "the request has more than one Host header")
                return False
            return True

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's headers are complete
                self._reading_headers = False
                self._disarm()

        def on_response_complete(self) -> None:
            self._await_request()  # before super(), which may run a pipelined request at once
            super().on_response_complete()

    return GuardedH11Protocol
