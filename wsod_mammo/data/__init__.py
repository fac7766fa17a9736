"""VinDr-Mammo data layer: index, DICOM decoding, geometry, cache, augmentation, DataModule, synthetic data.

Names are imported on first use (PEP 562), so ``wsod synth`` and ``wsod prepare`` do not pay for Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentationConfig": "wsod_mammo.data.transforms",
    "Geometry": "wsod_mammo.data.geometry",
    "VinDrMammoDataModule": "wsod_mammo.data.datamodule",
    "boxes_to_input": "wsod_mammo.data.geometry",
    "boxes_to_original": "wsod_mammo.data.geometry",
    "collate_samples": "wsod_mammo.data.dataset",
    "make_synthetic_dataset": "wsod_mammo.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
