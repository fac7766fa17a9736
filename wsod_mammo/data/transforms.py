"""Box-aware augmentation (albumentations, ``pascal_voc`` boxes) and per-image standardization.

Train: horizontal flip, then a random box-safe crop resized back to the input size and a random
shift/scale (affine), as the study used; then per-image standardization. Eval: standardization only.
The crop keeps an image without boxes whole (as the study did, so only images with a box are magnified);
``crop_boxless`` crops it around a random point instead (``BoxlessCrop``).
Every option is a plain field of ``AugmentationConfig`` so LightningCLI YAML can set it; ``enabled: false``
switches augmentation off (train then equals eval).

Augmentation runs on the cache's uint16 pixels (cv2 warps and resizes them natively, faster than float32).
Standardization runs in the worker (``standardize``) or, with ``standardize=False``, on the device after the
batch is transferred (``standardize_batch``): the worker then skips three passes over the image and ships
half the bytes (uint16) through pinned memory to the GPU.

Padding: a DICOM's Pixel Padding Value pixels (``DicomInfo.padding``) are background, not anatomy. Where an image
has them, a bool mask travels with it (flipped, cropped, resized and warped like the image, nearest) and the
standardization takes each image's mean and std over the non-padding pixels only, then applies them to every pixel;
so a padded band does not change how the breast is standardized. Pixels that a resize or warp pushes in from
outside the image are not padding (they count, as they did before masks existed). An image without padding has no
mask and is standardized exactly as before, bit for bit.

Note on orientation: the loader flips right breasts so that every chest wall is on the left; the
horizontal-flip augmentation (``hflip_p``) deliberately breaks that for a fraction of training images,
as the study did. Set ``hflip_p: 0`` to keep the orientation fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import albumentations as A
import albumentations.augmentations.crops.functional as fcrops
import cv2
import numpy as np
import torch
from torch import Tensor

from wsod_mammo.data.pixel_reads import PixelRef


@dataclass
class AugmentationConfig:
    """Training augmentation. Fractions are of the image size; probabilities in [0, 1]."""

    enabled: bool = True
    hflip_p: float = 0.5
    crop_p: float = 0.5  # random crop that keeps every box, resized back to the input size
    crop_erosion: float = 0.0  # albumentations' erosion_rate of the box-safe crop
    crop_boxless: bool = False  # crop a boxless image around a random point, as around a small box (BoxlessCrop)
    affine_p: float = 0.5
    shift: float = 0.1  # translation up to this fraction of the size, each axis
    scale_min: float = 0.9
    scale_max: float = 1.1
    rotate: float = 0.0  # degrees either way
    seed: int | None = None  # the draws' seed (each epoch's, each sample's from it); None: data.seed's

    def __post_init__(self) -> None:
        """A value albumentations or the device path would take without complaint and misuse (a probability of 2,
        a scale range upside down) is refused here, naming the option."""
        bounds = {"hflip_p": "a probability in [0, 1]", "crop_p": "a probability in [0, 1]",
                  "affine_p": "a probability in [0, 1]", "crop_erosion": "a fraction in [0, 1]"}  # fmt: skip
        for name, expected in bounds.items():
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"data.augmentation.{name}: expected {expected}, found {getattr(self, name)}")
        if not isinstance(self.crop_boxless, bool):
            raise ValueError(f"data.augmentation.crop_boxless: expected true or false, found {self.crop_boxless!r}")
        if not 0.0 <= self.shift < 1.0:
            raise ValueError(f"data.augmentation.shift: expected a fraction of the size in [0, 1), found {self.shift}")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ValueError(
                "data.augmentation.scale_min, scale_max: expected 0 < scale_min <= scale_max, found "
                f"{self.scale_min}, {self.scale_max}"
            )
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"data.augmentation.rotate: expected degrees in [0, 180], found {self.rotate}")


def standardize(image: np.ndarray, padding: np.ndarray | None = None, eps: float = 1e-6) -> torch.Tensor:
    """``(H, W)`` image (any real dtype) -> ``(1, H, W)`` float32 tensor with zero mean and unit std.

    ``padding`` ``(H, W)`` bool (True: DICOM padding) leaves those pixels out of the mean and std, which are then
    applied to every pixel (so the non-padding pixels get mean 0 and std 1). None, or a mask with no True pixel or
    nothing but True, standardizes over all pixels. A constant image gives zeros. One new float32 buffer and three
    passes (mean, centre, BLAS dot for the variance), several times faster than ``torch.std_mean`` on one worker
    thread; a uint16 cache image is standardized as is (the result does not depend on its scale).
    """
    image = np.asarray(image)
    if padding is not None and padding.any() and not padding.all():
        return _standardize_masked(image, padding, eps)
    centred = np.subtract(image, image.mean(dtype=np.float64), dtype=np.float32)
    flat = centred.reshape(-1)
    std = float(np.sqrt(max(float(np.dot(flat, flat)), 0.0) / max(flat.size - 1, 1)))
    centred *= np.float32(1.0 / (std + eps))
    return torch.from_numpy(centred).unsqueeze(0)  # (1, H, W)


def _standardize_masked(image: np.ndarray, padding: np.ndarray, eps: float) -> torch.Tensor:
    """``standardize`` with the statistics of the non-padding pixels (a float32 copy of those only)."""
    valid = ~padding
    mean = float(image.mean(where=valid, dtype=np.float64))
    kept = np.subtract(image[valid], mean, dtype=np.float32)
    std = float(np.sqrt(max(float(np.dot(kept, kept)), 0.0) / max(kept.size - 1, 1)))
    del kept
    centred = np.subtract(image, mean, dtype=np.float32)
    centred *= np.float32(1.0 / (std + eps))
    return torch.from_numpy(centred).unsqueeze(0)  # (1, H, W)


def stack_padding(masks: Sequence[np.ndarray | Tensor | None]) -> Tensor | None:
    """Per-image padding masks (``(H, W)`` or ``(1, H, W)`` bool, None for an image without padding) -> one
    ``(N, 1, H, W)`` bool batch for ``standardize_batch`` (all False where an image has none), or None when no
    image has padding, so batches without padding keep the unmasked path."""
    if all(m is None for m in masks):
        return None
    tensors = [m if m is None or isinstance(m, Tensor) else torch.from_numpy(m) for m in masks]
    shape = next(t for t in tensors if t is not None).shape[-2:]
    return torch.stack([torch.zeros(shape, dtype=torch.bool) if t is None else t.reshape(shape) for t in tensors])[
        :, None
    ]


def to_float(images: Tensor) -> Tensor:
    """Any real dtype -> float32 with the same values (uint16 via int16, whose conversions every backend has)."""
    if images.dtype == torch.uint16:
        x = images.view(torch.int16).to(torch.float32)
        return torch.where(x < 0, x + 65536.0, x)  # exact: int16 reads v >= 32768 as v - 65536
    return images.to(torch.float32)


def standardize_batch(images: Tensor, padding: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """``(N, 1, H, W)`` images of any real dtype -> float32, each standardized as ``standardize`` does.

    ``padding`` ``(N, 1, H, W)`` bool (True: DICOM padding) or None: an image with padding (and some non-padding)
    takes its mean and std over its non-padding pixels; every other image of the batch gets exactly what it would
    get without a mask. Runs on the images' own device with no host read of a value, so it adds no
    synchronization to a step.
    """
    x = to_float(images)
    dims = tuple(range(1, x.dim()))
    count = max(x[0].numel() - 1, 1)
    if padding is None:
        centred = x - x.mean(dim=dims, keepdim=True)
        std = (centred.square().sum(dim=dims, keepdim=True) / count).sqrt()
        return centred / (std + eps)
    keep = (~padding.to(device=x.device, dtype=torch.bool)).to(torch.float32)  # (N, 1, H, W), 1: counts
    kept = keep.sum(dim=dims, keepdim=True)  # (N, 1, 1, 1)
    masked = (kept > 0) & (kept < x[0].numel())  # the images whose statistics leave padding out
    mean_kept = (x * keep).sum(dim=dims, keepdim=True) / kept.clamp(min=1)
    centred = x - torch.where(masked, mean_kept, x.mean(dim=dims, keepdim=True))
    square = centred.square()
    variance_kept = (square * keep).sum(dim=dims, keepdim=True) / (kept - 1).clamp(min=1)
    variance = torch.where(masked, variance_kept, square.sum(dim=dims, keepdim=True) / count)
    return centred / (variance.sqrt() + eps)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] -> uint16 (the cache's quantization); a uint16 image is returned as it is."""
    if image.dtype == np.uint16:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


