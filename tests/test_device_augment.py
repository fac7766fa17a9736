"""augment_on: device: one affine per sample equals the albumentations worker path; seeded; batched on transfer."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.core.bbox_utils import union_of_bboxes
from torch.utils.data import Dataset

from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.data.device_augment import (
    AffineParams,
    _union_crop,
    compiled_device_transform,
    device_transform,
    grid_theta,
    params_matrix,
    sample_params,
    transform_boxes,
    warp_batch,
    warp_padding,
)
from wsod_mammo.data.transforms import AugmentationConfig, BoxTransform, box_params, standardize_batch

SIZE = (256, 160)
PARAMS = [
    AffineParams(),
    AffineParams(flip=True),
    AffineParams(crop=(20, 30, 140, 230)),
    AffineParams(scale=(1.08, 0.93), shift=(12, -20)),
    AffineParams(flip=True, crop=(7, 11, 150, 201), scale=(0.91, 1.06), shift=(-15, 9)),
    AffineParams(crop=(0, 40, 160, 256), scale=(1.1, 1.1), shift=(16, 25)),  # pushes the low box partly off
    # crops that cut a box, as crop_erosion > 0 draws them: the box is cut with the image, or dropped with it
    AffineParams(crop=(40, 70, 150, 256)),
    AffineParams(flip=True, crop=(0, 0, 100, 150), scale=(0.95, 1.05)),
    AffineParams(crop=(80, 150, 160, 256), scale=(0.9, 1.1), shift=(5, -5)),
    AffineParams(crop=(0, 0, 160, 180), rotate=10.0),  # the low box cut away, then a rotation
]


def _smooth_image(seed: int = 0) -> np.ndarray:
    """A smooth uint16 image (interpolation differences stay small) with a bright breast-like blob."""
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.random((16, 10)), SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    blob = np.exp(-((yy - 120) ** 2 + (xx - 50) ** 2) / 4000.0)
    return to_u16(0.6 * blob + 0.3 * noise)


def to_u16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def _albumentations(params: AffineParams, image, boxes, labels):
    """The worker path's transforms (flip, box-safe crop resized back, affine) with the draws fixed to ``params``."""
    height, width = SIZE
    steps = [A.HorizontalFlip(p=float(params.flip))]
    if params.crop is not None:
        x0, y0, x1, y1 = params.crop
        steps += [A.Crop(x_min=x0, y_min=y0, x_max=x1, y_max=y1), A.Resize(height, width)]
    sx, sy = params.scale
    tx, ty = params.shift
    r = params.rotate
    steps.append(A.Affine(translate_px={"x": (tx, tx), "y": (ty, ty)}, scale={"x": (sx, sx), "y": (sy, sy)},
                          rotate=(r, r), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0))  # fmt: skip
    out = A.Compose(steps, bbox_params=box_params())(image=image, bboxes=boxes, box_labels=labels)
    return out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4), np.asarray(out["box_labels"])


@pytest.mark.parametrize("params", PARAMS)
def test_one_affine_equals_the_albumentations_worker_path(params: AffineParams) -> None:
    image = _smooth_image()
    boxes = np.array([[30, 60, 70, 110], [100, 200, 130, 240]], np.float32)
    labels = np.array([0, 1])
    expected_image, expected_boxes, expected_labels = _albumentations(params, image, boxes, labels)
    matrix = params_matrix(params, SIZE)
    found_boxes, found_labels = transform_boxes(boxes, labels, matrix, SIZE, params)
    np.testing.assert_allclose(found_boxes, expected_boxes, atol=1e-3)
    np.testing.assert_array_equal(found_labels, expected_labels)
    theta = torch.from_numpy(grid_theta(matrix, SIZE, params))[None]
    warped = warp_batch(torch.from_numpy(image.astype(np.int32)).to(torch.uint16)[None, None], theta)[0, 0].numpy()
    diff = np.abs(warped - expected_image.astype(np.float64)) / 65535.0
    inner = diff[2:-2, 2:-2]  # one resampling vs two: small differences, the largest at the zero border
    assert inner.mean() < 2e-3 and np.quantile(inner, 0.99) < 1e-2, (inner.mean(), np.quantile(inner, 0.99))


