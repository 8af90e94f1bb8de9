"""``kettle serve``: ollama's and OpenAI's REST APIs over kettle's engine.

Starlette on uvicorn. Starlette is a small ASGI toolkit (routing, requests,
streaming responses) with no hidden machinery, so the streaming paths, the
disconnect handling and the safety middleware are explicit code here; uvicorn is
the usual, well-kept ASGI server for it (HTTP/1.1 keep-alive, a connection
limit that answers 503, graceful shutdown). FastAPI would add request models
and OpenAPI docs that the hand-checked wire formats here do not need.

Modules: ``app`` (create_app, serve), ``ollama_routes``, ``store_routes``,
``openai_routes`` (pure translations onto the same core), ``generation`` (the one
engine path), ``models`` (names -> specs; tags/show/ps), ``security`` (Host and
Origin allow-lists, body limit), ``streaming`` (NDJSON/SSE, disconnects, errors),
``wire`` (strict JSON, typed fields, error -> status), ``tools`` (tool calls in
model output), ``state`` (what handlers share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kettle.server.app import create_app, serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kettle.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'kettle.server' has no attribute {name!r}")
