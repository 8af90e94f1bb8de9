"""A blob whose bytes no longer match its digest is refused before a model uses it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kettle.errors import DigestMismatch
from kettle.modelfile import create_model
from kettle.store import Store
from kettle.store.verify import RECORDS_DIR

from tests.modelfile.conftest import write_tiny_gguf


def flip_byte(path: Path, offset: int = -1) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.chmod(path, 0o444)


def flip_keeping_mtime(path: Path) -> None:
    st = os.stat(path)
    flip_byte(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def replace_same_size(path: Path) -> None:
    size = path.stat().st_size
    tmp = path.with_name("other")
    tmp.write_bytes(b"GGUF" + b"\0" * (size - 4))
    os.replace(tmp, path)


TAMPERING: dict[str, Callable[[Path], None]] = {
    "a flipped bit": flip_byte,
    "a flipped bit, mtime put back": flip_keeping_mtime,
    "a flipped bit in the header": lambda p: flip_byte(p, 10),
    "replaced by a file of the same size": replace_same_size,
}


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Store, Path]:
    store = Store(tmp_path / "models")
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    create_model(store, "tiny", "FROM tiny.gguf\nSYSTEM be brief\n", tmp_path)
    return store, gguf


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_changed_model_blob_is_refused_with_its_digest(tiny: tuple[Store, Path], how: str) -> None:
    store, _ = tiny
    model = store.resolve("tiny")  # verified (recorded when written)
    TAMPERING[how](model.model_path)
    for fresh in (store, Store(store.root)):  # this process and a new store object alike
        with pytest.raises(DigestMismatch) as info:
            fresh.resolve("tiny")
        message = str(info.value)
        assert model.model_digest in message and info.value.actual in message, message
        assert info.value.expected == model.model_digest and info.value.actual != info.value.expected
        assert "kettle rm tiny:latest" in message and "Pull or create" in message


def test_a_blob_another_program_put_there_is_hashed_at_first_use(tiny: tuple[Store, Path], tmp_path: Path) -> None:
    store, gguf = tiny
    model = store.resolve("tiny")
    os.unlink(model.model_path)  # as if copied in by hand, without kettle's record
    (store.root / RECORDS_DIR / model.model_path.name).unlink()
    model.model_path.write_bytes(gguf.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DigestMismatch):
        store.resolve("tiny")
    os.unlink(model.model_path)
    model.model_path.write_bytes(gguf.read_bytes())  # the right bytes, still no record
    assert store.resolve("tiny").model_digest == model.model_digest
    assert (store.root / RECORDS_DIR / model.model_path.name).is_file()


def test_storing_the_blob_again_repairs_it(tiny: tuple[Store, Path]) -> None:
    store, gguf = tiny
    model = store.resolve("tiny")
    flip_byte(model.model_path)
    with pytest.raises(DigestMismatch):
        store.resolve("tiny")
    # What a pull or a create does: add the file, expecting that digest. The corrupt copy is replaced.
    assert store.add_blob_file(gguf, expected=model.model_digest) == model.model_digest
    assert store.resolve("tiny").model_path.read_bytes() == gguf.read_bytes()
    flip_byte(model.model_path)
    create_model(store, "again", "FROM tiny.gguf\n", gguf.parent)  # a create from the file repairs it too
    assert store.resolve("tiny").model_path.read_bytes() == gguf.read_bytes()


def test_a_changed_text_layer_is_refused(tiny: tuple[Store, Path]) -> None:
    store, _ = tiny
    system = next(layer for layer in store.read_manifest("tiny").layers if layer.media_type.endswith("system"))
    flip_byte(store.blob_path(system.digest))
    with pytest.raises(DigestMismatch, match=system.digest):
        store.resolve("tiny")


def test_records_go_with_their_blobs(tiny: tuple[Store, Path]) -> None:
    store, _ = tiny
    records = store.root / RECORDS_DIR
    blob_names = {p.name for p in (store.root / "blobs").iterdir()}
    assert {p.name for p in records.iterdir()} == blob_names  # every blob kettle wrote is recorded
    (records / ".kettle-tmp-leftover").write_text("torn")
    (records / ("sha256-" + "0" * 64)).write_text("1 2 3 4 5\n")  # the record of a blob long gone
    store.cleanup()
    assert {p.name for p in records.iterdir()} == blob_names
    store.remove("tiny")
    assert list(records.iterdir()) == []
