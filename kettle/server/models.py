"""Models as the HTTP API sees them: names -> specs, load options, and the
``/api/tags``, ``/api/show`` and ``/api/ps`` descriptions.

``Catalog.resolve`` validates a name (400 when invalid) and reads it from the
store, pulling a bundled model on first use (404, with ollama's message, for
anything else). ``Catalog.load_options`` resolves the request's load-time
options over the model's PARAMETERs, with ``num_ctx`` defaulted
(``KETTLE_CONTEXT_LENGTH``) and capped at the model's trained context, so the
scheduler compares fully resolved values and an absurd ``num_ctx`` never
allocates a huge KV cache. ``load_model`` is the scheduler's loader.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kettle.api import Model, ModelSpec
from kettle.engine.scheduler import ResidentInfo
from kettle.errors import ModelNotFound, TemplateError
from kettle.gguf import GGUFFile
from kettle.modelfile import format_parameter, to_modelfile
from kettle.options import LoadOptions, parse_options
from kettle.prompt import choose_template
from kettle.server.wire import RequestError
from kettle.store import Store, StoredModel, parse_name
from kettle.store.bundled import resolve_model
from kettle.templates import compile_template
from kettle.thinking import thinking_style
from kettle.tokenizer.markers import has_fim

# How far in the future /api/ps puts a model kept forever (ollama: now + max duration).
FOREVER_SHOWN = timedelta(days=292 * 365)
PARAM_NAME_WIDTH = 30  # /api/show "parameters": "name<pad> value" lines, as ollama aligns them


@dataclass(frozen=True)
class Resolved:
    name: str  # the stored name's short form ("smollm2:latest"): the scheduler's key
    spec: ModelSpec
    stored: StoredModel


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(timezone.utc))


def load_model(spec: ModelSpec, load_options: LoadOptions, num_parallel: int) -> Model:
    """The scheduler's loader."""
    return Model(spec, load_options, num_parallel=num_parallel)


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._trained: dict[Path, int | None] = {}
        self._capabilities: dict[tuple[Path, str | None], list[str]] = {}
        self._lock = threading.Lock()

    def check_name(self, text: str) -> None:
        problem = parse_name(text).problem()
        if problem is not None:
            raise RequestError(f"invalid model name {text!r}: {problem}")

    def resolve(self, text: str) -> Resolved:
        """The stored model ``text`` names (pulled first if it is a bundled one)."""
        self.check_name(text)
        try:
            stored = resolve_model(self.store, text)
        except ModelNotFound:
            raise ModelNotFound(text) from None
        return Resolved(stored.name.display(), ModelSpec.of(stored), stored)

    def trained_context(self, path: Path) -> int | None:
        with self._lock:
            if path not in self._trained:
                with GGUFFile(path) as f:
                    value = f.get(f"{f.architecture}.context_length")
                self._trained[path] = int(value) if isinstance(value, int) and value > 0 else None
            return self._trained[path]

    def capabilities(self, resolved: Resolved) -> list[str]:
        """What the model can do, as ``/api/show`` lists it (``capabilities_of``)."""
        key = (resolved.spec.path, resolved.spec.template)
        with self._lock:
            found = self._capabilities.get(key)
        if found is None:
            with GGUFFile(resolved.spec.path) as f:
                found = capabilities_of(f.metadata, template_of(f.metadata, resolved.spec))
            with self._lock:
                self._capabilities[key] = found
        return list(found)

    def load_options(self, spec: ModelSpec, options: Mapping[str, Any] | None) -> LoadOptions:
        """The request's load-time options over the model's, fully resolved (see module doc)."""
        load, _ = parse_options(options, base=spec.params)
        return dataclasses.replace(load, num_ctx=load.context_length(self.trained_context(spec.path)))

    # -- descriptions -------------------------------------------------------------

    def tags(self) -> dict[str, Any]:
        models = []
        for e in self.store.list_models():
            name = e.name.display()
            models.append({
                "name": name, "model": name, "modified_at": rfc3339(e.modified_at), "size": e.size,
                "digest": e.digest, "details": e.details.to_json(),
            })
        return {"models": models}

    def ps(self, infos: list[ResidentInfo]) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        models = []
        for info in infos:
            try:
                entry = self.store.entry(info.name)
                size, digest, details = entry.size, entry.digest, entry.details.to_json()
            except Exception:  # noqa: BLE001 - deleted or re-created while loaded: show what we have
                size, digest, details = 0, "", {}
            if info.expires_in is not None:
                expires = now + timedelta(seconds=info.expires_in)
            elif info.keep_alive < 0:
                expires = now + FOREVER_SHOWN
            else:  # in use: the countdown starts when its requests end
                expires = now + timedelta(seconds=info.keep_alive)
            models.append({
                "name": info.name, "model": info.name, "size": size, "digest": digest, "details": details,
                "expires_at": rfc3339(expires), "size_vram": 0, "context_length": info.load_options.num_ctx,
            })
        return {"models": models}

    def show(self, resolved: Resolved, verbose: bool) -> dict[str, Any]:
        stored = resolved.stored
        with GGUFFile(stored.model_path) as f:
            info = {k: _plain(v, verbose) for k, v in f.metadata.items()}
            info.setdefault("general.parameter_count", int(sum(int(np.prod(t.shape)) for t in f.tensors.values())))
            template_source = template_of(f.metadata, resolved.spec)
            capabilities = capabilities_of(f.metadata, template_source)
        return {
            "license": "\n".join(stored.license),
            "modelfile": to_modelfile(stored),
            "parameters": format_parameters(stored.params),
            "template": template_source,
            "system": stored.system or "",
            "details": stored.details.to_json(),
            "messages": list(stored.messages),
            "model_info": info,
            "capabilities": capabilities,
            "modified_at": rfc3339(self.store.entry(resolved.name).modified_at),
        }


