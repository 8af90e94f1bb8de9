"""kettle as a registry: the read side of ollama's registry protocol for the models in its store,
and, when ``KETTLE_REGISTRY_PUSH=1``, the write side.

``GET|HEAD /v2/<namespace>/<model>/manifests/<tag>`` answers the stored manifest of
``registry.ollama.ai/<namespace>/<model>:<tag>`` (the names ``kettle list`` shows without a host),
so another machine can ``kettle pull <this-host>:11434/library/mymodel --insecure``.
``GET|HEAD /v2/<namespace>/<model>/blobs/<digest>`` answers a blob of the store (blobs are named by
content, as in any registry), with ``Range``; a blob is checked against its digest before it is
served. Only names valid by the name
grammar and digests of the form ``sha256:<64 hex>`` are looked up, so nothing outside the store
can be named; the API's Host and Origin rules (``security.Guard``) apply here as everywhere.

Pushes (``POST blobs/uploads/``, ``PATCH`` / ``PUT uploads/<id>?digest=``, ``PUT manifests/<tag>``)
are refused (405, ``UNSUPPORTED``) unless ``KETTLE_REGISTRY_PUSH=1``. An upload is written to the
store's partial area and becomes a blob only when its sha256 is the digest it is committed under;
a manifest is accepted only when every blob it names is stored with the size it states.
Errors are Docker's ``{"errors": [{"code", "message"}]}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from kettle import config
from kettle.errors import DigestMismatch, ModelNotFound, StoreError, StoreFull
from kettle.server.ollama_routes import state_of
from kettle.store.manifest import MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, Manifest, is_digest, normalize_digest
from kettle.store.names import DEFAULT_HOST, ModelName
from kettle.store.registry import parse_json
from kettle.store.store import Store
from kettle.store.transfer import PARTIAL_DIR

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=API_HEADERS)


def _name(request: Request, tag: str = "latest") -> ModelName | Response:
    p = request.path_params
    name = ModelName(DEFAULT_HOST, p["namespace"], p["model"], p.get("tag", tag))
    problem = name.problem()
    if problem is not None:
        return _error(404, "NAME_INVALID", f"invalid model name: {problem}")
    return name


def _store(request: Request) -> Store:
    return state_of(request).catalog.store


async def version_check(request: Request) -> Response:
    return JSONResponse({}, headers=API_HEADERS)


async def manifest(request: Request) -> Response:
    name = _name(request)
    if isinstance(name, Response):
        return name
    if request.method == "PUT":
        return await _put_manifest(request, name)
    store = _store(request)
    try:
        data = await state_of(request).blocking(store.manifest_bytes, name)
    except ModelNotFound:
        return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name.display()} is not in this store")
    except StoreError as e:
        return _error(500, "UNKNOWN", f"the stored manifest of {name.display()} is unreadable: {e}")
    headers = {**API_HEADERS, "Docker-Content-Digest": "sha256:" + hashlib.sha256(data).hexdigest(),
               "Content-Length": str(len(data))}
    body = b"" if request.method == "HEAD" else data
    return Response(body, media_type=MANIFEST_MEDIA_TYPE, headers=headers)


def _digest(text: str) -> str | None:
    return normalize_digest(text) if is_digest(text) else None


async def blob(request: Request) -> Response:
    name = _name(request)
    if isinstance(name, Response):
        return name
    digest = _digest(request.path_params["digest"])
    if digest is None:
        return _error(400, "DIGEST_INVALID", "invalid digest: expected sha256:<64 hex digits>")
    store = _store(request)
    state = state_of(request)

    def check() -> bool:
        try:
            store.verify_blob(digest)
        except StoreError:
            return False
        return True

    if not store.has_blob(digest) or not await state.blocking(check):
        return _error(404, "BLOB_UNKNOWN", f"blob unknown: {digest} is not in this store")
    headers = {**API_HEADERS, "Docker-Content-Digest": digest}
    return FileResponse(store.blob_path(digest), media_type="application/octet-stream", headers=headers)


# -- pushes ------------------------------------------------------------------------


def _push_refused() -> Response | None:
    if config.get("KETTLE_REGISTRY_PUSH").strip().lower() in ("1", "true", "yes", "on"):
        return None
    return _error(405, "UNSUPPORTED", "this kettle does not accept pushes (set KETTLE_REGISTRY_PUSH=1 to allow them)")


def _upload_path(store: Store, upload_id: str) -> Path | None:
    if _UPLOAD_ID.fullmatch(upload_id) is None:
        return None
    return store.root / PARTIAL_DIR / f"upload-{upload_id}"


def _upload_headers(request: Request, upload_id: str, size: int) -> dict[str, str]:
    p = request.path_params
    return {**API_HEADERS, "Location": f"/v2/{p['namespace']}/{p['model']}/blobs/uploads/{upload_id}",
            "Docker-Upload-UUID": upload_id, "Range": f"0-{max(size - 1, 0)}"}


async def start_upload(request: Request) -> Response:
    refused = _push_refused()
    name = _name(request)
    if refused is not None or isinstance(name, Response):
        return refused or name  # type: ignore[return-value]
    upload_id = uuid.uuid4().hex
    path = _upload_path(_store(request), upload_id)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return Response(status_code=202, headers=_upload_headers(request, upload_id, 0))


async def _append(request: Request, path: Path) -> int:
    """Append the request body to an upload; the upload's new size."""
    with open(path, "ab") as out:
        async for chunk in request.stream():
            out.write(chunk)
        return out.tell()


