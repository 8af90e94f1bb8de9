"""What a manifest resolves to: the GGUF file plus the settings layered over it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kettle.errors import DigestMismatch, StoreError
from kettle.store.details import ModelDetails, details_from_config
from kettle.store.manifest import Layer, Manifest, MediaType
from kettle.store.names import ModelName

if TYPE_CHECKING:
    from kettle.store.store import Store

# Text layers (params, template, system, license, messages) are small; bound them.
MAX_TEXT_LAYER_BYTES = 16 << 20

MESSAGE_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class StoredModel:
    """A model in the store, read from its manifest's layers.

    ``template``/``system`` are None when the model has no such layer (the
    engine then uses the GGUF's own chat template / no system prompt).
    ``params`` maps parameter names to typed values (``stop`` is a list).
    ``messages`` are ``{"role": ..., "content": ...}`` dicts.
    ``adapters`` are the LoRA adapter blobs (ADAPTER), applied when the model loads.
    ``draft`` is the draft model's GGUF blob (DRAFT), loaded beside it for speculative decoding.
    """

    name: ModelName
    digest: str  # hex sha256 of the manifest file (the ID `kettle list` shows)
    manifest: Manifest
    model_path: Path
    model_digest: str  # "sha256:<hex>" of the GGUF blob
    details: ModelDetails
    params: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: tuple[str, ...] = ()
    adapters: tuple[Path, ...] = ()
    messages: tuple[dict[str, str], ...] = ()
    draft: Path | None = None

    @property
    def size(self) -> int:
        return self.manifest.size()


def _text(store: Store, layer: Layer) -> str:
    data = store.read_blob_bytes(layer.digest, limit=MAX_TEXT_LAYER_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"layer {layer.digest} ({layer.media_type}) is not UTF-8 text") from None


def _json(store: Store, layer: Layer) -> Any:
    try:
        return json.loads(_text(store, layer))
    except json.JSONDecodeError as e:
        raise StoreError(f"layer {layer.digest} ({layer.media_type}) is not valid JSON: {e}") from None


def _messages(value: Any, digest: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise StoreError(f"messages layer {digest} must hold a JSON list")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str) or item.get("role") not in MESSAGE_ROLES:
            raise StoreError(f"messages layer {digest} holds an invalid message: {item!r:.200}")
        out.append({"role": item["role"], "content": item["content"]})
    return tuple(out)


def _verified(store: Store, name: ModelName, layer: Layer) -> None:
    """The blob of ``layer`` holds the bytes its digest names (hashed once: see verify.py)."""
    try:
        store.verify_blob(layer.digest)
    except DigestMismatch as e:
        raise DigestMismatch(
            f"model {name.display()}: {e}; the file changed on disk since it was stored. Pull or create "
            f"the model again (which replaces the blob), or remove it: kettle rm {name.display()}",
            e.expected, e.actual,
        ) from None


def load_stored_model(store: Store, name: ModelName, manifest: Manifest, digest: str) -> StoredModel:
    """Read every layer of ``manifest``; StoreError when a layer is missing or malformed,
    DigestMismatch when a blob's bytes are not those its digest names."""
    models = manifest.find(MediaType.MODEL)
    if not models:
        raise StoreError(f"model {name.display()} has no model layer")
    model_layer = models[0]
    model_path = store.blob_path(model_layer.digest)
    if store.blob_size(model_layer.digest) != model_layer.size:
        raise StoreError(f"model {name.display()}: blob {model_layer.digest} is missing or incomplete")
    _verified(store, name, model_layer)
    params: dict[str, Any] = {}
    template = system = None
    licenses: list[str] = []
    adapters: list[Path] = []
    draft: Path | None = None
    messages: tuple[dict[str, str], ...] = ()
    for layer in manifest.layers:
        kind = layer.media_type
        if kind == MediaType.PARAMS:
            value = _json(store, layer)
            if not isinstance(value, dict):
                raise StoreError(f"params layer {layer.digest} must hold a JSON object")
            params.update(value)
        elif kind in (MediaType.TEMPLATE, MediaType.PROMPT):
            template = _text(store, layer)
        elif kind == MediaType.SYSTEM:
            system = _text(store, layer)
        elif kind == MediaType.LICENSE:
            licenses.append(_text(store, layer))
        elif kind == MediaType.ADAPTER:
            if not store.has_blob(layer.digest):
                raise StoreError(f"model {name.display()}: adapter blob {layer.digest} is missing")
            _verified(store, name, layer)
            adapters.append(store.blob_path(layer.digest))
        elif kind == MediaType.DRAFT:
            if store.blob_size(layer.digest) != layer.size:
                raise StoreError(f"model {name.display()}: draft model blob {layer.digest} is missing or incomplete")
            _verified(store, name, layer)
            draft = store.blob_path(layer.digest)
        elif kind == MediaType.MESSAGES:
            messages = _messages(_json(store, layer), layer.digest)
    config = store.read_blob_bytes(manifest.config.digest, limit=MAX_TEXT_LAYER_BYTES)
    return StoredModel(
        name=name,
        digest=digest,
        manifest=manifest,
        model_path=model_path,
        model_digest=model_layer.digest,
        details=details_from_config(config),
        params=params,
        template=template,
        system=system,
        license=tuple(licenses),
        adapters=tuple(adapters),
        messages=messages,
        draft=draft,
    )
