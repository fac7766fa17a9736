"""Inputs of ``wsod predict``: any files and folders -> samples, an error sample for what cannot be read.

The sample dict is the DataModule's (see ``datamodule``), with zero labels, no boxes, and ``meta`` holding
``laterality_source`` (``dicom``, ``given`` or ``inferred``) and ``error`` (None, or ``"<path>: <reason>"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from wsod_mammo.data.dicom import describe_failure
from wsod_mammo.data.geometry import Geometry
from wsod_mammo.data.images import load_padded
from wsod_mammo.data.transforms import BoxTransform


def expand_predict_paths(paths: Sequence[str]) -> list[Path]:
    """Files and folders -> sorted file list: every file found in a folder (recursively), whatever its type.

    Nothing is dropped in silence: a file that is neither a DICOM (by content) nor a PNG/TIFF is kept so that its
    sample reports why; so are a path that does not exist and a folder with no file in it.
    """
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += found or [path]
    return files


class PredictDataset(Dataset):
    """DICOMs, PNG/TIFF files -> samples with zero labels and no boxes; an unreadable file gives an error sample.

    Laterality: the DICOM tags, else ``laterality`` when given, else inferred from the image; ``meta`` says which
    (``laterality_source``).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        num_classes: int,
        transform: BoxTransform,
        crop_breast: bool = True,
        laterality: str | None = None,
        resize: str = "stretch",
    ):
        self.paths, self.num_classes, self.transform = list(paths), num_classes, transform
        self.crop_breast, self.laterality, self.resize = crop_breast, laterality, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = Path(self.paths[index])
        height, width = self.transform.input_size
        meta: dict[str, Any] = {"study_id": path.parent.name, "view": "", "split": "predict", "path": str(path)}
        padding = None  # (H, W) bool where the DICOM has padding pixels: left out of the standardization
        try:
            image, geometry, side, source, padding = load_padded(
                path, (height, width), self.laterality, self.crop_breast, self.resize
            )
            meta.update(laterality=side, laterality_source=source, error=None)
        except Exception as err:  # any unreadable file must leave the other images' results intact
            meta["error"] = describe_failure(path, err)
            image, geometry = (
                np.zeros((height, width), np.float32),
                Geometry(height, width, False, (0, 0, width, height), height, width),
            )
            meta["laterality"], meta["laterality_source"] = "L", None
        meta["geometry"] = geometry.to_dict()
        out = self.transform.apply(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), padding)
        return out | {"label": torch.zeros(self.num_classes), "image_id": path.stem or path.name, "meta": meta}
