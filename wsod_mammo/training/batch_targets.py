"""What a batch says of one class's ground truth, as ``DetectionMetric`` and the overlays count it: per image its
boxes of the class in the input frame, those the frame leaves out, and each box's finding BI-RADS and size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from wsod_mammo.detection.mass_kinds import mass_note


def class_targets(batch: dict[str, Any], class_index: int) -> tuple[list[Tensor], Tensor]:
    """Ground-truth boxes of one class per image, and that class's image labels ``(N,)``."""
    boxes = [b[labels == class_index] for b, labels in zip(batch["boxes"], batch["box_labels"], strict=True)]
    return boxes, batch["label"][:, class_index]


def unseen_targets(batch: dict[str, Any], class_index: int) -> list[int]:
    """Per image, how many boxes of the class its input frame leaves out wholly (``meta["out_of_frame"]``): no map
    can find them, and a TPR that left them out of its count rose with every mass a crop or window cut away."""
    return [list(meta.get("out_of_frame", ())).count(class_index) for meta in batch["meta"]]


def target_findings(batch: dict[str, Any], class_index: int, what: str) -> list[list[Any]] | None:
    """Per image, ``what`` of each box of the class (``birads``: the finding's BI-RADS, 0 none given; ``size_mm``:
    its size, None unknown), its in-frame boxes in ``class_targets``' order, then its ``unseen_targets``:
    ``DetectionMetric``'s ``gt_categories`` and ``gt_sizes``. None where the data gives none
    (``meta["box_<what>"]``, VinDrDataset's)."""
    metas = batch["meta"]
    if not all(f"box_{what}" in meta for meta in metas):
        return None
    values = []
    for meta, labels, image_id in zip(metas, batch["box_labels"], batch["image_id"], strict=True):
        labels = labels.reshape(-1).tolist()
        if len(meta[f"box_{what}"]) != len(labels):
            raise ValueError(f"{image_id}: {len(labels)} boxes reach the metric but meta['box_{what}'] has "
                             f"{len(meta[f'box_{what}'])}: an evaluation transform dropped or added boxes")  # fmt: skip
        seen = [v for v, label in zip(meta[f"box_{what}"], labels, strict=True) if label == class_index]
        out = zip(meta.get(f"out_of_frame_{what}", ()), meta.get("out_of_frame", ()), strict=True)
        values.append(seen + [v for v, label in out if label == class_index])
    return values


def target_sizes(batch: dict[str, Any], class_index: int) -> list[list[float]] | None:
    """``target_findings``' sizes in mm, NaN for unknown: ``DetectionMetric``'s ``gt_sizes``."""
    sizes = target_findings(batch, class_index, "size_mm")
    return None if sizes is None else [[math.nan if v is None else float(v) for v in image] for image in sizes]


def mass_notes(
    batch: dict[str, Any], class_index: int, picked: Sequence[int], in_frame: Sequence[int]
) -> list[list[str]]:
    """Per picked image, a note per in-frame ground-truth box of the class (``mass_note``: its finding BI-RADS and
    size), for the overlay; empty where the data gives neither (``target_findings``)."""
    birads = target_findings(batch, class_index, "birads")
    sizes = target_findings(batch, class_index, "size_mm")
    if birads is None:
        return [[] for _ in picked]
    return [
        [mass_note(int(b), None if sizes is None else sizes[i][j]) for j, b in enumerate(birads[i][:count])]
        for i, count in zip(picked, in_frame, strict=True)
    ]
