"""Training augmentation on the device (``augment_on: device``): one affine warp per image, batched.

The worker path (``transforms.BoxTransform``, albumentations) resamples every training image twice with cv2:
the box-safe crop resized back to the input size, then the shift/scale affine. Here the worker only draws the
same kind of parameters (horizontal flip, box-safe crop, shift/scale/rotation), composes them into ONE 3 x 3
matrix, moves the boxes through that matrix exactly (clipped, dropped when pushed off the image) and ships the
cache's uint16 pixels untouched with the matrix. ``warp_batch`` then resamples the whole batch in one
``F.affine_grid`` + ``F.grid_sample`` call on the device, right after the transfer and before standardization.

Coordinates are continuous pixel-edge coordinates (pixel ``i`` covers ``[i, i + 1)``, as xyxy boxes are), the
convention of cv2's resize and of albumentations' box matrices; ``grid_sample`` uses them with
``align_corners=False``. The draws follow albumentations 2's distributions (``RandomSizedBBoxSafeCrop``,
``Affine`` with independent x/y scale and whole-pixel translation), so both paths augment alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wsod_mammo.data.geometry import clip_boxes
from wsod_mammo.data.pixel_reads import PixelRef
from wsod_mammo.data.transforms import AugmentationConfig, standardize_batch, to_float, to_uint16


@dataclass(frozen=True)
class AffineParams:
    """One sample's draws: flip, crop ``(x0, y0, x1, y1)`` pixels (None: none), scale, shift (pixels), rotation."""

    flip: bool = False
    crop: tuple[int, int, int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    shift: tuple[int, int] = (0, 0)
    rotate: float = 0.0  # degrees


def _eroded_union(norm: np.ndarray, erosion: float) -> np.ndarray | None:
    """albumentations 2's ``union_of_bboxes`` on normalized boxes: one box as it is, several as their union shrunk by
    ``erosion / 2`` of its width and height on each side; None (draw as without boxes) at erosion 1 or when the
    shrunk union is empty."""
    if erosion >= 1.0:
        return None
    if len(norm) == 1:
        return norm[0]
    (x0, y0), (x1, y1) = norm[:, :2].min(axis=0), norm[:, 2:].max(axis=0)
    dx, dy = (x1 - x0) * erosion / 2, (y1 - y0) * erosion / 2
    union = np.array([x0 + dx, y0 + dy, x1 - dx, y1 - dy])
    return None if union[2] - union[0] < 1e-6 or union[3] - union[1] < 1e-6 else union


def _union_crop(
    boxes: np.ndarray, size: tuple[int, int], erosion: float, rng: np.random.Generator, boxless: bool = False
) -> tuple:
    """A random crop containing the (eroded) union of the boxes (albumentations' ``RandomSizedBBoxSafeCrop`` draw).

    ``boxless`` (``crop_boxless``): no boxes -> one zero-size box at a uniform point, drawn x then y before the
    crop's corners, as ``transforms.BoxlessCrop`` draws it."""
    height, width = size
    norm = boxes / np.array([width, height, width, height], np.float64)
    if boxless and not len(norm):
        point_x, point_y = rng.random(), rng.random()
        norm = np.array([[point_x, point_y, point_x, point_y]])
    union = _eroded_union(norm, erosion) if len(norm) else None
    if union is None:  # as albumentations: a crop of the image's aspect ratio, at least (1 - erosion) high
        low = int(height * (1.0 - erosion))
        crop_h = height if low >= height else max(1, int(rng.integers(low, height + 1)))  # never empty
        crop_w = max(1, int(crop_h * width / height))
        y0 = int((height - crop_h + 1) * rng.random())
        x0 = int((width - crop_w + 1) * rng.random())
        return x0, y0, x0 + crop_w, y0 + crop_h
    x_min, y_min = np.clip(union[0], 0, 1), np.clip(union[1], 0, 1)
    x_max, y_max = np.clip(union[2], x_min, 1), np.clip(union[3], y_min, 1)
    x0, y0 = int(x_min * rng.random() * width), int(y_min * rng.random() * height)
    x1 = int((x_max + (1 - x_max) * rng.random()) * width)
    y1 = int((y_max + (1 - y_max) * rng.random()) * height)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def sample_params(
    config: AugmentationConfig, size: tuple[int, int], boxes: np.ndarray, rng: np.random.Generator
) -> AffineParams:
    """Draw one training sample's augmentation; ``boxes (M, 4)`` xyxy pixels of the ``size = (H, W)`` image.

    Draw order: flip, crop or not, the crop (``_union_crop``), affine or not, shift x and y, scale x and y, rotation."""
    height, width = size
    flip = bool(rng.random() < config.hflip_p)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if flip:
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    cropped = rng.random() < config.crop_p
    crop = _union_crop(boxes, size, config.crop_erosion, rng, config.crop_boxless) if cropped else None
    if rng.random() >= config.affine_p:
        return AffineParams(flip, crop)
    shift_x, shift_y = rng.uniform(-config.shift, config.shift, 2)
    scale_x, scale_y = rng.uniform(config.scale_min, config.scale_max, 2)
    shift, scale = (int(shift_x * width), int(shift_y * height)), (float(scale_x), float(scale_y))
    return AffineParams(flip, crop, scale, shift, float(rng.uniform(-config.rotate, config.rotate)))


def params_matrix(params: AffineParams, size: tuple[int, int]) -> np.ndarray:
    """The ``(3, 3)`` float64 matrix taking input pixel-edge coordinates to output ones (flip, crop, affine)."""
    height, width = size
    matrix = np.eye(3)
    if params.flip:
        matrix = np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]]) @ matrix
    if params.crop is not None:
        x0, y0, x1, y1 = params.crop
        matrix = np.array([[width / (x1 - x0), 0, -x0 * width / (x1 - x0)],
                           [0, height / (y1 - y0), -y0 * height / (y1 - y0)], [0, 0, 1]]) @ matrix  # fmt: skip
    angle = np.deg2rad(params.rotate % 360)
    cos, sin = np.cos(angle), np.sin(angle)
    centre = np.array([[1.0, 0, width / 2], [0, 1, height / 2], [0, 0, 1]])
    shift = np.array([[1.0, 0, params.shift[0]], [0, 1, params.shift[1]], [0, 0, 1]])
    rotate_scale = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]) @ np.diag([*params.scale, 1.0])
    return centre @ shift @ rotate_scale @ np.linalg.inv(centre) @ matrix


