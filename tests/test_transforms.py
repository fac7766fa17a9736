"""Augmentation keeps boxes on the mass; standardization; switching augmentation off."""

from __future__ import annotations

import collections

import albumentations as A
import numpy as np
import pytest
import torch

from wsod_mammo.data.synthetic_image import _Blob, _stamp
from wsod_mammo.data.transforms import (
    AugmentationConfig,
    BoxTransform,
    box_params,
    standardize,
    standardize_batch,
    to_uint16,
)


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


def test_steps_fire_independently_when_reseeded_per_sample() -> None:
    """The training dataset reseeds the augmentation for every sample (``EpochShuffleSampler``'s seeds).
    albumentations gave every step that one seed, so the flip, the crop and the affine fired all together or not at
    all: half the training images were left unaugmented. Each of the 8 combinations now comes about 1/8 of the time."""
    transform = BoxTransform((64, 40), AugmentationConfig(), train=True, standardize=False)
    transform.pipeline.save_applied_params = True
    image, box = np.full((64, 40), 1000, np.uint16), np.array([[5, 10, 15, 22]], np.float32)
    seeds = torch.randint(0, 2**31 - 1, (800,), generator=torch.Generator().manual_seed(0)).tolist()
    combinations = collections.Counter()
    for seed in seeds:
        transform.set_seed(seed)
        out = transform.pipeline(image=image, bboxes=box, box_labels=np.array([0]))
        combinations[frozenset(name for name, _ in out["applied_transforms"])] += 1
    assert len(combinations) == 8, combinations
    assert all(60 <= count <= 140 for count in combinations.values()), combinations  # 100 expected, 4.3 sd away
    assert combinations[frozenset()] <= 140  # was ~400: no augmentation at all


def test_a_box_the_crop_cuts_away_stays_dropped_through_a_rotation() -> None:
    """The box-safe crop (crop and resize in one step, as ``A.Crop`` here) clips a box it cuts away to zero height;
    the affine's rotation then gave it area again: a box on no tissue, with its label (the device path drops it)."""
    image = np.full((256, 160), 1000, np.uint16)
    boxes, labels = np.array([[30, 60, 70, 110], [100, 200, 130, 240]], np.float32), np.array([0, 1])
    steps = [A.Crop(x_min=0, y_min=0, x_max=160, y_max=180), A.Affine(rotate=(10, 10), p=1.0)]
    out = A.Compose(steps, bbox_params=box_params())(image=image, bboxes=boxes, box_labels=labels)
    assert np.asarray(out["box_labels"]).tolist() == [0]


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


def test_crop_boxless_crops_an_image_without_boxes_and_adds_no_box() -> None:
    """The box-safe crop kept a boxless image whole (only Mass images were magnified: zoom told the label);
    crop_boxless crops it around a random point, and the point never becomes a box."""
    image = np.random.default_rng(0).integers(0, 65535, (128, 80)).astype(np.uint16)
    for boxless in (False, True):
        config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, affine_p=0.0, crop_boxless=boxless)
        transform = BoxTransform((128, 80), config, train=True, standardize=False)
        kept = 0
        for seed in range(20):
            transform.set_seed(seed)
            out, boxes, labels = transform(image, np.zeros((0, 4)), np.zeros(0))
            kept += torch.equal(out[0], torch.from_numpy(image.astype(np.int32)).to(torch.uint16))
            assert boxes.shape == (0, 4) and labels.shape == (0,)
        assert kept == (0 if boxless else 20), (boxless, kept)


@pytest.mark.parametrize("boxes", [np.zeros((0, 4)), np.array([[10.0, 20.0, 30.0, 50.0]])])
def test_a_crop_at_erosion_one_is_never_empty(boxes: np.ndarray) -> None:
    """At crop_erosion 1 the crop falls back to a random crop of the image's aspect ratio, whose height was drawn
    from 0 rows up: a height of 0 or 1 (0 columns) raised in albumentations' crop (13 of 1,000 seeds here)."""
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, crop_erosion=1.0, affine_p=0.0)
    transform = BoxTransform((128, 80), config, train=True, standardize=False)
    for seed in range(400):
        transform.set_seed(seed)
        out, _, _ = transform(np.ones((128, 80), np.uint16), boxes, np.zeros(len(boxes)))
        assert out.shape == (1, 128, 80)


def test_crop_boxless_is_refused_unless_true_or_false() -> None:
    """A string "false" from a hand-built config is truthy: it would have cropped every boxless image."""
    with pytest.raises(ValueError, match="data.augmentation.crop_boxless: expected true or false, found 'false'"):
        AugmentationConfig(crop_boxless="false")  # type: ignore[arg-type]


def test_standardize_uint16_equals_float() -> None:
    raw = np.random.default_rng(0).integers(0, 65536, (40, 30)).astype(np.uint16)
    out = standardize(raw)
    torch.testing.assert_close(out, standardize(raw / np.float32(65535)), atol=1e-5, rtol=0)
    reference = (raw - raw.mean()) / raw.std(ddof=1)
    np.testing.assert_allclose(out[0].numpy(), reference, atol=1e-5)
    assert torch.equal(standardize(np.full((4, 4), 7, np.uint16)), torch.zeros(1, 4, 4))


def test_standardize_batch_equals_the_worker_standardization_per_image() -> None:
    rng = np.random.default_rng(1)
    images = np.stack([rng.integers(0, 65536, (40, 30)), rng.integers(1000, 3000, (40, 30)),
                       np.full((40, 30), 9)]).astype(np.uint16)  # fmt: skip
    out = standardize_batch(torch.from_numpy(images).unsqueeze(1))
    assert out.dtype == torch.float32 and out.shape == (3, 1, 40, 30)
    for image, result in zip(images, out, strict=True):  # each image on its own statistics, not the batch's
        torch.testing.assert_close(result, standardize(image), atol=2e-5, rtol=0)
    assert torch.equal(out[2], torch.zeros(1, 40, 30))  # a constant image gives zeros, not NaN


