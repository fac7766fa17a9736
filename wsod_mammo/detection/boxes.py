"""Saliency map -> scored candidate boxes, and box IoU.

Boxes are ``(x1, y1, x2, y2)`` float pixels in continuous coordinates (area = (x2 - x1) * (y2 - y1)); a box
built from pixel columns ``c0..c1`` (inclusive) has ``x1 = c0, x2 = c1 + 1``.

Which pieces are the libraries' and which are hand-written, each decided by a parity test
(``tests/test_boxes.py``: same boxes and values on random maps, rings, holes, nested islands, degenerate boxes,
both placements) and a side-by-side run of ``tests/benchmarks/bench_boxes.py`` (2-core CPU, torch 2.14.1,
OpenCV 5.0, 2026-11-26, machine shared with other jobs):

- Box IoU is ``torchvision.ops.box_iou`` (zero-area pairs give 0, not NaN): 1.4-1.8x the former hand-written
  formula's speed at 5 x 1, 50 x 2 and 2000 x 500 boxes.
- Connected components stay OpenCV's contour tree (:func:`_label`): on the same 2944 x 1920 frames and 5
  thresholds it is 12.5x faster (18 against 230 ms per frame and threshold) than
  ``cv2.connectedComponentsWithStats(connectivity=8)`` with a masked ``minMaxLoc`` per component for the peaks,
  with identical boxes and peaks (computing the stats alone costs ~28 ms per frame, 20x ``findContours``).
- Bilinear upsampling stays hand-written (matrix products with the weights of ``F.interpolate(...,
  mode="bilinear", align_corners=False)``, equal to it and to ``cv2.resize`` within 1.2e-7): it places the map
  anywhere (``cell0_center``, GMIC's receptive fields: cell 0 on pixel 2.0, not 31.5), which neither library
  can, and it is evaluated only on the rows and columns that can reach the lowest threshold, since a
  full-resolution pixel is a convex combination of at most four map cells and reaches a threshold only if one
  of them does. Map -> boxes at 5 thresholds: 182 ms per map against 273 ms for ``cv2.resize`` of the whole
  frame and the same components (1.5x), although ``cv2.resize`` alone upsamples a whole frame faster than the
  matrix products do (9 against 151 ms under load; 2.1 against 6.3 ms on a quieter machine).

The map is min-max normalized at its own resolution (46 x 30 for the paper setting) by the rule that overlays
share (:func:`wsod_mammo.saliency.base.min_max_normalize`): boxes do not depend on the map's scale.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple, overload

import cv2
import numpy as np
import torch
import torchvision
from torch import Tensor

from wsod_mammo.saliency.base import min_max_normalize

Region = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels of the input frame
#: The binarization threshold of the normalized map for a method validation chose none for.
DEFAULT_THRESHOLD = 0.5


class Detections(NamedTuple):
    """Scored candidate boxes of one image at one binarization threshold.

    ``boxes (B, 4)`` float32 xyxy pixels of the input frame; ``scores (B,)`` float32, in [0, 1] when the map
    is normalized and the probability is in [0, 1]. Unpacks as ``boxes, scores = detections``.
    """

    boxes: Tensor
    scores: Tensor


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes ``a (A, 4)`` and ``b (B, 4)`` -> ``(A, B)`` float32; empty inputs give empty matrices.

    ``torchvision.ops.box_iou``, with the one case it leaves undefined made explicit: a pair whose union has no
    area (two zero-area boxes) has IoU 0, not NaN.
    """
    if a.ndim != 2 or a.shape[-1] != 4 or b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(
            f"box_iou: expected boxes of shape (A, 4) and (B, 4), found {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return torch.nan_to_num(torchvision.ops.box_iou(a.float(), b.float()), nan=0.0)


class BilinearWeights(NamedTuple):
    """Bilinear weights ``(out, in)`` and, per input cell, the output range ``[start, stop)`` drawing on it."""

    matrix: Tensor
    start: list[int]
    stop: list[int]


@functools.lru_cache(maxsize=16)
def bilinear_weights(in_size: int, out_size: int, device: str, cell0_center: float | None = None) -> BilinearWeights:
    """Bilinear weights and their reach per input cell.

    ``cell0_center`` is the output pixel (index) on which input cell 0 is centred; cell ``k`` then sits at
    ``cell0_center + k * out_size / in_size``. ``None`` is the resize rule of ``F.interpolate(align_corners=False)``
    and ``cv2.resize`` (cell 0 at ``(step - 1) / 2``), which pytorch-grad-cam and the study used.
    """
    step = out_size / in_size
    center = (step - 1) / 2 if cell0_center is None else cell0_center
    src = ((torch.arange(out_size, dtype=torch.float64) - center) / step).clamp(min=0)  # (out,)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    w_hi = (src - lo).clamp(0, 1)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, lo), 1 - w_hi, accumulate=True)
    matrix.index_put_((rows, hi), w_hi, accumulate=True)
    matrix = matrix.float()
    touched = [torch.nonzero(matrix[:, cell] > 0).flatten() for cell in range(in_size)]
    start = [int(t[0]) if t.numel() else out_size for t in touched]
    stop = [int(t[-1]) + 1 if t.numel() else 0 for t in touched]
    return BilinearWeights(matrix.to(device), start, stop)


def _normalized(maps: Tensor, normalize: bool) -> tuple[Tensor, Tensor]:
    """Per-map min-max normalization ``(N, h, w) -> (N, h, w)`` and a ``(N,)`` mask of maps that can give boxes.

    Without ``normalize`` the values are taken as they are; a non-finite map still gives none.
    """
    if normalize:
        return min_max_normalize(maps)
    finite = torch.isfinite(maps).flatten(1).all(1)  # (N,)
    return torch.where(finite[:, None, None], maps, torch.zeros_like(maps)), finite


def _children(links: np.ndarray, parent: int) -> list[int]:
    """Indices of the direct children of contour ``parent`` in an OpenCV ``RETR_TREE`` hierarchy ``(K, 4)``."""
    found, child = [], int(links[parent, 2])
    while child >= 0:
        found.append(child)
        child = int(links[child, 0])
    return found


def _label(crop: np.ndarray, threshold: float, offset: tuple[int, int], probability: float) -> Detections:
    """8-connected components of ``crop >= threshold`` -> boxes shifted by ``offset (x, y)`` and peak scores.

    OpenCV's border following (``findContours``, foreground 8-connected) gives a tree: outer boundaries of
    components, their holes, islands inside the holes, and so on. A component is an outer boundary (even depth);
    its pixels are its filled boundary minus the filled islands of its holes, within the mask. Kept over
    ``cv2.connectedComponentsWithStats`` (same boxes and peaks) because it is 12.5x faster here (module docstring).
    """
    mask = (crop >= threshold).astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return _empty()
    links = hierarchy[0]  # (K, 4): next, previous, first child, parent
    outer = [k for k in range(len(contours)) if links[k, 3] < 0]
    boxes, scores = [], []
    while outer:
        k = outer.pop()
        x, y, w, h = (int(v) for v in cv2.boundingRect(contours[k]))
        region = np.zeros((h, w), np.uint8)
        cv2.drawContours(region, contours, k, 1, thickness=cv2.FILLED, offset=(-x, -y))
        for island in (i for hole in _children(links, k) for i in _children(links, hole)):
            cv2.drawContours(region, contours, island, 0, thickness=cv2.FILLED, offset=(-x, -y))
            outer.append(island)
        inside = (region > 0) & (mask[y : y + h, x : x + w] > 0)
        scores.append(float(crop[y : y + h, x : x + w].max(where=inside, initial=-np.inf)) * probability)
        boxes.append((x + offset[0], y + offset[1], x + w + offset[0], y + h + offset[1]))
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores, dtype=torch.float32)
    )


