"""Pictures of where each method looks: the image with ground truth beside each method's heatmap and boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

GT_COLOR = (0, 220, 0)  # BGR green
PRED_COLOR = (0, 140, 255)  # BGR orange


def _grayscale(image: Tensor) -> np.ndarray:
    """A standardized ``(H, W)`` image -> uint8 BGR, stretched between its 1st and 99th percentiles."""
    values = image.detach().float().cpu()
    sample = values.flatten()[:: max(1, values.numel() // 100_000)]
    low, high = torch.quantile(sample, torch.tensor([0.01, 0.99])).tolist()
    scaled = ((values - low) / max(high - low, 1e-6)).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    return cv2.cvtColor(scaled, cv2.COLOR_GRAY2BGR)


def _draw_boxes(canvas: np.ndarray, boxes: Tensor, color: tuple[int, int, int], scores: Tensor | None = None) -> None:
    thickness = max(1, canvas.shape[1] // 300)
    for i, (x1, y1, x2, y2) in enumerate(boxes.detach().cpu().round().int().tolist()):
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thickness)
        if scores is not None:
            cv2.putText(canvas, f"{float(scores[i]):.2f}", (x1, max(10, y1 - 3)), 0, 0.4, color, 1, cv2.LINE_AA)


def _title(canvas: np.ndarray, text: str) -> None:
    cv2.putText(canvas, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def _heatmap(base: np.ndarray, saliency: Tensor) -> np.ndarray:
    """Blend a normalized ``(H, W)`` map in [0, 1] over the image with the JET colormap."""
    heat = saliency.detach().float().cpu().clamp(0, 1).mul(255).to(torch.uint8).numpy()
    colored = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    return cv2.addWeighted(base, 0.55, colored, 0.45, 0.0)


def render_overlay(
    image: Tensor,
    gt_boxes: Tensor,
    maps: Mapping[str, Tensor],
    boxes: Mapping[str, tuple[Tensor, Tensor]],
    title: str = "",
) -> np.ndarray:
    """Panels side by side: the image with ground truth (green), then per method its heatmap and boxes (orange).

    ``image (H, W)`` standardized; ``gt_boxes (M, 4)`` and each method's ``(boxes (B, 4), scores (B,))`` in the
    same input frame; ``maps[name] (H, W)`` normalized to [0, 1] at that resolution. Returns a BGR uint8 array.
    """
    base = _grayscale(image)
    first = base.copy()
    _draw_boxes(first, gt_boxes, GT_COLOR)
    _title(first, title or "ground truth")
    panels = [first]
    for name, saliency in maps.items():
        panel = _heatmap(base, saliency)
        _draw_boxes(panel, gt_boxes, GT_COLOR)
        if name in boxes:
            _draw_boxes(panel, boxes[name][0], PRED_COLOR, boxes[name][1])
        _title(panel, name)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def write_png(path: str | Path, picture: np.ndarray) -> None:
    """Write a BGR picture; a temporary name then a rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.png")
    if not cv2.imwrite(str(partial), picture):
        raise OSError(f"{path}: could not write the PNG")
    partial.replace(path)


def method_panels(maps: Mapping[str, Tensor], size: Sequence[int], cell0_center: float | None = None):
    """Raw ``(h, w)`` maps -> ``(H, W)`` panels for :func:`render_overlay`: each min-max normalized, then upsampled
    to the input frame with the placement the boxes use."""
    from wsod_mammo.detection.boxes import upsample_map
    from wsod_mammo.saliency import normalize_saliency

    return {
        name: upsample_map(normalize_saliency(saliency[None, None])[0, 0], (int(size[0]), int(size[1])), cell0_center)
        for name, saliency in maps.items()
    }
