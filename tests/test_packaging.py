"""What a wheel of the package carries: its modules and the data files it reads, such as the predict defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import wsod_mammo

PACKAGE = Path(wsod_mammo.__file__).resolve().parent
SOURCE = PACKAGE.parent


def _data_files() -> list[str]:
    """The package's files that are not Python (what ``[tool.setuptools.package-data]`` must name)."""
    return sorted(
        str(path.relative_to(SOURCE))
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    )


@pytest.mark.timeout(300)
def test_a_wheel_carries_every_data_file_and_predict_reads_its_defaults_from_it(tmp_path: Path) -> None:
    """A wheel holds a package's modules and what its package-data names: a data file left out works in a clone
    and fails after ``pip install wsod-mammo``, where ``wsod predict`` without ``--config`` reads
    ``predict_defaults.yaml`` (the wheel has no configs/). Built offline from the sources, installed alone."""
    pytest.importorskip("setuptools", minversion="77")  # pyproject's build requirement, here without pip's isolation
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "wsod_mammo", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(SOURCE / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=240, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("wsod_mammo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "wsod_mammo/predict_defaults.yaml" in _data_files()
    assert [name for name in _data_files() if name not in names] == []
    assert not any(name.startswith("configs/") for name in names)  # as the README says: configs are the clone's
    installed = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(installed), str(wheel)], check=True, timeout=240)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = "from wsod_mammo.cli import PREDICT_DEFAULTS as p; print(p.resolve(), p.is_file())"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=240, check=True)  # fmt: skip
    assert done.stdout.split() == [str((installed / "wsod_mammo" / "predict_defaults.yaml").resolve()), "True"]


def test_the_package_marks_itself_typed_for_its_users_type_checkers() -> None:
    """The package is annotated throughout and CI type-checks it, but it carried no PEP 561 ``py.typed``: a user's
    mypy skipped every import of it ("module is installed, but missing library stubs or py.typed marker") and
    checked none of the calls the README's Python API shows. The wheel carries it as package data."""
    assert "wsod_mammo/py.typed" in _data_files()
