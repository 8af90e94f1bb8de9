"""ollama's REST API: generation, embeddings and the read-only model endpoints.

Field for field as in ollama's ``api/types.go`` (see PEERS.md section 1). Store
writes (create, copy, delete, pull, blobs) are in ``store_routes``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kettle import __version__
from kettle.engine.scheduler import parse_keep_alive
from kettle.engine.worker import EmbedResult
from kettle.request import embed_ids
from kettle.server.generation import Kind, Prepared, collect, events, parse_request, prepare
from kettle.server.state import ServerState
from kettle.server.streaming import (
    JSON,
    NDJSON,
    EventStream,
    endpoint,
    ndjson,
    read_json,
    until_disconnect,
)
from kettle.server.wire import Fields, RequestError


def state_of(request: Request) -> ServerState:
    return request.app.state.kettle


async def prepared(request: Request, body: dict[str, Any], kind: Kind) -> Prepared:
    """Parse and prepare a generation, cancelling the wait if the client disconnects."""
    state = state_of(request)
    req = parse_request(body, kind, state.max_prompt)
    cancel = threading.Event()
    return await until_disconnect(request, prepare(state, req, cancel), state.cancel_waiter(cancel))


async def _generation(request: Request, kind: Kind) -> Response:
    p = await prepared(request, await read_json(request), kind)
    if p.request.stream:
        return EventStream(ndjson(events(p)), NDJSON)
    return JSON(await until_disconnect(request, collect(p), lambda: None))


@endpoint()
async def generate(request: Request) -> Response:
    return await _generation(request, Kind.GENERATE)


@endpoint()
async def chat(request: Request) -> Response:
    return await _generation(request, Kind.CHAT)


async def embed_core(request: Request, model: str, inputs: list[str], *, truncate: bool = True,
                     options: dict[str, Any] | None = None, keep_alive: Any = None,
                     dimensions: int | None = None) -> dict[str, Any]:
    """``/api/embed``'s response for ``inputs``; the OpenAI embeddings route uses it too."""
    state = state_of(request)
    started = time.perf_counter_ns()
    for text in inputs:
        if len(text) > state.max_prompt:
            raise RequestError(f"an input is longer than {state.max_prompt} characters (KETTLE_MAX_PROMPT)", 413)
    if dimensions is not None and dimensions < 1:
        raise RequestError("invalid value for 'dimensions': must be at least 1")
    ka = None if keep_alive is None else parse_keep_alive(keep_alive)
    resolved = await state.blocking(state.catalog.resolve, model)
    load = state.catalog.load_options(resolved.spec, options)
    cancel = threading.Event()

    async def run() -> tuple[EmbedResult | None, int]:
        lease = await state.blocking(state.scheduler.acquire, resolved.name, resolved.spec, load, ka, cancel)
        try:
            if not inputs:
                return None, lease.load_duration
            if not truncate:
                await state.blocking(_check_fits, lease.model, inputs)
            loop = asyncio.get_running_loop()
            done: asyncio.Future[Any] = loop.create_future()

            def sink(event: Any) -> None:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(event))

            lease.embed(inputs, sink, truncate)
            result = await done
            if isinstance(result, BaseException):
                raise result
            return result, lease.load_duration
        finally:
            lease.release()

    result, load_ns = await until_disconnect(request, run(), state.cancel_waiter(cancel))
    vectors = result.vectors if result is not None else np.zeros((0, 0), dtype=np.float32)  # (n, n_embd)
    if dimensions is not None and vectors.size:
        vectors = vectors[:, :dimensions]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
    return {
        "model": model, "embeddings": vectors.tolist(), "total_duration": time.perf_counter_ns() - started,
        "load_duration": load_ns, "prompt_eval_count": result.prompt_tokens if result is not None else 0,
    }


def _check_fits(model: Any, inputs: list[str]) -> None:
    """``truncate: false``: a 400 naming the first input longer than the context."""
    for i, ids in enumerate(embed_ids(model.prompts, inputs)):
        if len(ids) > model.n_ctx:
            where = "input" if len(inputs) == 1 else f"input[{i}]"
            raise RequestError(f"{where} is {len(ids)} tokens, longer than the context length ({model.n_ctx}): "
                               f"shorten it, raise num_ctx, or send \"truncate\": true to cut it", field=where)


def _inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise RequestError("invalid value for 'input': expected a string or an array of strings")


@endpoint()
async def embed(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    return JSON(await embed_core(
        request, f.required_str("model"), _inputs(body), truncate=bool(f.bool("truncate", True)),
        options=f.object("options"), keep_alive=body.get("keep_alive"), dimensions=f.int("dimensions"),
    ))


@endpoint()
async def embeddings(request: Request) -> Response:
    """The legacy endpoint: one ``prompt`` -> ``{"embedding": [...]}``."""
    body = await read_json(request)
    f = Fields(body)
    prompt = f.str("prompt", "") or ""
    out = await embed_core(request, f.required_str("model"), [prompt] if prompt else [],
                           options=f.object("options"), keep_alive=body.get("keep_alive"))
    return JSON({"embedding": out["embeddings"][0] if out["embeddings"] else []})


@endpoint()
async def tags(request: Request) -> Response:
    state = state_of(request)
    return JSON(await state.blocking(state.catalog.tags))


@endpoint()
async def ps(request: Request) -> Response:
    state = state_of(request)
    return JSON(await state.blocking(state.catalog.ps, state.scheduler.loaded()))


@endpoint()
async def show(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    name = f.str("model") or f.str("name")  # "name": older clients
    if not name:
        raise RequestError("model is required")
    state = state_of(request)

    def describe() -> dict[str, Any]:
        return state.catalog.show(state.catalog.resolve(name), bool(f.bool("verbose", False)))

    return JSON(await state.blocking(describe))


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


async def health(request: Request) -> Response:
    """llama-server's liveness check: 200 ``{"status": "ok"}`` while the server serves."""
    return JSON({"status": "ok"})


async def version(request: Request) -> Response:
    return JSON({"version": __version__})


ROUTES = [
    Route("/", root, methods=["GET", "HEAD"]),
    Route("/health", health, methods=["GET", "HEAD"]),
    Route("/api/version", version, methods=["GET", "HEAD"]),
    Route("/api/generate", generate, methods=["POST"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/embed", embed, methods=["POST"]),
    Route("/api/embeddings", embeddings, methods=["POST"]),
    Route("/api/tags", tags, methods=["GET", "HEAD"]),
    Route("/api/show", show, methods=["POST"]),
    Route("/api/ps", ps, methods=["GET"]),
]
