"""Detection figures of a subset of the test images (one breast density, say) or of the masses (one finding
BI-RADS, one size), from the whole set's result.

A test report's ``DetectionResult`` keeps every distinct image's key, ground-truth count and boxes with their scores
and hits, and which mass each hit found, so the FROC curve and the operating point of any subset of the images, or
of the masses, are its boxes' alone: nothing is evaluated again. Readers of mammography results ask how detection
holds up in dense breasts, where masses hide in fibroglandular tissue, and on the masses that matter most (BI-RADS
4-5, suspicious for malignancy, against the probably benign 3) or are smallest; the report answers per density
category (VinDr's ``breast_density``), per finding BI-RADS (``finding_birads``) and per size in mm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsod_mammo.detection.detection_result import DetectionResult, threshold_result
from wsod_mammo.detection.mass_kinds import UNKNOWN

__all__ = ["UNKNOWN", "restrict", "restrict_lesions", "strata_of"]


def restrict(result: DetectionResult, keep: Tensor, operating_fppi: float) -> DetectionResult:
    """``result`` over the images ``keep (I,)`` (bool, in ``result.image_keys`` order) selects, at its first threshold:
    their boxes, the FROC curve and the operating point (the highest TPR at FPPI <= ``operating_fppi``) recomputed.
    ``num_samples`` counts the kept images (the samples each was evaluated as are not kept per image)."""
    keep = keep.reshape(-1).bool().cpu()
    if keep.numel() != result.image_keys.numel():
        raise ValueError(f"restrict: expected {result.image_keys.numel()} flags (one per image), got {keep.numel()}")
    first = result.per_threshold[0]
    new_index = torch.cumsum(keep.long(), 0) - 1  # (I,) an image's index among the kept ones
    boxes = keep[first.box_image.long()]  # (P,)
    gt_rows = None if result.gt_image is None else keep[result.gt_image]  # (G,) the kept images' ground truth
    return _rebuilt(result, boxes, keep, new_index, gt_rows, result.image_gt[keep], operating_fppi)


def restrict_lesions(result: DetectionResult, keep: Tensor, operating_fppi: float) -> DetectionResult:
    """``result`` counting only the ground truth ``keep (G,)`` (bool, in ``result.gt_image`` order; one kind of
    lesion, say BI-RADS 5 or masses under 10 mm) at its first threshold: every image stays (FPPI's denominator),
    every false positive stays (no lesion owns it), and a box that found other ground truth is dropped (neither hit
    nor false alarm)."""
    if result.gt_image is None or result.per_threshold[0].box_gt is None:
        raise ValueError("restrict_lesions: the result does not say which ground truth each box found")
    keep = keep.reshape(-1).bool().cpu()
    if keep.numel() != result.gt_image.numel():
        raise ValueError(f"restrict_lesions: expected {result.gt_image.numel()} flags (one per ground-truth box), "
                         f"got {keep.numel()}")  # fmt: skip
    first = result.per_threshold[0]
    box_gt = first.box_gt
    assert box_gt is not None  # checked above
    boxes = (box_gt < 0) | keep[box_gt.clamp(min=0)]
    images = torch.ones(result.image_keys.numel(), dtype=torch.bool)
    image_gt = torch.bincount(result.gt_image[keep], minlength=images.numel())
    return _rebuilt(result, boxes, images, torch.arange(images.numel()), keep, image_gt, operating_fppi)


def _rebuilt(
    result: DetectionResult,
    boxes: Tensor,
    images: Tensor,
    new_index: Tensor,
    gt_rows: Tensor | None,
    image_gt: Tensor,
    operating_fppi: float,
) -> DetectionResult:
    """The first threshold's figures again over the boxes ``boxes (P,)``, the images ``images (I,)`` (``new_index``:
    each one's index among them) and the ground-truth rows ``gt_rows (G,)``, ``image_gt`` ground truth per kept
    image."""
    first = result.per_threshold[0]
    box_image = new_index[first.box_image.long()[boxes]]
    scores, tp = first.box_scores[boxes], first.box_tp[boxes]
    gt_image = gt_category = gt_size = box_gt = None
    if gt_rows is not None and result.gt_image is not None and result.gt_category is not None:
        gt_image, gt_category = new_index[result.gt_image[gt_rows]], result.gt_category[gt_rows]
        gt_size = None if result.gt_size is None else result.gt_size[gt_rows]
        if first.box_gt is not None:
            new_row = torch.cumsum(gt_rows.long(), 0) - 1  # (G,) a kept row's index among the kept ones
            kept_gt = first.box_gt[boxes]
            box_gt = torch.where(kept_gt >= 0, new_row[kept_gt.clamp(min=0)], kept_gt)
    num_gt, num_images = int(image_gt.sum()), int(images.sum())
    kept = threshold_result(first.threshold, scores, tp, box_image, num_gt, num_images, result.fppi_points,
                            operating_fppi, box_gt=box_gt)  # fmt: skip
    pointing, energy = (None if v is None else v[images] for v in (result.pointing, result.energy))
    return DetectionResult((kept,), result.fppi_points, result.image_keys[images], image_gt, num_images,
                           gt_image=gt_image, gt_category=gt_category, gt_size=gt_size, pointing=pointing,
                           energy=energy, pointing_tolerance=result.pointing_tolerance)  # fmt: skip


def strata_of(keys: Tensor, labels: dict[int, str]) -> dict[str, Tensor]:
    """``{label: (I,) bool}`` of the images ``keys (I,)`` by their ``labels`` (``{image key: label}``; a key it
    lacks or an empty label is :data:`UNKNOWN`), labels sorted, :data:`UNKNOWN` last."""
    named = [labels.get(k) or UNKNOWN for k in keys.reshape(-1).tolist()]
    order = sorted(set(named), key=lambda label: (label == UNKNOWN, label))
    return {label: torch.tensor([n == label for n in named], dtype=torch.bool) for label in order}