def _empty() -> Detections:
    return Detections(torch.zeros(0, 4), torch.zeros(0))


class _Crop(NamedTuple):
    """The upsampled part of a normalized map that its cells at or above the lowest threshold reach: ``pixels
    (Hc, Wc)`` (-inf outside the image's region) whose top-left pixel is ``(x, y)`` of the frame, and those cells."""

    pixels: np.ndarray
    x: int
    y: int
    cells: Tensor  # (K, 2) rows, columns
    rows: BilinearWeights
    cols: BilinearWeights


def _reachable_crop(
    normalized: Tensor,
    image_size: tuple[int, int],
    lowest: float,
    cell0_center: float | None = None,
    region: Region | None = None,
) -> _Crop | None:
    """One upsample of the rows and columns of ``normalized (h, w)`` that can reach ``lowest``; None where no cell
    does."""
    h, w = normalized.shape
    candidates = torch.nonzero(normalized >= lowest)  # (K, 2) cells (row, col)
    if candidates.numel() == 0:
        return None
    device = str(normalized.device)
    rows = bilinear_weights(h, image_size[0], device, cell0_center)  # (H, h) weights
    cols = bilinear_weights(w, image_size[1], device, cell0_center)  # (W, w) weights
    y_start, y_stop, x_start, x_stop = _crop_of(candidates, rows, cols)
    crop = rows.matrix[y_start:y_stop] @ normalized.float() @ cols.matrix[x_start:x_stop].T  # (Hc, Wc)
    crop_np = crop.cpu().numpy()
    if region is not None:
        _exclude_outside(crop_np, region, (x_start, y_start))
    return _Crop(crop_np, x_start, y_start, candidates, rows, cols)


