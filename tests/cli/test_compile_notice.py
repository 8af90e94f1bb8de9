"""The first run says that the kernels compile (numba's disk cache is empty), later runs say nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kettle.ops._jit import COMPILE_NOTICE

from tests.cli.conftest import Kettle, cli_env

PROBE = """
import numpy as np
from kettle.ops._jit import kernels_cached
from kettle.ops.norm import _rms_norm
before = kernels_cached()
x = np.ones((1, 4), np.float32)
_rms_norm(x, np.ones(4, np.float32), 1e-6, np.empty_like(x))
print(before, kernels_cached())
"""


def test_kernels_cached_follows_numbas_cache_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "store") | {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    again = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert again.stdout.split() == ["True", "True"]


@pytest.mark.slow
def test_run_says_once_that_the_kernels_compile(shared_store: Path, tmp_path: Path) -> None:
    env = cli_env(shared_store) | {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kettle", "run", "greedy", "Hi"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith(COMPILE_NOTICE) and first.stdout.strip()
    second = run()
    assert second.returncode == 0 and COMPILE_NOTICE not in second.stderr
    assert second.stdout == first.stdout
