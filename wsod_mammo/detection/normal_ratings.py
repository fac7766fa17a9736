"""torchmetrics ``NormalImageRatings``: what validation's wAFROC reads from the normal images, synced under DDP.

Validation chooses each method's threshold on the mass images (``DetectionMetric(positives_only=True)``: the
study's FPPI counts the false positives of mass images), so the normal images never reach that metric. The figure
of merit needs one number of theirs: each one's highest box score (:func:`wsod_mammo.detection.afroc.ratings`),
which :func:`~wsod_mammo.detection.boxes.highest_box_scores` gives at every threshold of the grid without making
the boxes. Each image counts once (DDP padding, repeats), by the keys :mod:`wsod_mammo.detection.image_keys` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from wsod_mammo.detection.boxes import Region, highest_box_scores
from wsod_mammo.detection.image_keys import first_occurrence_mask, sample_keys


class NormalImageRatings(Metric):
    """Each normal image's highest box score at each of ``thresholds`` (``-inf`` where its map gives no box), boxes
    made as ``DetectionMetric`` makes them (``cell0_center``, the image's region, scored by its probability)."""

    is_differentiable = False
    full_state_update = False
    image_key: list[Tensor]
    image_occurrence: list[Tensor]
    rating: list[Tensor]

    def __init__(self, thresholds: Sequence[float], cell0_center: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(thresholds) == 0:
            raise ValueError("NormalImageRatings: option thresholds expected at least one value, found none")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.cell0_center = cell0_center
        for name in ("image_key", "image_occurrence", "rating"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        maps: Tensor,
        probabilities: Tensor,
        normal: Tensor,
        image_size: tuple[int, int],
        image_ids: Sequence[str] | None = None,
        regions: Sequence[Region | None] | None = None,
    ) -> None:
        """Add the images of a batch that ``normal (N,)`` (bool) marks: maps ``(N, h, w)`` of the target class, their
        probabilities ``(N,)``, ``image_ids`` and ``regions`` as ``DetectionMetric.update`` takes them."""
        keep = torch.nonzero(normal.reshape(-1).bool().cpu()).flatten().tolist()
        ids = None if image_ids is None else [image_ids[i] for i in keep]
        keys, occurrence = sample_keys(len(keep), ids)
        rating = torch.zeros(0, len(self.thresholds), dtype=torch.float64)
        if keep:
            index = torch.tensor(keep, device=maps.device)
            rating = highest_box_scores(
                maps[index], image_size, self.thresholds, probabilities.reshape(-1)[index.to(probabilities.device)],
                cell0_center=self.cell0_center, regions=None if regions is None else [regions[i] for i in keep],
            )  # fmt: skip
        # appended even when empty: every rank's lists then hold a tensor to gather
        self.image_key.append(keys.to(self.device))
        self.image_occurrence.append(occurrence.to(self.device))
        self.rating.append(rating.to(self.device))

    def compute(self) -> Tensor:
        """``(K1, T)`` float64 on the CPU: each distinct normal image's rating at each threshold, in no set order."""
        if isinstance(self.rating, list) and not self.rating:  # nothing added (synced, the states are tensors)
            return torch.zeros(0, len(self.thresholds), dtype=torch.float64)
        keys, occurrence, rating = (
            dim_zero_cat(state).cpu() for state in (self.image_key, self.image_occurrence, self.rating)
        )
        return rating[first_occurrence_mask(keys, occurrence)].double()
