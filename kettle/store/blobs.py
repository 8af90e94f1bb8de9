"""Content-addressed blobs: ``blobs/sha256-<hex>``, written atomically.

A blob is written to a temporary file in the same directory (``.kettle-tmp-*``),
hashed while it is written, fsynced, made read-only and renamed into place;
then the directory is fsynced. A file named ``sha256-<hex>`` is therefore
always complete and always holds the bytes whose hash it names; a crash leaves
at most a temporary file, which ``Store.cleanup`` removes. A blob that already
exists is never rewritten, so a blob shared by several models is stored once.

Temporary names start with ``.kettle-tmp-`` so that cleanup never touches
files another program (an ollama pull's ``-partial`` files, say) left there.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from kettle.errors import DigestMismatch, StoreError
from kettle.store.manifest import digest_hex, normalize_digest
from kettle.store.verify import RECORDS_DIR, Verifier

TEMP_PREFIX = ".kettle-tmp-"
BLOB_PREFIX = "sha256-"
CHUNK_BYTES = 1 << 20
BLOB_MODE = 0o444  # blobs are never modified once written

# progress(completed_bytes, total_bytes or None when unknown)
ByteProgress = Callable[[int, int | None], None]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular_file(path: Path) -> BinaryIO | None:
    """``path`` opened for reading when it is a regular file, else None.

    Opens with O_NONBLOCK (a FIFO must not hang us) and checks the type on the
    open descriptor, so the file checked is the file read. Never raises
    OSError: missing, unreadable, a directory and a device all give None.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
        return None


class BlobStore:
    """The ``blobs/`` directory. Digests are ``sha256:<hex>`` or ``sha256-<hex>``."""

    def __init__(self, directory: Path, records: Path | None = None) -> None:
        self.dir = directory
        self.verifier = Verifier(directory, records if records is not None else directory.parent / RECORDS_DIR)

    # -- names ----------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the blob lives; the digest is validated first (StoreError)."""
        return self.dir / (BLOB_PREFIX + digest_hex(digest))

    def size(self, digest: str) -> int | None:
        """The blob's size in bytes, or None when there is no such regular file."""
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def has(self, digest: str) -> bool:
        return self.size(digest) is not None

    def verify(self, digest: str) -> None:
        """``DigestMismatch`` unless the blob's bytes hash to its digest (hashed once per change:
        see verify.py); StoreError when it is missing."""
        self.verifier.verify(self.path(digest), normalize_digest(digest))

    def _intact(self, digest: str) -> bool:
        """Whether the stored blob ``digest`` holds its bytes (False: corrupt or unreadable)."""
        try:
            self.verify(digest)
        except StoreError:
            return False
        return True

    def digests(self) -> Iterator[str]:
        """Every complete blob present, as ``sha256:<hex>``."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(BLOB_PREFIX):
                try:
                    yield normalize_digest(name)
                except StoreError:
                    continue  # not one of ours (e.g. an ollama "-partial" file)

    def temp_files(self) -> list[Path]:
        try:
            return [self.dir / n for n in os.listdir(self.dir) if n.startswith(TEMP_PREFIX)]
        except FileNotFoundError:
            return []

    def temp_path(self) -> Path:
        """A fresh temporary name inside the blob directory (same filesystem)."""
        return self.dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"

    # -- writing --------------------------------------------------------------

    def add_stream(
        self,
        stream: BinaryIO,
        *,
        expected: str | None = None,
        total: int | None = None,
        progress: ByteProgress | None = None,
    ) -> str:
        """Copy ``stream`` to its end into a blob; return its digest.

        With ``expected``, a different hash raises StoreError and stores nothing.
        """
        want = normalize_digest(expected) if expected is not None else None
        tmp = self.temp_path()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            hasher = hashlib.sha256()
            done = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    hasher.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp, "sha256:" + hasher.hexdigest(), want)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def add_bytes(self, data: bytes, *, expected: str | None = None) -> str:
        return self.add_stream(io.BytesIO(data), expected=expected, total=len(data))

    def add_file(
        self, path: Path, *, expected: str | None = None, progress: ByteProgress | None = None
    ) -> str:
        """Copy a regular file into a blob. With ``expected`` already stored intact, reads nothing
        (a corrupt copy is replaced)."""
        if expected is not None and self.has(expected) and self._intact(expected):
            size = self.size(expected) or 0
            if progress is not None:
                progress(size, size)
            return normalize_digest(expected)
        src = open_regular_file(path)
        if src is None:
            raise StoreError(f"{path}: not a readable regular file")
        with src:
            total = os.fstat(src.fileno()).st_size
            return self.add_stream(src, expected=expected, total=total, progress=progress)

    def adopt(self, tmp: Path, *, expected: str | None = None) -> str:
        """Turn a finished temporary file (from ``temp_path``) into a blob, without copying."""
        if tmp.parent != self.dir or not tmp.name.startswith(TEMP_PREFIX):
            raise StoreError(f"{tmp}: only a temporary file of this store can be adopted")
        want = normalize_digest(expected) if expected is not None else None
        try:
            hasher = hashlib.sha256()
            with open(tmp, "rb+") as f:
                while chunk := f.read(CHUNK_BYTES):
                    hasher.update(chunk)
                os.fsync(f.fileno())
            return self._commit(tmp, "sha256:" + hasher.hexdigest(), want)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _commit(self, tmp: Path, digest: str, want: str | None) -> str:
        if want is not None and digest != want:
            raise DigestMismatch(f"digest mismatch: expected {want}, got {digest}", want, digest)
        final = self.path(digest)
        if self.has(digest) and self._intact(digest):
            tmp.unlink()
            return digest
        os.chmod(tmp, BLOB_MODE)
        os.replace(tmp, final)  # new, or in place of a corrupt copy
        fsync_dir(self.dir)
        self.verifier.record(final)  # hashed as it was written
        return digest

    def remove(self, digest: str) -> None:
        """Delete a blob (callers hold the store's exclusive lock)."""
        path = self.path(digest)
        path.unlink(missing_ok=True)
        self.verifier.forget(path.name)