def capabilities_of(metadata: Mapping[str, Any], template_source: str) -> list[str]:
    """ollama's capabilities of a model: ``embedding`` when the file has a
    ``{arch}.pooling_type`` (an embedding model: nothing else), else ``completion``,
    and from the template ``tools`` (it names the tools: ``ChatTemplate.renders_tools``, the
    test a chat request with tools must pass), ``insert`` (Go's ``.Suffix``)
    and ``thinking`` (it writes ``<think>`` and ``</think>``, or gpt-oss's analysis channel:
    ``kettle.thinking.thinking_style``)."""
    arch = metadata.get("general.architecture")
    if metadata.get(f"{arch}.pooling_type") is not None:
        return ["embedding"]
    capabilities = ["completion"]
    if _renders_tools(template_source):
        capabilities.append("tools")
    if ".Suffix" in template_source or has_fim(metadata):
        capabilities.append("insert")
    if thinking_style(template_source) is not None:
        capabilities.append("thinking")
    return capabilities


def _renders_tools(template_source: str) -> bool:
    try:
        return compile_template(template_source).renders_tools
    except TemplateError:  # a model whose template does not compile cannot render tools either
        return False


def template_of(metadata: Mapping[str, Any], spec: ModelSpec) -> str:
    """The template text a loaded model would use (``kettle.prompt.choose_template``)."""
    return choose_template(metadata, spec)[0].source


def format_parameters(params: Mapping[str, Any]) -> str:
    """ollama's ``parameters`` text: one ``name value`` line per value, strings quoted."""
    lines = []
    for key in sorted(params):
        value = params[key]
        for v in value if isinstance(value, (list, tuple)) else [value]:
            text = f'"{v}"' if isinstance(v, str) else format_parameter(v)
            lines.append(f"{key:<{PARAM_NAME_WIDTH}} {text}")
    return "\n".join(lines)


def _plain(value: Any, verbose: bool) -> Any:
    """A GGUF metadata value as JSON; arrays only when ``verbose`` (ollama nulls them)."""
    if isinstance(value, np.ndarray):
        return value.tolist() if verbose else None
    if isinstance(value, list):
        return [_plain(v, True) for v in value] if verbose else None
    if isinstance(value, np.generic):
        return value.item()
    return value
