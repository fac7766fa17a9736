"""Augmentation keeps boxes on the mass; standardization; switching augmentation off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsod_mammo.data.synthetic import _Blob, _stamp
from wsod_mammo.data.transforms import AugmentationConfig, BoxTransform, standardize


def _mass_image() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((128, 80), 0.2, np.float32)
    blob = _Blob(x=50.0, y=70.0, radius=9.0, aspect=0.7, angle=0.5, lobes=5, lobe_amp=0.1, phase=0.0, contrast=0.8)
    _stamp(image, blob)
    half_w, half_h = blob.extent()
    return image, np.array([[50 - half_w, 70 - half_h, 50 + half_w, 70 + half_h]], np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_mass_inside_its_box(seed: int) -> None:
    image, box = _mass_image()
    config = AugmentationConfig(hflip_p=0.5, crop_p=1.0, affine_p=1.0, shift=0.1, scale_min=0.8, scale_max=1.2,
                                rotate=10.0, seed=seed)  # fmt: skip
    out, boxes, labels = BoxTransform((128, 80), config, train=True)(image, box, np.array([0]))
    assert out.shape == (1, 128, 80) and out.dtype == torch.float32
    assert boxes.shape == (1, 4) and labels.tolist() == [0]
    x0, y0, x1, y1 = boxes[0].tolist()
    bright = out[0] > out[0].max() * 0.5  # the mass's core (the background is far darker)
    ys, xs = torch.nonzero(bright, as_tuple=True)
    assert len(xs) > 20
    assert xs.min() >= x0 - 1.5 and xs.max() + 1 <= x1 + 1.5 and ys.min() >= y0 - 1.5 and ys.max() + 1 <= y1 + 1.5


def test_augmentation_varies_and_is_seeded() -> None:
    image, box = _mass_image()
    make = lambda s: BoxTransform((128, 80), AugmentationConfig(crop_p=1, affine_p=1, seed=s), train=True)  # noqa: E731
    first = [make(3)(image, box, np.array([0]))[1] for _ in range(1)][0]
    again = make(3)(image, box, np.array([0]))[1]
    other = make(4)(image, box, np.array([0]))[1]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_eval_and_disabled_only_standardize() -> None:
    image, box = _mass_image()
    for transform in (BoxTransform((128, 80), train=False),
                      BoxTransform((128, 80), AugmentationConfig(enabled=False), train=True)):  # fmt: skip
        out, boxes, _ = transform(image, box, np.array([0]))
        assert torch.equal(boxes, torch.from_numpy(box))
        torch.testing.assert_close(out, standardize(image))
        assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-4


def test_empty_boxes_and_constant_image() -> None:
    out, boxes, labels = BoxTransform((32, 16), AugmentationConfig(seed=0, crop_p=1), train=True)(
        np.full((32, 16), 0.3, np.float32), np.zeros((0, 4)), np.zeros(0)
    )
    assert boxes.shape == (0, 4) and labels.dtype == torch.int64 and torch.isfinite(out).all()


def test_standardize_uint16_equals_float() -> None:
    raw = np.random.default_rng(0).integers(0, 65536, (40, 30)).astype(np.uint16)
    out = standardize(raw)
    torch.testing.assert_close(out, standardize(raw / np.float32(65535)), atol=1e-5, rtol=0)
    reference = (raw - raw.mean()) / raw.std(ddof=1)
    np.testing.assert_allclose(out[0].numpy(), reference, atol=1e-5)
    assert torch.equal(standardize(np.full((4, 4), 7, np.uint16)), torch.zeros(1, 4, 4))
