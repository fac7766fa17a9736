"""Shared fixtures: one small synthetic VinDr-Mammo dataset per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsod_mammo.data.synthetic import make_synthetic_dataset

SYNTH_STUDIES, SYNTH_HEIGHT, SYNTH_WIDTH = 6, 256, 160


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic dataset (6 studies, 24 images of 256 x 160, seed 0) in the VinDr layout.

    Tests that modify files must copy it first (``shutil.copytree``).
    """
    return make_synthetic_dataset(tmp_path_factory.mktemp("vindr_synth"), SYNTH_STUDIES, SYNTH_HEIGHT, SYNTH_WIDTH)


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_root: Path) -> Path:
    """Alias of ``synthetic_root``."""
    return synthetic_root
