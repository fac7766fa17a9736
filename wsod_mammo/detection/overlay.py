"""Pictures of where each method looks: the image with ground truth beside each method's heatmap and boxes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np
import torch
from torch import Tensor

from wsod_mammo.atomic_files import temporary_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure


def _grayscale(image: Tensor) -> np.ndarray:
    """A standardized ``(H, W)`` image -> uint8 BGR, stretched between its 1st and 99th percentiles."""
    values = image.detach().float().cpu()
    sample = values.flatten()[:: max(1, values.numel() // 100_000)]
    low, high = torch.quantile(sample, torch.tensor([0.01, 0.99])).tolist()
    scaled = ((values - low) / max(high - low, 1e-6)).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    return cv2.cvtColor(scaled, cv2.COLOR_GRAY2BGR)


GT_RGB, PRED_RGB = "#00dc00", "#ff8c00"
MIN_LONG_SIDE = 1024  # pixels: the size at which a reader can judge a box against a mass
TITLE_FONT_SIZE, MIN_TITLE_FONT_SIZE = 12, 7
ID_LIMIT = 40  # characters of an image_id kept in an overlay title (a DICOM UID has up to 64)


def short_id(image_id: str, limit: int = ID_LIMIT) -> str:
    """``image_id`` whole, or when longer than ``limit`` its two ends around an ellipsis: ids differ at the end
    (``studyA/IMG0001``, UIDs ``1.2.840...320.1``/``...320.2``) or the start (the folder), rarely in the middle."""
    if len(image_id) <= limit:
        return image_id
    head = (limit - 1) // 2
    return f"{image_id[:head]}\u2026{image_id[len(image_id) - (limit - 1 - head) :]}"


def legend_entries(ground_truth: bool) -> list[tuple[str, str]]:
    """The overlay legend's ``(label, colour)`` rows: ground truth only where the image's truth is known."""
    rows = [("ground truth", GT_RGB)] if ground_truth else []
    return rows + [("prediction (score)", PRED_RGB)]


def render_overlay(
    image: Tensor,
    gt_boxes: Tensor,
    maps: Mapping[str, Tensor],
    boxes: Mapping[str, tuple[Tensor, Tensor]],
    title: str = "",
    gt_notes: Sequence[str] = (),
    ground_truth: bool = True,
) -> np.ndarray:
    """Panels side by side: the image with ground truth, then per method its heatmap, ground truth and boxes.

    ``image (H, W)`` standardized; ``gt_boxes (M, 4)`` and each method's ``(boxes (B, 4), scores (B,))`` in the
    same input frame; ``maps[name] (H, W)`` normalized to [0, 1] at that resolution. Drawn with matplotlib: a
    legend (ground truth green, predictions orange), scores on a dark label readable on any background, a colour
    bar of the normalized map, and a long side of at least ``MIN_LONG_SIDE`` pixels. ``gt_notes``: a note per
    ground-truth box (its finding BI-RADS and size, ``mass_note``), written under it in the first panel, so a missed
    mass reads as what kind it was. ``ground_truth=False`` (predict: nothing is known of the image) leaves ground
    truth out of the legend, which would otherwise read as "no mass here". Returns a BGR uint8 array.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    gray = _grayscale(image)[..., 0]
    height, width = gray.shape
    count, dpi = 1 + len(maps), 100
    scale = MIN_LONG_SIDE / max(height, width) / dpi  # inches per image pixel: each panel's long side >= 1024 px
    title_lines = (title or "").count("\n")  # each line past the first takes ~0.22 inch above the panels
    size = (count * width * scale + 1.2, height * scale + 0.7 + 0.22 * title_lines)  # + colour bar, titles, legend
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, count, squeeze=False)[0]
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=255)
    _draw_boxes(axes[0], gt_boxes, GT_RGB, notes=gt_notes)
    axes[0].set_title(title or "ground truth", fontsize=TITLE_FONT_SIZE)
    heat = None
    for ax, (name, saliency) in zip(axes[1:], maps.items(), strict=True):
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
        heat = ax.imshow(saliency.detach().float().cpu().clamp(0, 1).numpy(), cmap="jet", alpha=0.4, vmin=0, vmax=1)
        _draw_boxes(ax, gt_boxes, GT_RGB)
        if name in boxes:
            _draw_boxes(ax, boxes[name][0], PRED_RGB, boxes[name][1])
        ax.set_title(name, fontsize=12)
    for ax in axes:
        ax.set_axis_off()
    legend = [Line2D([], [], color=color, lw=2, label=label) for label, color in legend_entries(ground_truth)]
    figure.legend(handles=legend, loc="outside lower center", ncol=len(legend), fontsize=11, frameon=False)
    if heat is not None:
        figure.colorbar(heat, ax=list(axes), fraction=0.01, pad=0.005, label="normalized saliency")
    canvas = cast(FigureCanvasAgg, figure.canvas)  # set by FigureCanvasAgg(figure) above
    canvas.draw()
    shrunk = _fit_title(axes[0], canvas.get_renderer())
    if _make_room_above(figure, axes, canvas.get_renderer()) or shrunk:
        canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., 2::-1])  # RGBA -> BGR


