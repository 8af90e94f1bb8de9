"""The model store: names, content-addressed blobs, manifests, bundled models, and the registry
client that pulls and pushes them (``pull_model``, ``push_model``).

Laid out on disk as ollama lays out ``~/.ollama/models`` (see ``store.py``).
"""

from kettle.store.bundled import (
    BUNDLED, DEFAULT_MODEL, bundled_names, ensure_default, find_bundled, pull_bundled, resolve_model,
)
from kettle.store.details import ModelDetails
from kettle.store.manifest import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Layer, Manifest, MediaType, normalize_digest
from kettle.store.model import StoredModel
from kettle.store.names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName, parse_name, valid_name
from kettle.store.pull import pull_model
from kettle.store.push import push_model
from kettle.store.store import CleanupReport, ModelEntry, Store

__all__ = [
    "BUNDLED",
    "CONFIG_MEDIA_TYPE",
    "CleanupReport",
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TAG",
    "Layer",
    "MANIFEST_MEDIA_TYPE",
    "Manifest",
    "MediaType",
    "ModelDetails",
    "ModelEntry",
    "ModelName",
    "Store",
    "StoredModel",
    "bundled_names",
    "ensure_default",
    "find_bundled",
    "normalize_digest",
    "parse_name",
    "pull_bundled",
    "pull_model",
    "push_model",
    "resolve_model",
    "valid_name",
]