def test_box_safe_crop_draws_contain_the_eroded_union_as_albumentations_does() -> None:
    """albumentations 2 erodes the union of several boxes, never a single box, and draws as without boxes at
    erosion 1; the device path used to erode every box, so its crops cut a lone mass (217 of 300 at erosion 0.5)."""
    rng = np.random.default_rng(0)
    one = np.array([[30, 60, 70, 110]], np.float32)
    two = np.array([[30, 60, 70, 110], [100, 200, 130, 240]], np.float32)
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, crop_erosion=0.5, affine_p=0.0)
    crops = [sample_params(config, SIZE, one, rng).crop for _ in range(200)]
    assert all(x0 <= 30 and y0 <= 60 and x1 >= 70 and y1 >= 110 for x0, y0, x1, y1 in crops)
    union = union_of_bboxes(two / np.array([160, 256, 160, 256]), 0.5) * np.array([160, 256, 160, 256])
    crops = [sample_params(config, SIZE, two, rng).crop for _ in range(200)]
    assert all(
        x0 <= union[0] and y0 <= union[1] and x1 >= int(union[2]) and y1 >= int(union[3]) for x0, y0, x1, y1 in crops
    )
    assert any(x0 > 30 or y0 > 60 or y1 < 240 for x0, y0, x1, y1 in crops)  # the erosion does cut
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, crop_erosion=1.0, affine_p=0.0)
    crops = [sample_params(config, SIZE, one, rng).crop for _ in range(100)]  # no union: the image's aspect ratio
    assert all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in crops)  # never empty, even when 0 rows are drawn
    assert all(abs((x1 - x0) / (y1 - y0) - 160 / 256) < 0.05 for x0, y0, x1, y1 in crops if y1 - y0 >= 64)


def test_a_flipped_images_box_safe_crop_keeps_its_mass_whole() -> None:
    """The crop is drawn on the flipped image, so it must protect the flipped box: drawn around the unflipped one,
    it cut or dropped the mass of most flipped-and-cropped samples while the label still said mass."""
    rng = np.random.default_rng(0)
    box = np.array([[10, 60, 40, 110]], np.float32)  # near the left edge: its mirror lies near the right one
    config = AugmentationConfig(hflip_p=1.0, crop_p=1.0, crop_erosion=0.0, affine_p=0.0)
    for _ in range(100):
        params = sample_params(config, SIZE, box, rng)
        (x0, y0, x1, y1) = params.crop
        out, _ = transform_boxes(box, np.array([1]), params_matrix(params, SIZE), SIZE)
        assert len(out) == 1, params
        width = 30 * 160 / (x1 - x0)  # the whole box, scaled as the crop is stretched back to the image
        np.testing.assert_allclose(out[0, 2] - out[0, 0], width, rtol=1e-6, err_msg=str(params))


def test_shifts_are_fractions_of_their_own_axis() -> None:
    """albumentations' translate_percent: x by a fraction of the width, y of the height (on 2944 x 1920 a swap would
    shift across by up to 10% of the height)."""
    rng = np.random.default_rng(1)
    config = AugmentationConfig(hflip_p=0.0, crop_p=0.0, affine_p=1.0, shift=0.1, scale_min=1.0, scale_max=1.0)
    shifts = np.array([sample_params(config, SIZE, np.zeros((0, 4)), rng).shift for _ in range(500)])
    assert np.abs(shifts[:, 0]).max() <= 16 and 16 < np.abs(shifts[:, 1]).max() <= 25  # x of 160, y of 256


def test_identity_warp_is_exact_and_boxes_pushed_off_are_dropped() -> None:
    image = torch.from_numpy(_smooth_image().astype(np.int32)).to(torch.uint16)[None, None]
    theta = torch.from_numpy(grid_theta(np.eye(3), SIZE))[None]
    expected = image.to(torch.int32).to(torch.float32)  # up to float32 rounding of the grid (pixels reach 65535)
    torch.testing.assert_close(warp_batch(image, theta), expected, atol=0.05, rtol=1e-6)
    shift_left = params_matrix(AffineParams(shift=(-100, 0)), SIZE)
    boxes, labels = transform_boxes(np.array([[10, 10, 50, 50], [90, 10, 150, 50]]), np.array([3, 4]), shift_left, SIZE)
    np.testing.assert_allclose(boxes, [[0, 10, 50, 50]])
    np.testing.assert_array_equal(labels, [4])


def _device_dm(root: Path, cache: Path, workers: int) -> VinDrMammoDataModule:
    dm = VinDrMammoDataModule(
        str(root), cache_dir=str(cache), input_size=SIZE, batch_size=4, num_workers=workers, val_fraction=0.25,
        standardize_on="device", augment_on="device", augmentation=AugmentationConfig(crop_p=0.7, affine_p=0.7),
    )  # fmt: skip
    dm.setup("fit")
    return dm


