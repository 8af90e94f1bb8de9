"""Blobs: content addressing, dedup, digest validation, refusing non-regular files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kettle.errors import StoreError
from kettle.store import Store

from .conftest import digest_of

HEX = "ab" * 32

BAD_DIGESTS = [
    "",
    "sha256:",
    "sha256:" + "ab" * 31,
    "sha256:" + "ab" * 33,
    "sha256:" + "zz" * 32,
    "sha512:" + HEX,
    "md5-" + HEX,
    HEX,
    "sha256:../../etc/passwd" + "a" * 40,
    "sha256-" + "ab" * 31 + "/.",
    "../sha256-" + HEX,
    "sha256:" + HEX + "\n",
    " sha256:" + HEX,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS, ids=[repr(d[:24]) for d in BAD_DIGESTS])
def test_bad_digests_are_refused_before_any_path_is_built(store: Store, digest: str) -> None:
    for op in (store.blob_path, store.has_blob, store.blob_size):
        with pytest.raises(StoreError, match="invalid digest"):
            op(digest)


@pytest.mark.parametrize("digest", ["sha256:" + HEX, "sha256-" + HEX, "sha256:" + HEX.upper()])
def test_both_digest_spellings_name_the_same_file(store: Store, digest: str) -> None:
    assert store.blob_path(digest) == store.root / "blobs" / f"sha256-{HEX}"


def test_add_bytes_is_content_addressed_and_read_only(store: Store) -> None:
    data = b"hello blobs"
    digest = store.add_blob_bytes(data)
    assert digest == digest_of(data)
    path = store.blob_path(digest)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0  # nobody may write a blob
    assert store.has_blob(digest) and store.blob_size(digest) == len(data)


def test_a_blob_is_stored_once(store: Store, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # more than one copy chunk
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    first = store.add_blob_file(src)
    inode = store.blob_path(first).stat().st_ino
    assert store.add_blob_bytes(data) == first
    assert store.add_blob_file(src, expected=first) == first
    assert store.blob_path(first).stat().st_ino == inode  # not rewritten
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == [store.blob_path(first).name]


def test_expected_digest_mismatch_stores_nothing(store: Store) -> None:
    with pytest.raises(StoreError, match="digest mismatch"):
        store.add_blob_bytes(b"actual", expected=digest_of(b"something else"))
    assert list((store.root / "blobs").iterdir()) == []


def test_progress_counts_bytes(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(b"x" * (2 * 1024 * 1024 + 5))
    seen: list[tuple[int, int | None]] = []
    store.add_blob_file(src, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2 * 1024 * 1024 + 5, 2 * 1024 * 1024 + 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_only_regular_files_are_read(store: Store, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading must not hang
    for path in (tmp_path / "missing", tmp_path, fifo, Path("/dev/zero")):
        with pytest.raises(StoreError, match="not a readable regular file"):
            store.add_blob_file(path)
    assert list((store.root / "blobs").iterdir()) == []


def test_read_blob_bytes_is_bounded(store: Store) -> None:
    digest = store.add_blob_bytes(b"0123456789")
    assert store.read_blob_bytes(digest, limit=10) == b"0123456789"
    with pytest.raises(StoreError, match="larger than 9 bytes"):
        store.read_blob_bytes(digest, limit=9)
    with pytest.raises(StoreError, match="missing"):
        store.read_blob_bytes(digest_of(b"nope"), limit=10)


def test_adopt_only_takes_the_store_s_own_temp_files(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "x"
    outside.write_bytes(b"x")
    with pytest.raises(StoreError, match="temporary file of this store"):
        store.adopt_blob(outside)
    tmp = store.temp_path()
    tmp.write_bytes(b"assembled")
    assert store.adopt_blob(tmp, expected=digest_of(b"assembled")) == digest_of(b"assembled")
    assert not tmp.exists()