def _make_room_above(figure: Figure, axes: Sequence[Axes], renderer: RendererBase, margin: float = 4.0) -> bool:
    """Raise the top of the figure over titles that run past it (the constrained layout of portrait panels put
    their top few pixels above the picture, where they were cut off): the layout is kept as it is, in inches, and
    the figure grows by the overflow; True when it grew."""
    top = max(ax.title.get_window_extent(renderer).y1 for ax in axes)
    over = top + margin - figure.bbox.height
    if over <= 0:
        return False
    width, height = figure.get_size_inches()
    grown = height + over / figure.dpi
    figure.set_layout_engine("none")
    for ax in figure.axes:  # the panels and the colour bar, where the layout put them
        x0, y0, w, h = ax.get_position().bounds
        ax.set_position((x0, y0 * height / grown, w, h * height / grown))
    figure.set_size_inches(width, grown)
    return True


def _fit_title(ax: Axes, renderer: RendererBase) -> bool:
    """Shrink the panel's title to the panel's width (a centred title wider than a narrow panel runs over the next
    panel's title and off the picture); True when it was shrunk."""
    title = ax.title
    width, room = title.get_window_extent(renderer).width, ax.get_window_extent(renderer).width
    if width <= room:
        return False
    title.set_fontsize(max(MIN_TITLE_FONT_SIZE, TITLE_FONT_SIZE * room / width * 0.98))
    return True


def _draw_boxes(ax: Axes, boxes: Tensor, color: str, scores: Tensor | None = None, notes: Sequence[str] = ()) -> None:
    """Boxes in pixel-corner coordinates (``x2`` = the column after the box), drawn on ``imshow``'s pixel centres:
    shifted by half a pixel and held to the image, unclipped, so an edge on the image's border shows (a box reaching
    the right or bottom border had that edge drawn half a pixel outside the panel, where it was cut away)."""
    from matplotlib.patches import Rectangle

    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()  # the image's extent: -0.5 .. W - 0.5, H - 0.5 .. -0.5
    for i, (x1, y1, x2, y2) in enumerate(boxes.detach().float().cpu().tolist()):
        x1, x2 = (min(max(x - 0.5, left), right) for x in (x1, x2))
        y1, y2 = (min(max(y - 0.5, top), bottom) for y in (y1, y2))
        edge = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5, clip_on=False)
        ax.add_patch(edge)
        label = dict(facecolor="black", alpha=0.7, pad=1, edgecolor="none")
        if scores is not None:
            ax.text(x1, y1, f"{float(scores[i]):.2f}", color=color, fontsize=10, va="bottom", bbox=label)
        if i < len(notes) and notes[i]:  # under the box: a prediction's score sits above it
            ax.text(x1, y2, notes[i], color=color, fontsize=9, va="top", bbox=label, clip_on=True)


def write_png(path: str | Path, picture: np.ndarray) -> None:
    """Write a BGR picture; a temporary name then a rename, so a reader never sees half a file. Encoded by OpenCV,
    written by Python: an error says why (``cv2.imwrite`` only returned False: a full disk read "could not write")."""
    path = Path(path)
    encoded, data = cv2.imencode(".png", picture)
    if not encoded:
        raise OSError(f"{path}: could not encode the PNG")
    partial = path.with_name(temporary_name(path.name, "", f".{os.getpid()}.partial.png"))  # DDP: this process's
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data.tobytes())
        partial.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):  # none there, or a name the file system refuses (too long)
            partial.unlink()
        raise OSError(error.errno, f"{path}: could not write the PNG ({error.strerror or error})") from None


def method_panels(
    maps: Mapping[str, Tensor], size: Sequence[int], cell0_center: float | None = None
) -> dict[str, Tensor]:
    """Raw ``(h, w)`` maps -> ``(H, W)`` panels for :func:`render_overlay`: each min-max normalized, then upsampled
    to the input frame with the placement the boxes use."""
    from wsod_mammo.detection.boxes import upsample_map
    from wsod_mammo.saliency import normalize_saliency

    return {
        name: upsample_map(normalize_saliency(saliency[None, None])[0, 0], (int(size[0]), int(size[1])), cell0_center)
        for name, saliency in maps.items()
    }
