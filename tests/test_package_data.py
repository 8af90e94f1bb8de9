"""Every data file the package reads at run time is shipped by a non-editable install."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_covers_every_data_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["kettle"]
    package = ROOT / "kettle"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in p.parts]
    assert data, "the package has data files (built-in templates)"
    # setuptools' "**/" also matches files at any depth, as fnmatch's "*" does across slashes
    missing = [f for f in data if not any(fnmatch.fnmatch(f, pattern.removeprefix("**/")) for pattern in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
