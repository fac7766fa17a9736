"""The bootstrap's budget includes a point exactly at it; --compare pairs images by key."""

from __future__ import annotations

import torch

from wsod_mammo.detection.bootstrap import best_within
from wsod_mammo.detection.compare import paired_bootstrap
from wsod_mammo.detection.froc import capped_operating_point, tpr_at_fppi


def test_a_froc_point_exactly_at_the_budget_is_within_it_as_in_the_table() -> None:
    """FPPI is a count over images: 4 FPs on 4 images is exactly 1.0, and the Table II cell (fppi <= 1) uses it."""
    fppi, tpr = torch.tensor([[0.0, 0.5, 1.0, 1.5]]), torch.tensor([[0.0, 0.25, 0.75, 1.0]])
    best, at = best_within(fppi, tpr, (0.5, 1.0))
    assert best[0].tolist() == tpr_at_fppi(fppi[0], tpr[0], (0.5, 1.0)).tolist() == [0.25, 0.75]
    assert at[0, 1].item() == capped_operating_point(fppi[0], tpr[0], 1.0)[1] == 1.0


def _records(order: list[int]) -> dict:
    """8 mass images with one box each (hit on the even ones) and one false positive on image 7, listed in
    ``order`` as another run (another GPU count) may list them."""
    keys, gt = [100 + i for i in range(8)], [1] * 8
    box_image = list(range(8)) + [7]
    scores = [0.9 - 0.1 * i for i in range(8)] + [0.95]
    tp = [int(i % 2 == 0) for i in range(8)] + [0]
    position = {image: k for k, image in enumerate(order)}
    return {
        "image_keys": [keys[i] for i in order],
        "image_gt": [gt[i] for i in order],
        "box_image": [position[i] for i in box_image],
        "box_scores": scores,
        "box_tp": tp,
    }


def test_compare_pairs_images_by_key_whatever_order_each_side_lists_them() -> None:
    a, b = _records(list(range(8))), _records([3, 7, 0, 5, 1, 6, 2, 4])  # the same results, listed otherwise
    result = paired_bootstrap(a, b, 1.0)
    assert result["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}, result
    assert result["a"] == result["b"]
