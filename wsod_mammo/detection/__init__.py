"""Detection evaluation: saliency maps -> scored boxes, matching at IoU > 0.3, FROC, TPR@FPPI, report tables.

Names are imported on first use (PEP 562), so ``wsod report`` does not pay for torch and torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FPPI_POINTS": "wsod_mammo.detection.froc",
    "DetectionMetric": "wsod_mammo.detection.metrics",
    "DetectionResult": "wsod_mammo.detection.detection_result",
    "Detections": "wsod_mammo.detection.boxes",
    "ThresholdResult": "wsod_mammo.detection.detection_result",
    "box_iou": "wsod_mammo.detection.boxes",
    "froc_curve": "wsod_mammo.detection.froc",
    "match_image": "wsod_mammo.detection.froc",
    "matched_gt": "wsod_mammo.detection.froc",
    "operating_point": "wsod_mammo.detection.froc",
    "saliency_to_boxes": "wsod_mammo.detection.boxes",
    "tpr_at_fppi": "wsod_mammo.detection.froc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
