"""torchmetrics ``DetectionMetric``: TPR@FPPI and FROC of one saliency method over a split, synced under DDP.

Boxes are made and matched at ``update`` time (see :mod:`wsod_mammo.detection.boxes` and
:mod:`wsod_mammo.detection.froc`); the states are flat per-box lists (score, TP flag, threshold index, occurrence)
and per-sample lists (``image_id`` key, occurrence, ground-truth count), so DDP sync is a concatenation and
``compute`` keeps the first occurrence of each image (:mod:`wsod_mammo.detection.image_keys`: DDP padding and
``selection: paper`` repeats count once) and sorts once per binarization threshold. One metric per method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from wsod_mammo.detection.boxes import Region, saliency_to_boxes
from wsod_mammo.detection.detection_result import DetectionResult, threshold_result
from wsod_mammo.detection.froc import FPPI_POINTS, matched_gt
from wsod_mammo.detection.image_keys import first_occurrence_mask, sample_keys
from wsod_mammo.detection.pointing import POINTING_UNITS, TOLERANCE, pointing_and_energy
from wsod_mammo.detection.pointing_kinds import KindPointing, box_codes, pointing_by_kind


class _Distinct(NamedTuple):
    """``DetectionMetric``'s states at the first occurrence of each image (``keys, in_view, unseen (I,)``), the
    boxes and ground-truth rows of those occurrences (``box_kept``, ``gt_kept``: masks over every row) and the
    image index of each kept one (``box_image (P,)``, ``gt_image (G,)``); ``num_samples``: every sample seen;
    ``pointing, energy (I,)``: the images' pointing-game hit and energy inside their masses."""

    keys: Tensor
    in_view: Tensor
    unseen: Tensor
    box_image: Tensor
    box_kept: Tensor
    gt_image: Tensor
    gt_kept: Tensor
    num_samples: int
    pointing: Tensor
    energy: Tensor
    kinds: KindPointing | None


def global_gt_index(gt_image: Tensor, box_image: Tensor, box_local: Tensor) -> Tensor:
    """Each box's matched ground truth as an index into the ground-truth rows ``gt_image (G,)`` (an image's rows
    contiguous, in its order), from its image ``box_image (P,)`` and its index within that image ``box_local (P,)``
    (-1, a false positive, stays -1)."""
    images = 1 + max([-1] + [int(t.max()) for t in (gt_image, box_image) if t.numel()])
    rows = torch.arange(gt_image.numel(), dtype=torch.int64)
    start = torch.zeros(images, dtype=torch.int64).scatter_reduce(0, gt_image, rows, "amin", include_self=False)
    return torch.where(box_local >= 0, start[box_image] + box_local, -1)  # an image without rows has no hit


class _Kept(NamedTuple):
    """The samples of a batch that ``DetectionMetric.update`` scores, as the map scores take them."""

    maps: Tensor  # (K, h, w)
    gt: list[Tensor]  # K x (M_i, 4) xyxy, input frame
    regions: list[Region | None] | None
    pixel_mm: list[tuple[float, float] | None] | None  # None unless pointing is scored in mm


@dataclass
class _BatchRows:
    """What one ``update`` adds to each state, as parts to concatenate: per box (of every kept image at every
    binarization threshold), per ground-truth box, per kept image."""

    scores: list[Tensor] = field(default_factory=list)  # per box: its score
    threshold: list[Tensor] = field(default_factory=list)  # per box: its binarization threshold's index
    box_occurrence: list[Tensor] = field(default_factory=list)  # per box: its sample's occurrence
    found: list[Tensor] = field(default_factory=list)  # per box: the ground truth it matched in its image, -1
    gts: list[int] = field(default_factory=list)  # per image: its ground-truth boxes in view
    unseen: list[int] = field(default_factory=list)  # per image: its ground-truth boxes out of frame
    gt_occurrence: list[Tensor] = field(default_factory=list)  # per ground-truth box: its sample's occurrence
    categories: list[Tensor] = field(default_factory=list)  # per image: its ground-truth boxes' categories
    sizes: list[Tensor] = field(default_factory=list)  # per image: its ground-truth boxes' sizes in mm
    pointing: Tensor = field(default_factory=lambda: torch.zeros(0))  # per image: pointing-game hit
    energy: Tensor = field(default_factory=lambda: torch.zeros(0))  # per image: share of energy inside masses
    kinds: KindPointing | None = None  # per (image, kind of mass in view), when scored by kind


