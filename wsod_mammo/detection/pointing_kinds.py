"""The pointing game and the energy inside the masses per kind of mass: each image against only its masses of one
finding BI-RADS, or of one size class, at ``DetectionMetric.update`` time (the maps are gone by ``compute``).

An image with masses of two kinds (a BI-RADS 4 and a BI-RADS 5) is scored once per kind, against that kind's masses
alone: its peak on the BI-RADS 5 mass is a hit among the BI-RADS 5 images and a miss among the BI-RADS 4 ones, and
its energy in each kind is the share inside that kind's boxes. An image with one kind of mass is scored as the whole
pointing game scores it. Kinds are coded as integers for the metric's states: a BI-RADS as itself (0 unknown), a
size class as ``SIZE_BASE`` plus its index in :data:`~wsod_mammo.detection.mass_kinds.SIZE_LABELS` (their count:
unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from wsod_mammo.detection.boxes import Region
from wsod_mammo.detection.mass_kinds import SIZE_LABELS, UNKNOWN, birads_label, size_label
from wsod_mammo.detection.pointing import TOLERANCE, pointing_and_energy

SIZE_BASE = 100  # BI-RADS codes are 0-6


class KindPointing(NamedTuple):
    """Rows of (image, kind of mass): ``image (R,)`` its index, ``code (R,)`` the kind (:func:`kind_of_code`),
    ``hit, energy (R,)`` as :func:`~wsod_mammo.detection.pointing.pointing_and_energy` gives them against that kind's
    masses of the image (``hit`` NaN where the pointing game leaves the image out); float32 in a ``DetectionResult``,
    as its whole game's figures, so an image with one kind of mass has the same numbers in both."""

    image: Tensor
    code: Tensor
    hit: Tensor
    energy: Tensor


def birads_code(category: int) -> int:
    """A finding BI-RADS's code: itself, 0 for an empty cell (unknown)."""
    return int(category) if int(category) > 0 else 0


def size_code(size_mm: float) -> int:
    """A size's code: its class in Table II per mass size (NaN, no pixel spacing: unknown)."""
    label = size_label(None if math.isnan(size_mm) else size_mm)
    return SIZE_BASE + (SIZE_LABELS.index(label) if label != UNKNOWN else len(SIZE_LABELS))


def kind_of_code(code: int) -> tuple[str, str]:
    """``(kind, label)`` of a code: ``("birads", "BI-RADS 4")``, ``("size", "< 10 mm")``, either label unknown."""
    if code >= SIZE_BASE:
        index = code - SIZE_BASE
        return "size", SIZE_LABELS[index] if index < len(SIZE_LABELS) else UNKNOWN
    return "birads", birads_label(code)


def box_codes(categories: Sequence[float] | None, sizes: Sequence[float] | None, count: int) -> list[tuple[int, ...]]:
    """Each of an image's first ``count`` boxes' kinds: its BI-RADS code (``categories`` given) and its size class's
    code (``sizes`` in mm given, NaN unknown); no kind where neither is given."""
    return [
        (*(() if categories is None else (birads_code(int(categories[b])),)),
         *(() if sizes is None else (size_code(float(sizes[b])),)))
        for b in range(count)
    ]  # fmt: skip


def pointing_by_kind(
    maps: Tensor,
    gt_boxes: Sequence[Tensor],
    codes: Sequence[Sequence[tuple[int, ...]]],
    image_size: tuple[int, int],
    cell0_center: float | None = None,
    regions: Sequence[Region | None] | None = None,
    tolerance: float = TOLERANCE,
    pixel_mm: Sequence[tuple[float, float] | None] | None = None,
) -> KindPointing:
    """A row per image of ``maps (N, h, w)`` and kind among ``codes[i]`` (per box of ``gt_boxes[i] (M_i, 4)``, its
    kinds: :func:`box_codes`), scored against the image's boxes of that kind."""
    images, kinds, subsets = [], [], []
    for i, (boxes, per_box) in enumerate(zip(gt_boxes, codes, strict=True)):
        boxes = boxes.reshape(-1, 4)
        for code in sorted({c for kinds_of_box in per_box for c in kinds_of_box}):
            keep = torch.tensor([code in kinds_of_box for kinds_of_box in per_box], dtype=torch.bool)
            images.append(i)
            kinds.append(code)
            subsets.append(boxes[keep.to(boxes.device)])
    if not images:
        empty = torch.zeros(0, dtype=torch.float64)
        return KindPointing(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), empty, empty)
    index = torch.tensor(images, dtype=torch.int64)
    hit, energy = pointing_and_energy(
        maps[index.to(maps.device)], subsets, image_size, cell0_center,
        None if regions is None else [regions[i] for i in images], tolerance,
        None if pixel_mm is None else [pixel_mm[i] for i in images],
    )  # fmt: skip
    return KindPointing(index, torch.tensor(kinds, dtype=torch.int64), hit, energy)
