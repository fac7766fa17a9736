"""Saliency map -> scored candidate boxes, and box IoU.

Boxes are ``(x1, y1, x2, y2)`` float pixels in continuous coordinates (area = (x2 - x1) * (y2 - y1)); a box
built from pixel columns ``c0..c1`` (inclusive) has ``x1 = c0, x2 = c1 + 1``.

Cost of :func:`saliency_to_boxes`: the map is min-max normalized at its own resolution (46 x 30 for the paper
setting), then only the part of the input frame that can reach the lowest threshold is upsampled and labelled.
Bilinear upsampling is a convex combination of at most four map cells, so a full-resolution pixel reaches a
threshold only if one of the cells it is built from does; the upsample is therefore evaluated (as two small
matrix products equal to ``F.interpolate(..., mode="bilinear", align_corners=False)``) on the rows and columns
that draw on the bounding box of the cells at or above the lowest threshold. The float crop is moved to the CPU
once per image and labelled once per threshold with OpenCV (8-connected). A blob-shaped map at 2944 x 1920
costs about 1-3 ms per image and threshold on one CPU core; the worst case (a low threshold on a map that is
high everywhere) is the full 5.6 M-pixel frame, about 30-50 ms per threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple, overload

import cv2
import numpy as np
import torch
from torch import Tensor


class Detections(NamedTuple):
    """Scored candidate boxes of one image at one binarization threshold.

    ``boxes (B, 4)`` float32 xyxy pixels of the input frame; ``scores (B,)`` float32, in [0, 1] when the map
    is normalized and the probability is in [0, 1]. Unpacks as ``boxes, scores = detections``.
    """

    boxes: Tensor
    scores: Tensor


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes ``a (A, 4)`` and ``b (B, 4)`` -> ``(A, B)``; empty inputs give empty matrices.

    Degenerate boxes (zero area) have IoU 0 with everything (no division by zero).
    """
    if a.ndim != 2 or a.shape[-1] != 4 or b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(
            f"box_iou: expected boxes of shape (A, 4) and (B, 4), found {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.float(), b.float()
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)  # (A,)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # (B,)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (A, B, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (A, B, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (A, B, 2)
    inter = wh[..., 0] * wh[..., 1]  # (A, B)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(inter))