def _epoch(dm: VinDrMammoDataModule, epoch: int) -> list[dict]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_device_path_is_seeded_per_sample_and_warped_on_transfer(synthetic_root: Path, tmp_path: Path) -> None:
    """Same (seed, epoch) -> the same draws and boxes with 0 or 2 workers; another epoch draws anew."""
    from wsod_mammo.data.prepare import prepare

    prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    single, multi = (
        _epoch(_device_dm(synthetic_root, tmp_path, 0), 1),
        _epoch(_device_dm(synthetic_root, tmp_path, 2), 1),
    )
    other = _epoch(_device_dm(synthetic_root, tmp_path, 0), 2)
    for a, b in zip(single, multi, strict=True):
        assert a["image"].dtype == torch.uint16 and a["theta"].shape == (len(a["image"]), 2, 5)
        torch.testing.assert_close(a["theta"], b["theta"])
        torch.testing.assert_close(a["image"], b["image"])
        for boxes_a, boxes_b in zip(a["boxes"], b["boxes"], strict=True):
            torch.testing.assert_close(boxes_a, boxes_b)
    assert not torch.equal(torch.cat([b["theta"] for b in single]), torch.cat([b["theta"] for b in other]))
    dm = _device_dm(synthetic_root, tmp_path, 0)
    batch = dm.on_after_batch_transfer(single[0], 0)
    assert "theta" not in batch and batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (1, *SIZE)
    std, mean = torch.std_mean(batch["image"], dim=(1, 2, 3))
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-3, rtol=0)
    # standardization alone also gives mean 0, std 1: the image must be the standardized warp, not the unwarped one
    sent = single[0]
    padding = sent.get("padding")
    warped_padding = None if padding is None else warp_padding(padding, sent["theta"])
    expected = standardize_batch(warp_batch(sent["image"], sent["theta"]), warped_padding)
    torch.testing.assert_close(batch["image"], expected, atol=1e-4, rtol=0)


def test_augment_on_device_needs_device_standardization(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="augment_on"):
        VinDrMammoDataModule(str(synthetic_root), augment_on="device")


class _Threads(Dataset):
    """Samples whose image holds the worker's torch and OpenCV thread counts."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        threads = torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])
        return {"image": threads, "label": torch.zeros(1), "boxes": torch.zeros(0, 4),
                "box_labels": torch.zeros(0, dtype=torch.int64), "image_id": str(index), "meta": {}}  # fmt: skip


def test_each_worker_runs_one_torch_and_one_opencv_thread(synthetic_root: Path) -> None:
    """The DataModule's loaders give every worker one torch and one OpenCV thread (they would fight otherwise)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        dm = VinDrMammoDataModule(str(synthetic_root), input_size=SIZE, batch_size=2, num_workers=2)
        dm.datasets["val"] = _Threads()
        counts = torch.cat([batch["image"] for batch in dm.val_dataloader()])
    finally:
        cv2.setNumThreads(before)
    assert counts.tolist() == [[1, 1]] * 4


@pytest.mark.parametrize("params", [AffineParams(True, (10, 20, 70, 110), (1.1, 0.9), (6, -9), 12.0),
                                    AffineParams(False, None, (0.8, 0.8), (-10, 4), 0.0)])  # fmt: skip
def test_padding_mask_is_warped_like_the_image(params: AffineParams) -> None:
    """Nearest warp of the mask: True where the warped band is wholly padding, False where the warp pushed zeros in."""
    padding = torch.zeros(1, 1, 128, 80, dtype=torch.bool)
    padding[..., 60:] = True
    theta = torch.from_numpy(grid_theta(params_matrix(params, (128, 80)), (128, 80), params))[None]
    mask = warp_padding(padding, theta)
    indicator = warp_batch(padding.to(torch.float32), theta)
    assert mask.dtype == torch.bool and mask.shape == padding.shape and mask.any()
    assert mask[indicator > 1 - 1e-6].all() and not mask[indicator < 1e-6].any()