def _image_boxes(
    normalized: Tensor,
    image_size: tuple[int, int],
    thresholds: list[float],
    probability: float,
    cell0_center: float | None = None,
    region: Region | None = None,
) -> list[Detections]:
    """Boxes of one normalized map ``(h, w)`` at every threshold (one upsample of the reachable crop); pixels
    outside ``region`` are below every threshold."""
    crop = _reachable_crop(normalized, image_size, min(thresholds), cell0_center, region)
    if crop is None:
        return [_empty() for _ in thresholds]
    candidates = crop.cells
    results = []
    for t in thresholds:  # a higher threshold labels only its own (smaller) part of the crop
        cells = candidates[normalized[candidates[:, 0], candidates[:, 1]] >= t]  # (K_t, 2)
        if cells.numel() == 0:
            results.append(_empty())
            continue
        y0, y1, x0, x1 = _crop_of(cells, crop.rows, crop.cols)
        sub = crop.pixels[y0 - crop.y : y1 - crop.y, x0 - crop.x : x1 - crop.x]
        results.append(_label(sub, t, (x0, y0), probability))
    return results


def _exclude_outside(crop: np.ndarray, region: Region, origin: tuple[int, int]) -> None:
    """Put the pixels of ``crop`` (whose top-left pixel is ``origin (x, y)`` of the frame) outside ``region`` below
    every threshold (-inf)."""
    x0, y0, x1, y1 = (v - o for v, o in zip(region, origin * 2, strict=True))
    crop[: max(y0, 0)] = crop[max(y1, 0) :] = -np.inf
    crop[:, : max(x0, 0)] = crop[:, max(x1, 0) :] = -np.inf


def _crop_of(cells: Tensor, rows: BilinearWeights, cols: BilinearWeights) -> tuple[int, int, int, int]:
    """Input-frame rows ``[y0, y1)`` and columns ``[x0, x1)`` drawing on the bounding box of ``cells (K, 2)``."""
    # amin/amax, not min(0)/max(0): with indices, torch 2.14 takes ~10 ms for this (K, 2) int64 reduction on CPU
    (r0, c0), (r1, c1) = cells.amin(0).tolist(), cells.amax(0).tolist()
    y0, y1 = min(rows.start[r0 : r1 + 1]), max(rows.stop[r0 : r1 + 1])
    x0, x1 = min(cols.start[c0 : c1 + 1]), max(cols.stop[c0 : c1 + 1])
    return y0, y1, x0, x1


@overload
def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: float,
    probabilities: Tensor | None = None,
    normalize: bool = True,
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
) -> list[Detections]: ...


@overload
def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: Sequence[float],
    probabilities: Tensor | None = None,
    normalize: bool = True,
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
) -> list[list[Detections]]: ...


def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: float | Sequence[float],
    probabilities: Tensor | None = None,
    normalize: bool = True,
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
) -> list[Detections] | list[list[Detections]]:
    """Candidate boxes from saliency maps ``(N, h, w)`` (one class), in the input frame ``image_size = (H, W)``.

    Per image: min-max normalize the map (``normalize``; scale-free, only a constant or a non-finite map, or a
    non-finite probability, gives no boxes), upsample bilinearly to
    ``(H, W)``, keep pixels ``>= threshold``, and make one box per 8-connected component, scored by the peak
    normalized value inside it times the image's ``probabilities[i]`` (1 when None). ``cell0_center`` places the
    map on the image: the pixel on which map cell 0 is centred (GMIC's receptive fields: ``GMIC.map_cell0_center``);
    ``None`` is plain resizing (cell 0 at ``(step - 1) / 2``), as pytorch-grad-cam and the study did.
    ``regions``: per image the ``(x0, y0, x1, y1)`` pixels of the input frame that hold the image (``Geometry.
    content_box``; None: all): ``resize="fit"`` and ``"native"`` pad the image, and a box in the padding would lie
    outside it.

    Returns ``list[Detections]`` (one per image) for a single float threshold, and ``list[list[Detections]]``
    indexed ``[image][threshold index]`` for a sequence of thresholds. Boxes and scores are float32 on the CPU.
    """
    single = isinstance(threshold, (int, float))
    thresholds = [float(threshold)] if isinstance(threshold, (int, float)) else [float(t) for t in threshold]
    maps_in = _Inputs.of("saliency_to_boxes", maps, image_size, thresholds, probabilities, normalize, regions)
    with torch.autocast(maps.device.type, enabled=False):  # a caller's autocast would upsample in bf16/fp16
        per_image = [
            _image_boxes(maps_in.normalized[i], maps_in.size, thresholds, p, cell0_center, maps_in.regions[i])
            if usable
            else [_empty() for _ in thresholds]
            for i, (p, usable) in enumerate(zip(maps_in.probabilities, maps_in.usable, strict=True))
        ]
    return [dets[0] for dets in per_image] if single else per_image


