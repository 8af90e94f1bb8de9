"""``kettle pull``: a model from any registry that speaks ollama's protocol, into the store.

``pull_model(store, name, report)`` reports ollama's progress objects, in ollama's order::

    {"status": "pulling manifest"}
    {"status": "pulling <digest12>", "digest": "sha256:...", "total": N, "completed": n}  (per blob)
    {"status": "verifying sha256 digest"}
    {"status": "writing manifest"}
    {"status": "success"}

The bundled names (``smollm2``, ``gemma3:270m``; see ``bundled.py``) come from their Python
packages, with the same statuses. Every other name goes to its registry (``registry.py``):
the manifest is fetched and checked (size, nesting, layer count, every digest), the bytes still
missing are weighed against the free disk (``StoreFull`` before anything is fetched), each missing
blob is downloaded into the partial area (``transfer.py``: ranged, parallel, resumable), then
hashed and given its name, and the manifest is written last, atomically, once every blob it names
is in the store. A refused pull removes what it fetched: no blob, no manifest, no partial file; a
pull the network cut off (retries exhausted: ``GaveUp``) or that was interrupted (Ctrl-C, a kill)
keeps its partial files so the next one resumes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from kettle.errors import RegistryError, StoreFull
from kettle.store.bundled import find_bundled, pull_bundled
from kettle.store.manifest import Layer, Manifest, digest_hex
from kettle.store.names import ModelName, scheme_of, valid_name
from kettle.store.registry import RegistryClient
from kettle.store.store import Store
from kettle.store.transfer import (
    BACKOFF_S, MIN_PART_BYTES, Download, GaveUp, already_done, blob_lock, discard, finish, partial_files,
)

# Receives each progress object ({"status", "digest"?, "total"?, "completed"?}).
Report = Callable[[dict[str, Any]], None]

DIGEST_SHOWN = 12


def transfer_status(verb: str, digest: str) -> str:
    """``pulling b179c9523d0e`` / ``pushing ...``: the first 12 hex digits, as ollama shows them."""
    return f"{verb} {digest_hex(digest)[:DIGEST_SHOWN]}"


def registry_name(text: str, insecure: bool) -> tuple[ModelName, bool]:
    """The checked name and whether to talk plain http; ``http://`` needs ``insecure``."""
    if scheme_of(text) == "http" and not insecure:
        raise RegistryError(f"{text!r} names a plain-http registry: pass --insecure (\"insecure\": true) to use it")
    return valid_name(text), insecure


def pull_model(store: Store, name: str, report: Report | None = None, *, insecure: bool = False,
               stall_s: float | None = None, min_part: int = MIN_PART_BYTES, backoff_s: float = BACKOFF_S) -> None:
    """Pull ``name`` into ``store`` (see the module docstring for what is reported and checked).

    ``stall_s`` (default ``KETTLE_STALL_TIMEOUT``), ``min_part`` (the smallest ranged part) and
    ``backoff_s`` (the first wait before a retry) are for tests and tools."""
    emit: Report = report or (lambda event: None)
    parsed, plain = registry_name(name, insecure)
    bundled = find_bundled(parsed)
    if bundled is not None:
        def progress(status: str, completed: int, total: int) -> None:
            event: dict[str, Any] = {"status": status}
            if total:
                event.update(digest=bundled.digest, total=total, completed=completed)
            emit(event)

        pull_bundled(store, parsed, progress)
        return
    emit({"status": "pulling manifest"})
    with RegistryClient(parsed, insecure=plain, stall_s=stall_s) as client:
        manifest, raw = client.manifest()
        layers = unique_blobs(manifest)
        missing = [layer for layer in layers if not _present(store, layer)]
        _check_room(store, missing)
        added: list[str] = []
        try:
            with store.writing():
                for layer in layers:
                    _fetch(store, client, layer, layer in missing, emit, min_part, backoff_s)
                emit({"status": "verifying sha256 digest"})
                for layer in missing:
                    with blob_lock(partial_files(store, layer.digest)):
                        if not _present(store, layer):
                            added.append(finish(store, layer))
                emit({"status": "writing manifest"})
                store.write_manifest(parsed, manifest, raw)  # the registry's bytes: the same ID as ollama's
        except BaseException as e:
            if added:
                store.prune(added)  # only those no manifest uses: a concurrent pull's are kept
            if isinstance(e, Exception) and not isinstance(e, GaveUp):  # refused: nothing stays
                for layer in missing:
                    discard(store, layer.digest)
            raise
    emit({"status": "success"})


def unique_blobs(manifest: Manifest) -> list[Layer]:
    """The manifest's blobs, each once (layers first, then the config, as ollama lists them)."""
    seen: dict[str, Layer] = {}
    for layer in (*manifest.layers, manifest.config):
        other = seen.setdefault(layer.digest, layer)
        if other.size != layer.size:
            raise RegistryError(f"the manifest gives blob {layer.digest} two sizes ({other.size} and {layer.size})")
    return list(seen.values())


def _present(store: Store, layer: Layer) -> bool:
    size = store.blob_size(layer.digest)
    if size is not None and size != layer.size:
        raise RegistryError(f"the manifest says blob {layer.digest} has {layer.size} bytes, "
                            f"but that blob (stored, verified) has {size}: the manifest is wrong")
    return size is not None


def _check_room(store: Store, missing: list[Layer]) -> None:
    need = sum(layer.size - already_done(store, layer) for layer in missing)
    free = shutil.disk_usage(store.root).free
    if need > free:
        raise StoreFull(
            f"cannot pull: it needs {need} more bytes and the disk holding the model store ({store.root}) has "
            f"{free} free; free some space (kettle rm unused models) or point KETTLE_MODELS at a larger disk")


def _fetch(store: Store, client: RegistryClient, layer: Layer, missing: bool, emit: Report, min_part: int,
           backoff_s: float) -> None:
    status = transfer_status("pulling", layer.digest)

    def progress(done: int) -> None:
        emit({"status": status, "digest": layer.digest, "total": layer.size, "completed": done})

    if not missing:
        progress(layer.size)
        return
    with blob_lock(partial_files(store, layer.digest)):
        if _present(store, layer):  # another process pulled it while this one waited
            progress(layer.size)
            return
        Download(store, client, layer, progress, min_part=min_part, backoff_s=backoff_s).run()
