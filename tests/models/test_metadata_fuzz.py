"""The structure-aware fuzzer (``fuzz_metadata.py``) and numba's bounds checks.

Each run is a subprocess, so a crash is a failed test with the signal named;
its peak memory is read back (``os.wait4``) and bounded. With
``NUMBA_BOUNDSCHECK=1`` numba checks every array index of every kernel (a
fresh cache directory, so nothing compiled without the checks is reused): the
fuzz cases that load, and the every-architecture harness, then prove that no
kernel indexes outside its arrays on the shapes a validated model can have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_RSS_KIB = 3 << 20  # 3 GiB: a case that allocated by a hostile size would show


def _run(args: list[str], tmp_path: Path, timeout: float, boundscheck: bool = False) -> tuple[int, str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KETTLE_", "NUMBA_"))}
    env.update(PYTHONPATH=str(REPO), KETTLE_MODELS=str(tmp_path / "store"))
    if boundscheck:
        env.update(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{args} ran past {timeout} s:\n{log.read_text()[-4000:]}")
    # Popen.wait reaped it; the children's rusage now includes it (max over children).
    import resource

    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return proc.returncode, log.read_text(), rss


def _check(rc: int, output: str, rss: int) -> None:
    assert rc >= 0, f"killed by signal {-rc}:\n{output[-4000:]}"
    assert rc == 0, output[-6000:]
    assert rss < MAX_RSS_KIB, f"peak memory {rss >> 10} MiB"


def test_fuzzed_models_load_and_run_or_are_refused(tmp_path):
    rc, out, rss = _run(["-m", "tests.models.fuzz_metadata", "--cases", "2500", "--seed", "0"], tmp_path, 600)
    _check(rc, out, rss)
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("fuzz: 2500 cases") and summary.endswith(", 0 failed"), summary
    assert "'ok': " in summary and "'refused': " in summary  # both outcomes are exercised


@pytest.mark.slow
def test_fuzzed_models_under_numba_boundscheck(tmp_path):
    rc, out, rss = _run(["-m", "tests.models.fuzz_metadata", "--cases", "500", "--seed", "1"], tmp_path, 900,
                        boundscheck=True)
    _check(rc, out, rss)
    assert out.strip().splitlines()[-1].endswith(", 0 failed")


@pytest.mark.slow
def test_every_architecture_harness_under_numba_boundscheck(tmp_path):
    args = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/models/test_harness.py",
            "tests/ops", "-k", "not slow"]
    rc, out, rss = _run(args, tmp_path, 1200, boundscheck=True)
    _check(rc, out, rss)
    assert " passed" in out.strip().splitlines()[-1]


def test_boundscheck_mode_catches_an_out_of_bounds_kernel(tmp_path):
    """The debug mode is real: the rope kernel called past its head raises."""
    code = ("import numpy as np\nfrom kettle.ops.rope import _rope\n"
            "x = np.zeros((1, 32), np.float32); c = np.ones((1, 10), np.float32)\n"
            "_rope(1, x, c, c, 2, 16, True)\n")
    rc, out, _ = _run(["-c", code], tmp_path, 300, boundscheck=True)
    assert rc == 1 and "IndexError: index is out of bounds" in out, out[-2000:]