def highest_box_scores(
    maps: Tensor,
    image_size: tuple[int, int],
    thresholds: Sequence[float],
    probabilities: Tensor | None = None,
    normalize: bool = True,
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
) -> Tensor:
    """``(N, T)`` float64: the highest score of a box :func:`saliency_to_boxes` makes at each threshold, ``-inf``
    where it makes none, without labeling the boxes (the rating wAFROC reads from a normal image).

    The highest box's peak is the highest pixel of the map at or above the threshold, so one upsample of the
    reachable crop serves every threshold; the labeling (the boxes' connected components) is what this skips.
    """
    thresholds = [float(t) for t in thresholds]
    maps_in = _Inputs.of("highest_box_scores", maps, image_size, thresholds, probabilities, normalize, regions)
    lowest = min(thresholds)
    scores = torch.full((maps.shape[0], len(thresholds)), -math.inf, dtype=torch.float64)
    with torch.autocast(maps.device.type, enabled=False):
        for i, (probability, usable) in enumerate(zip(maps_in.probabilities, maps_in.usable, strict=True)):
            crop = None if not usable else _reachable_crop(maps_in.normalized[i], maps_in.size, lowest,
                                                           cell0_center, maps_in.regions[i])  # fmt: skip
            if crop is None:
                continue
            peak = crop.pixels.max()
            # as _label scores a box: its float32 peak times the probability, kept as float32
            score = float(np.float32(float(peak) * probability))
            scores[i] = torch.tensor([score if peak >= t else -math.inf for t in thresholds], dtype=torch.float64)
    return scores


class _Inputs(NamedTuple):
    """The checked inputs of :func:`saliency_to_boxes` and :func:`highest_box_scores`: the normalized maps, each
    map's probability and whether it can give boxes, the frame size and each map's region."""

    normalized: Tensor
    probabilities: list[float]
    usable: list[bool]
    size: tuple[int, int]
    regions: list[Region | None]

    @classmethod
    def of(
        cls,
        caller: str,
        maps: Tensor,
        image_size: tuple[int, int],
        thresholds: list[float],
        probabilities: Tensor | None,
        normalize: bool,
        regions: Sequence[Region | None] | None,
    ) -> _Inputs:
        if maps.ndim != 3:
            raise ValueError(f"{caller}: expected maps of shape (N, h, w), found {tuple(maps.shape)}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"{caller}: expected image_size (H, W) of positive ints, found {image_size}")
        if not thresholds:
            raise ValueError(f"{caller}: expected at least one threshold, found an empty sequence")
        n = maps.shape[0]
        if probabilities is not None and probabilities.numel() != n:
            raise ValueError(f"{caller}: expected {n} probabilities (one per map), found {probabilities.numel()}")
        probs = [1.0] * n if probabilities is None else probabilities.detach().float().flatten().cpu().tolist()
        if regions is not None and len(regions) != n:
            raise ValueError(f"{caller}: expected {n} regions (one per map), found {len(regions)}")
        normalized, usable = _normalized(maps.detach().float(), normalize)  # (N, h, w), (N,)
        # a non-finite probability (a diverged model) gives no boxes, as a non-finite map does: a NaN score would
        # sort above every other box of the FROC sweep
        usable_list = [u and math.isfinite(p) for u, p in zip(usable.cpu().tolist(), probs, strict=True)]
        size = (int(image_size[0]), int(image_size[1]))
        return cls(normalized, probs, usable_list, size, [None] * n if regions is None else list(regions))


def upsample_map(saliency: Tensor, image_size: tuple[int, int], cell0_center: float | None = None) -> Tensor:
    """One map ``(h, w)`` -> ``(H, W)`` with the same bilinear placement as :func:`saliency_to_boxes` (for display)."""
    device = str(saliency.device)
    rows = bilinear_weights(saliency.shape[0], int(image_size[0]), device, cell0_center).matrix  # (H, h)
    cols = bilinear_weights(saliency.shape[1], int(image_size[1]), device, cell0_center).matrix  # (W, w)
    with torch.autocast(saliency.device.type, enabled=False):  # float32 under a caller's autocast too
        return rows @ saliency.float() @ cols.T
