"""Shared fixtures: one small synthetic VinDr-Mammo dataset per test session, and a fixed random state per test."""

from __future__ import annotations

import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.synthetic import make_synthetic_dataset
from wsod_mammo.data.vindr import load_records

SYNTH_STUDIES, SYNTH_HEIGHT, SYNTH_WIDTH = 6, 256, 160


def _share_the_cores_between_test_processes() -> None:
    """Each pytest-xdist process (and every ``wsod`` it starts, through the environment) gets its share of the cores
    for torch's threads. Left at one thread per core each, ``-n 2`` on 2 cores ran 4 OpenMP threads spinning for 2
    cores: the study, divergence and benchmark tests took 248 s instead of 200 s, 393 s of CPU instead of 270 s."""
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // processes)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_test_processes()
# the tests find each W&B run under its logger's save_dir, where a WANDB_DIR of the developer's would move it from
os.environ.pop("WANDB_DIR", None)


@pytest.fixture(autouse=True)
def _same_random_state_in_every_order() -> None:
    """Each test starts from the same global random state, whatever ran before it, so a test that draws from
    torch's, numpy's or Python's global generator sees the same numbers alone and in the suite (an overlay test
    measured on unseeded random pixels failed 2 runs of 4 by the draw it got)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def compile_without_inductor(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile as the package calls it, traced by dynamo and AOTAutograd (one autograd node a compiled
    network, graph breaks, guards) but run without inductor's code generation: minutes of C++ compilation on 2 cores
    for what a test of those properties needs. Inductor's numerics: the tests that compile with it."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kwargs: compile_(fn, backend="aot_eager", **kwargs))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic dataset (6 studies, 24 images of 256 x 160, seed 0) in the VinDr layout.

    Tests that modify files must copy it first (``shutil.copytree``).
    """
    return make_synthetic_dataset(tmp_path_factory.mktemp("vindr_synth"), SYNTH_STUDIES, SYNTH_HEIGHT, SYNTH_WIDTH)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI tests' dataset (tests only read it): mass and normal images only (no calcification-only images),
    so every split has 4 images per study."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("cli_data"), 8, 256, 160, seed=3, calc_fraction=0.0)


@pytest.fixture(scope="session")
def npy_cache(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """``data_root`` prepared once as the memory-mapped NPY cache the GPU config reads (tests only read it)."""
    from cli_configs import INPUT_SIZE

    from wsod_mammo.data.prepare import prepare

    cache = tmp_path_factory.mktemp("npy_cache")
    prepare(str(data_root), str(cache), input_size=INPUT_SIZE, workers=0, cache_format="npy")
    return cache


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_root: Path) -> Path:
    """Alias of ``synthetic_root``."""
    return synthetic_root


def add_padding(path: Path, use_range: bool) -> np.ndarray:
    """Turn the air on the far side from the chest wall into DICOM padding, as scanners pad outside the field.

    The padded pixels get stored values 0..30 with Pixel Padding Value 0 and Range Limit 30 (``use_range``), or
    0 with Pixel Padding Value 0 alone; the file's other stored values stay above 30. Returns the ``(H, W)`` mask.
    """
    image, info = read_dicom(path)
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    assert pixels.min() > 30, f"{path}: stored values overlap the padding range"
    rows, cols = np.indices(pixels.shape)
    far = cols >= pixels.shape[1] // 2 if info.laterality == "L" else cols < pixels.shape[1] // 2
    padding = far & (image < 0.05)
    pixels[padding] = (rows[padding] % 31).astype(np.uint16) if use_range else 0
    ds.add_new(0x00280120, "US", 0)  # Pixel Padding Value (US: the pixels are unsigned)
    if use_range:
        ds.add_new(0x00280121, "US", 30)  # Pixel Padding Range Limit
    ds.PixelData = pixels.tobytes()
    with warnings.catch_warnings():  # pydicom re-validates the synthetic (hex) UIDs on writing
        warnings.simplefilter("ignore", UserWarning)
        ds.save_as(path, enforce_file_format=True)
    return padding


@pytest.fixture(scope="session")
def padded_root(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_root`` with DICOM padding in every image whose stored values leave room for it (MONOCHROME1
    and rescaled MONOCHROME2 images, train and test splits; Range Limit on every other one); read-only."""
    root = Path(shutil.copytree(synthetic_root, tmp_path_factory.mktemp("vindr_padded") / "data"))
    for index, record in enumerate(load_records(root)):
        if pydicom.dcmread(record.path).pixel_array.min() > 30:
            add_padding(record.path, use_range=index % 2 == 0)
    return root