@functools.lru_cache(maxsize=16)
def _interp_matrix(in_size: int, out_size: int, device: str) -> Tensor:
    """Bilinear (align_corners=False) weights ``(out_size, in_size)``, the same rule as ``F.interpolate``."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)  # (out,)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    w_hi = (src - lo).clamp(0, 1)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, lo), 1 - w_hi, accumulate=True)
    matrix.index_put_((rows, hi), w_hi, accumulate=True)
    return matrix.float().to(device)


def _reach(matrix: Tensor, first: int, last: int) -> tuple[int, int]:
    """Output index range ``[start, stop)`` whose interpolation draws on input cells ``first..last``."""
    touched = torch.nonzero(matrix[:, first : last + 1].sum(1) > 0).flatten()
    return int(touched[0]), int(touched[-1]) + 1


def _normalized(maps: Tensor, normalize: bool) -> tuple[Tensor, Tensor]:
    """Per-map min-max normalization ``(N, h, w) -> (N, h, w)`` and a ``(N,)`` mask of maps that can give boxes."""
    if not normalize:
        return maps, torch.ones(maps.shape[0], dtype=torch.bool, device=maps.device)
    flat = maps.flatten(1)  # (N, h*w)
    low, high = flat.min(1).values, flat.max(1).values  # (N,)
    span = high - low
    usable = span > 1e-8 + 1e-6 * high.abs()  # a constant map (up to float noise) has no peak to localize
    safe_span = torch.where(usable, span, torch.ones_like(span))
    return (maps - low[:, None, None]) / safe_span[:, None, None], usable


def _label(crop: np.ndarray, threshold: float, offset: tuple[int, int], probability: float) -> Detections:
    """8-connected components of ``crop >= threshold`` -> boxes shifted by ``offset (x, y)`` and peak scores."""
    mask = (crop >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    boxes, scores = [], []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        inside = labels[y : y + h, x : x + w] == k
        scores.append(float(crop[y : y + h, x : x + w][inside].max()) * probability)
        boxes.append((x + offset[0], y + offset[1], x + w + offset[0], y + h + offset[1]))
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores, dtype=torch.float32)
    )


def _empty() -> Detections:
    return Detections(torch.zeros(0, 4), torch.zeros(0))


def _image_boxes(
    normalized: Tensor, image_size: tuple[int, int], thresholds: list[float], probability: float
) -> list[Detections]:
    """Boxes of one normalized map ``(h, w)`` at every threshold (one upsample of the reachable crop)."""
    h, w = normalized.shape
    candidates = torch.nonzero(normalized >= min(thresholds))  # (K, 2) cells (row, col)
    if candidates.numel() == 0:
        return [_empty() for _ in thresholds]
    device = str(normalized.device)
    rows_matrix = _interp_matrix(h, image_size[0], device)  # (H, h)
    cols_matrix = _interp_matrix(w, image_size[1], device)  # (W, w)
    (r0, c0), (r1, c1) = candidates.min(0).values.tolist(), candidates.max(0).values.tolist()
    y_start, y_stop = _reach(rows_matrix, r0, r1)
    x_start, x_stop = _reach(cols_matrix, c0, c1)
    crop = rows_matrix[y_start:y_stop] @ normalized.float() @ cols_matrix[x_start:x_stop].T  # (Hc, Wc)
    crop_np = crop.cpu().numpy()
    return [_label(crop_np, t, (x_start, y_start), probability) for t in thresholds]


@overload
def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: float,
    probabilities: Tensor | None = None,
    normalize: bool = True,
) -> list[Detections]: ...


@overload
def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: Sequence[float],
    probabilities: Tensor | None = None,
    normalize: bool = True,
) -> list[list[Detections]]: ...


def saliency_to_boxes(
    maps: Tensor,
    image_size: tuple[int, int],
    threshold: float | Sequence[float],
    probabilities: Tensor | None = None,
    normalize: bool = True,
) -> list[Detections] | list[list[Detections]]:
    """Candidate boxes from saliency maps ``(N, h, w)`` (one class), in the input frame ``image_size = (H, W)``.

    Per image: min-max normalize the map (``normalize``; a constant map gives no boxes), upsample bilinearly to
    ``(H, W)``, keep pixels ``>= threshold``, and make one box per 8-connected component, scored by the peak
    normalized value inside it times the image's ``probabilities[i]`` (1 when None).

    Returns ``list[Detections]`` (one per image) for a single float threshold, and ``list[list[Detections]]``
    indexed ``[image][threshold index]`` for a sequence of thresholds. Boxes and scores are float32 on the CPU.
    """
    if maps.ndim != 3:
        raise ValueError(f"saliency_to_boxes: expected maps of shape (N, h, w), found {tuple(maps.shape)}")
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"saliency_to_boxes: expected image_size (H, W) of positive ints, found {image_size}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("saliency_to_boxes: maps contain NaN or infinite values")
    single = isinstance(threshold, (int, float))
    thresholds = [float(threshold)] if single else [float(t) for t in threshold]  # type: ignore[union-attr]
    if not thresholds:
        raise ValueError("saliency_to_boxes: expected at least one threshold, found an empty sequence")
    n = maps.shape[0]
    if probabilities is not None and probabilities.numel() != n:
        raise ValueError(f"saliency_to_boxes: expected {n} probabilities (one per map), found {probabilities.numel()}")
    probs = [1.0] * n if probabilities is None else probabilities.detach().float().flatten().cpu().tolist()
    normalized, usable = _normalized(maps.detach().float(), normalize)  # (N, h, w), (N,)
    usable_list = usable.cpu().tolist()
    size = (int(image_size[0]), int(image_size[1]))
    per_image = [
        _image_boxes(normalized[i], size, thresholds, probs[i]) if usable_list[i] else [_empty() for _ in thresholds]
        for i in range(n)
    ]
    return [dets[0] for dets in per_image] if single else per_image
