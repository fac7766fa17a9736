"""Pointing game and energy inside the masses: how well a saliency map localizes, whatever threshold makes boxes.

Table II scores boxes cut from the maps at the binarization threshold validation chose, so a method's cell mixes its
maps with the threshold and the box extraction. The CAM literature also asks of a map alone (Zhang et al., "Top-down
neural attention by excitation backprop", 2016, the pointing game Grad-CAM reports; Score-CAM's energy-based
variant): does its peak fall on the lesion, and how much of its mass lies there. Both are per image with ground
truth in view, from the min-max normalized map placed on the frame as the boxes are (``cell0_center``, the content
region: nothing in the padding counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from wsod_mammo.detection.boxes import Region, bilinear_weights
from wsod_mammo.saliency.base import min_max_normalize

#: Pixels of the input frame a peak may lie outside a box and still hit it (Zhang et al.'s 15).
TOLERANCE = 15.0
#: What a tolerance is measured in: pixels of the input frame, or millimetres on the breast (the DICOM's spacing).
POINTING_UNITS = ("px", "mm")


def cell_centres(cells: int, size: int, cell0_center: float | None = None) -> Tensor:
    """``(cells,)`` float64 continuous frame coordinates of the map cells' centres along one axis of ``size`` pixels:
    where bilinear upsampling (:func:`bilinear_weights`) puts each cell's value whole."""
    step = size / cells
    first = (step - 1) / 2 if cell0_center is None else cell0_center  # a pixel index; its centre is +0.5
    return first + 0.5 + torch.arange(cells, dtype=torch.float64) * step


def _distance_to_boxes(x: Tensor, y: Tensor, boxes: Tensor, pixel: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """``(K, M)`` Euclidean distance of points ``x, y (K,)`` to boxes ``(M, 4)`` xyxy (0 inside), a pixel spanning
    ``pixel = (row, column)`` units (1: pixels; mm per pixel: millimetres)."""
    dx = (boxes[None, :, 0] - x[:, None]).clamp(min=0) + (x[:, None] - boxes[None, :, 2]).clamp(min=0)
    dy = (boxes[None, :, 1] - y[:, None]).clamp(min=0) + (y[:, None] - boxes[None, :, 3]).clamp(min=0)
    return torch.sqrt((dx * pixel[1]) ** 2 + (dy * pixel[0]) ** 2)


def _union_mask(boxes: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``(len(rows), len(cols))`` bool: the pixels (integer indices) whose centres lie in any box ``(M, 4)``."""
    yc, xc = rows.double() + 0.5, cols.double() + 0.5
    in_rows = (yc[None, :] >= boxes[:, 1:2]) & (yc[None, :] <= boxes[:, 3:4])  # (M, R)
    in_cols = (xc[None, :] >= boxes[:, 0:1]) & (xc[None, :] <= boxes[:, 2:3])  # (M, C)
    return (in_rows[:, :, None] & in_cols[:, None, :]).any(0)


def pointing_and_energy(
    maps: Tensor,
    gt_boxes: Sequence[Tensor],
    image_size: tuple[int, int],
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
    tolerance: float = TOLERANCE,
    pixel_mm: Sequence[tuple[float, float] | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Per image of ``maps (N, h, w)`` (one class) with ``gt_boxes[i] (M_i, 4)`` xyxy in the frame ``(H, W)``:
    ``(hit (N,), energy (N,))`` float64.

    ``hit``: whether the map's peak (its highest cell whose centre lies in the image's region) lies within
    ``tolerance`` pixels of a ground-truth box; where several cells share the peak, the share of them that do (the
    chance a pick among them hits). ``energy``: the share of the upsampled map's sum over the region that lies in the
    boxes (pixels whose centres they hold). NaN for an image without boxes (nothing to point at); 0 for both where
    the map has no peak (constant or not finite: it points nowhere). ``pixel_mm``: per image the ``(row, column)``
    mm of one frame pixel (``Geometry.input_pixel_mm``): ``tolerance`` is then in mm, the same on the breast whatever
    the image's size or the resize's aspect, and an image without one (None) has no ``hit`` (NaN; its energy stays).
    """
    n, h, w = maps.shape
    height, width = int(image_size[0]), int(image_size[1])
    normalized, usable = min_max_normalize(maps.detach().float().cpu())
    ys, xs = cell_centres(h, height, cell0_center), cell_centres(w, width, cell0_center)
    # float64 from here on: a caller's autocast (bf16-mixed) leaves float64 products alone
    row_weights = bilinear_weights(h, height, "cpu", cell0_center).matrix.double()  # (H, h)
    col_weights = bilinear_weights(w, width, "cpu", cell0_center).matrix.double()  # (W, w)
    hits = torch.full((n,), math.nan, dtype=torch.float64)
    energy = torch.full((n,), math.nan, dtype=torch.float64)
    for i in range(n):
        boxes = gt_boxes[i].reshape(-1, 4).double().cpu()
        if boxes.shape[0] == 0:
            continue
        if not bool(usable[i]):
            energy[i] = 0.0
            hits[i] = 0.0 if pixel_mm is None or pixel_mm[i] is not None else math.nan
            continue
        x0, y0, x1, y1 = (regions[i] if regions is not None else None) or (0, 0, width, height)
        cells = normalized[i].double()
        allowed = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
        if not bool(allowed.any()):
            allowed = torch.ones_like(allowed)
        values = torch.where(allowed, cells, torch.full_like(cells, -math.inf))
        peaks = torch.nonzero(values == values.max())  # (K, 2) row, column
        pixel = (1.0, 1.0) if pixel_mm is None else pixel_mm[i]
        if pixel is not None:
            near = _distance_to_boxes(xs[peaks[:, 1]], ys[peaks[:, 0]], boxes, pixel) <= tolerance
            hits[i] = near.any(1).double().mean()
        total = row_weights[y0:y1].sum(0) @ cells @ col_weights[x0:x1].sum(0)
        top, bottom = max(y0, math.floor(float(boxes[:, 1].min()))), min(y1, math.ceil(float(boxes[:, 3].max())))
        left, right = max(x0, math.floor(float(boxes[:, 0].min()))), min(x1, math.ceil(float(boxes[:, 2].max())))
        inside = 0.0
        if bottom > top and right > left:
            crop = row_weights[top:bottom] @ cells @ col_weights[left:right].T
            mask = _union_mask(boxes, torch.arange(top, bottom), torch.arange(left, right))
            inside = float((crop * mask).sum())
        energy[i] = inside / float(total) if float(total) > 0 else 0.0
    return hits, energy
