"""Manifests and digests in ollama's on-disk format (Docker distribution schema 2).

A manifest names one config blob and an ordered list of layers; each layer is
a blob with a media type that says what it holds::

    {"schemaVersion": 2,
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:<64 hex>", "size": 485},
     "layers": [{"mediaType": "application/vnd.ollama.image.model",
                 "digest": "sha256:<64 hex>", "size": 98362432}, ...]}

Digests are written ``sha256:<hex>`` in manifests and ``sha256-<hex>`` in blob
file names (ollama ``manifest/manifest.go``, ``manifest/paths.go``).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

from kettle.errors import StoreError

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
SCHEMA_VERSION = 2

# Bounds for reading a manifest someone else may have written.
MAX_MANIFEST_BYTES = 1 << 20
MAX_LAYERS = 1024

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


class MediaType(enum.StrEnum):
    """Layer media types (ollama ``server/images.go`` and ``manifest``)."""

    MODEL = "application/vnd.ollama.image.model"
    PARAMS = "application/vnd.ollama.image.params"
    TEMPLATE = "application/vnd.ollama.image.template"
    SYSTEM = "application/vnd.ollama.image.system"
    LICENSE = "application/vnd.ollama.image.license"
    ADAPTER = "application/vnd.ollama.image.adapter"
    DRAFT = "application/vnd.kettle.image.draft"  # a draft model's GGUF (Modelfile DRAFT)
    MESSAGES = "application/vnd.ollama.image.messages"
    PROJECTOR = "application/vnd.ollama.image.projector"
    PROMPT = "application/vnd.ollama.image.prompt"  # legacy name of TEMPLATE


def normalize_digest(text: str) -> str:
    """``sha256:<hex>`` (lower case) from ``sha256:<hex>`` or ``sha256-<hex>``.

    Raises StoreError for anything else, before any path is built from it.
    """
    m = _DIGEST.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        shown = text if isinstance(text, str) and len(text) <= 100 else f"{str(text)[:100]}..."
        raise StoreError(f"invalid digest {shown!r}: expected sha256:<64 hex digits>")
    return "sha256:" + m.group(1).lower()


def is_digest(text: str) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def digest_hex(digest: str) -> str:
    """The 64 hex digits of a digest."""
    return normalize_digest(digest)[len("sha256:"):]


@dataclass(frozen=True)
class Layer:
    """One blob a manifest refers to: its media type, digest and size in bytes."""

    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @staticmethod
    def from_json(obj: Any, where: str) -> Layer:
        if not isinstance(obj, dict):
            raise StoreError(f"{where}: expected an object")
        media_type = obj.get("mediaType")
        size = obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise StoreError(f"{where}: mediaType is missing")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StoreError(f"{where}: size must be a non-negative integer")
        return Layer(media_type, normalize_digest(obj.get("digest", "")), size)


@dataclass(frozen=True)
class Manifest:
    """A config blob plus ordered layers. ``to_bytes()`` is the exact file content."""

    config: Layer
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if len(self.layers) > MAX_LAYERS:
            raise StoreError(f"a manifest may hold at most {MAX_LAYERS} layers")
        for layer in (self.config, *self.layers):
            if normalize_digest(layer.digest) != layer.digest:
                raise StoreError(f"layer digest {layer.digest!r} is not in sha256:<hex> form")

    def blobs(self) -> list[Layer]:
        """The config and every layer: all the blobs this manifest needs."""
        return [self.config, *self.layers]

    def size(self) -> int:
        return sum(layer.size for layer in self.blobs())

    def find(self, media_type: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type == media_type]

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode()

    @staticmethod
    def from_bytes(data: bytes, where: str = "manifest") -> Manifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise StoreError(f"{where}: larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: deep nesting
            raise StoreError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise StoreError(f"{where}: expected a JSON object")
        if obj.get("schemaVersion") != SCHEMA_VERSION:
            raise StoreError(f"{where}: schemaVersion must be {SCHEMA_VERSION}")
        layers = obj.get("layers")
        if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
            raise StoreError(f"{where}: layers must be a list of at most {MAX_LAYERS}")
        return Manifest(
            config=Layer.from_json(obj.get("config"), f"{where}: config"),
            layers=tuple(Layer.from_json(item, f"{where}: layer {i}") for i, item in enumerate(layers)),
        )
