"""The model store: ollama's layout under ``KETTLE_MODELS``.

::

    <root>/blobs/sha256-<hex>                           content-addressed blobs (blobs.py)
    <root>/manifests/<host>/<namespace>/<model>/<tag>   one manifest per name (manifest.py)
    <root>/.kettle-lock                                 coordinates writers and pruning
    <root>/.kettle-verified/sha256-<hex>                blobs whose hash was checked, by stat (verify.py)

Crash safety. Blobs and manifests are each written to a temporary file,
fsynced and renamed into place, and a manifest is written only after every
blob it names exists with the size it states. So at every instant each
manifest points at complete blobs; a crash leaves at most temporary files and
blobs no manifest uses, and ``cleanup()`` (run when a Store opens) removes
them.

Concurrency. Writers (blob writes, manifest writes, whole pulls and creates:
``with store.writing():``) hold a shared ``flock`` on ``.kettle-lock``;
deleting blobs (cleanup, the pruning after ``remove``) needs the exclusive
lock and is skipped, not waited for, while anyone writes. A blob that a
concurrent create is about to reference is therefore never pruned under it.
Blobs left over by a skipped prune go at the next cleanup.

Names are case-insensitive as in ollama: a lookup that misses the exact path
falls back to a case-insensitive match, and writing a name that exists in
another case replaces that manifest instead of adding a second one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from kettle import config
from kettle.errors import DigestMismatch, ModelNotFound, StoreError, StoreFull
from kettle.store.blobs import TEMP_PREFIX, BlobStore, ByteProgress, fsync_dir, open_regular_file
from kettle.store.details import MAX_CONFIG_BYTES, ModelDetails, config_blob, details_from_config
from kettle.store.manifest import CONFIG_MEDIA_TYPE, MAX_MANIFEST_BYTES, Layer, Manifest, normalize_digest
from kettle.store.model import StoredModel, load_stored_model
from kettle.store.names import ModelName, Part, parse_name, valid_name

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process locking
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".kettle-lock"
# A write that fails for want of room: the disk, a quota, or a file-size limit (RLIMIT_FSIZE).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NAME_PARTS = tuple(Part)  # host, namespace, model, tag: one directory level each


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``kettle list`` / one item of ``/api/tags``."""

    name: ModelName
    digest: str  # hex sha256 of the manifest file; `kettle list` shows the first 12
    size: int  # bytes of all blobs the manifest names
    modified_at: datetime  # the manifest's mtime, timezone-aware (UTC)
    details: ModelDetails


@dataclass(frozen=True)
class CleanupReport:
    """What a cleanup or prune removed. ``skipped``: another writer held the store."""

    skipped: bool
    temp_files: int = 0
    blobs: tuple[str, ...] = ()


def _oserror(action: str, e: OSError, root: Path | None = None) -> StoreError:
    if e.errno in DISK_FULL_ERRNOS:
        where = f" ({root})" if root is not None else ""
        return StoreFull(
            f"cannot {action}: the disk holding the model store{where} is full ({e.strerror or e}); "
            f"free some space (kettle rm unused models) or point KETTLE_MODELS at a larger disk"
        )
    return StoreError(f"cannot {action}: {e.strerror or e}")


