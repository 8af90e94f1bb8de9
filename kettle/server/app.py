"""The ASGI app and the ``serve`` entry point.

``create_app(scheduler=None, store=None, bind_host=None)`` assembles the routes
(ollama's, the store's, OpenAI's), the safety middleware (``security.Guard``) and
the shared state; ``serve(host=None, port=None)`` runs it on uvicorn at
``KETTLE_HOST`` with ``KETTLE_MAX_CONNECTIONS`` as uvicorn's concurrency limit
(connections beyond it get 503 at once, so a flood cannot exhaust the process).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from kettle import config
from kettle.engine.scheduler import Scheduler
from kettle.server import ollama_routes, openai_routes, store_routes
from kettle.server.models import Catalog, load_model
from kettle.server.security import Guard, parse_origins
from kettle.server.state import ServerState
from kettle.server.streaming import JSON
from kettle.store import Store

BLOB_PATHS = ("/api/blobs/",)  # uploads stream to disk: exempt from KETTLE_MAX_BODY
KEEP_ALIVE_SECONDS = 5  # idle HTTP keep-alive, uvicorn's default
BACKLOG = 2048


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "404 page not found" if exc.status_code == 404 else exc.detail
    return JSON({"error": message}, status_code=exc.status_code)


def create_app(scheduler: Scheduler | None = None, store: Store | None = None, *,
               bind_host: str | None = None) -> Starlette:
    """The kettle API as an ASGI app. ``scheduler`` defaults to one that loads GGUF models
    with ``kettle.api.Model`` (settings from ``KETTLE_*``), ``store`` to ``KETTLE_MODELS``,
    ``bind_host`` (for the Host check) to ``KETTLE_HOST``'s host. The scheduler is
    started here and closed when the app shuts down."""
    store = store if store is not None else Store()
    scheduler = scheduler if scheduler is not None else Scheduler(load_model)
    state = ServerState(scheduler, Catalog(store), max_prompt=config.get_int("KETTLE_MAX_PROMPT"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            scheduler.close()

    guard = Middleware(
        Guard, bind_host=bind_host if bind_host is not None else config.host()[0],
        origins=parse_origins(config.get("KETTLE_ORIGINS")), max_body=config.get_int("KETTLE_MAX_BODY"),
        unlimited_paths=BLOB_PATHS, read_timeout=float(config.get_int("KETTLE_READ_TIMEOUT")),
    )
    app = Starlette(
        routes=[*ollama_routes.ROUTES, *store_routes.ROUTES, *openai_routes.ROUTES],
        middleware=[guard], exception_handlers={HTTPException: _http_error}, lifespan=lifespan,
    )
    app.state.kettle = state
    scheduler.start()
    return app


def serve(host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted, on ``host:port`` (default: ``KETTLE_HOST``, 127.0.0.1:11434)."""
    import uvicorn

    default_host, default_port = config.host()
    host = host or default_host
    port = port if port is not None else default_port
    debug = config.get("KETTLE_DEBUG") not in ("", "0", "false")
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(bind_host=host), host=host, port=port, limit_concurrency=config.get_int("KETTLE_MAX_CONNECTIONS"),
        backlog=BACKLOG, timeout_keep_alive=KEEP_ALIVE_SECONDS, access_log=debug,
        log_level="debug" if debug else "info", timeout_graceful_shutdown=5,
    )
