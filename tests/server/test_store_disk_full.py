"""A blob upload that fills the disk: a clear 507, no partial file, and the server goes on.

Two real ways to run out of room: a 1 MiB tmpfs holding the store (needs the
right to mount; skipped without it), and a file-size limit (RLIMIT_FSIZE) on
the server process, which works for any user.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.live_server import blob_files, live_server

LIMIT = 1 << 20  # bytes the store may hold (tmpfs size / file-size limit)
FSIZE_PRELUDE = (
    "import resource, signal\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # a write past the limit fails (EFBIG), not the process
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))\n"
)


@pytest.fixture(params=["tmpfs", "fsize"])
def full_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(store directory, Python to run in the server first)."""
    if request.param == "fsize":
        yield tmp_path / "models", FSIZE_PRELUDE
        return
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={LIMIT}", "tmpfs", str(mnt)],
                             capture_output=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt / "models", ""
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_an_upload_that_fills_the_disk(full_store: tuple[Path, str]) -> None:
    store, prelude = full_store
    big = bytes(range(256)) * (3 * LIMIT // 256)  # three times what fits
    small = b"GGUF small enough" * 100
    with live_server(store, prelude=prelude) as server, server.client() as c:
        r = c.post(f"/api/blobs/{digest_of(big)}", content=big)
        assert r.status_code == 507, (r.status_code, r.text, server.logs()[-2000:])
        error = r.json()["error"]
        assert "full" in error and "KETTLE_MODELS" in error, error
        assert blob_files(store) == []  # the partial file is gone
        assert c.head(f"/api/blobs/{digest_of(big)}").status_code == 404
        # The server goes on, and what fits is stored.
        assert c.post(f"/api/blobs/{digest_of(small)}", content=small).status_code == 201
        assert blob_files(store) == ["sha256-" + digest_of(small)[7:]]
        assert c.get("/api/version").status_code == 200