class Store:
    """An ollama-layout model store rooted at ``root`` (default ``KETTLE_MODELS``)."""

    def __init__(self, root: Path | str | None = None, *, cleanup: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else config.get_path("KETTLE_MODELS")
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _oserror(f"create the model store at {self.root}", e) from None
        self._lock_path = self.root / LOCK_NAME
        self._blobs = BlobStore(self.blobs_dir)
        if cleanup:
            self.cleanup()

    def os_error(self, action: str, e: OSError) -> StoreError:
        """``e`` (raised while trying to ``action``) as the store's error: ``StoreFull``
        when the disk is full, else ``StoreError``."""
        return _oserror(action, e, self.root)

    # -- locking --------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[bool]:
        if fcntl is None:
            yield True
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            try:
                fcntl.flock(fd, mode)
                got = True
            except BlockingIOError:
                got = False
            yield got
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off pruning while blobs and the manifest that uses them are written."""
        with self._flock(fcntl.LOCK_SH if fcntl else 0):
            yield

    # -- blobs ----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """The path of a blob; the digest format is validated first (StoreError)."""
        return self._blobs.path(digest)

    def has_blob(self, digest: str) -> bool:
        return self._blobs.has(digest)

    def blob_size(self, digest: str) -> int | None:
        return self._blobs.size(digest)

    def add_blob_file(self, path: Path | str, *, expected: str | None = None, progress: ByteProgress | None = None) -> str:
        """Copy a regular file into the store; returns ``sha256:<hex>``."""
        with self.writing():
            try:
                return self._blobs.add_file(Path(path), expected=expected, progress=progress)
            except OSError as e:
                raise _oserror(f"store {path}", e, self.root) from None

    def add_blob_bytes(self, data: bytes, *, expected: str | None = None) -> str:
        with self.writing():
            try:
                return self._blobs.add_bytes(data, expected=expected)
            except OSError as e:
                raise _oserror("store a blob", e, self.root) from None

    def add_blob_stream(
        self, stream: BinaryIO, *, expected: str | None = None, total: int | None = None,
        progress: ByteProgress | None = None,
    ) -> str:
        """Copy ``stream`` to its end into a blob; returns ``sha256:<hex>``."""
        with self.writing():
            try:
                return self._blobs.add_stream(stream, expected=expected, total=total, progress=progress)
            except OSError as e:
                raise _oserror("store a blob", e, self.root) from None

    def temp_path(self) -> Path:
        """A temporary file name inside the store, for ``adopt_blob``.

        Use it inside ``with store.writing():`` so cleanup leaves it alone.
        """
        return self._blobs.temp_path()

    def adopt_blob(self, tmp: Path, *, expected: str | None = None) -> str:
        """Hash a finished ``temp_path()`` file and move it into place (no copy)."""
        with self.writing():
            try:
                return self._blobs.adopt(tmp, expected=expected)
            except OSError as e:
                raise _oserror("store a blob", e, self.root) from None

    def verify_blob(self, digest: str) -> None:
        """``DigestMismatch`` unless the blob holds the bytes its digest names (StoreError when
        missing). Hashed at its first use and again only after its file changed (verify.py)."""
        self._blobs.verify(digest)

    def read_blob_bytes(self, digest: str, *, limit: int) -> bytes:
        """A small blob's content, checked against its digest; StoreError when missing or larger
        than ``limit``, DigestMismatch when its bytes are not the ones its digest names."""
        want = normalize_digest(digest)
        f = open_regular_file(self.blob_path(want))
        if f is None:
            raise StoreError(f"blob {want} is missing")
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"blob {want} is larger than {limit} bytes")
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != want:
            raise DigestMismatch(f"blob {want} is corrupt: its content hashes to {actual}", want, actual)
        return data

    def add_layer(self, media_type: str, data: bytes) -> Layer:
        """Store ``data`` as a blob and describe it as a layer of ``media_type``."""
        return Layer(media_type, self.add_blob_bytes(data), len(data))

    def layer_for_blob(self, media_type: str, digest: str) -> Layer:
        """A layer for a blob already in the store (StoreError when it is not)."""
        size = self.blob_size(digest)
        if size is None:
            raise StoreError(f"blob {digest} is not in the store")
        return Layer(media_type, normalize_digest(digest), size)

    def write_model(self, name: str | ModelName, layers: list[Layer], details: ModelDetails) -> str:
        """Write the config blob for ``details`` and a manifest of ``layers``; hex digest.

        Call it inside ``with store.writing():`` together with the writes of the
        layers' blobs, so no prune runs between them.
        """
        parsed = valid_name(name)
        with self.writing():
            config_layer = self.add_layer(CONFIG_MEDIA_TYPE, config_blob(details, [l.digest for l in layers]))
            return self.write_manifest(parsed, Manifest(config_layer, tuple(layers)))

    # -- manifests ------------------------------------------------------------

    def _manifest_file(self, name: ModelName) -> Path | None:
        """The manifest file of a valid name: exact case first, else any case."""
        path = self.manifests_dir
        for part in name.filepath_parts():
            exact = path / part
            if not os.path.lexists(exact):
                try:
                    matches = sorted(e for e in os.listdir(path) if e.lower() == part.lower())
                except OSError:
                    return None
                if not matches:
                    return None
                exact = path / matches[0]
            path = exact
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except OSError:
            return None

    def _name_of(self, path: Path) -> ModelName:
        host, namespace, model, tag = path.relative_to(self.manifests_dir).parts
        return ModelName(host, namespace, model, tag)

    def _read(self, name: str | ModelName) -> tuple[ModelName, Manifest, str, Path]:
        """(stored name, manifest, hex digest, path); ModelNotFound when absent."""
        parsed = valid_name(name)
        path = self._manifest_file(parsed)
        if path is None:
            raise ModelNotFound(name if isinstance(name, str) else parsed.display())
        data = self._read_manifest_bytes(path)
        return self._name_of(path), Manifest.from_bytes(data, f"manifest of {parsed.display()}"), hashlib.sha256(data).hexdigest(), path

    @staticmethod
    def _read_manifest_bytes(path: Path) -> bytes:
        f = open_regular_file(path)
        if f is None:
            raise StoreError(f"{path}: cannot read the manifest")
        with f:
            return f.read(MAX_MANIFEST_BYTES + 1)

    def exists(self, name: str | ModelName) -> bool:
        parsed = parse_name(name) if isinstance(name, str) else name
        return parsed.is_valid() and self._manifest_file(parsed) is not None

    def read_manifest(self, name: str | ModelName) -> Manifest:
        return self._read(name)[1]

    def manifest_bytes(self, name: str | ModelName) -> bytes:
        """The manifest file of ``name`` as stored (checked; its sha256 is the model's ID)."""
        return self._read_manifest_bytes(self._read(name)[3])

    def write_manifest(self, name: str | ModelName, manifest: Manifest, data: bytes | None = None) -> str:
        """Write ``manifest`` under ``name`` atomically; returns its hex digest.

        ``data``: the exact bytes to write, when they came from elsewhere (a pulled manifest keeps
        the registry's bytes, so its digest is the registry's); they must parse to ``manifest``.
        StoreError (and nothing written) unless every blob it names is present
        with the stated size.
        """
        if data is not None and Manifest.from_bytes(data) != manifest:
            raise StoreError("the manifest bytes do not hold the manifest they were given with")
        return self._write_manifest_bytes(valid_name(name), manifest, data if data is not None else manifest.to_bytes())

    def _write_manifest_bytes(self, name: ModelName, manifest: Manifest, data: bytes) -> str:
        with self.writing():
            for layer in manifest.blobs():
                size = self._blobs.size(layer.digest)
                if size is None:
                    raise StoreError(f"cannot write manifest for {name.display()}: blob {layer.digest} is missing")
                if size != layer.size:
                    raise StoreError(
                        f"cannot write manifest for {name.display()}: blob {layer.digest} "
                        f"has {size} bytes, the manifest says {layer.size}"
                    )
            target = self._manifest_file(name) or self.manifests_dir.joinpath(*name.filepath_parts())
            tmp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
                fsync_dir(target.parent)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise _oserror(f"write the manifest of {name.display()}", e, self.root) from None
            return hashlib.sha256(data).hexdigest()

    def _walk(self) -> Iterator[tuple[ModelName, Path]]:
        """Every manifest file whose path is a valid name (temp files are not)."""

        def level(path: Path, depth: int) -> Iterator[Path]:
            try:
                entries = list(os.scandir(path))
            except OSError:
                return
            for entry in entries:
                if _NAME_PARTS[depth].check(entry.name) is not None:
                    continue
                if depth == len(_NAME_PARTS) - 1:
                    if entry.is_file(follow_symlinks=False):
                        yield Path(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    yield from level(Path(entry.path), depth + 1)

        for path in level(self.manifests_dir, 0):
            yield self._name_of(path), path

    def entry(self, name: str | ModelName) -> ModelEntry:
        stored, manifest, digest, path = self._read(name)
        return self._entry(stored, manifest, digest, path)

    def _entry(self, name: ModelName, manifest: Manifest, digest: str, path: Path) -> ModelEntry:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        try:
            details = details_from_config(self.read_blob_bytes(manifest.config.digest, limit=MAX_CONFIG_BYTES))
        except StoreError:
            details = ModelDetails()
        return ModelEntry(name, digest, manifest.size(), mtime, details)

    def list_models(self) -> list[ModelEntry]:
        """Every readable model, most recently modified first (as ollama lists them)."""
        entries = []
        for name, path in self._walk():
            try:
                data = self._read_manifest_bytes(path)
                manifest = Manifest.from_bytes(data)
                entries.append(self._entry(name, manifest, hashlib.sha256(data).hexdigest(), path))
            except (StoreError, OSError):
                continue  # unreadable: `read_manifest` on that name reports why
        entries.sort(key=lambda e: (-e.modified_at.timestamp(), e.name.display()))
        return entries

    def resolve(self, name: str | ModelName) -> StoredModel:
        """The model behind ``name``; ModelNotFound when there is none."""
        stored, manifest, digest, _ = self._read(name)
        return load_stored_model(self, stored, manifest, digest)

    def copy(self, src: str | ModelName, dst: str | ModelName) -> str:
        """Make ``dst`` name the same manifest as ``src``; returns its hex digest."""
        dst_name = valid_name(dst)
        _, manifest, _, path = self._read(src)
        return self._write_manifest_bytes(dst_name, manifest, self._read_manifest_bytes(path))

    def remove(self, name: str | ModelName) -> CleanupReport:
        """Delete a model's manifest, then prune the blobs nothing else uses.

        A manifest that cannot be read is deleted all the same; its blobs go at
        the next cleanup.
        """
        parsed = valid_name(name)
        path = self._manifest_file(parsed)
        if path is None:
            raise ModelNotFound(name if isinstance(name, str) else parsed.display())
        try:
            used = {layer.digest for layer in Manifest.from_bytes(self._read_manifest_bytes(path)).blobs()}
        except StoreError:
            used = set()
        with self.writing():
            try:
                path.unlink()
                fsync_dir(path.parent)
            except OSError as e:
                raise _oserror(f"remove {path.name}", e) from None
        return self._prune(used)

    # -- cleanup --------------------------------------------------------------

    def cleanup(self) -> CleanupReport:
        """Remove temporary files and blobs no manifest uses (what a crash leaves)."""
        return self._prune(None)

    def prune(self, digests: set[str] | list[str]) -> CleanupReport:
        """Delete those of ``digests`` that no manifest uses (skipped while anyone writes)."""
        return self._prune({normalize_digest(d) for d in digests})

    def _prune(self, candidates: set[str] | None) -> CleanupReport:
        with self._flock(fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl else 0) as got:
            if not got:
                return CleanupReport(skipped=True)
            temps = 0
            if candidates is None:
                temps = self._remove_temp_files()
            referenced: set[str] = set()
            for _, path in self._walk():
                try:
                    referenced.update(layer.digest for layer in Manifest.from_bytes(self._read_manifest_bytes(path)).blobs())
                except (StoreError, OSError):
                    # A manifest we cannot read may use any blob: delete none.
                    return CleanupReport(skipped=False, temp_files=temps)
            pool = set(self._blobs.digests()) if candidates is None else candidates
            removed = sorted(d for d in pool - referenced if self._blobs.has(d))
            for digest in removed:
                self._blobs.remove(digest)
            if removed:
                fsync_dir(self.blobs_dir)
            if candidates is None:
                self._blobs.verifier.remove_stale({self.blob_path(d).name for d in self._blobs.digests()})
            self._remove_empty_dirs()
            return CleanupReport(skipped=False, temp_files=temps, blobs=tuple(removed))

    def _remove_temp_files(self) -> int:
        paths = self._blobs.temp_files()
        for dirpath, _, filenames in os.walk(self.manifests_dir):
            paths += [Path(dirpath) / f for f in filenames if f.startswith(TEMP_PREFIX)]
        for path in paths:
            path.unlink(missing_ok=True)
        return len(paths)

    def _remove_empty_dirs(self) -> None:
        for dirpath, _, _ in sorted(os.walk(self.manifests_dir), key=lambda w: -len(w[0])):
            if Path(dirpath) != self.manifests_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only succeeds when empty

