"""Crash safety: a writer killed with SIGKILL at each step never leaves a manifest
pointing at a missing or partial blob, and the next Store cleans up what it left.

Each case runs a real child process that kills itself (SIGKILL, no cleanup
handlers run) at a chosen point of a real write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kettle
from kettle.store import MediaType, Store

from .conftest import assert_consistent, small_model

REPO = Path(kettle.__file__).resolve().parents[1]

CHILD = r"""
import os, signal, sys
import kettle.store.store as store_module
from kettle.store import MediaType, ModelDetails, Store, pull_bundled

root, case = sys.argv[1], sys.argv[2]
store = Store(root, cleanup=False)

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

def kill_on_replace(where):
    real = os.replace
    def replace(src, dst):
        if where in str(dst):
            die()
        real(src, dst)
    os.replace = replace

class Endless:
    def read(self, n):
        return b"x" * n

if case == "blob-midwrite":
    store.add_blob_stream(Endless(), progress=lambda done, total: die() if done >= 3 << 20 else None)
elif case == "blob-before-rename":
    kill_on_replace("/blobs/")
    store.add_blob_bytes(b"complete but never renamed")
elif case == "between-blobs-and-manifest":
    with store.writing():
        store.add_layer(MediaType.MODEL, b"weights nobody names")
        store.add_layer(MediaType.SYSTEM, b"a system prompt")
        die()
elif case == "manifest-before-rename":
    kill_on_replace("/manifests/")
    store.write_model("crash", [store.add_layer(MediaType.MODEL, b"crash weights")], ModelDetails())
elif case == "manifest-after-rename":
    def fsync_then_die(path):
        if "manifests" in str(path):
            die()
    store_module.fsync_dir = fsync_then_die
    store.write_model("crash", [store.add_layer(MediaType.MODEL, b"crash weights")], ModelDetails())
elif case == "pull-midcopy":
    pull_bundled(store, "smollm2", lambda status, done, total: die() if done >= 20 << 20 else None)
elif case == "remove-before-prune":
    Store._prune = die
    store.remove("victim")
elif case == "hold-lock":
    with store.writing():
        store.temp_path().write_bytes(b"in progress")
        print("ready", flush=True)
        sys.stdin.readline()
        die()
print("the child was not killed", flush=True)
"""


def run_child(root: Path, case: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), case], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".kettle-tmp-*"))


def blob_count(root: Path) -> int:
    return sum(1 for _ in (root / "blobs").iterdir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    keeper = Store(root)
    keeper.write_manifest("keeper", small_model(keeper, weights=b"keeper weights"))
    return root


# case -> (temp files the crash must leave, the model "crash" exists afterwards)
CASES = {
    "blob-midwrite": (1, False),
    "blob-before-rename": (1, False),
    "between-blobs-and-manifest": (0, False),
    "manifest-before-rename": (1, False),
    "manifest-after-rename": (0, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_writer_leaves_a_consistent_store(root: Path, case: str) -> None:
    leftovers, crash_exists = CASES[case]
    blobs_before = blob_count(root)
    run_child(root, case)
    assert len(temp_files(root)) == leftovers  # the child really died mid-way
    if case == "blob-midwrite":
        assert temp_files(root)[0].stat().st_size >= 3 << 20
    if case == "between-blobs-and-manifest":
        assert blob_count(root) == blobs_before + 2  # complete blobs, no manifest yet

    store = Store(root)  # opening the store cleans up
    assert store.exists("crash") is crash_exists
    assert store.exists("keeper")
    assert_consistent(store)
    if crash_exists:
        assert store.resolve("crash").model_path.read_bytes() == b"crash weights"


def test_killed_pull_leaves_no_partial_blob(root: Path) -> None:
    run_child(root, "pull-midcopy")
    [partial] = temp_files(root)
    assert partial.stat().st_size >= 20 << 20
    store = Store(root)
    assert not store.exists("smollm2")
    assert_consistent(store)


def test_killed_remove_is_finished_by_the_next_cleanup(root: Path) -> None:
    store = Store(root)
    victim = small_model(store, weights=b"victim weights", system="victim only")
    store.write_manifest("victim", victim)
    run_child(root, "remove-before-prune")
    assert not store.exists("victim") and store.has_blob(victim.layers[0].digest)
    store = Store(root)
    assert not store.has_blob(victim.layers[0].digest)
    assert store.exists("keeper")
    assert_consistent(store)


def test_cleanup_spares_a_live_writer_then_clears_its_crash(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), "hold-lock"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"
            store = Store(root)  # the child holds the writer lock: cleanup must not touch its file
            assert len(temp_files(root)) == 1
            assert store.cleanup().skipped
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.wait(timeout=60) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
    assert not Store(root).cleanup().skipped
    assert temp_files(root) == []
    assert_consistent(Store(root))


def test_store_blob_layers_survive_reopen(root: Path) -> None:
    store = Store(root)
    assert store.resolve("keeper").model_path.read_bytes() == b"keeper weights"
    assert [layer.media_type for layer in store.read_manifest("keeper").layers][0] == MediaType.MODEL
