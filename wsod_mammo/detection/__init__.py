"""Detection evaluation: saliency maps -> scored boxes, matching at IoU > 0.3, FROC, TPR@FPPI, report tables."""

from wsod_mammo.detection.boxes import Detections, box_iou, saliency_to_boxes
from wsod_mammo.detection.froc import FPPI_POINTS, froc_curve, match_image, operating_point, tpr_at_fppi
from wsod_mammo.detection.metrics import DetectionMetric, DetectionResult, ThresholdResult

__all__ = [
    "FPPI_POINTS",
    "DetectionMetric",
    "DetectionResult",
    "Detections",
    "ThresholdResult",
    "box_iou",
    "froc_curve",
    "match_image",
    "operating_point",
    "saliency_to_boxes",
    "tpr_at_fppi",
]
