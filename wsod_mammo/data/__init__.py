"""VinDr-Mammo data layer: index, DICOM decoding, geometry, cache, augmentation, DataModule, synthetic data."""

from wsod_mammo.data.datamodule import VinDrMammoDataModule, collate_samples
from wsod_mammo.data.geometry import Geometry, boxes_to_input, boxes_to_original
from wsod_mammo.data.synthetic import make_synthetic_dataset
from wsod_mammo.data.transforms import AugmentationConfig

__all__ = [
    "AugmentationConfig",
    "Geometry",
    "VinDrMammoDataModule",
    "boxes_to_input",
    "boxes_to_original",
    "collate_samples",
    "make_synthetic_dataset",
]
