"""A blob's content is checked against its digest before a model uses it: once, then cached.

A blob is named by the sha256 of its bytes, but a disk, a copy or a hand can
change those bytes afterwards. So before a model's blobs are used
(``Store.resolve``), each is hashed and compared with its name; a blob that
differs is refused with ``DigestMismatch``, naming both digests.

Hashing a multi-gigabyte model at every load would cost seconds, so a
verified blob is remembered by what ``stat`` says of it: (device, inode,
size, mtime, ctime). Any write, truncation, ``chmod``, ``touch``, copy or
replacement changes one of them (ctime cannot be set back by a user), and
the blob is hashed again at its next use. What is remembered:

* in memory, for the life of the process;
* on disk, as ``<store>/.kettle-verified/sha256-<hex>`` holding that stat
  key, so other processes (each ``kettle run``) need not hash again. A blob
  the store writes itself is recorded at once: it was hashed as it was
  written. A blob some other program put there has no record and is hashed
  at first use.

What this does not catch: bytes that rot on the medium with no stat change
after the blob was verified. Records are written atomically (temporary file,
rename); a missing, torn or stale record only means hashing again, and a
store on a read-only disk simply is not recorded.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import uuid
from pathlib import Path

from kettle.errors import DigestMismatch, StoreError

RECORDS_DIR = ".kettle-verified"
TEMP_PREFIX = ".kettle-tmp-"
CHUNK_BYTES = 1 << 20

StatKey = tuple[int, int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)

_lock = threading.Lock()
_verified: dict[str, StatKey] = {}  # blob path -> the stat key it had when its hash matched


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Verifier:
    """Checks and remembers the blobs of one ``blobs/`` directory (records under ``records``)."""

    def __init__(self, blobs_dir: Path, records: Path) -> None:
        self.blobs_dir = blobs_dir
        self.records = records

    def _record_path(self, name: str) -> Path:
        return self.records / name

    def _read_record(self, name: str) -> StatKey | None:
        try:
            parts = self._record_path(name).read_text().split()
            key = tuple(int(p) for p in parts)
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return key if len(key) == 5 else None  # type: ignore[return-value]

    def record(self, path: Path) -> None:
        """Remember ``path`` (just written and hashed) as verified, with its current stat key."""
        try:
            key = stat_key(os.lstat(path))
        except OSError:
            return
        self._remember(path, key)

    def _remember(self, path: Path, key: StatKey) -> None:
        with _lock:
            _verified[str(path)] = key
        tmp = self.records / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            self.records.mkdir(exist_ok=True)
            tmp.write_text(" ".join(str(k) for k in key) + "\n")
            os.replace(tmp, self._record_path(path.name))
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only store: remembered in memory only

    def forget(self, name: str) -> None:
        """Drop the record of blob file ``name`` (it is being removed)."""
        with _lock:
            _verified.pop(str(self.blobs_dir / name), None)
        self._record_path(name).unlink(missing_ok=True)

    def verify(self, path: Path, digest: str) -> None:
        """StoreError when ``path`` is not a regular file; ``DigestMismatch`` when its bytes
        do not hash to ``digest`` (``sha256:<hex>``); else nothing, and it is remembered."""
        try:
            st = os.lstat(path)
        except OSError:
            raise StoreError(f"blob {digest} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"blob {digest} is not a regular file")
        key = stat_key(st)
        with _lock:
            if _verified.get(str(path)) == key:
                return
        if self._read_record(path.name) == key:
            with _lock:
                _verified[str(path)] = key
            return
        actual, hashed_key = self._hash(path, digest)
        if actual != digest:
            raise DigestMismatch(
                f"blob {digest} is corrupt: its content hashes to {actual}", digest, actual
            )
        self._remember(path, hashed_key)

    @staticmethod
    def _hash(path: Path, digest: str) -> tuple[str, StatKey]:
        """(digest of the content, stat key of the file hashed), read through one descriptor."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise StoreError(f"blob {digest}: cannot read it ({e.strerror or e})") from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise StoreError(f"blob {digest} is not a regular file")
            os.set_blocking(fd, True)
            h = hashlib.sha256()
            while chunk := os.read(fd, CHUNK_BYTES):
                h.update(chunk)
            after = os.fstat(fd)
        except OSError as e:
            raise StoreError(f"blob {digest}: cannot read it ({e.strerror or e})") from None
        finally:
            os.close(fd)
        if stat_key(after) != stat_key(before):
            raise StoreError(f"blob {digest} changed while it was being checked; try again")
        return "sha256:" + h.hexdigest(), stat_key(after)

    def remove_stale(self, present: set[str]) -> None:
        """Drop temporary files and the records of blob files not in ``present`` (names)."""
        try:
            names = os.listdir(self.records)
        except OSError:
            return
        for name in names:
            if name.startswith(TEMP_PREFIX) or name not in present:
                (self.records / name).unlink(missing_ok=True)
