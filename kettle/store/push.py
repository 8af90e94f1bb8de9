"""``kettle push``: a stored model to any registry that speaks ollama's protocol.

As ollama's ``server/upload.go`` does: for each blob of the manifest, ``HEAD`` asks whether the
registry has it; if not, ``POST /v2/<ns>/<model>/blobs/uploads/`` opens an upload (202 and a
``Location``; 201 means the registry mounted it), each part goes in a ``PATCH`` to the latest
location with ``Content-Range: <first>-<last>``, and ``PUT <location>?digest=<digest>`` commits it.
Then ``PUT /v2/<ns>/<model>/manifests/<tag>`` sends the manifest. Tokens and redirects follow the
rules of ``registry.py``. A part whose connection fails is sent again, up to ``MAX_RETRIES`` times.

Reported, as ollama does: ``retrieving manifest``, ``pushing <digest12>`` (with digest, total,
completed), ``pushing manifest``, ``success``.
"""

from __future__ import annotations

from contextlib import closing

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from kettle.errors import RegistryError
from kettle.store.blobs import open_regular_file
from kettle.store.manifest import MANIFEST_MEDIA_TYPE, Layer
from kettle.store.pull import Report, unique_blobs, registry_name, transfer_status
from kettle.store.registry import RegistryClient, join_url
from kettle.store.store import Store
from kettle.store.transfer import BACKOFF_MAX_S, BACKOFF_S, MAX_RETRIES

UPLOAD_PART_BYTES = 100 * 1000 * 1000  # one PATCH; ollama's smallest part
READ_BYTES = 1 << 20


def push_model(store: Store, name: str, report: Report | None = None, *, insecure: bool = False,
               stall_s: float | None = None, part_bytes: int = UPLOAD_PART_BYTES) -> None:
    """Push the stored model ``name`` to the registry its host names."""
    emit: Report = report or (lambda event: None)
    parsed, plain = registry_name(name, insecure)
    emit({"status": "retrieving manifest"})
    manifest = store.read_manifest(parsed)
    for layer in manifest.blobs():
        store.verify_blob(layer.digest)  # never send bytes that are not what their digest says
    with RegistryClient(parsed, insecure=plain, stall_s=stall_s) as client, client.network("pushing"):
        for layer in unique_blobs(manifest):
            status = transfer_status("pushing", layer.digest)

            def progress(done: int, layer: Layer = layer, status: str = status) -> None:
                emit({"status": status, "digest": layer.digest, "total": layer.size, "completed": done})

            if client.has_blob(layer.digest):
                progress(layer.size)
                continue
            _upload(client, store.blob_path(layer.digest), layer, progress, part_bytes)
        emit({"status": "pushing manifest"})
        url = f"{client.repo_url}/manifests/{parsed.tag}"
        with closing(client.send("PUT", url, headers={"Content-Type": MANIFEST_MEDIA_TYPE},
                                 content=manifest.to_bytes())) as resp:
            if resp.status_code not in (200, 201, 202, 204):
                raise client.error_of(resp, f"pushing the manifest of {parsed.display()}")
    emit({"status": "success"})


def _location(client: RegistryClient, resp: httpx.Response, what: str) -> str:
    location = resp.headers.get("docker-upload-location") or resp.headers.get("location")
    if not location:
        raise RegistryError(f"{client.where()}: {what} answered without a Location to upload to")
    url = join_url(resp, location, client.where())
    if urlsplit(url).scheme not in ("http", "https"):
        raise RegistryError(f"{client.where()}: refused the upload location {url[:200]!r} (http and https only)")
    return url


def _read_range(path: Path, offset: int, length: int) -> Iterator[bytes]:
    f = open_regular_file(path)
    if f is None:
        raise RegistryError(f"cannot read blob {path.name} of the store")
    with f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(READ_BYTES, left))
            if not chunk:
                raise RegistryError(f"blob {path.name} of the store is shorter than its manifest says")
            left -= len(chunk)
            yield chunk


def _upload(client: RegistryClient, path: Path, layer: Layer, progress, part_bytes: int) -> None:
    with closing(client.send("POST", f"{client.repo_url}/blobs/uploads/")) as resp:
        if resp.status_code == 201:  # mounted: the registry has it now
            progress(layer.size)
            return
        if resp.status_code != 202:
            raise client.error_of(resp, f"starting the upload of {layer.digest}")
        location = _location(client, resp, "starting an upload")
    offset = 0
    progress(0)
    while offset < layer.size:
        length = min(part_bytes, layer.size - offset)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{offset}-{offset + length - 1}", "X-Redirect-Uploads": "1"}
        for attempt in range(MAX_RETRIES):
            try:
                resp = client.send("PATCH", location, headers=headers,
                                   content=lambda o=offset, n=length: _read_range(path, o, n))
                break
            except httpx.TransportError:
                if attempt == MAX_RETRIES - 1:
                    raise RegistryError(f"{client.where()}: uploading {layer.digest} failed {MAX_RETRIES} times "
                                        f"at byte {offset}; run the push again") from None
                time.sleep(min(BACKOFF_S * 2 ** attempt, BACKOFF_MAX_S))
        with closing(resp):
            if resp.status_code not in (200, 201, 202, 204):
                raise client.error_of(resp, f"uploading {layer.digest}")
            if resp.headers.get("location") or resp.headers.get("docker-upload-location"):
                location = _location(client, resp, "an upload part")
        offset += length
        progress(offset)
    sep = "&" if urlsplit(location).query else "?"
    commit = f"{location}{sep}digest={layer.digest}"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": "0"}
    with closing(client.send("PUT", commit, headers=headers, content=b"")) as resp:
        if resp.status_code not in (200, 201, 202, 204):
            raise client.error_of(resp, f"committing the upload of {layer.digest}")
