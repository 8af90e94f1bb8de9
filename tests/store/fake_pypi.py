"""A package index on 127.0.0.1 that speaks PyPI's JSON API and serves wheels, with faults.

``GET /pypi/<project>/json`` answers ``{"info", "releases": {version: [file, ...]}, "urls"}`` as
PyPI does (each file: ``filename``, ``packagetype``, ``size``, ``url``, ``digests.sha256``);
``GET /files/<filename>`` serves the wheel, with ``Range``. ``faults`` switches on one bad answer
at a time. Wheels are built in the test with ``zipfile`` (``build_wheel``).
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.registry.fake_registry import Running


def build_wheel(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A wheel (a zip) holding ``members`` (name -> bytes), plus a dist-info METADATA."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
    return out.getvalue()


@dataclass
class Faults:
    wrong_sha256: bool = False  # the index publishes a sha256 the wheel does not have
    file_status: int = 0  # the wheel's URL answers this status
    index_status: int = 0  # the project's JSON answers this status
    cut_at: float = 0.0  # the wheel's responses end after this fraction of its bytes
    cut_times: int = 0  # ... this many times (then it is served whole)
    redirect_to: str | None = None  # the wheel's URL redirects here


@dataclass
class FakePyPI:
    wheels: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)  # (project, version) -> file
    faults: Faults = field(default_factory=Faults)
    requests: list[str] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, project: str, version: str, wheel: bytes) -> str:
        filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
        self.wheels[(project, version)] = (filename, wheel)
        return filename

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/pypi/{project}/json", self.index), Route("/files/{filename}", self.file)])

    async def index(self, request: Request) -> Response:
        project = request.path_params["project"]
        self.requests.append(request.url.path)
        if self.faults.index_status:
            return JSONResponse({"message": "index broken"}, status_code=self.faults.index_status)
        releases: dict[str, list] = {}
        for (name, version), (filename, data) in self.wheels.items():
            if name != project:
                continue
            sha = hashlib.sha256(data + (b"x" if self.faults.wrong_sha256 else b"")).hexdigest()
            releases[version] = [
                {"filename": filename.replace(".whl", ".tar.gz"), "packagetype": "sdist", "size": 10,
                 "url": f"{self.url}/files/none.tar.gz", "digests": {"sha256": "0" * 64}},
                {"filename": filename, "packagetype": "bdist_wheel", "size": len(data),
                 "url": f"{self.url}/files/{filename}", "digests": {"sha256": sha}, "yanked": False},
            ]
        if not releases:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return JSONResponse({"info": {"name": project}, "releases": releases, "urls": []})

    async def file(self, request: Request) -> Response:
        name = request.path_params["filename"]
        self.requests.append(request.url.path)
        if self.faults.file_status:
            return Response(b"no such file", status_code=self.faults.file_status)
        if self.faults.redirect_to:
            return Response(status_code=302, headers={"location": self.faults.redirect_to})
        data = next((d for f, d in self.wheels.values() if f == name), None)
        if data is None:
            return Response(b"missing", status_code=404)
        start = 0
        rng = request.headers.get("range", "")
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        with self._lock:
            cut = self.faults.cut_times > 0
            if cut:
                self.faults.cut_times -= 1
        headers = {"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start or rng else {}
        if cut:
            keep = max(int(len(data) * self.faults.cut_at) - start, 0)  # nothing past the cut

            async def cut_body() -> object:
                yield body[:keep]
                raise ConnectionResetError("cut")  # the connection drops mid-body

            headers["content-length"] = str(len(body))
            return StreamingResponse(cut_body(), status_code=206 if rng else 200, headers=headers)
        return Response(body, status_code=206 if rng else 200, headers=headers)


def start() -> tuple[FakePyPI, Running]:
    index = FakePyPI()
    return index, Running(index)  # type: ignore[arg-type]  # it sets index.port
