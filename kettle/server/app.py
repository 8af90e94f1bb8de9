"""The ASGI app and the ``serve`` entry point.

``create_app(scheduler=None, store=None, bind_host=None)`` assembles the routes
(ollama's, the store's, OpenAI's, llama-server's extras), the request counter of
``/metrics`` (outermost, so refused requests count too), the safety middleware
(``security.Guard``) and the shared state; ``serve(host=None, port=None)`` runs it on
uvicorn at ``KETTLE_HOST`` with ``KETTLE_MAX_CONNECTIONS`` as uvicorn's concurrency limit
(connections beyond it get 503 at once, so a flood cannot exhaust the process), on
h11 with the header limits and deadlines of ``connections`` (``KETTLE_HEADER_TIMEOUT``,
``KETTLE_KEEPALIVE_TIMEOUT``, ``KETTLE_MAX_HEADER_BYTES``, ``KETTLE_MAX_HEADERS``).

Bound to an address that is not loopback, ``serve`` warns on stderr that anyone on
the network can use it. On SIGTERM or Ctrl-C it stops accepting connections, ends
every running generation at its next step with a last chunk whose ``done_reason``
is ``"shutdown"`` (so streams finish instead of being cut), waits for the
responses to complete (at most ``GRACEFUL_SECONDS``), then unloads the models.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator
from types import FrameType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from kettle import config
from kettle.engine.scheduler import Scheduler
from kettle.server import (
    anthropic_routes, llama_routes, ollama_routes, openai_routes, registry_routes, responses_routes, store_routes,
)
from kettle.server.connections import ConnectionLimits, guarded_protocol
from kettle.server.metrics import Metrics, RequestCounter
from kettle.server.models import Catalog, load_model
from kettle.server.security import Guard, bind_is_open, parse_origins
from kettle.server.state import ServerState
from kettle.server.streaming import JSON
from kettle.store import Store

BLOB_PATHS = ("/api/blobs/", "/v2/")  # uploads stream to disk: exempt from KETTLE_MAX_BODY (/v2/ bounds its manifests)
BACKLOG = 2048
GRACEFUL_SECONDS = 10  # after SIGTERM: how long responses in flight may take to finish


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
    metrics = Metrics()
    scheduler = scheduler if scheduler is not None else Scheduler(metrics.timed(load_model))
    state = ServerState(scheduler, Catalog(store), max_prompt=config.get_int("KETTLE_MAX_PROMPT"), metrics=metrics)

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
        api_keys=config.api_keys(),
    )
    routes = [*ollama_routes.ROUTES, *store_routes.ROUTES, *openai_routes.ROUTES, *responses_routes.ROUTES,
              *anthropic_routes.ROUTES, *registry_routes.ROUTES, *llama_routes.ROUTES]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestCounter, metrics=metrics, routes=routes), guard],
        exception_handlers={HTTPException: _http_error}, lifespan=lifespan,
    )
    app.state.kettle = state
    scheduler.start()
    return app


def exposure_warning(host: str, port: int) -> str | None:
    """The warning ``serve`` prints when bound to ``host`` that is not loopback, else None."""
    if not bind_is_open(host) or config.api_keys():
        return None  # loopback, or every endpoint but / and /health needs a key
    return (f"warning: kettle is listening on {host}:{port}, which is not a loopback address: anyone who can reach "
            f"this machine can run, create, copy and delete models through it (there is no authentication), and "
            f"any Host header is accepted. To serve only this machine, set KETTLE_HOST=127.0.0.1:{port}; to expose "
            f"it on purpose, set KETTLE_API_KEY or put it behind a firewall or a reverse proxy that "
            f"authenticates clients.")


def serve(host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted, on ``host:port`` (default: ``KETTLE_HOST``, 127.0.0.1:11434)."""
    import uvicorn

    default_host, default_port = config.host()
    host = host or default_host
    port = port if port is not None else default_port
    debug = config.get("KETTLE_DEBUG") not in ("", "0", "false")
    limits = ConnectionLimits.from_config()
    max_connections = config.get_int("KETTLE_MAX_CONNECTIONS")
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    warning = exposure_warning(host, port)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    app = create_app(bind_host=host)
    settings = uvicorn.Config(
        app, host=host, port=port, limit_concurrency=max_connections, backlog=BACKLOG,
        http=guarded_protocol(limits), h11_max_incomplete_event_size=limits.h11_max_incomplete_event_size,
        timeout_keep_alive=limits.keepalive_timeout, access_log=debug, log_level="debug" if debug else "info",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    on_exit = app.state.kettle.shutdown.begin

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:  # the first signal: end the streams (a handler must not take locks)
                threading.Thread(target=on_exit, name="kettle-shutdown", daemon=True).start()
            super().handle_exit(sig, frame)

    Server(settings).run()