class DetectionMetric(Metric):
    """TPR@FPPI and FROC of candidate boxes from one saliency method, at one or several binarization thresholds.

    ``positives_only=True`` ignores images with label 0 (the study's figures are on mass images).
    ``score_threshold`` is where the ``TPR@FPPI`` operating point cuts the box scores (0: every box counts).
    ``cell0_center`` places the maps on the image (see :func:`saliency_to_boxes`).
    ``operating_fppi``: the reported operating point is the FROC point with the highest TPR at FPPI <= this
    budget (the rule validation selects thresholds by); ``None``: every box with score >= ``score_threshold``.
    ``update`` takes each sample's ``image_id``: an image seen again (DDP padding, repeats) counts once, and
    optionally a category and a size per ground-truth box (the finding's BI-RADS, its mm), kept with which box
    found which lesion. Each image's map is also scored free of any threshold: the pointing game (its peak within
    ``pointing_tolerance`` of a mass, in ``pointing_unit``: ``px`` of the input frame, or ``mm`` on the breast from
    each image's ``pixel_mm``) and the share of its energy inside the masses; ``pointing_by_kind`` scores them per
    kind of mass too (the test report's; validation, which never reads them, leaves them out).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    box_scores: list[Tensor]
    box_threshold: list[Tensor]
    box_occurrence: list[Tensor]
    image_key: list[Tensor]
    image_occurrence: list[Tensor]
    image_gt: list[Tensor]
    image_unseen: list[Tensor]
    box_gt: list[Tensor]
    gt_occurrence: list[Tensor]
    gt_category: list[Tensor]
    gt_size: list[Tensor]
    image_pointing: list[Tensor]
    image_energy: list[Tensor]
    kind_occurrence: list[Tensor]
    kind_code: list[Tensor]
    kind_pointing: list[Tensor]
    kind_energy: list[Tensor]

    def __init__(
        self,
        thresholds: Sequence[float] = (0.5,),
        iou_threshold: float = 0.3,
        fppi_points: Sequence[float] = FPPI_POINTS,
        positives_only: bool = False,
        score_threshold: float = 0.0,
        cell0_center: float | None = None,
        operating_fppi: float | None = None,
        pointing_tolerance: float = TOLERANCE,
        pointing_unit: str = "px",
        pointing_by_kind: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(thresholds) == 0:
            raise ValueError("DetectionMetric: option thresholds expected at least one value, found none")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.iou_threshold = float(iou_threshold)
        self.fppi_points = tuple(float(p) for p in fppi_points)
        self.positives_only = positives_only
        self.score_threshold = float(score_threshold)
        self.cell0_center = cell0_center
        self.operating_fppi = operating_fppi
        if not 0.0 <= float(pointing_tolerance) < math.inf:
            raise ValueError(
                f"DetectionMetric: pointing_tolerance expected a distance >= 0, found {pointing_tolerance}"
            )
        self.pointing_tolerance = float(pointing_tolerance)
        if pointing_unit not in POINTING_UNITS:
            raise ValueError(
                f"DetectionMetric: pointing_unit expected one of {POINTING_UNITS}, found {pointing_unit!r}"
            )
        self.pointing_unit = pointing_unit
        self.pointing_by_kind = pointing_by_kind
        for name in ("box_scores", "box_threshold", "box_occurrence", "image_key", "image_occurrence"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("image_gt", default=[], dist_reduce_fx="cat")
        self.add_state("image_unseen", default=[], dist_reduce_fx="cat")  # per image: its boxes out of frame
        self.add_state("image_pointing", default=[], dist_reduce_fx="cat")  # per image: pointing-game hit
        self.add_state("image_energy", default=[], dist_reduce_fx="cat")  # per image: energy inside its masses
        # per box: the index of the ground truth it matched within its image (-1: false positive; a hit is an index
        # >= 0, no state of its own); per ground-truth box (an image's in-view boxes, then its unseen ones): its
        # sample's occurrence, its category and size
        for name in ("box_gt", "gt_occurrence", "gt_category", "gt_size"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        # per (image, kind of its masses in view): its sample's occurrence, the kind (pointing_kinds' code), its
        # pointing-game hit and energy against that kind's masses alone
        for name in ("kind_occurrence", "kind_code", "kind_pointing", "kind_energy"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        maps: Tensor,
        probabilities: Tensor,
        gt_boxes: Sequence[Tensor],
        labels: Tensor,
        image_size: tuple[int, int],
        image_ids: Sequence[str] | None = None,
        regions: Sequence[Region | None] | None = None,
        unseen_gt: Sequence[int] | None = None,
        gt_categories: Sequence[Sequence[int]] | None = None,
        gt_sizes: Sequence[Sequence[float]] | None = None,
        pixel_mm: Sequence[tuple[float, float] | None] | None = None,
    ) -> None:
        """Add a batch: maps ``(N, h, w)`` of the target class, mass probabilities ``(N,)``, ground-truth boxes
        ``gt_boxes[i] (M_i, 4)`` xyxy in the input frame ``image_size = (H, W)``, labels ``(N,)`` (1 = mass),
        ``image_ids`` (N strings; without them every sample counts as a distinct image), ``regions`` (per image
        the part of the frame that holds it, ``content_regions``: no box in the padding of ``fit`` and ``native``),
        ``unseen_gt`` (per image, its ground-truth boxes outside the input frame: counted, never matched),
        ``gt_categories`` (per image, an integer per ground-truth box, its ``gt_boxes`` first, then its unseen ones;
        0 unknown, the default), ``gt_sizes`` (the same per box in mm; NaN unknown, the default), ``pixel_mm`` (per
        image the ``(row, column)`` mm of one frame pixel, None unknown: read for a ``pointing_unit`` of ``mm`` only).
        """
        labels = labels.reshape(-1)
        n = maps.shape[0]
        if len(gt_boxes) != n or labels.numel() != n or probabilities.numel() != n:
            raise ValueError(
                f"DetectionMetric.update: expected {n} gt_boxes, labels and probabilities (one per map), "
                f"found {len(gt_boxes)}, {labels.numel()} and {probabilities.numel()}"
            )
        keep = [i for i, label in enumerate(labels.tolist()) if label > 0 or not self.positives_only]
        keys, occurrence = sample_keys(len(keep), None if image_ids is None else [image_ids[i] for i in keep])
        rows = _BatchRows()
        if keep:
            kept = self._kept(keep, maps, gt_boxes, regions, pixel_mm)
            rows.pointing, rows.energy = pointing_and_energy(
                kept.maps, kept.gt, image_size, self.cell0_center, kept.regions, self.pointing_tolerance, kept.pixel_mm
            )
            kept_probabilities = probabilities.reshape(-1)[torch.tensor(keep, device=probabilities.device)]
            per_image = saliency_to_boxes(kept.maps, image_size, self.thresholds, kept_probabilities,
                                          cell0_center=self.cell0_center, regions=kept.regions)  # fmt: skip
            for j, (image, dets) in enumerate(zip(keep, per_image, strict=True)):
                gt = gt_boxes[image].reshape(-1, 4).float().cpu()
                seen = int(occurrence[j])
                self._add_ground_truth(rows, image, gt.shape[0], seen, unseen_gt, gt_categories, gt_sizes, image_ids)
                self._add_boxes(rows, dets, gt, seen)
            if self.pointing_by_kind and (gt_categories is not None or gt_sizes is not None):  # kinds in view
                self._add_kinds(rows, kept, image_size, gt_categories is not None, gt_sizes is not None)
        self._append_rows(rows, keys, occurrence)

    def _kept(
        self,
        keep: list[int],
        maps: Tensor,
        gt_boxes: Sequence[Tensor],
        regions: Sequence[Region | None] | None,
        pixel_mm: Sequence[tuple[float, float] | None] | None,
    ) -> _Kept:
        """The batch's samples ``keep`` (all, or the mass images with ``positives_only``), as the scores read them."""
        kept_pixels = None
        if self.pointing_unit == "mm":  # an image of unknown size on the breast is not scored in mm
            kept_pixels = [None if pixel_mm is None else pixel_mm[i] for i in keep]
        return _Kept(
            maps[torch.tensor(keep, device=maps.device)],
            [gt_boxes[i] for i in keep],
            None if regions is None else [regions[i] for i in keep],
            kept_pixels,
        )

    def _add_ground_truth(
        self,
        rows: _BatchRows,
        image: int,
        in_view: int,
        seen: int,
        unseen_gt: Sequence[int] | None,
        gt_categories: Sequence[Sequence[int]] | None,
        gt_sizes: Sequence[Sequence[float]] | None,
        image_ids: Sequence[str] | None,
    ) -> None:
        """Sample ``image``'s ground truth: its ``in_view`` boxes, then its unseen ones, each with ``seen`` (its
        sample's occurrence), its category and its size."""
        rows.gts.append(in_view)
        rows.unseen.append(int(unseen_gt[image]) if unseen_gt is not None else 0)
        count = in_view + rows.unseen[-1]
        rows.categories.append(self._per_box(gt_categories, "gt_categories", image, count, image_ids, 0))
        rows.sizes.append(self._per_box(gt_sizes, "gt_sizes", image, count, image_ids, math.nan))
        rows.gt_occurrence.append(torch.full((count,), seen, dtype=torch.int64))

    def _add_boxes(self, rows: _BatchRows, dets: Sequence[tuple[Tensor, Tensor]], gt: Tensor, seen: int) -> None:
        """One image's boxes at each binarization threshold (``dets[k] = (boxes (P, 4), scores (P,))``), each with
        the ground truth of ``gt (M, 4)`` it matched (-1: a false positive) and ``seen``, its sample's occurrence."""
        for k, (boxes, box_scores) in enumerate(dets):
            rows.scores.append(box_scores)
            rows.found.append(matched_gt(boxes, box_scores, gt, self.iou_threshold).cpu())
            rows.threshold.append(torch.full_like(box_scores, float(k)))
            rows.box_occurrence.append(torch.full(box_scores.shape, seen, dtype=torch.int64))

    def _add_kinds(
        self, rows: _BatchRows, kept: _Kept, image_size: tuple[int, int], categories: bool, sizes: bool
    ) -> None:
        """The pointing game and energy per kind of mass in view, of the kinds the given ``categories`` and
        ``sizes`` tell apart (``rows`` already holds each kept image's ground truth)."""
        codes = [
            box_codes(
                rows.categories[j].tolist() if categories else None,
                rows.sizes[j].tolist() if sizes else None,
                rows.gts[j],
            )  # fmt: skip
            for j in range(len(kept.gt))
        ]
        rows.kinds = pointing_by_kind(kept.maps, kept.gt, codes, image_size, self.cell0_center, kept.regions,
                                      self.pointing_tolerance, kept.pixel_mm)  # fmt: skip

    def _append_rows(self, rows: _BatchRows, keys: Tensor, occurrence: Tensor) -> None:
        """One batch's rows onto the states (each state gets a tensor, empty or not, so every rank's lists sync)."""
        self.box_scores.append(self._flat(rows.scores))
        self.box_threshold.append(self._flat(rows.threshold))
        self.box_occurrence.append(self._flat(rows.box_occurrence, torch.int64))
        self.image_key.append(keys.to(self.device))
        self.image_occurrence.append(occurrence.to(self.device))
        self.image_gt.append(torch.tensor(rows.gts, dtype=torch.int64, device=self.device))
        self.image_unseen.append(torch.tensor(rows.unseen, dtype=torch.int64, device=self.device))
        self.box_gt.append(self._flat(rows.found, torch.int64))
        self.gt_occurrence.append(self._flat(rows.gt_occurrence, torch.int64))
        self.gt_category.append(self._flat(rows.categories, torch.int64))
        self.gt_size.append(self._flat(rows.sizes, torch.float32))
        self.image_pointing.append(self._flat([rows.pointing]))
        self.image_energy.append(self._flat([rows.energy]))
        kinds = rows.kinds
        kind_rows = kinds.image if kinds is not None else torch.zeros(0, dtype=torch.int64)
        self.kind_occurrence.append(self._flat([occurrence[kind_rows]], torch.int64))
        self.kind_code.append(self._flat([] if kinds is None else [kinds.code], torch.int64))
        self.kind_pointing.append(self._flat([] if kinds is None else [kinds.hit]))
        self.kind_energy.append(self._flat([] if kinds is None else [kinds.energy]))

    @staticmethod
    def _per_box(
        given: Sequence[Sequence[float]] | None,
        option: str,
        image: int,
        count: int,
        image_ids: Sequence[str] | None,
        default: float,
    ) -> Tensor:
        """Image ``image``'s ``count`` ground-truth values of ``option`` (``default`` where none are given),
        refused when their number is not its boxes' (in view and unseen)."""
        if given is None:
            return torch.full((count,), default, dtype=torch.float64)
        values = torch.as_tensor(list(given[image]), dtype=torch.float64).reshape(-1)
        if values.numel() != count:
            name = image_ids[image] if image_ids is not None else f"sample {image}"
            raise ValueError(f"DetectionMetric.update: {name} has {count} ground-truth boxes (in view and out of "
                             f"frame) but {values.numel()} {option}")  # fmt: skip
        return values

    def _flat(self, parts: list[Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
        """One tensor on the metric's device (an empty one keeps every rank's list non-empty for sync)."""
        flat = torch.cat(parts) if parts else torch.zeros(0)
        return flat.to(device=self.device, dtype=dtype)

    def _cat(self, name: str, dtype: torch.dtype) -> Tensor:
        """A (synced) state as one tensor on the CPU, where ``compute`` and every reader of its result work."""
        state = getattr(self, name)
        if isinstance(state, list) and not state:
            return torch.zeros(0, dtype=dtype)
        return dim_zero_cat(state).to(device="cpu", dtype=dtype)

    def _distinct(self) -> _Distinct:
        """The first occurrence of each image: its key, its boxes in and out of its frame; which boxes and which
        ground-truth rows belong to those occurrences, and their image."""
        keys, occ = self._cat("image_key", torch.int64), self._cat("image_occurrence", torch.int64)
        first = first_occurrence_mask(keys, occ)
        kept_occ = occ[first]  # (I,)
        sorted_occ, perm = torch.sort(kept_occ)

        def image_of(occurrence: Tensor) -> tuple[Tensor, Tensor]:
            kept = torch.isin(occurrence, kept_occ)
            return kept, perm[torch.searchsorted(sorted_occ, occurrence[kept])]  # index into the kept images

        box_kept, box_image = image_of(self._cat("box_occurrence", torch.int64))
        gt_kept, gt_image = image_of(self._cat("gt_occurrence", torch.int64))
        gt, unseen = (self._cat(name, torch.int64)[first] for name in ("image_gt", "image_unseen"))
        pointing, energy = (self._cat(name, torch.float32)[first] for name in ("image_pointing", "image_energy"))
        kind_kept, kind_image = image_of(self._cat("kind_occurrence", torch.int64))
        kinds = None
        if kind_image.numel():  # the data named some mass's BI-RADS or size
            code = self._cat("kind_code", torch.int64)[kind_kept]
            hit, kind_energy = (self._cat(name, torch.float32)[kind_kept] for name in ("kind_pointing", "kind_energy"))
            kinds = KindPointing(kind_image, code, hit, kind_energy)
        return _Distinct(keys[first], gt, unseen, box_image, box_kept, gt_image, gt_kept, int(keys.numel()), pointing,
                         energy, kinds)  # fmt: skip

    def compute(self) -> DetectionResult:
        """FROC, TPR at each FPPI point and the operating point per threshold, as a :class:`DetectionResult`.

        On the CPU whatever device the states are on (``_cat``): its readers (the test report's bootstrap intervals,
        plots, JSON) are CPU code, and a GPU run's ``wsod test`` once failed there indexing CPU resamples with CUDA
        boxes.
        """
        d = self._distinct()
        image_gt = d.in_view + d.unseen  # a box out of frame is ground truth no box can match: a miss
        scores = self._cat("box_scores", torch.float32)[d.box_kept]
        indices = self._cat("box_threshold", torch.float32)[d.box_kept]
        found = self._cat("box_gt", torch.int64)[d.box_kept]  # within its image, -1 a false positive
        box_gt = global_gt_index(d.gt_image, d.box_image, found)
        num_gt, num_images = int(image_gt.sum()), int(d.keys.numel())
        results = []
        for k, threshold in enumerate(self.thresholds):
            selected = indices == k
            s, tp = scores[selected], found[selected] >= 0
            results.append(threshold_result(threshold, s, tp, d.box_image[selected], num_gt, num_images,
                                            self.fppi_points, self.operating_fppi, self.score_threshold,
                                            box_gt[selected]))  # fmt: skip
        gt_category = self._cat("gt_category", torch.int64)[d.gt_kept]
        gt_size = self._cat("gt_size", torch.float32)[d.gt_kept]
        return DetectionResult(tuple(results), self.fppi_points, d.keys, image_gt, d.num_samples,
                               int(d.in_view.sum()), d.gt_image, gt_category, gt_size, d.pointing,
                               d.energy, self.pointing_tolerance, self.pointing_unit, d.kinds)  # fmt: skip

    def best_threshold(self, fppi_budget: float = 1.0) -> float:
        """The threshold maximizing TPR at ``fppi_budget`` on the data seen so far (validation only, never test)."""
        return self.compute().best_threshold(fppi_budget)
