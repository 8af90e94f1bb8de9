"""Responses that notice a client going away, the NDJSON / SSE encodings, and the
``endpoint`` wrapper that turns every error into a response.

``EventStream`` sends an async iterator of bytes while listening for the client's
``http.disconnect``; when the client goes (or a send fails) the iterator is closed
at once, so its ``finally`` (which releases the request's lease, cancelling its
sequence and freeing the slot) runs without waiting for the next chunk.
``until_disconnect`` does the same for work that answers with one object.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from kettle.errors import Cancelled, KettleError
from kettle.server.wire import parse_json_body, public_message, status_of

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def ndjson_line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def sse_event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class JSON(JSONResponse):
    """A JSON response that keeps non-ASCII text as UTF-8 (ollama does)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class EventStream(Response):
    def __init__(self, chunks: AsyncGenerator[bytes, None], media_type: str, status_code: int = 200) -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    try:
                        await send({"type": "http.response.start", "status": self.status_code,
                                    "headers": self.raw_headers})
                        async for chunk in self.chunks:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                    except OSError:
                        pass  # the client is gone
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                tg.start_soon(watch)
        finally:
            with anyio.CancelScope(shield=True):
                await self.chunks.aclose()


async def until_disconnect(request: Request, work: Awaitable[Any], on_disconnect: Callable[[], None]) -> Any:
    """Await ``work``; if the client disconnects first, call ``on_disconnect`` (which sets the
    request's cancel event) and cancel ``work``, then raise ``Cancelled``."""
    task = asyncio.ensure_future(work)
    receive = request.receive

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        on_disconnect()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Cancelled("the client disconnected")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


# -- handlers: body in, errors out ------------------------------------------------

log = logging.getLogger("kettle.server")

Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[BaseException, int], Any]


def ollama_error(exc: BaseException, status: int) -> Any:
    return {"error": public_message(exc)}


def log_unexpected(exc: BaseException) -> None:
    if not isinstance(exc, KettleError):
        log.error("internal error", exc_info=exc)


def endpoint(error_body: ErrorBody = ollama_error) -> Callable[[Handler], Handler]:
    """Wrap a handler: any exception becomes ``error_body`` with its status (wire.status_of);
    unexpected ones are logged with their traceback, which the client never sees."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except Exception as exc:  # noqa: BLE001 - every error becomes a response
                log_unexpected(exc)
                status = status_of(exc)
                return JSON(error_body(exc, status), status_code=status)

        return run

    return wrap


async def read_json(request: Request) -> dict[str, Any]:
    return parse_json_body(await request.body())


async def ndjson(objects: AsyncGenerator[dict[str, Any], None]) -> AsyncGenerator[bytes, None]:
    """NDJSON lines; an error after the stream started becomes a last ``{"error": ...}`` line."""
    try:
        async for obj in objects:
            yield ndjson_line(obj)
    except Exception as exc:  # noqa: BLE001 - reported in the stream, as ollama does
        log_unexpected(exc)
        yield ndjson_line({"error": public_message(exc)})
    finally:
        await objects.aclose()