def crop_window(params: AffineParams | None, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the input image that the output may show: the crop (drawn on the flipped image,
    mapped back here), else the whole image. The worker path's second warp sees zeros outside it."""
    height, width = size
    x0, y0, x1, y1 = params.crop if params is not None and params.crop is not None else (0, 0, width, height)
    if params is not None and params.flip:
        x0, x1 = width - x1, width - x0
    return x0, y0, x1, y1


def transform_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    params: AffineParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(M, 4)`` cut to ``params``' crop window (as albumentations' crop cuts them; with ``crop_erosion`` a
    crop may cut a box), through ``matrix`` (bounding box of the moved corners), clipped; boxes left with no area
    by the crop or pushed off the image dropped."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if params is not None and params.crop is not None:
        x0, y0, x1, y1 = crop_window(params, size)
        boxes = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1])
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, labels = boxes[inside], labels[inside]
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], axis=1)  # (M, 4, 2)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    out = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float32)
    out, keep = clip_boxes(out, size[0], size[1], min_size=1e-3)
    return out, labels[keep]


def grid_theta(matrix: np.ndarray, size: tuple[int, int], params: AffineParams | None = None) -> np.ndarray:
    """``(2, 5)`` float32: ``affine_grid``'s theta ``[:, :3]`` for ``matrix`` (output normalized coordinates ->
    input normalized ones) and ``[:, 3:]`` the window ``[[x0, x1], [y0, y1]]`` of input normalized coordinates
    the output may show: the crop (the worker path's second warp sees zeros outside it), else the whole image."""
    height, width = size
    to_norm = np.array([[2.0 / width, 0, -1], [0, 2.0 / height, -1], [0, 0, 1]])
    theta = (to_norm @ np.linalg.inv(matrix) @ np.linalg.inv(to_norm))[:2]
    x0, y0, x1, y1 = crop_window(params, size)
    window = np.array([[2 * x0 / width - 1, 2 * x1 / width - 1], [2 * y0 / height - 1, 2 * y1 / height - 1]])
    return np.concatenate([theta, window], axis=1).astype(np.float32)


def warp_padding(padding: Tensor, theta: Tensor) -> Tensor:
    """A ``(N, 1, H, W)`` bool padding mask through ``warp_batch``'s warp (nearest): bool, False where pushed in."""
    return warp_batch(padding, theta, mode="nearest") > 0.5


