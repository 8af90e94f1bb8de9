"""Fixtures for the CLI tests: a private model store and no server.

Every command runs as ``python -m kettle`` in a subprocess whose
``KETTLE_MODELS`` is a temporary store and whose ``KETTLE_HOST`` is a port
nothing listens on, so the CLI finds no server and works in-process. The
bundled smollm2 is pulled into a shared store once per session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import kettle as kettle_package
from kettle.store import Store, pull_bundled

RUN_TIMEOUT_S = 120

# The seed's example (issue 3, item 7), byte for byte.
MARIO_MODELFILE = """FROM smollm2
PARAMETER temperature 1
PARAMETER num_ctx 4096
SYSTEM You are Mario from super mario bros, acting as an assistant.
"""

# A deterministic, short-answering model for tests that generate.
GREEDY_MODELFILE = """FROM smollm2
PARAMETER temperature 0
PARAMETER num_predict 24
PARAMETER num_ctx 512
"""


def unused_port() -> int:
    """A local TCP port with no listener (bound and released; nothing listens after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The checkout the tests import kettle from, for subprocesses started elsewhere.
REPO_ROOT = Path(kettle_package.__file__).resolve().parents[1]


def cli_env(store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KETTLE_MODELS=str(store), KETTLE_HOST=f"127.0.0.1:{unused_port()}", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("TERM", None)
    return env


Kettle = Callable[..., subprocess.CompletedProcess]


def make_runner(store: Path, cwd: Path) -> Kettle:
    def kettle(*args: str, input: str | None = None, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kettle", *args], input=input if input is not None else "",
            capture_output=True, text=True, env=cli_env(store), cwd=cwd, timeout=timeout,
        )

    return kettle


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding smollm2 (and a greedy test model built on it)."""
    root = tmp_path_factory.mktemp("kettle-store")
    store = Store(root)
    pull_bundled(store, "smollm2")
    from kettle.modelfile import create_model

    create_model(store, "greedy", GREEDY_MODELFILE, root)
    return root


@pytest.fixture
def kettle(shared_store: Path, tmp_path: Path) -> Kettle:
    """``kettle(*args, input=...)`` on the shared store, in a fresh working directory."""
    return make_runner(shared_store, tmp_path)


@pytest.fixture
def fresh_kettle(tmp_path: Path) -> Kettle:
    """``kettle(*args)`` on an empty store of its own."""
    (tmp_path / "store").mkdir()
    return make_runner(tmp_path / "store", tmp_path)
