"""Classification metrics per GMIC head (the study's Table I: accuracy, AUC, TPR, TNR)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torchmetrics.functional.classification as F
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities.data import dim_zero_cat

from wsod_mammo.detection.image_keys import first_occurrence_mask, sample_keys

HEADS = ("global", "local", "fusion")
STAGES = ("train", "val", "test")


class KeyedMean(Metric):
    """The mean of a per-sample value (the evaluation loss) over distinct images: each image's first occurrence
    counts, as in ``KeyedClassificationMetric``, so DDP padding and ``selection: paper`` repeats do not weigh in."""

    is_differentiable = False
    full_state_update = False
    value: list[Tensor]
    key: list[Tensor]
    occurrence: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for state in ("value", "key", "occurrence"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(self, value: Tensor, image_ids: Sequence[str] | None = None) -> None:
        """``value`` ``(N,)`` per sample; ``image_ids`` N strings (without them each sample is a distinct image)."""
        keys, occurrence = sample_keys(value.shape[0], image_ids, value.device)
        self.value.append(value.detach().float())
        self.key.append(keys)
        self.occurrence.append(occurrence)

    def compute(self) -> Tensor:
        if isinstance(self.value, list) and not self.value:
            return torch.tensor(float("nan"), device=self.device)
        keys = dim_zero_cat(self.key)
        first = first_occurrence_mask(keys, dim_zero_cat(self.occurrence))
        values, kept = dim_zero_cat(self.value)[first], keys[first]
        # summed in the images' key order, in float64: a float32 sum depends on its order, and DDP gathers the
        # images rank by rank (2 processes gave 0.35942605 where 1 gave 0.35942611)
        return values[torch.argsort(kept, stable=True)].double().mean().float()


class KeyedClassificationMetric(Metric):
    """One Table I figure (``accuracy``, ``auroc``, ``tpr`` or ``tnr``) over distinct images.

    States are per-sample predictions ``(N,)`` or ``(N, C)``, targets, ``image_id`` keys and occurrence numbers,
    ``cat``-synced under DDP; ``compute`` keeps each image's first occurrence (DDP padding and ``selection: paper``
    repeats count once; see :mod:`wsod_mammo.detection.image_keys`), so 2 processes equal 1 over the same images.
    AUROC keeps every prediction (exact, no binning). A class whose images (gathered over all processes) are all
    positive or all negative has no AUROC: NaN, not torchmetrics' 0.0, and such a class is left out of the macro
    mean of several; ``undefined`` then lists it (see :func:`undefined_auroc`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    preds: list[Tensor]
    target: list[Tensor]
    key: list[Tensor]
    occurrence: list[Tensor]

    def __init__(self, name: str, num_classes: int, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if name not in FIGURES:
            raise ValueError(f"KeyedClassificationMetric: expected one of {sorted(FIGURES)}, found {name!r}")
        self.name, self.num_classes, self.threshold = name, num_classes, threshold
        for state in ("preds", "target", "key", "occurrence"):
            self.add_state(state, default=[], dist_reduce_fx="cat")
        # AUROC: the classes (column, missing kind) the last compute found undefined, over the synced images
        self.undefined: list[tuple[int, str]] = []

    def update(self, preds: Tensor, target: Tensor, image_ids: Sequence[str] | None = None) -> None:
        """``preds`` probabilities and ``target`` 0/1 labels, ``(N,)`` (one class) or ``(N, C)``; ``image_ids``
        (N strings; without them each sample counts as a distinct image)."""
        keys, occurrence = sample_keys(preds.shape[0], image_ids, preds.device)
        self.preds.append(preds.detach().float())
        self.target.append(target.detach().long())
        self.key.append(keys)
        self.occurrence.append(occurrence)

    def distinct(self) -> tuple[Tensor, Tensor, Tensor]:
        """Predictions, targets and keys of the first occurrence of each image."""
        if isinstance(self.preds, list) and not self.preds:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return torch.zeros(0, device=self.device), empty, empty
        preds, target, keys = dim_zero_cat(self.preds), dim_zero_cat(self.target), dim_zero_cat(self.key)
        first = first_occurrence_mask(keys, dim_zero_cat(self.occurrence))
        return preds[first], target[first], keys[first]

    def compute(self) -> Tensor:
        preds, target, _ = self.distinct()  # compute runs on the states synced over all processes
        if self.name == "auroc":
            self.undefined = undefined_auroc(target.reshape(-1, self.num_classes))
        if self.num_classes == 1:
            return FIGURES[self.name][0](preds, target, threshold=self.threshold)
        return FIGURES[self.name][1](preds, target, num_labels=self.num_classes, threshold=self.threshold)


def undefined_auroc(target: Tensor) -> list[tuple[int, str]]:
    """The classes of 0/1 ``target`` ``(N,)`` or ``(N, C)`` without an AUROC, as (column, the kind of image it lacks:
    ``"positive"``, ``"negative"``, or ``"any"`` with no images at all)."""
    columns = target.reshape(-1, 1) if target.ndim < 2 else target
    if columns.shape[0] == 0:
        return [(c, "any") for c in range(columns.shape[1])]
    positives = (columns > 0).sum(0).tolist()
    n = columns.shape[0]
    return [(c, "positive" if k == 0 else "negative") for c, k in enumerate(positives) if k in (0, n)]


def _nan(device: torch.device) -> Tensor:
    return torch.tensor(float("nan"), device=device)


def _mean_over(classes: Sequence[int], figure: Any, device: torch.device) -> Tensor:
    """The macro mean of ``figure(c)`` over the ``classes`` that have it; NaN when none has."""
    if not classes:
        return _nan(device)
    return torch.stack([figure(c) for c in classes]).mean()


def _multilabel_auroc(preds: Tensor, target: Tensor, num_labels: int, threshold: float) -> Tensor:
    """The macro mean over the classes whose AUROC is defined (torchmetrics would average in 0.0 for the others);
    NaN when none is."""
    undefined = {c for c, _ in undefined_auroc(target)}
    kept = [c for c in range(num_labels) if c not in undefined] if target.ndim == 2 else []  # no images: no columns
    if kept and len(kept) == num_labels:
        return F.multilabel_auroc(preds, target, num_labels=num_labels, average="macro")
    return _mean_over(kept, lambda c: F.binary_auroc(preds[:, c], target[:, c]), preds.device)


def _binary_auroc(preds: Tensor, target: Tensor, threshold: float) -> Tensor:
    """NaN when ``target`` holds one class only (torchmetrics returns a meaningless 0.0 with a warning)."""
    if undefined_auroc(target):
        return _nan(preds.device)
    return F.binary_auroc(preds, target)


def _rate(binary: Any, needs: int) -> tuple[Any, Any]:
    """TPR (``needs`` 1: positive images) or TNR (0: negative images) as (binary, macro multilabel) functions: NaN
    for a class without images of the kind it rates (torchmetrics' 0.0 reads as a model that finds nothing), and
    such a class left out of the macro mean."""

    def one(preds: Tensor, target: Tensor, threshold: float) -> Tensor:
        if not bool((target == needs).any()):
            return _nan(preds.device)
        return binary(preds, target, threshold=threshold)

    def macro(preds: Tensor, target: Tensor, num_labels: int, threshold: float) -> Tensor:
        rated = [c for c in range(num_labels) if bool((target[:, c] == needs).any())] if target.ndim == 2 else []
        return _mean_over(rated, lambda c: binary(preds[:, c], target[:, c], threshold=threshold), preds.device)

    return one, macro


# name -> (binary function, macro multilabel function)
FIGURES = {
    "accuracy": (F.binary_accuracy, partial(F.multilabel_accuracy, average="macro")),
    "auroc": (_binary_auroc, _multilabel_auroc),
    "tpr": _rate(F.binary_recall, needs=1),
    "tnr": _rate(F.binary_specificity, needs=0),
}


def classification_metrics(num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """Accuracy, AUROC, TPR (sensitivity) and TNR (specificity) at ``threshold``, each image counted once."""
    names = ("accuracy", "auroc", "tpr", "tnr")
    return MetricCollection({n: KeyedClassificationMetric(n, num_classes, threshold) for n in names})


def stage_head_metrics(num_classes: int) -> nn.ModuleDict:
    """One MetricCollection per (stage, head), keyed ``"{stage}_{head}"``; logged as ``{stage}/{head}/{name}``."""
    return nn.ModuleDict(
        {
            f"{stage}_{head}": classification_metrics(num_classes).clone(prefix=f"{stage}/{head}/")
            for stage in STAGES
            for head in HEADS
        }
    )