def warp_batch(images: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """Warp ``(N, C, H, W)`` images (any real dtype) by per-image ``theta (N, 2, 5)`` (``grid_theta``) in one call.

    ``mode``: ``bilinear`` (images) or ``nearest`` (masks); zeros outside the image and outside the crop window (as
    the worker path's constant border). Returns float32 on the images' device with no host read of a value (no
    synchronization added to a step).
    """
    x = to_float(images)
    theta = theta.to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(theta[:, :, :3], list(x.shape), align_corners=False)  # (N, H, W, 2)
    low, high = theta[:, None, None, :, 3], theta[:, None, None, :, 4]  # (N, 1, 1, 2)
    inside = ((grid >= low) & (grid <= high)).all(dim=-1, keepdim=True)
    warped = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return warped * inside.permute(0, 3, 1, 2).to(warped.dtype)


def device_transform(images: Tensor, theta: Tensor | None = None, padding: Tensor | None = None) -> Tensor:
    """The device half of the data path (``standardize_on: device``) as one function, so it can be compiled whole:
    warp by ``theta (N, 2, 5)`` when given (``augment_on: device``), the padding mask alike, then standardize
    each image (its padding left out of the statistics). Eager, this is about twenty full-resolution passes (the
    grid, the crop window test, the sampling, the statistics); compiled, inductor fuses them
    (``VinDrMammoDataModule(compile_device_transform=True)``)."""
    if theta is not None:
        images = warp_batch(images, theta)
        padding = None if padding is None else warp_padding(padding, theta)
    return standardize_batch(images, padding)


def compiled_device_transform() -> Callable[..., Tensor]:
    """``device_transform`` through ``torch.compile`` with dynamic shapes: a batch of another size (an epoch's last)
    reuses the compiled code instead of recompiling mid-epoch; one compilation per kind of call (with or without
    ``theta``, with or without padding)."""
    return torch.compile(device_transform, dynamic=True)


class DeviceAugmentTransform:
    """Worker half of ``augment_on: device``: ``(image (H, W), boxes, labels) -> (uint16 (1, H, W), boxes, labels,
    theta (2, 5))``. Draws are seeded by ``set_seed`` (per sample, from ``EpochShuffleSampler``)."""

    keeps_pixels = True  # the pixels leave as they came: ``pixel_reads: main`` may ship a PixelRef instead

    def __init__(self, input_size: tuple[int, int], config: AugmentationConfig | None = None) -> None:
        self.config = config or AugmentationConfig()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.rng = np.random.default_rng(self.config.seed)

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, box_labels: np.ndarray) -> tuple[Tensor, ...]:
        out = cast("dict[str, Tensor]", self.apply(image, boxes, box_labels))  # an ndarray image leaves a Tensor
        return out["image"], out["boxes"], out["box_labels"], out["theta"]

    def apply(
        self,
        image: np.ndarray | PixelRef,
        boxes: np.ndarray,
        box_labels: np.ndarray,
        padding: np.ndarray | None = None,
    ) -> dict[str, Tensor | PixelRef]:
        """``__call__`` as a dict (``image``, ``boxes``, ``box_labels``, ``theta``), plus the image's padding mask
        ``(H, W)`` bool, when given, as ``padding (1, H, W)`` bool, unwarped: the device warps it with ``theta``.
        A :class:`PixelRef` image is passed on unread (``pixel_reads: main``)."""
        params = sample_params(self.config, self.input_size, boxes, self.rng)
        matrix = params_matrix(params, self.input_size)
        boxes, box_labels = transform_boxes(boxes, box_labels, matrix, self.input_size, params)
        tensor: Tensor | PixelRef
        if isinstance(image, PixelRef):
            tensor = image
        else:  # a private copy of the read-only mmap
            tensor = torch.from_numpy(np.require(to_uint16(image), np.uint16, ["C", "W", "E"])).unsqueeze(0)
        theta = torch.from_numpy(grid_theta(matrix, self.input_size, params))
        sample: dict[str, Tensor | PixelRef] = {"image": tensor, "boxes": torch.from_numpy(boxes),
                                                "box_labels": torch.from_numpy(box_labels), "theta": theta}  # fmt: skip
        if padding is not None:
            sample["padding"] = torch.from_numpy(np.ascontiguousarray(padding)).unsqueeze(0)  # (1, H, W) bool
        return sample