async def upload(request: Request) -> Response:
    refused = _push_refused()
    name = _name(request)
    if refused is not None or isinstance(name, Response):
        return refused or name  # type: ignore[return-value]
    store = _store(request)
    upload_id = request.path_params["upload"]
    path = _upload_path(store, upload_id)
    if path is None or not path.is_file():
        return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
    have = path.stat().st_size
    first = (request.headers.get("content-range") or "").partition("-")[0].removeprefix("bytes ").strip()
    if first and (not first.isdigit() or int(first) != have):
        return _error(416, "BLOB_UPLOAD_INVALID", f"the upload holds {have} bytes; a part must start there")
    try:
        size = await _append(request, path)
    except ClientDisconnect:
        return _error(400, "BLOB_UPLOAD_INVALID", "the upload was cut off")
    except OSError as e:
        path.unlink(missing_ok=True)
        status, code = (507, "UNKNOWN") if isinstance(store.os_error("x", e), StoreFull) else (500, "UNKNOWN")
        return _error(status, code, f"cannot store the upload: {e.strerror or e}")
    if request.method == "PATCH":
        return Response(status_code=202, headers=_upload_headers(request, upload_id, size))
    digest = _digest(request.query_params.get("digest", ""))
    if digest is None:
        path.unlink(missing_ok=True)
        return _error(400, "DIGEST_INVALID", "commit with ?digest=sha256:<64 hex digits>")

    def commit() -> None:
        with store.writing():
            tmp = store.temp_path()
            os.replace(path, tmp)
            store.adopt_blob(tmp, expected=digest)

    try:
        await state_of(request).blocking(commit)
    except DigestMismatch as e:
        return _error(400, "DIGEST_INVALID", str(e))
    except StoreError as e:
        return _error(507 if isinstance(e, StoreFull) else 500, "UNKNOWN", str(e))
    finally:
        path.unlink(missing_ok=True)
    p = request.path_params
    headers = {**API_HEADERS, "Location": f"/v2/{p['namespace']}/{p['model']}/blobs/{digest}",
               "Docker-Content-Digest": digest}
    return Response(status_code=201, headers=headers)


async def _put_manifest(request: Request, name: ModelName) -> Response:
    refused = _push_refused()
    if refused is not None:
        return refused
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_MANIFEST_BYTES:
            return _error(413, "MANIFEST_INVALID", f"a manifest may hold at most {MAX_MANIFEST_BYTES} bytes")
    store = _store(request)
    try:
        parse_json(bytes(data), "the pushed manifest")  # bounded nesting first
        parsed = Manifest.from_bytes(bytes(data), "the pushed manifest")
    except StoreError as e:
        return _error(400, "MANIFEST_INVALID", str(e))
    try:
        digest = await state_of(request).blocking(store.write_manifest, name, parsed)
    except StoreError as e:
        code = "MANIFEST_BLOB_UNKNOWN" if "missing" in str(e) or "bytes" in str(e) else "MANIFEST_INVALID"
        return _error(400, code, str(e))
    state_of(request).scheduler.unload(name.display())  # a loaded old version reloads
    headers = {**API_HEADERS, "Docker-Content-Digest": f"sha256:{digest}",
               "Location": f"/v2/{name.namespace}/{name.model}/manifests/{name.tag}"}
    return Response(status_code=201, headers=headers)


_REPO = "/v2/{namespace}/{model}"
ROUTES = [
    Route("/v2/", version_check, methods=["GET"]),
    Route(_REPO + "/manifests/{tag}", manifest, methods=["GET", "HEAD", "PUT"]),
    Route(_REPO + "/blobs/uploads/", start_upload, methods=["POST"]),
    Route(_REPO + "/blobs/uploads/{upload}", upload, methods=["PATCH", "PUT"]),
    Route(_REPO + "/blobs/{digest}", blob, methods=["GET", "HEAD"]),
]
