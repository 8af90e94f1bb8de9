"""A registry that speaks ollama's protocol on 127.0.0.1, with a switch for each fault.

Started by the tests in a thread (uvicorn, real sockets), it serves ``/v2/<ns>/<model>/manifests/<tag>``
and ``/blobs/<digest>`` (with Range) from ``models`` / ``blobs``, accepts pushes (POST/PATCH/PUT
uploads, PUT manifests), and logs every request (method, path, headers). ``faults`` turns on
hostile behaviour; each is named after the case it tests (see ``Faults``). ``localhost`` and
``127.0.0.1`` reach the same server but are different hosts to a client, which is how "another
host" is tested without a second server.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
TOKEN = "good-token-123"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Faults:
    manifest_body: bytes | None = None  # served instead of the real manifest (bad digests, ...)
    huge_manifest: int = 0  # stream this many bytes of JSON-looking manifest
    gzip_bomb: int = 0  # manifest gzip-encoded, inflating to this many bytes
    corrupt_blob: bool = False  # blob bytes differ from their digest (same length)
    extra_bytes: int = 0  # the blob has this many more bytes than the manifest says
    lie_total: bool = False  # Content-Range's total differs from the manifest's size
    redirect_loop: bool = False  # blobs redirect to themselves, forever
    redirect_to: str | None = None  # blobs redirect here (file:///etc/passwd, a CDN on localhost)
    auth: bool = False  # 401 + a Bearer challenge without the token
    realm: str | None = None  # the challenge's realm (default: this server's /token)
    cut_at: float = 0.0  # blob responses drop the connection after this fraction of the blob
    cut_times: int = 0  # ... for this many responses (then the blob is served whole)
    trickle: tuple[int, float] | None = None  # (bytes, seconds): send the blob slowly
    stall_once: float = 0.0  # the first blob response sends half, then hangs for this long
    ignore_range: bool = False  # answer 200 with the whole blob
    gzip_blob: bool = False  # the blob gzip-encoded although the client asked for identity
    forbid_from: int | None = None  # a Range starting here gets 403, half a second late
    hang_from: int | None = None  # a Range starting here gets 100 bytes, then none for 60 s


@dataclass
class FakeRegistry:
    models: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (ns, model, tag) -> manifest
    blobs: dict[str, bytes] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    log: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    uploads: dict[str, bytearray] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_model(self, ns: str, model: str, tag: str, layers: list[tuple[str, bytes]],
                  config: bytes = b'{"model_format":"gguf"}') -> bytes:
        """Store blobs and a manifest for them; returns the manifest bytes."""
        for _, data in layers:
            self.blobs[digest_of(data)] = data
        self.blobs[digest_of(config)] = config
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": t, "digest": digest_of(d), "size": len(d)} for t, d in layers],
        }
        body = json.dumps(manifest).encode()
        self.models[(ns, model, tag)] = body
        return body

    def requests(self, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        return [r for r in self.log if (method is None or r["method"] == method) and contains in r["url"]]

    # -- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def record(request: Request) -> Response | None:
            self.log.append({"method": request.method, "url": str(request.url), "host": request.headers.get("host"),
                             "headers": dict(request.headers)})
            f = self.faults
            if f.auth and request.url.path.startswith("/v2/") and request.headers.get("authorization") != f"Bearer {TOKEN}":
                realm = f.realm or f"http://{request.headers.get('host')}/token"
                challenge = f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'
                return JSONResponse({"errors": [{"code": "UNAUTHORIZED", "message": "token needed"}]},
                                    status_code=401, headers={"WWW-Authenticate": challenge})
            return None

        async def token(request: Request) -> Response:
            await record(request)
            return JSONResponse({"token": TOKEN})

        async def manifest(request: Request) -> Response:
            if (early := await record(request)) is not None:
                return early
            p = request.path_params
            key = (p["ns"], p["model"], p["tag"])
            f = self.faults
            if request.method == "PUT":
                self.models[key] = await request.body()
                return Response(status_code=201)
            if f.huge_manifest:
                async def huge():
                    yield b'{"schemaVersion":2,"layers":['
                    chunk = b'{"mediaType":"x","digest":"sha256:' + b"0" * 64 + b'","size":1},' * 1000
                    for _ in range(f.huge_manifest // len(chunk) + 1):
                        yield chunk
                    yield b"]}"
                return StreamingResponse(huge(), media_type=MANIFEST_TYPE)
            if f.gzip_bomb:
                bomb = gzip.compress(b"[" * 16 + b" " * f.gzip_bomb, compresslevel=9)
                return Response(bomb, media_type=MANIFEST_TYPE, headers={"Content-Encoding": "gzip"})
            body = f.manifest_body if f.manifest_body is not None else self.models.get(key)
            if body is None:
                return JSONResponse({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, 404)
            return Response(body, media_type=MANIFEST_TYPE)

        async def blob(request: Request) -> Response:
            if (early := await record(request)) is not None:
                return early
            digest = request.path_params["digest"]
            data = self.blobs.get(digest)
            if data is None:
                return JSONResponse({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, 404)
            if request.method == "HEAD":
                return Response(status_code=200, headers={"Content-Length": str(len(data))})
            f = self.faults
            if f.redirect_loop:
                return Response(status_code=307, headers={"Location": str(request.url)})
            if f.redirect_to is not None and "/cdn/" not in request.url.path:
                return Response(status_code=307, headers={"Location": f.redirect_to.replace("{digest}", digest)})
            if f.gzip_blob:
                return Response(gzip.compress(data), headers={"Content-Encoding": "gzip"})
            if f.corrupt_blob:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            data = data + b"x" * f.extra_bytes
            size = len(data)
            start, end, partial = 0, size - 1, False
            rng = request.headers.get("range", "")
            if rng.startswith("bytes=") and not f.ignore_range:
                a, _, b = rng[6:].partition("-")
                start, end, partial = int(a), min(int(b) if b else size - 1, size - 1), True
                if f.extra_bytes:
                    end = size - 1  # sends past what was asked
            if f.forbid_from is not None and start == f.forbid_from:
                await asyncio.sleep(0.5)  # so the other parts are under way when this one is refused
                return JSONResponse({"errors": [{"code": "DENIED", "message": "no"}]}, 403)
            hang = 60.0 if f.hang_from is not None and start == f.hang_from else 0.0
            body = data[start:end + 1]
            headers = {"Accept-Ranges": "bytes"}
            if partial:
                total = size + 7 if f.lie_total else size
                headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{total}"
            cut = None
            if f.cut_times > 0 and f.cut_at:
                f.cut_times -= 1
                cut = max(int(size * f.cut_at) - start, 0)
            stall = f.stall_once
            f.stall_once = 0.0

            async def stream():
                if hang:
                    yield body[:100]
                    await asyncio.sleep(hang)
                    return
                sent = 0
                step = f.trickle[0] if f.trickle else 1 << 16
                while sent < len(body):
                    if cut is not None and sent >= cut:
                        raise ConnectionResetError("cut by the test")
                    if stall and sent >= len(body) // 2:
                        await asyncio.sleep(stall)
                        return
                    n = step if cut is None else min(step, cut - sent)  # cut > sent: checked above
                    yield body[sent:sent + n]
                    sent += n
                    if f.trickle:
                        await asyncio.sleep(f.trickle[1])

            headers["Content-Length"] = str(len(body))
            return StreamingResponse(stream(), status_code=206 if partial else 200, headers=headers,
                                     media_type="application/octet-stream")

        async def cdn(request: Request) -> Response:
            await record(request)
            data = self.blobs.get(request.path_params["digest"])
            if data is None:
                return Response(status_code=404)
            return Response(data, status_code=200, media_type="application/octet-stream")

        async def start_upload(request: Request) -> Response:
            if (early := await record(request)) is not None:
                return early
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = bytearray()
            p = request.path_params
            return Response(status_code=202, headers={"Location": f"/v2/{p['ns']}/{p['model']}/blobs/uploads/{upload_id}"})

        async def upload(request: Request) -> Response:
            if (early := await record(request)) is not None:
                return early
            buf = self.uploads.get(request.path_params["upload"])
            if buf is None:
                return Response(status_code=404)
            buf += await request.body()
            if request.method == "PATCH":
                return Response(status_code=202, headers={"Location": str(request.url.path)})
            digest = request.query_params.get("digest", "")
            if digest_of(bytes(buf)) != digest:
                return JSONResponse({"errors": [{"code": "DIGEST_INVALID", "message": "digest mismatch"}]}, 400)
            self.blobs[digest] = bytes(buf)
            return Response(status_code=201)

        repo = "/v2/{ns}/{model}"
        return Starlette(routes=[
            Route("/token", token),
            Route(repo + "/manifests/{tag}", manifest, methods=["GET", "PUT"]),
            Route(repo + "/blobs/uploads/", start_upload, methods=["POST"]),
            Route(repo + "/blobs/uploads/{upload}", upload, methods=["PATCH", "PUT"]),
            Route(repo + "/blobs/{digest}", blob, methods=["GET", "HEAD"]),
            Route("/cdn/{digest}", cdn),
        ])


class Running:
    """A FakeRegistry served by uvicorn in a thread; ``stop()`` when done."""

    def __init__(self, registry: FakeRegistry) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        registry.port = sock.getsockname()[1]
        self.registry = registry
        config = uvicorn.Config(registry.app(), log_level="error", lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
