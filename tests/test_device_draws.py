"""The device path draws as albumentations' worker path does."""

from __future__ import annotations

import numpy as np

from wsod_mammo.data.device_augment import sample_params
from wsod_mammo.data.transforms import AugmentationConfig

SIZE = (256, 160)


def test_scale_is_drawn_independently_per_axis_as_albumentations_affine() -> None:
    """A.Affine(scale=(a, b)) with keep_ratio False draws x and y scales apart: the device path must too."""
    rng = np.random.default_rng(0)
    config = AugmentationConfig(hflip_p=0.0, crop_p=0.0, affine_p=1.0, scale_min=0.9, scale_max=1.1)
    scales = np.array([sample_params(config, SIZE, np.zeros((0, 4)), rng).scale for _ in range(50)])
    assert np.abs(scales[:, 0] - scales[:, 1]).max() > 0.05, scales[:5]


def test_a_crop_without_boxes_may_keep_the_whole_height_as_albumentations_randint() -> None:
    """albumentations draws the crop height with randint(low, height), both ends included."""
    rng = np.random.default_rng(0)
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, crop_erosion=0.002, affine_p=0.0)  # low = 255 of 256
    heights = {(lambda c: c[3] - c[1])(sample_params(config, SIZE, np.zeros((0, 4)), rng).crop) for _ in range(100)}
    assert heights == {255, 256}, heights
