"""llama-server's extras on the same port: ``POST /tokenize``, ``POST /detokenize`` and
``GET /metrics`` (``metrics``).

Field for field as llama.cpp's ``tools/server`` has them, plus ``model`` (llama-server
serves one model; kettle may hold several). Without ``model`` the one loaded model
answers; with none or several loaded, 400.

* ``/tokenize`` ``{"model", "content", "add_special": false, "parse_special": true,
  "with_pieces": false}`` -> ``{"tokens": [ids]}``, or with ``with_pieces``
  ``{"tokens": [{"id": n, "piece": text}]}`` where a piece that is not valid UTF-8 on
  its own (part of a character) is its list of byte values instead.
* ``/detokenize`` ``{"model", "tokens": [ids]}`` -> ``{"content": text}``: the tokens'
  pieces joined (special tokens as their text), invalid UTF-8 replaced by U+FFFD. An
  id outside the vocabulary is a 400 naming its index.

The model's tokenizer is used under a scheduler lease (loading the model if needed,
and keeping it from being unloaded meanwhile), taken, used and released in one
worker thread, so no lease outlives the request. A model already loaded is leased
with its own load options and keep_alive, so tokenizing never reloads it or changes
how long it stays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kettle.engine.scheduler import ModelState
from kettle.server.metrics import metrics_endpoint
from kettle.server.state import ServerState
from kettle.server.streaming import JSON, endpoint, read_json, until_disconnect
from kettle.server.wire import Fields, RequestError

T = TypeVar("T")


def _state(request: Request) -> ServerState:
    return request.app.state.kettle


async def _with_tokenizer(request: Request, name: str | None, use: Callable[[Any], T]) -> T:
    """``use(tokenizer)`` of model ``name`` (default: the one loaded model), under a lease."""
    state = _state(request)
    loaded = [m for m in state.scheduler.loaded() if m.state is ModelState.READY]
    if name is None:
        if len(loaded) != 1:
            why = "no model is loaded" if not loaded else f"{len(loaded)} models are loaded"
            raise RequestError(f"model is required ({why})")
        key, spec = loaded[0].name, loaded[0].spec
    else:
        resolved = await state.blocking(state.catalog.resolve, name)
        key, spec = resolved.name, resolved.spec
    same = next((m for m in loaded if m.name == key and m.spec == spec), None)
    load = same.load_options if same is not None else state.catalog.load_options(spec, None)
    keep_alive = same.keep_alive if same is not None else None
    cancel = threading.Event()

    def run() -> T:
        lease = state.scheduler.acquire(key, spec, load, keep_alive, cancel)
        try:
            return use(lease.model.tokenizer)
        finally:
            lease.release()

    return await until_disconnect(request, state.blocking(run), state.cancel_waiter(cancel))


def _piece(raw: bytes) -> str | list[int]:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


@endpoint()
async def tokenize(request: Request) -> Response:
    f = Fields(await read_json(request))
    content = f.str("content", "", _state(request).max_prompt) or ""
    add_special = bool(f.bool("add_special", False))
    parse_special = bool(f.bool("parse_special", True))
    with_pieces = bool(f.bool("with_pieces", False))

    def run(tokenizer: Any) -> list[Any]:
        ids = tokenizer.encode(content, add_special=add_special, parse_special=parse_special)
        if not with_pieces:
            return ids
        return [{"id": i, "piece": _piece(tokenizer.token_to_piece(i))} for i in ids]

    return JSON({"tokens": await _with_tokenizer(request, f.str("model") or None, run)})


@endpoint()
async def detokenize(request: Request) -> Response:
    f = Fields(await read_json(request))
    ids = f.int_list("tokens") or []

    def run(tokenizer: Any) -> str:
        for i, token in enumerate(ids):
            if not 0 <= token < tokenizer.vocab_size:
                raise RequestError(f"invalid value for 'tokens[{i}]': {token} is outside the vocabulary "
                                   f"(0..{tokenizer.vocab_size - 1})", field=f"tokens[{i}]")
        return str(tokenizer.decode(ids))

    return JSON({"content": await _with_tokenizer(request, f.str("model") or None, run)})


ROUTES = [
    Route("/tokenize", tokenize, methods=["POST"]),
    Route("/detokenize", detokenize, methods=["POST"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