@pytest.mark.parametrize("boxless", [False, True])
def test_the_same_crops_give_the_same_padding_mask_on_both_paths(boxless: bool) -> None:
    """The worker path's box-safe crop resized the mask with INTER_NEAREST, which floors: upscaled, the mask's edge
    sat a column off its image's (12 of 50 crops here); pixel centres now, as the device path's warp. ``boxless``:
    an image without boxes cropped by ``crop_boxless``."""
    size = (128, 80)
    image, padding = np.full(size, 1000, np.uint16), np.zeros(size, bool)
    padding[:, 60:], image[:, 60:] = True, 0
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, affine_p=0.0, crop_boxless=boxless)
    worker = BoxTransform(size, config, train=True, standardize=False)
    worker.pipeline.save_applied_params = True
    box, label = np.array([[50, 60, 55, 66]], np.float32), np.zeros(1, np.int64)
    if boxless:
        box, label = box[:0], label[:0]
    for seed in range(50):
        worker.set_seed(seed)
        out = worker.pipeline(image=image, mask=padding.view(np.uint8), bboxes=box, box_labels=label)
        ((_, drawn),) = out["applied_transforms"]
        params = AffineParams(crop=tuple(int(v) for v in drawn["crop_coords"]))
        theta = torch.from_numpy(grid_theta(params_matrix(params, size), size, params))[None]
        device = warp_padding(torch.from_numpy(padding)[None, None], theta)[0, 0].numpy()
        np.testing.assert_array_equal(out["mask"].astype(bool), device, err_msg=f"crop {params.crop}")


def test_compiled_device_transform_equals_eager() -> None:
    """torch.compile (inductor) of the device half gives eager's batch: warped with padding, warped, unwarped."""
    params = [AffineParams(True, (10, 20, 150, 230), (1.08, 0.93), (6, -9), 7.0), AffineParams(crop=(0, 40, 160, 256))]
    theta = torch.from_numpy(np.stack([grid_theta(params_matrix(p, SIZE), SIZE, p) for p in params]))
    images = torch.from_numpy(np.stack([_smooth_image(seed) for seed in (1, 2)])[:, None])  # (2, 1, H, W) uint16
    padding = torch.zeros(2, 1, *SIZE, dtype=torch.bool)
    padding[0, :, :, 120:] = True
    compiled = compiled_device_transform()
    for args in ((images, theta, padding), (images, theta), (images,), (images[1:], theta[1:])):  # last: batch of 1
        expected, found = device_transform(*args), compiled(*args)
        assert found.dtype == torch.float32 and found.shape == args[0].shape
        torch.testing.assert_close(found, expected, atol=1e-3, rtol=0)


def test_compile_device_transform_runs_the_compiled_function(synthetic_root: Path, monkeypatch) -> None:
    """The option compiles device_transform once and every batch goes through it; refused without device work."""
    seen = []

    def fake_compile(fn, **kwargs):
        seen.append((fn, kwargs))
        return lambda *args: fn(*args) * 0 + 7.0  # recognisable output

    monkeypatch.setattr(torch, "compile", fake_compile)
    dm = VinDrMammoDataModule(str(synthetic_root), input_size=SIZE, standardize_on="device",
                              compile_device_transform=True)  # fmt: skip
    batch = {"image": torch.zeros(2, 1, *SIZE, dtype=torch.uint16), "theta": torch.zeros(2, 2, 5)}
    for _ in range(2):
        assert torch.equal(dm.on_after_batch_transfer(batch, 0)["image"], torch.full((2, 1, *SIZE), 7.0))
    assert batch.keys() == {"image", "theta"}, "the hook changed the batch it was given"
    assert seen == [(device_transform, {"dynamic": True})]
    with pytest.raises(ValueError, match="compile_device_transform: .* without standardize_on: device"):
        VinDrMammoDataModule(str(synthetic_root), compile_device_transform=True)