@pytest.mark.parametrize("train", [False, True])
def test_device_standardization_gives_the_worker_result(train: bool) -> None:
    image, box = _mass_image()
    config = AugmentationConfig(hflip_p=0.5, crop_p=1.0, affine_p=1.0, seed=5)
    quantum = 1.0 / 65535 / float(image.std())  # a float image is quantized to uint16 first: one step, in stds
    # a cache image (uint16: the same pixels either way) and a decoded DICOM (float in [0, 1])
    for source, tolerance in ((to_uint16(image), 2e-5), (image, quantum + 2e-5)):
        worker, boxes, _ = BoxTransform((128, 80), config, train=train)(source, box, np.array([0]))
        raw, raw_boxes, _ = BoxTransform((128, 80), config, train=train, standardize=False)(source, box, np.array([0]))
        assert raw.dtype == torch.uint16 and raw.shape == (1, 128, 80) and torch.equal(boxes, raw_boxes)
        torch.testing.assert_close(standardize_batch(raw[None])[0], worker, atol=tolerance, rtol=1e-4)


def test_uint16_output_of_a_read_only_memory_map_is_a_private_copy(tmp_path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.arange(128 * 80, dtype=np.uint16).reshape(128, 80))
    mapped = np.load(path, mmap_mode="r")
    out, _, _ = BoxTransform((128, 80), standardize=False)(mapped, np.zeros((0, 4)), np.zeros(0))
    out[0, 0, 0] = 7  # writable, and writing it leaves the cached file alone
    assert int(np.load(path)[0, 0]) == 0 and torch.equal(out[0, 0, 1:], torch.from_numpy(mapped[0, 1:].copy()))


def _padded(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64 x 40 uint16 'breast' and the same image with a 24-column padding band (0) appended, and its mask."""
    breast = np.random.default_rng(seed).integers(2000, 60000, (64, 40)).astype(np.uint16)
    padded = np.concatenate([breast, np.zeros((64, 24), np.uint16)], axis=1)
    padding = np.zeros(padded.shape, bool)
    padding[:, 40:] = True
    return breast, padded, padding


def test_standardize_leaves_padding_out_of_the_statistics() -> None:
    breast, padded, padding = _padded()
    out = standardize(padded, padding)[0]
    # the breast is standardized as if the band were not there; the band is the standardized value of 0
    torch.testing.assert_close(out[:, :40], standardize(breast)[0], atol=1e-5, rtol=0)
    reference = standardize(breast)[0]
    zero = -float(breast.mean()) / float(breast.std(ddof=1))
    torch.testing.assert_close(out[:, 40:], torch.full((64, 24), zero), atol=1e-4, rtol=0)
    assert not torch.allclose(standardize(padded)[0][:, :40], reference, atol=1e-2)  # what the band did before
    # no mask, a mask with no padding, or nothing but padding: all pixels, bit for bit
    for mask in (None, np.zeros_like(padding), np.ones_like(padding)):
        assert torch.equal(standardize(padded, mask), standardize(padded))


def test_standardize_batch_with_padding_equals_standardize_and_leaves_the_others_bit_identical() -> None:
    images = torch.from_numpy(np.stack([_padded(seed)[1] for seed in range(3)]).astype(np.int32)).to(torch.uint16)
    images = images.unsqueeze(1)  # (3, 1, 64, 64)
    padding = torch.zeros(images.shape, dtype=torch.bool)
    padding[0, :, :, 40:] = True  # image 0 has padding; image 1 none; image 2 is all padding (no statistics)
    padding[2] = True
    out = standardize_batch(images, padding)
    plain = standardize_batch(images)
    torch.testing.assert_close(out[0], standardize(images[0, 0].numpy(), padding[0, 0].numpy()), atol=2e-5, rtol=0)
    assert torch.equal(out[1:], plain[1:])
    assert torch.equal(standardize_batch(images, torch.zeros_like(padding)), plain)


@pytest.mark.parametrize("seed", [0, 3, 5])  # draws that leave some padding in the frame
def test_worker_augmentation_warps_the_mask_with_the_image(seed: int) -> None:
    """The mask follows the image (nearest), the draws do not change, and standardization leaves padding out."""
    _, padded, padding = _padded()
    config = AugmentationConfig(seed=seed, crop_p=1, affine_p=1, scale_min=0.8, scale_max=1.2, rotate=10)
    box, label = np.array([[5, 5, 20, 20]], np.float32), np.array([0])
    transform = lambda **kw: BoxTransform((64, 64), config, train=True, **kw)  # noqa: E731
    raw = transform(standardize=False).apply(padded, box, label, padding)
    assert torch.equal(raw["image"], transform(standardize=False)(padded, box, label)[0])  # same draws
    mask = raw["padding"]
    assert mask.dtype == torch.bool and mask.shape == (1, 64, 64) and mask.any()
    indicator = transform(standardize=False)(np.where(padding, 65535, 0).astype(np.uint16), box, label)[0]
    assert mask[indicator == 65535].all() and not mask[indicator == 0].any()  # pushed-in pixels are not padding
    out = transform().apply(padded, box, label, padding)
    assert "padding" not in out  # consumed by the worker's standardization
    kept = out["image"][~mask]
    torch.testing.assert_close(kept.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(kept.std(), torch.tensor(1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["image"], standardize(raw["image"][0].numpy(), mask[0].numpy()))