class BoxTransform:
    """Callable ``(image (H, W), boxes (M, 4), box_labels (M,)) -> (image (1, H, W) tensor, boxes, labels)``.

    The image is uint16 (the cache) or float in [0, 1] (a decoded DICOM). The output image is float32
    standardized, or with ``standardize=False`` uint16 for ``standardize_batch`` to finish on the device.
    Boxes are xyxy pixels of the (already input-sized) image; they are clipped to it, and a box pushed
    entirely off the image is dropped with its label.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        config: AugmentationConfig | None = None,
        train: bool = False,
        standardize: bool = True,
    ):
        self.config = config or AugmentationConfig()
        self.train = train and self.config.enabled
        self.standardize = standardize
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.pipeline = _build(self.input_size, self.config) if self.train else None

    def set_seed(self, seed: int) -> None:
        """Reseed the augmentation (per sample, from ``EpochShuffleSampler``'s seeds); see ``seed_pipeline``."""
        if self.pipeline is not None:
            seed_pipeline(self.pipeline, seed)

    @property
    def keeps_pixels(self) -> bool:
        """No augmentation and no standardization: the pixels leave as they came (``pixel_reads: main``)."""
        return self.pipeline is None and not self.standardize

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, box_labels: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = cast("dict[str, torch.Tensor]", self.apply(image, boxes, box_labels))  # an ndarray image leaves a Tensor
        return out["image"], out["boxes"], out["box_labels"]

    def apply(
        self,
        image: np.ndarray | PixelRef,
        boxes: np.ndarray,
        box_labels: np.ndarray,
        padding: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor | PixelRef]:
        """``__call__`` with the image's padding mask ``(H, W)`` bool (or None): the mask is augmented with the
        image (nearest; pixels pushed in are not padding) and either used by ``standardize`` or, with
        ``standardize=False``, returned as ``padding (1, H, W)`` bool for ``standardize_batch``. Returns a dict
        with ``image``, ``boxes``, ``box_labels`` and, only for a mask that still has padding, ``padding``.
        A :class:`PixelRef` image (only where ``keeps_pixels``) is passed on unread."""
        if isinstance(image, PixelRef) and not self.keeps_pixels:
            raise ValueError(f"{image.path}: a PixelRef reaches a transform that changes pixels (pixel_reads: main "
                             "needs standardize_on: device and, for training, augment_on: device)")  # fmt: skip
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        box_labels = np.asarray(box_labels, np.int64).reshape(-1)
        if self.pipeline is not None:
            masks = {} if padding is None else {"mask": padding.view(np.uint8)}  # cv2 warps uint8, not bool
            out = self.pipeline(image=image, bboxes=boxes, box_labels=box_labels, **masks)
            image = out["image"]
            padding = None if padding is None else out["mask"].astype(bool)
            boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
            box_labels = np.asarray(out["box_labels"], np.int64).reshape(-1)
        padding = padding if padding is not None and padding.any() else None
        tensor: torch.Tensor | PixelRef
        if isinstance(image, PixelRef):
            tensor = image
        elif self.standardize:
            tensor = standardize(image, padding)
        else:  # a private, writable, contiguous copy (a memory-mapped cache image is read-only)
            tensor = torch.from_numpy(np.require(to_uint16(image), np.uint16, ["C", "W", "E"])).unsqueeze(0)
        sample: dict[str, torch.Tensor | PixelRef] = {
            "image": tensor,
            "boxes": torch.from_numpy(boxes),
            "box_labels": torch.from_numpy(box_labels),
        }
        if padding is not None and not self.standardize:
            sample["padding"] = torch.from_numpy(np.ascontiguousarray(padding)).unsqueeze(0)  # (1, H, W) bool
        return sample


def _build(input_size: tuple[int, int], cfg: AugmentationConfig) -> A.Compose:
    height, width = input_size
    steps = [
        A.HorizontalFlip(p=cfg.hflip_p),
        BoxlessCrop(
            height=height,
            width=width,
            erosion_rate=cfg.crop_erosion,
            p=cfg.crop_p,
            mask_interpolation=cv2.INTER_NEAREST_EXACT,  # pixel centres, as the device path (INTER_NEAREST floors)
        ).with_boxless(cfg.crop_boxless),  # fmt: skip
        A.Affine(
            translate_percent={"x": (-cfg.shift, cfg.shift), "y": (-cfg.shift, cfg.shift)},
            scale=(cfg.scale_min, cfg.scale_max),
            rotate=(-cfg.rotate, cfg.rotate),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=cfg.affine_p,
        ),
    ]
    compose = A.Compose(steps, bbox_params=box_params())
    seed_pipeline(compose, cfg.seed)
    return compose


class BoxlessCrop(A.RandomSizedBBoxSafeCrop):
    """albumentations' box-safe crop that, with ``boxless`` on, crops an image without boxes as if it held one
    zero-size box at a point drawn uniformly over the image.

    Without boxes the library's crop keeps the whole image (at ``erosion_rate`` 0), so only images with a box were
    magnified: zoom and stretch told a Mass image from a No Finding one. Draw order (the device path's
    ``_union_crop`` follows it): the point's x, its y, then the library's x0, y0, x1, y1 around it. The virtual box
    only places the crop: no box is added to the sample. ``boxless`` off: the library's draws, draw for draw (its
    crop is never empty, see ``_get_coords_no_bbox``).
    """

    boxless = False

    def with_boxless(self, boxless: bool) -> BoxlessCrop:
        self.boxless = boxless
        return self

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, tuple[int, int, int, int]]:
        if not self.boxless or len(data["bboxes"]):
            return super().get_params_dependent_on_data(params, data)
        point_x, point_y = self.py_random.random(), self.py_random.random()
        virtual = np.array([[point_x, point_y, point_x, point_y]])  # normalized, as the library holds boxes
        x0, y0, x1, y1 = super().get_params_dependent_on_data(params, {**data, "bboxes": virtual})["crop_coords"]
        return {"crop_coords": (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))}  # never empty, as the device path

    def _get_coords_no_bbox(self, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """The library's crop of the image's aspect ratio (no union of boxes: ``erosion_rate`` 1, or no boxes), at
        least one pixel each way as the device path's: near erosion 1 the library drew 0 rows (or fewer columns
        than 1) and its crop raised (13 of 1,000 images of 128 x 80 at erosion 1). Same draws otherwise."""
        height, width = image_shape
        low = int(height * (1.0 - self.erosion_rate))
        crop_height = height if low >= height else max(1, self.py_random.randint(low, height))
        crop_width = max(1, int(crop_height * width / height))
        y_start, x_start = self.py_random.random(), self.py_random.random()
        return fcrops.get_crop_coords(image_shape, (crop_height, crop_width), y_start, x_start)


def box_params() -> A.BboxParams:
    """How the worker path's steps carry boxes: xyxy pixels, clipped to the image, and a box left without area
    dropped after each step with the device path's minimum size (``transform_boxes``): a box the crop cuts away is
    clipped to zero height, and a rotation used to give it area again (a box on no tissue, with its label)."""
    return A.BboxParams(format="pascal_voc", label_fields=["box_labels"], clip=True, min_visibility=0.0,
                        min_width=1e-3, min_height=1e-3)  # fmt: skip


def seed_pipeline(compose: A.Compose, seed: int | None) -> None:
    """Seed an albumentations pipeline with one independent stream per step.

    ``Compose.set_random_seed`` gives every step the same seed, so each step drew the same numbers: with a reseed
    per sample, the flip, the crop and the affine all fired or none did (half the images unaugmented), and the
    crop's corner moved with the affine's shift. Each step now gets its own child of ``SeedSequence(seed)``.
    """
    compose.set_random_seed(seed)  # the Compose's own streams
    if seed is None:
        return
    streams = np.random.SeedSequence(seed).spawn(len(compose.transforms))
    for step, stream in zip(compose.transforms, streams, strict=True):
        step.set_random_seed(int(stream.generate_state(1)[0]))
