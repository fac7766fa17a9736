"""The coordinate chain from DICOM pixels to the model's input frame, and its exact inverse.

Forward, in this order: (1) flip right (``R``) images horizontally so every chest wall is on the left;
(2) crop the breast region ``crop = (x0, y0, x1, y1)`` given in the flipped frame; (3) bring the crop to
``(out_height, out_width)``: ``resize="stretch"`` fills the whole frame (the study: x1.4 vertically, x2.6
horizontally on NYU's samples); ``resize="fit"`` keeps the aspect ratio (one scale, rounded to whole pixels per
axis), puts the crop against the left edge (the chest wall), centred vertically, and pads with background (0);
``resize="native"`` keeps the crop's pixels at scale 1, as nyukat/GMIC feeds its weights at test time: a crop
larger than the frame is cut to a window of the frame's size (``native_window``), a smaller one is placed and padded
as ``fit`` places it. Boxes are ``(xmin, ymin, xmax, ymax)`` in continuous pixel-edge coordinates (pixel ``i``
spans ``[i, i + 1)``), which is what makes the box mapping exact for OpenCV's resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import cv2
import numpy as np
import torch

#: numpy or torch: the functions mapping boxes or maps between frames return the kind they are given.
NumpyOrTorch = TypeVar("NumpyOrTorch", np.ndarray, torch.Tensor)
RESIZE_MODES = ("stretch", "fit", "native")


@dataclass(frozen=True)
class Geometry:
    """Everything needed to map between the original DICOM frame and the input frame of one image."""

    orig_height: int
    orig_width: int
    flip: bool
    # (x0, y0, x1, y1) in the flipped original frame, pixel edges; for native, the part of the breast crop that the
    # frame keeps (at most the frame's size)
    crop: tuple[int, int, int, int]
    out_height: int
    out_width: int
    resize: str = "stretch"  # "stretch", "fit" or "native"
    # millimetres per original pixel (rows, columns), the DICOM's PixelSpacing or ImagerPixelSpacing: what a lesion's
    # size in mm is read from; None for PNG/TIFF inputs, untagged DICOMs and caches written before it was kept
    spacing_mm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize: expected one of {RESIZE_MODES}, found {self.resize!r}")
        crop_h, crop_w = self.crop[3] - self.crop[1], self.crop[2] - self.crop[0]
        if self.resize == "native" and (crop_h > self.out_height or crop_w > self.out_width):
            raise ValueError(
                f"resize=native: the crop {self.crop} ({crop_h} x {crop_w}) is larger than the "
                f"{self.out_height} x {self.out_width} frame; make_geometry cuts it to a window (native_window)"
            )

    @property
    def inner_size(self) -> tuple[int, int]:
        """``(height, width)`` of the resized crop inside the output frame (the whole frame for ``stretch``, the
        crop's own size for ``native``)."""
        if self.resize == "stretch":
            return self.out_height, self.out_width
        crop_h, crop_w = self.crop[3] - self.crop[1], self.crop[2] - self.crop[0]
        if self.resize == "native":
            return crop_h, crop_w
        scale = min(self.out_height / crop_h, self.out_width / crop_w)
        return min(self.out_height, max(1, round(crop_h * scale))), min(self.out_width, max(1, round(crop_w * scale)))

    @property
    def offset(self) -> tuple[int, int]:
        """``(x, y)`` of the resized crop's top-left corner in the output frame (left edge, centred vertically)."""
        return 0, (self.out_height - self.inner_size[0]) // 2

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the input frame that holds the image: all of it for ``stretch``, ``fit`` and
        ``native`` without their padding. Maps are read only there: a box in the padding would lie outside the
        image."""
        (height, width), (x, y) = self.inner_size, self.offset
        return x, y, x + width, y + height

    @property
    def scale_x(self) -> float:
        return self.inner_size[1] / (self.crop[2] - self.crop[0])

    @property
    def scale_y(self) -> float:
        return self.inner_size[0] / (self.crop[3] - self.crop[1])

    @property
    def input_pixel_mm(self) -> tuple[float, float] | None:
        """``(row, column)`` millimetres one input-frame pixel spans on the breast (the spacing over the resize's
        scale: ``stretch`` differs by axis); None without a spacing."""
        if self.spacing_mm is None:
            return None
        return self.spacing_mm[0] / self.scale_y, self.spacing_mm[1] / self.scale_x

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (with the scales, for readers) that ``from_dict`` turns back."""
        out = asdict(self)
        out["crop"] = list(self.crop)
        out["spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        out["scale_x"], out["scale_y"] = self.scale_x, self.scale_y
        return out

    @classmethod
    def coerce(cls, geometry: Geometry | dict[str, Any]) -> Geometry:
        """A Geometry as it is, or one from its ``to_dict`` form (what a sample's ``meta`` carries)."""
        return geometry if isinstance(geometry, Geometry) else cls.from_dict(geometry)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        x0, y0, x1, y1 = (int(v) for v in data["crop"])
        return cls(
            orig_height=int(data["orig_height"]),
            orig_width=int(data["orig_width"]),
            flip=bool(data["flip"]),
            crop=(x0, y0, x1, y1),
            out_height=int(data["out_height"]),
            out_width=int(data["out_width"]),
            resize=str(data.get("resize", "stretch")),
            spacing_mm=None if data.get("spacing_mm") is None else _spacing_pair(data["spacing_mm"]),
        )


def content_regions(metas: Sequence[dict[str, Any]]) -> list[tuple[int, int, int, int] | None]:
    """Each sample's ``Geometry.content_box`` from its ``meta["geometry"]`` (None where it has none): where
    ``saliency_to_boxes`` may put boxes."""
    return [Geometry.coerce(m["geometry"]).content_box if m.get("geometry") else None for m in metas]


def input_pixel_sizes(metas: Sequence[dict[str, Any]]) -> list[tuple[float, float] | None]:
    """Each sample's ``Geometry.input_pixel_mm`` from its ``meta["geometry"]`` (None where it has no geometry or no
    spacing): what a tolerance in mm is in the input frame."""
    return [Geometry.coerce(m["geometry"]).input_pixel_mm if m.get("geometry") else None for m in metas]


def breast_bbox(image: np.ndarray, margin: float = 0.02, threshold: float | None = None) -> tuple[int, int, int, int]:
    """Bounding box ``(x0, y0, x1, y1)`` of the largest bright connected component, plus a margin.

    ``image`` is ``(H, W)`` in [0, 1]. The component search runs on a copy about 256 pixels tall, so it
    costs little at full resolution; a label or skin marker in a corner is smaller than the breast and
    is ignored, however bright (the copy is scaled by the tissue's brightness, ``_small_copy``), and bright strips
    along the edges (a scanned film's border) are left out of the search and of the box (``inside_border_strips``).
    ``threshold`` defaults to Otsu's on that copy (bounded below by 0.05 of the tissue's brightness); ``margin``
    is a fraction of the image size. An image with no bright pixel gives the whole image (inside its strips).
    """
    height, width = image.shape
    small8, step, top, inner = _small_copy(image)
    mask = (small8 > _breast_level(small8, None if threshold is None else threshold / top)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return inner
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[largest, :4])
    mx, my = int(round(margin * width)), int(round(margin * height))
    x0, y0 = max(inner[0], x * step - mx), max(inner[1], y * step - my)
    x1, y1 = min(inner[2], (x + w) * step + mx), min(inner[3], (y + h) * step + my)
    return (x0, y0, x1, y1)


def inside_border_strips(image: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the part of an ``(H, W)`` [0, 1] image inside the bright strips along its edges, the
    whole image where there are none.

    Scanned films often have white bands along their edges (the film's border, the light box): saturated, they
    raised the tissue scale of the breast search, which then cut the breast, joined the breast's component (a crop
    as wide as the image) or outweighed a narrow breast (the laterality flipped). A strip is a run of lines from an
    edge, each bright (its median at least half the image's bright tissue) and even (``_even_line``), no deeper than
    ``STRIP_MAX_DEPTH`` of the image, and brighter than the line inside it (``_band``): a breast's textured or
    smoothly falling tissue is none. Found on the search's small copy, in full-resolution pixels.
    """
    return _small_copy(image)[3]


#: a border strip is at most this fraction of the image across it: an even band deeper is the image's content
STRIP_MAX_DEPTH = 0.2


def _sampled(image: np.ndarray) -> tuple[np.ndarray, int]:
    """A float32 copy of a [0, 1] image, every ``step``-th row and column, about 256 rows tall, and its step."""
    step = max(1, image.shape[0] // 256)
    return np.clip(np.ascontiguousarray(image[::step, ::step], dtype=np.float32), 0.0, 1.0), step


def _strip_depths(small: np.ndarray) -> list[int]:
    """How many lines of ``small`` the border strips along its top, bottom, left and right edges take (0: none).
    Each edge is searched inside the strips found along the others, so that strips meeting at a corner do not hide
    each other."""
    lit = small[small > 0]
    if not lit.size:
        return [0, 0, 0, 0]
    bright = 0.5 * float(np.percentile(lit, 95))
    height, width = small.shape
    depths, grown = [0, 0, 0, 0], True
    while grown:
        grown = False
        for edge in range(4):
            top, bottom, left, right = depths
            inner = small[top : height - bottom, left : width - right]
            lines = (inner, inner[::-1], inner.T, inner.T[::-1])[edge]  # lines from that edge inwards
            room = int(STRIP_MAX_DEPTH * (height if edge < 2 else width)) - depths[edge]
            found = _band(lines, bright, room)
            depths[edge] += found
            grown = grown or found > 0
    return depths


def _band(lines: np.ndarray, bright: float, room: int) -> int:
    """How many of ``lines`` (first, the edge's) form a strip: bright even lines, at most ``room``, followed by a
    line mostly darker than the edge's (a smooth breast that fills the first lines runs on into the next)."""
    count = 0
    while count < min(room + 1, lines.shape[0]) and _even_line(lines[count], bright):
        count += 1
    if count == 0 or count > room or count == lines.shape[0]:
        return 0
    edge_level = float(np.median(lines[0]))
    return count if float(np.mean(lines[count] >= 0.9 * edge_level)) < 0.5 else 0


def _even_line(line: np.ndarray, bright: float) -> bool:
    """A line of a strip: its median at least ``bright`` and four in five of its pixels within 10% of it."""
    median = float(np.median(line))
    return median >= bright > 0 and float(np.mean(np.abs(line - median) <= 0.1 * median)) >= 0.8


def _spacing_pair(values: Sequence[float]) -> tuple[float, float]:
    rows, columns = (float(v) for v in values)
    return rows, columns


def box_sizes_mm(boxes: np.ndarray, spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """The longer side in mm of each box ``(M, 4)`` xyxy in the original image's pixels, ``(M,)`` float64 (NaN
    without a spacing): a mass's size as a radiologist reads it off the image, for Table II per mass size."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if spacing_mm is None:
        return np.full(boxes.shape[0], np.nan)
    rows, columns = spacing_mm
    return np.maximum((boxes[:, 2] - boxes[:, 0]) * columns, (boxes[:, 3] - boxes[:, 1]) * rows)


def make_geometry(
    image: np.ndarray,
    laterality: str,
    input_size: tuple[int, int],
    crop_breast: bool = True,
    margin: float = 0.02,
    resize: str = "stretch",
    spacing_mm: tuple[float, float] | None = None,
) -> Geometry:
    """Geometry of one original ``(H, W)`` image: flip for ``R``, breast crop (optional), resize (stretch, fit, or
    native: the crop cut to the frame's size by ``native_window``); ``spacing_mm``: the DICOM's, kept for lesion
    sizes."""
    height, width = image.shape
    flip = laterality == "R"
    crop = (0, 0, width, height)
    if crop_breast:
        x0, y0, x1, y1 = breast_bbox(image, margin)
        crop = (width - x1, y0, width - x0, y1) if flip else (x0, y0, x1, y1)
    size = (int(input_size[0]), int(input_size[1]))
    if resize == "native":
        crop = native_window(image, flip, crop, size)
    return Geometry(height, width, flip, crop, *size, resize, spacing_mm)


def native_window(
    image: np.ndarray, flip: bool, crop: tuple[int, int, int, int], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The part of ``crop`` (flipped frame) that ``resize="native"`` keeps at scale 1: at most ``size`` (H, W).

    Horizontally the window starts at the crop's left edge, the chest wall, against which the breast is widest:
    columns beyond ``x0 + W`` (the nipple side) are cut. nyukat/GMIC differs here: its window ends at the breast's
    rightmost point (the nipple) and cuts the chest-wall side. Vertically a taller crop keeps the ``H`` rows that
    hold the most breast pixels (brighter than ``breast_bbox``'s threshold) in the kept columns, among equal
    windows the one nearest the centred window: NYU's rule for CC views (most non-zero pixels, ties to the centre),
    which cuts the least breast. For MLO views NYU ends its window at the breast's lowest row instead; the view is
    not known here, so every view gets the CC rule. A crop that fits is placed as ``fit`` places it (``Geometry``:
    left edge, centred vertically), where NYU centres CC views and puts MLO views at the top.
    """
    height, width = size
    x0, y0, x1, y1 = crop
    x1 = min(x1, x0 + width)
    if y1 - y0 > height:
        y0 += _densest_rows(image, flip, (x0, y0, x1, y1), height)
        y1 = y0 + height
    return x0, y0, x1, y1


def _densest_rows(image: np.ndarray, flip: bool, crop: tuple[int, int, int, int], height: int) -> int:
    """First row, counted from the crop's top, of the ``height`` consecutive rows of ``crop`` that hold the most breast
    pixels; the one nearest the centred window among equals."""
    x0, y0, x1, y1 = crop
    view = image[:, ::-1] if flip else image
    small8, _, top, _ = _small_copy(image)
    level = _breast_level(small8) / 255 * top
    totals = np.concatenate(([0], np.cumsum(np.count_nonzero(view[y0:y1, x0:x1] > level, axis=1))))
    sums = totals[height:] - totals[:-height]
    starts = np.flatnonzero(sums == sums.max())
    return int(starts[np.argmin(np.abs(starts - (y1 - y0 - height) // 2))])


def _small_copy(image: np.ndarray) -> tuple[np.ndarray, int, float, tuple[int, int, int, int]]:
    """A uint8 copy of a [0, 1] image about 256 rows tall, its step, the value its 255 stands for, and the image's
    part inside its border strips (``inside_border_strips``, full-resolution pixels): where the breast is searched for.

    The copy is scaled by the 95th percentile of its non-zero pixels (bright tissue), not by 1: a burned-in
    label or marker at the file's full range (65535 in a 12-bit image) made ``scale_to_unit`` divide by 65535,
    the tissue fell under the 0.05 floor of the threshold, and the crop went to the label alone. The border strips
    are 0 in the copy, so that they neither set that scale nor join the breast."""
    small, step = _sampled(image)
    top_lines, bottom_lines, left_lines, right_lines = _strip_depths(small)
    height, width = small.shape
    inside = small[top_lines : height - bottom_lines, left_lines : width - right_lines]
    small = np.pad(inside, ((top_lines, bottom_lines), (left_lines, right_lines)))  # the strips 0
    inner = (
        left_lines * step,
        top_lines * step,
        min(image.shape[1], (width - right_lines) * step),
        min(image.shape[0], (height - bottom_lines) * step),
    )
    lit = small[small > 0]
    top = float(np.percentile(lit, 95)) if lit.size else 1.0
    top = top if top > 0 else 1.0
    return (np.clip(small / top, 0.0, 1.0) * 255).astype(np.uint8), step, top, inner


def _breast_level(small8: np.ndarray, threshold: float | None = None) -> float:
    """The breast's threshold on the 0..255 scale: ``threshold`` given in [0, 1], else Otsu's (at least 0.05)."""
    if threshold is not None:
        return threshold * 255
    otsu, _ = cv2.threshold(small8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(otsu, 0.05 * 255)


def apply_to_image(
    image: np.ndarray, geometry: Geometry | dict[str, Any], interpolation: int | None = None
) -> np.ndarray:
    """Original ``(H, W)`` image -> ``(out_height, out_width)`` input-frame image, same dtype.

    Downscaling on both axes uses area averaging (no aliasing of the fine calcification texture), any other
    resize bilinear (also when one axis shrinks and the other grows, as a tall VinDr crop stretched to 2944 x 1920
    may: OpenCV's area mode upsamples poorly), unless ``interpolation`` (a cv2 flag) says otherwise; at scale 1
    (``native``) the pixels are copied as they are. With ``resize="fit"`` or ``"native"`` the area outside the
    crop is 0.
    """
    geo = Geometry.coerce(geometry)
    if image.shape != (geo.orig_height, geo.orig_width):
        raise ValueError(
            f"image: expected shape {(geo.orig_height, geo.orig_width)} from its geometry, got {image.shape}"
        )
    x0, y0, x1, y1 = geo.crop
    view = image[:, ::-1] if geo.flip else image
    view = view[y0:y1, x0:x1]
    inner_h, inner_w = geo.inner_size
    shrink = inner_w < view.shape[1] and inner_h < view.shape[0]
    if interpolation is None:
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = _resample(view, (inner_h, inner_w), interpolation)
    if (inner_h, inner_w) == (geo.out_height, geo.out_width):
        return resized
    out = np.zeros((geo.out_height, geo.out_width), resized.dtype)
    x, y = geo.offset
    out[y : y + inner_h, x : x + inner_w] = resized
    return out


def map_to_original(map_hw: NumpyOrTorch, geometry: Geometry | dict[str, Any]) -> NumpyOrTorch:
    """Input-frame ``(out_height, out_width)`` map -> ``(orig_height, orig_width)``: the inverse of ``apply_to_image``.

    The resized crop is taken back out of the frame (the padding of ``fit`` and ``native`` is dropped), resampled to
    the crop box (bilinear up, area averaging down, OpenCV's half-pixel centres, so a box-shaped map lands on
    ``boxes_to_original`` of its box; copied as it is at scale 1), placed in the crop box of a zero image and
    un-flipped. Exact up to interpolation; numpy in, numpy out (float32 for integer maps), a tensor gives a CPU
    tensor.
    """
    geo = Geometry.coerce(geometry)
    array = map_hw.detach().cpu().numpy() if isinstance(map_hw, torch.Tensor) else np.asarray(map_hw)
    if array.shape != (geo.out_height, geo.out_width):
        raise ValueError(f"map: expected shape {(geo.out_height, geo.out_width)} from its geometry, got {array.shape}")
    if array.dtype.kind != "f" or array.dtype == np.float16:
        array = array.astype(np.float32)
    (inner_h, inner_w), (x, y) = geo.inner_size, geo.offset
    x0, y0, x1, y1 = geo.crop
    grow = (x1 - x0) >= inner_w or (y1 - y0) >= inner_h
    interpolation = cv2.INTER_LINEAR if grow else cv2.INTER_AREA
    inner = np.ascontiguousarray(array[y : y + inner_h, x : x + inner_w])
    out = np.zeros((geo.orig_height, geo.orig_width), array.dtype)
    out[y0:y1, x0:x1] = _resample(inner, (y1 - y0, x1 - x0), interpolation)
    if geo.flip:
        out = np.ascontiguousarray(out[:, ::-1])
    return torch.from_numpy(out) if isinstance(map_hw, torch.Tensor) else out


def _resample(array: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """``cv2.resize`` to ``size`` (H, W); at that size already (scale 1), a C-contiguous copy, no interpolation."""
    if array.shape == size:
        return np.array(array, order="C")
    return cv2.resize(np.ascontiguousarray(array), (size[1], size[0]), interpolation=interpolation)


def apply_to_mask(mask: np.ndarray | None, geometry: Geometry | dict[str, Any]) -> np.ndarray | None:
    """Original ``(H, W)`` bool mask -> the input frame through ``apply_to_image`` (flip, crop, resize), nearest
    (pixel centres: cv2's ``INTER_NEAREST_EXACT``). The border of ``fit`` and ``native`` is False. None in, or no
    True pixel left in the input frame (the crop left it out), gives None.
    """
    if mask is None:
        return None
    out = apply_to_image(mask.view(np.uint8), geometry, cv2.INTER_NEAREST_EXACT).view(bool)
    return out if out.any() else None


def _as_array(boxes: NumpyOrTorch) -> np.ndarray:
    if isinstance(boxes, torch.Tensor):
        return boxes.detach().cpu().double().numpy().reshape(-1, 4)
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def _back(result: np.ndarray, original: NumpyOrTorch) -> NumpyOrTorch:
    if isinstance(original, torch.Tensor):
        return torch.as_tensor(result, dtype=original.dtype, device=original.device)
    dtype = original.dtype if isinstance(original, np.ndarray) and original.dtype.kind == "f" else np.float32
    return result.astype(dtype)


def boxes_to_input(boxes: NumpyOrTorch, geometry: Geometry | dict[str, Any]) -> NumpyOrTorch:
    """Boxes ``(M, 4)`` xyxy in original DICOM pixels -> the input frame (numpy or torch, same type out)."""
    geo = Geometry.coerce(geometry)
    array = _as_array(boxes)
    out = array.copy()
    if geo.flip:
        out[:, 0], out[:, 2] = geo.orig_width - array[:, 2], geo.orig_width - array[:, 0]
    out[:, [0, 2]] = (out[:, [0, 2]] - geo.crop[0]) * geo.scale_x + geo.offset[0]
    out[:, [1, 3]] = (out[:, [1, 3]] - geo.crop[1]) * geo.scale_y + geo.offset[1]
    return _back(out, boxes)


def boxes_to_original(boxes: NumpyOrTorch, geometry: Geometry | dict[str, Any]) -> NumpyOrTorch:
    """Boxes ``(M, 4)`` xyxy in the input frame -> original DICOM pixels; exact inverse of ``boxes_to_input``."""
    geo = Geometry.coerce(geometry)
    array = _as_array(boxes)
    out = array.copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - geo.offset[0]) / geo.scale_x + geo.crop[0]
    out[:, [1, 3]] = (out[:, [1, 3]] - geo.offset[1]) / geo.scale_y + geo.crop[1]
    if geo.flip:
        x0, x1 = out[:, 0].copy(), out[:, 2].copy()
        out[:, 0], out[:, 2] = geo.orig_width - x1, geo.orig_width - x0
    return _back(out, boxes)


def clip_boxes(boxes: np.ndarray, height: int, width: int, min_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(M, 4)`` boxes to an image; returns the clipped boxes and the mask of those kept."""
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    keep = ((out[:, 2] - out[:, 0]) >= min_size) & ((out[:, 3] - out[:, 1]) >= min_size)
    return out[keep], keep
