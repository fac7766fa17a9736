"""Breast-level classification figures from image-level predictions.

A screening decision is per breast, not per image, and NYU's screening papers report AUC per breast (Wu et al.
2019: "in predicting the presence of cancer in the breast"). Here a breast's probability is the mean of its views'
(CC and MLO), and it is positive when any of its views shows the class (a mass seen in one view only still makes the
breast positive). Images are grouped by ``(study_id, laterality)``;
the groups keep only the views the test split holds, so a breast with one view is rated on that view.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from wsod_mammo.detection.image_keys import image_keys


class BreastPredictions(NamedTuple):
    """One row per breast, in the order of ``keys`` (sorted: the same however the images came in)."""

    probabilities: Tensor  # (B,) float32, the mean over the breast's views
    target: Tensor  # (B,) float32 0/1, the highest of its views' labels
    keys: Tensor  # (B,) int64 breast keys
    views: Tensor  # (B,) int64, how many of its views were tested


def breast_key_of_images(image_ids: list[str], study_ids: list[str], lateralities: list[str]) -> dict[int, int]:
    """``{image key: breast key}`` (``image_keys`` of the ``image_id`` and of ``study_id/laterality``)."""
    breasts = [f"{study}/{side}" for study, side in zip(study_ids, lateralities, strict=True)]
    return dict(zip(image_keys(image_ids).tolist(), image_keys(breasts).tolist(), strict=True))


def breast_predictions(
    probabilities: Tensor, target: Tensor, keys: Tensor, breast_of: dict[int, int]
) -> BreastPredictions | None:
    """Breast rows of the distinct images ``probabilities, target, keys (N,)`` (``keys``: ``image_keys``); None when
    ``breast_of`` (``breast_key_of_images``) misses an image, so no breast is rated on some of its views only."""
    image_list = keys.reshape(-1).tolist()
    if not image_list or any(k not in breast_of for k in image_list):
        return None
    breast = torch.tensor([breast_of[k] for k in image_list], dtype=torch.int64)
    unique, index = torch.unique(breast, sorted=True, return_inverse=True)
    views = torch.zeros(unique.numel(), dtype=torch.int64).index_add_(0, index, torch.ones_like(index))
    # summed in float64 in the images' key order: a float32 sum depends on the order a DDP gather gives
    order = torch.argsort(keys.reshape(-1).cpu(), stable=True)
    sums = torch.zeros(unique.numel(), dtype=torch.float64)
    sums.index_add_(0, index[order], probabilities.reshape(-1).cpu().double()[order])
    labels = torch.zeros(unique.numel()).scatter_reduce(0, index, target.reshape(-1).cpu().float(), reduce="amax")
    return BreastPredictions((sums / views).float(), labels, unique, views)