class _Replay:
    """Stands in for either path's random stream: the given uniforms, in the order drawn."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = iter(values.tolist())

    def random(self) -> float:
        return next(self.values)


def test_a_boxless_crop_turns_the_same_draws_into_the_same_crop_on_both_paths() -> None:
    """crop_boxless: the worker's BoxlessCrop and the device's _union_crop read the same uniforms in the same order
    (the point's x and y, then x0, y0, x1, y1) and give the same crop, never empty (the first draws leave a point
    near the left edge no room: x0 = x1 = 0 before the guard)."""
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, affine_p=0.0, crop_boxless=True)
    crop = BoxTransform(SIZE, config, train=True).pipeline.transforms[1]
    draws = np.random.default_rng(0).random((300, 6))
    draws[0] = [1e-3, 0.5, 0.5, 0.5, 0.0, 0.5]
    for values in draws:
        crop.py_random = _Replay(values)
        worker = crop.get_params_dependent_on_data({"shape": SIZE}, {"bboxes": np.zeros((0, 4))})["crop_coords"]
        device = _union_crop(np.zeros((0, 4)), SIZE, 0.0, _Replay(values), boxless=True)  # type: ignore[arg-type]
        assert tuple(int(v) for v in worker) == device, values
        x0, y0, x1, y1 = device
        assert 0 <= x0 < x1 <= SIZE[1] and 0 <= y0 < y1 <= SIZE[0], values


def test_a_boxless_crop_gives_the_same_image_on_both_paths() -> None:
    """The worker path's crop of an image without boxes (crop_boxless), as AffineParams, warps as the worker does."""
    image = _smooth_image()
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, affine_p=0.0, crop_boxless=True)
    worker = BoxTransform(SIZE, config, train=True, standardize=False)
    worker.pipeline.save_applied_params = True
    crops = set()
    for seed in range(10):
        worker.set_seed(seed)
        out = worker.pipeline(image=image, bboxes=np.zeros((0, 4), np.float32), box_labels=np.zeros(0, np.int64))
        ((_, drawn),) = out["applied_transforms"]
        params = AffineParams(crop=tuple(int(v) for v in drawn["crop_coords"]))
        crops.add(params.crop)
        theta = torch.from_numpy(grid_theta(params_matrix(params, SIZE), SIZE, params))[None]
        warped = warp_batch(torch.from_numpy(image.astype(np.int32)).to(torch.uint16)[None, None], theta)[0, 0]
        inner = (np.abs(warped.numpy() - out["image"].astype(np.float64)) / 65535.0)[2:-2, 2:-2]
        assert inner.mean() < 2e-3 and np.quantile(inner, 0.99) < 1e-2, (params, inner.mean())
    assert len(crops) == 10 and (0, 0, SIZE[1], SIZE[0]) not in crops


def _zoom(crop: tuple[int, int, int, int] | None) -> float:
    """How much a crop resized back to the image magnifies it (the square root of the areas' ratio)."""
    x0, y0, x1, y1 = crop if crop is not None else (0, 0, SIZE[1], SIZE[0])
    return float(np.sqrt(SIZE[0] * SIZE[1] / ((x1 - x0) * (y1 - y0))))


@pytest.mark.parametrize("boxless", [False, True])
def test_crop_boxless_zooms_an_image_without_boxes_as_one_with_a_small_box(boxless: bool) -> None:
    """By default only an image with a box is cropped (1.8x-2x median here, a No Finding image never): zoom told
    the label. crop_boxless gives a boxless image the zoom of an image with one small box, on both paths (medians of
    1,000 draws: 300 scatter by about 3% each)."""
    config = AugmentationConfig(hflip_p=0.0, crop_p=1.0, affine_p=0.0, crop_boxless=boxless)
    corners = np.random.default_rng(0).uniform([0, 0], [SIZE[1] - 2, SIZE[0] - 2], (1000, 2))
    small = [np.array([[x, y, x + 2, y + 2]], np.float32) for x, y in corners]
    none = np.zeros((0, 4), np.float32)
    worker, image = BoxTransform(SIZE, config, train=True, standardize=False), _smooth_image()
    worker.pipeline.save_applied_params = True

    def worker_zoom(seed: int, boxes: np.ndarray) -> float:
        worker.set_seed(seed)
        out = worker.pipeline(image=image, bboxes=boxes, box_labels=np.zeros(len(boxes), np.int64))
        ((_, drawn),) = out["applied_transforms"]
        return _zoom(tuple(int(v) for v in drawn["crop_coords"]))

    rng = np.random.default_rng(1)
    medians = {
        "worker box": np.median([worker_zoom(seed, boxes) for seed, boxes in enumerate(small)]),
        "worker none": np.median([worker_zoom(seed, none) for seed in range(1000)]),
        "device box": np.median([_zoom(sample_params(config, SIZE, boxes, rng).crop) for boxes in small]),
        "device none": np.median([_zoom(sample_params(config, SIZE, none, rng).crop) for _ in range(1000)]),
    }
    assert medians["worker box"] > 1.5 and medians["device box"] > 1.5, medians
    for path in ("worker", "device"):
        if boxless:
            assert abs(medians[f"{path} none"] / medians[f"{path} box"] - 1) < 0.1, medians
        else:
            assert medians[f"{path} none"] == 1.0, medians
