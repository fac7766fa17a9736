"""Detection figures of a subset of the test images (one breast density, say), from the whole set's result.

A test report's ``DetectionResult`` keeps every distinct image's key, ground-truth count and boxes with their scores
and hits, so the FROC curve and the operating point of any subset of the images are its boxes' alone: nothing is
evaluated again. Readers of mammography results ask how detection holds up in dense breasts, where masses hide
in fibroglandular tissue; the report answers per density category (VinDr's ``breast_density``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsod_mammo.detection.metrics import DetectionResult, threshold_result

UNKNOWN = "unknown"  # the stratum of images whose category the data leaves empty


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
    box_image = new_index[first.box_image.long()[boxes]]
    scores, tp = first.box_scores[boxes], first.box_tp[boxes]
    image_gt = result.image_gt[keep]
    num_gt, num_images = int(image_gt.sum()), int(keep.sum())
    kept = threshold_result(first.threshold, scores, tp, box_image, num_gt, num_images, result.fppi_points,
                            operating_fppi)  # fmt: skip
    return DetectionResult((kept,), result.fppi_points, result.image_keys[keep], image_gt, num_images)


def strata_of(keys: Tensor, labels: dict[int, str]) -> dict[str, Tensor]:
    """``{label: (I,) bool}`` of the images ``keys (I,)`` by their ``labels`` (``{image key: label}``; a key it
    lacks or an empty label is :data:`UNKNOWN`), labels sorted, :data:`UNKNOWN` last."""
    named = [labels.get(k) or UNKNOWN for k in keys.reshape(-1).tolist()]
    order = sorted(set(named), key=lambda label: (label == UNKNOWN, label))
    return {label: torch.tensor([n == label for n in named], dtype=torch.bool) for label in order}
