"""Classification metrics per GMIC head (the study's Table I: accuracy, AUC, TPR, TNR)."""

from __future__ import annotations

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryRecall,
    BinarySpecificity,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelRecall,
    MultilabelSpecificity,
)

HEADS = ("global", "local", "fusion")
STAGES = ("train", "val", "test")


def classification_metrics(num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """Accuracy, AUROC, TPR (sensitivity) and TNR (specificity) at ``threshold``.

    AUROC keeps every prediction (exact, no binning); its states are float32 and ``cat``-synced under DDP, so a
    multi-process run computes the same figure as one process over the same images.
    """
    if num_classes == 1:
        metrics = {
            "accuracy": BinaryAccuracy(threshold=threshold),
            "auroc": BinaryAUROC(),
            "tpr": BinaryRecall(threshold=threshold),
            "tnr": BinarySpecificity(threshold=threshold),
        }
    else:
        kwargs = {"num_labels": num_classes, "threshold": threshold, "average": "macro"}
        metrics = {
            "accuracy": MultilabelAccuracy(**kwargs),
            "auroc": MultilabelAUROC(num_labels=num_classes, average="macro"),
            "tpr": MultilabelRecall(**kwargs),
            "tnr": MultilabelSpecificity(**kwargs),
        }
    return MetricCollection(metrics)


def stage_head_metrics(num_classes: int) -> nn.ModuleDict:
    """One MetricCollection per (stage, head), keyed ``"{stage}_{head}"``; logged as ``{stage}/{head}/{name}``."""
    return nn.ModuleDict(
        {
            f"{stage}_{head}": classification_metrics(num_classes).clone(prefix=f"{stage}/{head}/")
            for stage in STAGES
            for head in HEADS
        }
    )
