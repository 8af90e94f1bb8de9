"""Blob downloads: ranged parts in parallel, resumable across processes, retried when they stall.

A blob being pulled lives in the store's partial area until its sha256 matches::

    <root>/.kettle-partial/sha256-<hex>        the bytes so far, each part written at its offset
    <root>/.kettle-partial/sha256-<hex>.json   {"digest", "size", "parts": [[start, end, done], ...]}
    <root>/.kettle-partial/sha256-<hex>.lock   flock: one process downloads a blob at a time

As ollama does (``server/download.go``), a blob is cut into up to ``NUM_PARTS`` parts of
``MIN_PART_BYTES``..``MAX_PART_BYTES`` each, fetched at once with ``Range: bytes=a-b``. The state
file records how much of each part is on disk (written after the bytes it counts), so a pull cut
off by the network, Ctrl-C, ``kill -9`` or a server restart continues where it stopped, in this
process or the next. A part that gets no byte for ``KETTLE_STALL_TIMEOUT`` seconds, or whose
connection drops, is retried from where it stopped with a growing backoff, up to ``MAX_RETRIES``
times in a row without progress. ``Store.cleanup`` never touches this area (its names do not start
with ``.kettle-tmp-``); ``discard`` removes a blob's files when a pull is refused.

Refused (``RegistryError``, the partial removed): a ``Content-Range`` or ``Content-Length`` that
disagrees with the manifest's size, more bytes than were asked for, a 4xx answer. Then ``finish``
moves the complete file into ``blobs/`` through ``Store.adopt_blob``, which hashes it: a file whose
hash is not its digest never gets the blob's name.
"""

from __future__ import annotations


import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from kettle.errors import RegistryError, StoreError
from kettle.store.manifest import Layer, digest_hex, normalize_digest
from kettle.store.registry import RegistryClient
from kettle.store.store import Store

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PARTIAL_DIR = ".kettle-partial"
NUM_PARTS = 16
MIN_PART_BYTES = 100 * 1000 * 1000
MAX_PART_BYTES = 1000 * 1000 * 1000
MAX_RETRIES = 6
BACKOFF_S = 0.25  # first wait before a retry; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0
STATE_EVERY_S = 0.5
REPORT_EVERY_S = 0.1
MAX_STATE_BYTES = 1 << 20

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

# progress(bytes of the blob on disk so far)
BlobProgress = Callable[[int], None]


class _Cut(Exception):
    """A part's response ended early: retried, as a dropped connection is."""


class Refused(RegistryError):
    """The registry's answer for a blob cannot be right: the download is dropped, not retried."""


class GaveUp(RegistryError):
    """A part failed ``MAX_RETRIES`` times in a row: what arrived is kept, for the next pull."""


@dataclass
class Part:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PartialFiles:
    data: Path
    state: Path
    lock: Path

    def remove(self) -> None:
        for path in (self.data, self.state, self.lock):
            path.unlink(missing_ok=True)


def partial_files(store: Store, digest: str) -> PartialFiles:
    """The partial-area paths of a blob (the digest is validated first)."""
    base = store.root / PARTIAL_DIR / f"sha256-{digest_hex(digest)}"
    return PartialFiles(base, base.with_name(base.name + ".json"), base.with_name(base.name + ".lock"))


