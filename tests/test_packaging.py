"""What a wheel of the package carries: its modules and the data files its package-data names, nothing else."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

import wsod_mammo

PACKAGE = Path(wsod_mammo.__file__).resolve().parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def test_every_data_file_the_package_reads_is_in_its_package_data() -> None:
    """A wheel holds a package's .py files and what ``[tool.setuptools.package-data]`` names: a data file left out
    (``predict_defaults.yaml``, which ``wsod predict`` reads without ``--config``) works in a clone and fails in a
    wheel install."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["wsod_mammo"]
    data = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    )
    assert "predict_defaults.yaml" in data
    assert [name for name in data if not any(fnmatch.fnmatch(name, glob) for glob in globs)] == []
