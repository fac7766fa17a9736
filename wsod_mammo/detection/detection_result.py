"""What ``DetectionMetric.compute`` gives: per binarization threshold the FROC curve, TPR at the FPPI points and
the operating point (``ThresholdResult``), and over the split the distinct images, their ground truth and their
threshold-free map scores (``DetectionResult``). The reports, strata and bootstrap read these, never the metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from wsod_mammo.detection.froc import capped_operating_point, froc_curve, operating_point, tpr_at_fppi
from wsod_mammo.detection.pointing import TOLERANCE
from wsod_mammo.detection.pointing_kinds import KindPointing


@dataclass(frozen=True)
class ThresholdResult:
    """Figures at one binarization threshold of the normalized map.

    ``fppi_curve, tpr_curve, score_thresholds (T,)``: the FROC curve (origin first, see ``froc_curve``);
    ``tpr_at_fppi (F,)``: TPR within each FPPI budget of ``DetectionResult.fppi_points``;
    ``tpr, fppi``: the operating point: the FROC point with the highest TPR at FPPI <= the metric's
    ``operating_fppi`` (as validation selects thresholds), or, with ``operating_fppi=None``, every box with score
    >= ``score_threshold``. ``box_scores, box_tp (P,)`` and ``box_image (P,)`` (index into
    ``DetectionResult.image_keys``): the distinct images' boxes, for bootstrap intervals; ``box_gt (P,)`` (index
    into ``DetectionResult.gt_image``, -1 for a false positive; None where unknown): the ground truth each box
    found, for figures per kind of lesion. TPR values are NaN when there is no ground truth.
    """

    threshold: float
    fppi_curve: Tensor
    tpr_curve: Tensor
    score_thresholds: Tensor
    tpr_at_fppi: Tensor
    tpr: float
    fppi: float
    box_scores: Tensor
    box_tp: Tensor
    box_image: Tensor
    box_gt: Tensor | None = None

    def tpr_within(self, fppi_budget: float) -> float:
        """The highest TPR of the FROC curve at FPPI <= ``fppi_budget`` (what validation selects thresholds by)."""
        return float(tpr_at_fppi(self.fppi_curve, self.tpr_curve, (fppi_budget,))[0])


def threshold_result(
    threshold: float,
    scores: Tensor,
    is_tp: Tensor,
    box_image: Tensor,
    num_gt: int,
    num_images: int,
    fppi_points: Sequence[float],
    operating_fppi: float | None,
    score_threshold: float = 0.0,
    box_gt: Tensor | None = None,
) -> ThresholdResult:
    """One threshold's figures from its pooled boxes ``scores, is_tp, box_image (P,)`` (and ``box_gt``, the ground
    truth each found): the FROC curve, TPR at ``fppi_points`` and the operating point, the highest TPR at FPPI <=
    ``operating_fppi`` or, with None, every box scoring at least ``score_threshold`` (``DetectionMetric``'s
    options)."""
    fppi, tpr, score_thresholds = froc_curve(scores, is_tp, num_gt, num_images)
    if operating_fppi is None:
        point_tpr, point_fppi = operating_point(scores, is_tp, num_gt, num_images, score_threshold)
    else:
        point_tpr, point_fppi = capped_operating_point(fppi, tpr, operating_fppi)
    return ThresholdResult(
        threshold=threshold,
        fppi_curve=fppi,
        tpr_curve=tpr,
        score_thresholds=score_thresholds,
        tpr_at_fppi=tpr_at_fppi(fppi, tpr, fppi_points),
        tpr=point_tpr,
        fppi=point_fppi,
        box_scores=scores,
        box_tp=is_tp,
        box_image=box_image,
        box_gt=box_gt,
    )


class DetectionResult:
    """Output of ``DetectionMetric.compute``: one ``ThresholdResult`` per binarization threshold, in order.

    A plain class on purpose: torchmetrics walks dataclasses returned by ``compute`` and squeezes every
    one-element tensor, which would turn a one-point curve into a scalar.

    ``num_images`` counts distinct images, ``num_samples`` every evaluated sample (repeats and DDP padding
    included); ``image_keys, image_gt (I,)``: each distinct image's key and ground-truth box count (the boxes its
    input frame leaves out included: misses). ``gt_image, gt_category, gt_size (G,)`` (None where unknown): each of
    those ground-truth boxes' image (index into ``image_keys``), category (the finding's BI-RADS, 0 unknown) and
    size in mm (NaN unknown), an image's in-view boxes first; ``ThresholdResult.box_gt`` indexes them.
    ``pointing, energy (I,)`` (None where unknown): each image's pointing-game hit and the share of its map's energy
    inside its masses (:mod:`wsod_mammo.detection.pointing`), NaN for an image without a mass in view (and, with
    a tolerance in mm, for the pointing of an image without a pixel spacing); ``pointing_tolerance``: how far a peak
    may lie off a mass and still hit it, in ``pointing_unit`` (``px`` of the input frame or ``mm``).
    ``kind_pointing`` (None where the data names no mass's BI-RADS or size): the same two figures per image and kind
    of its masses in view, against that kind's masses alone (:mod:`wsod_mammo.detection.pointing_kinds`).
    """

    def __init__(
        self,
        per_threshold: tuple[ThresholdResult, ...],
        fppi_points: tuple[float, ...],
        image_keys: Tensor,
        image_gt: Tensor,
        num_samples: int,
        num_gt_in_view: int | None = None,
        gt_image: Tensor | None = None,
        gt_category: Tensor | None = None,
        gt_size: Tensor | None = None,
        pointing: Tensor | None = None,
        energy: Tensor | None = None,
        pointing_tolerance: float = TOLERANCE,
        pointing_unit: str = "px",
        kind_pointing: KindPointing | None = None,
    ) -> None:
        self.per_threshold = per_threshold
        self.fppi_points = fppi_points
        self.image_keys = image_keys
        self.image_gt = image_gt
        self.num_gt = int(image_gt.sum())
        # the ground truth inside the input frames (``num_gt`` also counts the boxes they leave out, never matched)
        self.num_gt_in_view = self.num_gt if num_gt_in_view is None else num_gt_in_view
        self.num_images = int(image_keys.numel())
        self.num_samples = num_samples
        self.gt_image = gt_image
        self.gt_category = gt_category
        self.gt_size = gt_size
        self.pointing = pointing
        self.energy = energy
        self.pointing_tolerance = pointing_tolerance
        self.pointing_unit = pointing_unit
        self.kind_pointing = kind_pointing

    def __repr__(self) -> str:
        cells = ", ".join(f"{r.threshold:g}: {r.tpr:.3f}@{r.fppi:.2f}" for r in self.per_threshold)
        return f"DetectionResult(num_gt={self.num_gt}, num_images={self.num_images}, operating points {{{cells}}})"

    @property
    def tpr_defined(self) -> bool:
        """False when there is no ground truth (no mass image seen): every TPR is NaN, not 0."""
        return self.num_gt > 0

    def best_threshold(self, fppi_budget: float = 1.0) -> float:
        """The binarization threshold with the highest FROC TPR at ``fppi <= fppi_budget`` (ties: the first).

        With no ground truth no choice can be made and the first configured threshold is returned.
        """
        best, best_tpr = self.per_threshold[0].threshold, -math.inf
        for result in self.per_threshold:
            value = result.tpr_within(fppi_budget)
            if not math.isnan(value) and value > best_tpr:
                best, best_tpr = result.threshold, value
        return best