def plan_parts(size: int, min_part: int = MIN_PART_BYTES, max_part: int = MAX_PART_BYTES) -> list[Part]:
    """ollama's split: ``size / NUM_PARTS`` clamped to ``[min_part, max_part]``."""
    step = min(max(size // NUM_PARTS, min_part), max_part) or 1
    return [Part(start, min(start + step, size)) for start in range(0, size, step)] or [Part(0, 0)]


def _load_state(files: PartialFiles, digest: str, size: int) -> list[Part] | None:
    """The parts recorded for this blob, or None when there is no usable record."""
    try:
        with open(files.state, "rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
        have = files.data.stat().st_size
        obj = json.loads(raw) if len(raw) <= MAX_STATE_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict) or obj.get("digest") != digest or obj.get("size") != size:
        return None
    parts, expect = [], 0
    for item in obj.get("parts") or []:
        if not (isinstance(item, list) and len(item) == 3 and all(type(v) is int for v in item)):
            return None
        start, end, done = item
        if start != expect or end <= start or not 0 <= done <= end - start or start + done > have:
            return None
        parts.append(Part(start, end, done))
        expect = end
    return parts if expect == size and parts else None


def _save_state(files: PartialFiles, digest: str, size: int, parts: list[Part]) -> None:
    data = json.dumps({"digest": digest, "size": size, "parts": [[p.start, p.end, p.done] for p in parts]})
    tmp = files.state.with_name(files.state.name + ".tmp")
    tmp.write_text(data)
    os.replace(tmp, files.state)


@contextlib.contextmanager
def blob_lock(files: PartialFiles) -> Iterator[None]:
    """One downloader per blob across processes (a second waits, then finds the blob stored)."""
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def already_done(store: Store, layer: Layer) -> int:
    """Bytes of ``layer`` a previous pull left in the partial area (0 when none)."""
    parts = _load_state(partial_files(store, layer.digest), layer.digest, layer.size)
    return sum(p.done for p in parts) if parts else 0


class Download:
    """Fetch one layer's bytes into its partial file (``run``), ready for ``finish``."""

    def __init__(self, store: Store, client: RegistryClient, layer: Layer, progress: BlobProgress, *,
                 min_part: int = MIN_PART_BYTES, backoff_s: float = BACKOFF_S) -> None:
        self.store, self.client, self.layer = store, client, layer
        self.digest = normalize_digest(layer.digest)
        self.size = layer.size
        self.files = partial_files(store, self.digest)
        self.progress = progress
        self.min_part = min_part
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self._reporting = threading.Lock()  # held while ``progress`` runs (part threads report in turn)
        self._stop = threading.Event()
        self._parts: list[Part] = []
        self._open: set[httpx.Response] = set()  # their sockets are shut down on a halt
        self._abandoned = False  # Ctrl-C: part threads may still run, so fd stays open
        self._last_state = self._last_report = 0.0

    def run(self) -> None:
        """Download what is missing. RegistryError: refused (the partial is removed) or given up
        after MAX_RETRIES (the partial is kept, so the next pull resumes)."""
        self.files.data.parent.mkdir(parents=True, exist_ok=True)
        parts = _load_state(self.files, self.digest, self.size)
        if parts is None:
            self.files.data.unlink(missing_ok=True)
            parts = plan_parts(self.size, self.min_part)
        self._parts = parts
        fd = os.open(self.files.data, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            self._save(force=True)
            self._report(force=True)
            pending = [p for p in parts if p.done < p.length]
            if pending:
                self._fetch_all(fd, pending)
        except Refused:
            os.close(fd)
            fd = -1
            self.files.remove()
            raise
        except OSError as e:
            raise self.store.os_error(f"write the download of {self.digest}", e) from None
        finally:
            if fd >= 0:
                if not self._abandoned:  # a straggling thread must never write to a reused fd
                    os.close(fd)
                with contextlib.suppress(OSError):
                    self._save(force=True)

    def _fetch_all(self, fd: int, pending: list[Part]) -> None:
        """Up to NUM_PARTS daemon threads take the pending parts in turn. The first error halts
        the others and is raised; Ctrl-C halts them and returns at once (daemon threads never
        hold the process open; ``fd`` is then left open for them: see ``run``)."""
        queue = list(pending)
        errors: list[BaseException] = []

        def worker() -> None:
            while not self._stop.is_set():
                with self._lock:
                    if not queue:
                        return
                    part = queue.pop(0)
                try:
                    self._part(fd, self._parts.index(part), part)
                except BaseException as e:  # noqa: BLE001 - raised by the caller
                    with self._lock:
                        errors.append(e)
                    self._halt()
                    return

        threads = [threading.Thread(target=worker, name=f"kettle-pull-{i}", daemon=True)
                   for i in range(min(len(queue), NUM_PARTS))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self._abandoned = True
            self._halt()
            raise
        finally:
            self._report(force=True)
        if errors:
            raise errors[0]

    def _part(self, fd: int, index: int, part: Part) -> None:
        failures = 0
        while part.done < part.length and not self._stop.is_set():
            before = part.done
            try:
                self._fetch(fd, part)
                continue
            except (httpx.TransportError, _Cut) as e:
                reason = "stalled" if isinstance(e, httpx.TimeoutException) else f"was cut off ({type(e).__name__})"
            failures = 0 if part.done > before else failures + 1
            if failures >= MAX_RETRIES:
                raise GaveUp(
                    f"{self.client.where()}: part {index} of {self.digest[7:19]} {reason} {MAX_RETRIES} times in a "
                    f"row; {self._completed()} of {self.size} bytes are kept: run the pull again to resume")
            log.info("%s part %d %s; retrying", self.digest[7:19], index, reason)
            self._stop.wait(min(self.backoff_s * 2 ** max(failures - 1, 0), BACKOFF_MAX_S))

    def _halt(self) -> None:
        """Stop every part (Ctrl-C, or another part failed): the sockets of the responses being
        read are shut down, so no thread waits out a stall (one still waiting for its headers
        ends at the stall timeout)."""
        self._stop.set()
        with self._lock:
            responses = list(self._open)
        for resp in responses:
            stream = resp.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)

    def _refuse(self, message: str) -> Refused:
        self._stop.set()
        return Refused(f"{self.client.where()}: blob {self.digest}: {message}")

    def _fetch(self, fd: int, part: Part) -> None:
        start = part.start + part.done
        resp = self.client.open_blob(self.digest, start, part.end - 1)
        with self._lock:
            self._open.add(resp)
        if self._stop.is_set():  # halted while this request was being sent
            resp.close()
        try:
            self._read(fd, part, start, resp)
        except Exception as e:
            if self._stop.is_set() and not isinstance(e, RegistryError):
                return  # this part's response was closed by _halt: the error that halted it is raised
            raise
        finally:
            with self._lock:
                self._open.discard(resp)
            resp.close()
        if part.done < part.length and not self._stop.is_set():
            raise _Cut("the response ended early")

    def _read(self, fd: int, part: Part, start: int, resp: httpx.Response) -> None:
        skip = 0
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        if resp.status_code in (200, 206) and encoding not in ("", "identity"):
            raise self._refuse(f"sent with Content-Encoding {encoding[:40]!r} although kettle asked for identity")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
            if m is None or int(m.group(1)) != start:
                raise self._refuse(f"answered bytes {resp.headers.get('content-range', '(none)')!r}, "
                                   f"not the range from {start} it was asked for")
            if m.group(3) != "*" and int(m.group(3)) != self.size:
                raise self._refuse(f"the registry says it has {m.group(3)} bytes, the manifest says {self.size}")
        elif resp.status_code == 200:  # the registry ignored Range: the whole blob comes
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) != self.size:
                raise self._refuse(f"the registry sends {declared} bytes, the manifest says {self.size}")
            skip = start
        elif resp.status_code == 416:
            raise self._refuse(f"the registry cannot serve bytes from {start}: the blob is smaller than "
                               f"the {self.size} bytes the manifest says")
        elif resp.status_code >= 500 or resp.status_code == 429:
            resp.read()
            raise _Cut(f"status {resp.status_code}")
        else:
            error = self.client.error_of(resp, f"pulling blob {self.digest}")
            self._stop.set()
            raise Refused(str(error), error.status)
        self._copy(fd, part, resp, skip, whole=resp.status_code == 200)

    def _copy(self, fd: int, part: Part, resp: httpx.Response, skip: int, whole: bool) -> None:
        for chunk in resp.iter_bytes():  # as they arrive (a size would buffer a trickle)
            if self._stop.is_set():
                return
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
                if not chunk:
                    continue
            room = part.length - part.done
            if len(chunk) > room:
                if whole and part.end < self.size:  # the rest belongs to other parts
                    chunk = chunk[:room]
                else:
                    raise self._refuse(f"the registry sent more bytes than the {self.size} the manifest says")
            if chunk:
                os.pwrite(fd, chunk, part.start + part.done)
                with self._lock:
                    part.done += len(chunk)
                self._save()
                self._report()
            if part.done >= part.length and whole:
                return

    def _completed(self) -> int:
        return sum(p.done for p in self._parts)

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if force or now - self._last_state >= STATE_EVERY_S:
                self._last_state = now
                _save_state(self.files, self.digest, self.size, self._parts)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_report < REPORT_EVERY_S:
                return
            self._last_report = now
        with self._reporting:  # one report at a time, counted inside it: the counts never go back
            with self._lock:
                done = sum(p.done for p in self._parts)
            self.progress(done)


def finish(store: Store, layer: Layer) -> str:
    """Move a complete partial file into ``blobs/`` once its sha256 matches (call inside
    ``store.writing()``); DigestMismatch (and the partial removed) when it does not."""
    files = partial_files(store, layer.digest)
    tmp = store.temp_path()
    try:
        os.replace(files.data, tmp)
    except OSError as e:
        raise StoreError(f"cannot move the download of {layer.digest} into the store: {e.strerror or e}") from None
    try:
        return store.adopt_blob(tmp, expected=layer.digest)
    finally:
        files.remove()


def discard(store: Store, digest: str) -> None:
    """Remove what a refused pull left of a blob in the partial area (unless another process is
    downloading that blob right now)."""
    files = partial_files(store, digest)
    if not files.lock.exists():
        files.remove()
        return
    try:
        fd = os.open(files.lock, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
        files.remove()
    finally:
        os.close(fd)
