"""The frame an overlay is drawn in: the original image as its source file shows it, else the model's input frame.

The model sees each image flipped to one side (right breasts mirrored), cropped to the breast and resized; a reader
judges a picture against the file as the viewer shows it. ``overlay_frame`` decodes the sample's source again
(``meta["path"]``: DICOM by content, PNG/TIFF; no crop) and brings every map (``map_to_original``: zero outside the
breast crop) and box (``boxes_to_original``) back to it. When the source cannot be read (moved file, a sample with no
path, a file that changed size) the input frame is drawn and the title and log say so: a picture never ends a run.

Size: an original larger than ``MIN_LONG_SIDE`` is drawn downscaled (area averaging) to a long side of exactly
``MIN_LONG_SIDE``, the size ``render_overlay`` draws each panel at: a VinDr image (~3518 x 2800) gives panels of
1024 x 815 px and a PNG of about 1 MB per panel (5.1 MB for the image and 5 methods), and drawing it takes half the
time the full-size input frame took (tests/benchmarks/bench_overlay.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from wsod_mammo.data.geometry import Geometry, boxes_to_original, map_to_original
from wsod_mammo.data.images import read_any
from wsod_mammo.detection.overlay import MIN_LONG_SIDE

log = logging.getLogger(__name__)

INPUT_FRAME_NOTE = "model input frame: source unreadable"
MethodBoxes = Mapping[str, tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class OverlayFrame:
    """What ``render_overlay`` draws, all in one frame: ``image (H, W)`` (any range: the overlay stretches it),
    ``gt_boxes (M, 4)`` and each method's ``(boxes (B, 4), scores (B,))`` xyxy in its pixels, ``maps (H, W)`` in
    [0, 1]; ``note`` is empty in the original frame, else says why the input frame is drawn."""

    image: Tensor
    gt_boxes: Tensor
    maps: dict[str, Tensor]
    boxes: dict[str, tuple[Tensor, Tensor]]
    note: str = field(default="")

    def title(self, title: str) -> str:
        """``title``, with the note on a second line when the picture is not in the original frame."""
        return f"{title}\n{self.note}" if self.note else title


def in_original_frame(
    original: np.ndarray,
    geometry: Geometry | dict[str, Any],
    gt_boxes: Tensor,
    maps: Mapping[str, Tensor],
    boxes: MethodBoxes,
    long_side: int = MIN_LONG_SIDE,
) -> OverlayFrame:
    """Input-frame maps ``(H, W)`` and boxes -> the decoded original ``(H0, W0)``, downscaled to ``long_side`` when
    it is longer (boxes scaled alike). ValueError when ``original`` is not the size its geometry records."""
    geo = Geometry.coerce(geometry)
    if original.shape != (geo.orig_height, geo.orig_width):
        raise ValueError(f"expected a {geo.orig_height} x {geo.orig_width} image, found {original.shape}")
    factor = min(1.0, long_side / max(original.shape))
    size = (max(1, round(geo.orig_height * factor)), max(1, round(geo.orig_width * factor)))
    scale = torch.tensor([size[1] / geo.orig_width, size[0] / geo.orig_height] * 2, dtype=torch.float64)

    def place(frame_boxes: Tensor) -> Tensor:
        return (boxes_to_original(frame_boxes.detach().cpu().double().reshape(-1, 4), geo) * scale).float()

    return OverlayFrame(
        torch.from_numpy(_shrink(original, size)),
        place(gt_boxes),
        {
            name: torch.from_numpy(_shrink(map_to_original(m.detach().float().cpu().numpy(), geo), size))
            for name, m in maps.items()
        },
        {name: (place(b), s.detach().cpu()) for name, (b, s) in boxes.items()},
    )


def overlay_frame(
    meta: Mapping[str, Any], image: Tensor, gt_boxes: Tensor, maps: Mapping[str, Tensor], boxes: MethodBoxes
) -> OverlayFrame:
    """One sample's overlay content in its original frame (``meta["path"]`` decoded, ``meta["geometry"]`` undone);
    the input frame (``image (H, W)`` and the rest as given) with a note and a warning when that fails."""
    path = meta.get("path") or "a sample without a path"
    fallback = OverlayFrame(image, gt_boxes, dict(maps), dict(boxes), INPUT_FRAME_NOTE)
    try:
        if not meta.get("path") or meta.get("geometry") is None:
            raise ValueError("the sample has no source path or no geometry")
        original, _ = read_any(path)
    except Exception as err:  # any decoder's failure: a picture never ends a run
        log.warning("overlay of %s drawn in the model's input frame: %s", path, err)
        return fallback
    try:
        return in_original_frame(original, meta["geometry"], gt_boxes, maps, boxes)
    except ValueError as err:  # the file changed since its geometry was recorded
        log.warning("overlay of %s drawn in the model's input frame: %s", path, err)
        return fallback


def _shrink(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` -> float32 ``size`` by area averaging (the same array, as float32, when already that size)."""
    array = array.astype(np.float32, copy=False)
    if array.shape == size:
        return np.ascontiguousarray(array)
    return cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_AREA)
