"""torchmetrics ``DetectionMetric``: TPR@FPPI and FROC of one saliency method over a split, synced under DDP.

Boxes are made and matched at ``update`` time (see :mod:`wsod_mammo.detection.boxes` and
:mod:`wsod_mammo.detection.froc`); the states are only flat per-box lists (score, TP flag, threshold index) and
two sums (ground-truth boxes, images), so DDP sync is a concatenation plus a sum and ``compute`` is one sort per
binarization threshold. One metric per test-time saliency method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from wsod_mammo.detection.boxes import saliency_to_boxes
from wsod_mammo.detection.froc import FPPI_POINTS, froc_curve, match_image, operating_point, tpr_at_fppi


@dataclass(frozen=True)
class ThresholdResult:
    """Figures at one binarization threshold of the normalized map.

    ``fppi, tpr, score_thresholds (T,)``: the FROC curve (origin first, see ``froc_curve``);
    ``tpr_at_fppi (F,)``: TPR within each FPPI budget of ``DetectionResult.fppi_points``;
    ``tpr, fppi``: the operating point counting every box with score >= the metric's ``score_threshold``.
    TPR values are NaN when there is no ground truth.
    """

    threshold: float
    fppi_curve: Tensor
    tpr_curve: Tensor
    score_thresholds: Tensor
    tpr_at_fppi: Tensor
    tpr: float
    fppi: float


class DetectionResult:
    """Output of ``DetectionMetric.compute``: one ``ThresholdResult`` per binarization threshold, in order.

    A plain class on purpose: torchmetrics walks dataclasses returned by ``compute`` and squeezes every
    one-element tensor, which would turn a one-point curve into a scalar.
    """

    def __init__(
        self, per_threshold: tuple[ThresholdResult, ...], fppi_points: tuple[float, ...], num_gt: int, num_images: int
    ) -> None:
        self.per_threshold = per_threshold
        self.fppi_points = fppi_points
        self.num_gt = num_gt
        self.num_images = num_images

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
            value = float(tpr_at_fppi(result.fppi_curve, result.tpr_curve, (fppi_budget,))[0])
            if not math.isnan(value) and value > best_tpr:
                best, best_tpr = result.threshold, value
        return best


class DetectionMetric(Metric):
    """TPR@FPPI and FROC of candidate boxes from one saliency method, at one or several binarization thresholds.

    ``positives_only=True`` ignores images with label 0 (the study's figures are on mass images).
    ``score_threshold`` is where the ``TPR@FPPI`` operating point cuts the box scores (0: every box counts).
    ``cell0_center`` places the maps on the image (see :func:`saliency_to_boxes`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float] = (0.5,),
        iou_threshold: float = 0.3,
        fppi_points: Sequence[float] = FPPI_POINTS,
        positives_only: bool = False,
        score_threshold: float = 0.0,
        cell0_center: float | None = None,
        **kwargs,
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
        self.add_state("box_scores", default=[], dist_reduce_fx="cat")
        self.add_state("box_tp", default=[], dist_reduce_fx="cat")
        self.add_state("box_threshold", default=[], dist_reduce_fx="cat")
        self.add_state("num_gt", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")

    def update(
        self,
        maps: Tensor,
        probabilities: Tensor,
        gt_boxes: Sequence[Tensor],
        labels: Tensor,
        image_size: tuple[int, int],
    ) -> None:
        """Add a batch: maps ``(N, h, w)`` of the target class, mass probabilities ``(N,)``, ground-truth boxes
        ``gt_boxes[i] (M_i, 4)`` xyxy in the input frame ``image_size = (H, W)``, labels ``(N,)`` (1 = mass).
        """
        labels = labels.reshape(-1)
        n = maps.shape[0]
        if len(gt_boxes) != n or labels.numel() != n or probabilities.numel() != n:
            raise ValueError(
                f"DetectionMetric.update: expected {n} gt_boxes, labels and probabilities (one per map), "
                f"found {len(gt_boxes)}, {labels.numel()} and {probabilities.numel()}"
            )
        keep = [i for i, label in enumerate(labels.tolist()) if label > 0 or not self.positives_only]
        scores, flags, indices, num_gt = [], [], [], 0
        if keep:
            keep_t = torch.tensor(keep, device=maps.device)
            per_image = saliency_to_boxes(
                maps[keep_t],
                image_size,
                self.thresholds,
                probabilities.reshape(-1)[keep_t.to(probabilities.device)],
                cell0_center=self.cell0_center,
            )
            for image, dets in zip(keep, per_image, strict=True):
                gt = gt_boxes[image].reshape(-1, 4).float().cpu()
                num_gt += gt.shape[0]
                for k, (boxes, box_scores) in enumerate(dets):
                    scores.append(box_scores)
                    flags.append(match_image(boxes, box_scores, gt, self.iou_threshold).float())
                    indices.append(torch.full_like(box_scores, float(k)))
        self.num_gt += num_gt
        self.num_images += len(keep)
        self.box_scores.append(self._flat(scores))
        self.box_tp.append(self._flat(flags))
        self.box_threshold.append(self._flat(indices))

    def _flat(self, parts: list[Tensor]) -> Tensor:
        """One float32 tensor on the metric's device (an empty one keeps every rank's list non-empty for sync)."""
        flat = torch.cat(parts) if parts else torch.zeros(0)
        return flat.to(device=self.device, dtype=torch.float32)

    def _states(self) -> tuple[Tensor, Tensor, Tensor]:
        def cat(state: list[Tensor] | Tensor) -> Tensor:
            if isinstance(state, list) and not state:
                return torch.zeros(0, device=self.device)
            return dim_zero_cat(state)

        return cat(self.box_scores), cat(self.box_tp), cat(self.box_threshold)

    def compute(self) -> DetectionResult:
        """FROC, TPR at each FPPI point and the operating point per threshold, as a :class:`DetectionResult`."""
        scores, flags, indices = self._states()
        num_gt, num_images = int(round(float(self.num_gt))), int(round(float(self.num_images)))
        results = []
        for k, threshold in enumerate(self.thresholds):
            selected = indices == k
            s, tp = scores[selected], flags[selected] > 0.5
            fppi, tpr, score_thresholds = froc_curve(s, tp, num_gt, num_images)
            point_tpr, point_fppi = operating_point(s, tp, num_gt, num_images, self.score_threshold)
            results.append(
                ThresholdResult(
                    threshold=threshold,
                    fppi_curve=fppi,
                    tpr_curve=tpr,
                    score_thresholds=score_thresholds,
                    tpr_at_fppi=tpr_at_fppi(fppi, tpr, self.fppi_points),
                    tpr=point_tpr,
                    fppi=point_fppi,
                )
            )
        return DetectionResult(tuple(results), self.fppi_points, num_gt, num_images)

    def best_threshold(self, fppi_budget: float = 1.0) -> float:
        """The threshold maximizing TPR at ``fppi_budget`` on the data seen so far (validation only, never test)."""
        return self.compute().best_threshold(fppi_budget)
