"""A subset's detection figures from the whole set's result equal the metric computed on the subset alone."""

from __future__ import annotations

import pytest
import torch

from wsod_mammo.detection.image_keys import image_keys
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.detection.strata import UNKNOWN, restrict, strata_of

SIZE = (24, 24)
BUDGET = 1.0


def _images(seed: int, count: int) -> list[tuple[str, torch.Tensor, float, torch.Tensor, int]]:
    """``count`` images (id, map, probability, gt boxes, label): masses with a blob on them or beside them, normals
    with blobs of their own, at random brightness."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        heat = torch.zeros(*SIZE)
        label = i % 3 != 2
        gt = torch.zeros(0, 4)
        if label:
            y, x = (int(v) for v in torch.randint(2, 14, (2,), generator=generator))
            gt = torch.tensor([[x, y, x + 6, y + 6]], dtype=torch.float32)
            shift = int(torch.randint(0, 2, (1,), generator=generator)) * 8  # on the mass, or off it: a miss
            heat[y + shift : y + shift + 5, x : x + 5] = float(torch.rand(1, generator=generator)) * 0.5 + 0.5
        for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):  # false positives
            y, x = (int(v) for v in torch.randint(0, 20, (2,), generator=generator))
            heat[y : y + 3, x : x + 3] = torch.maximum(heat[y : y + 3, x : x + 3], torch.rand(1, generator=generator))
        images.append((f"image{i}", heat, float(torch.rand(1, generator=generator)), gt, int(label)))
    return images


def _result(images: list, positives_only: bool = False):
    metric = DetectionMetric(thresholds=(0.5,), positives_only=positives_only, operating_fppi=BUDGET)
    ids, maps, probabilities, gt, labels = zip(*images, strict=True)
    metric.update(torch.stack(maps), torch.tensor(probabilities), list(gt), torch.tensor(labels), SIZE, list(ids))
    return metric.compute()


@pytest.mark.parametrize("positives_only", [False, True])
def test_a_subset_of_the_images_gives_the_figures_of_the_metric_on_that_subset(positives_only: bool) -> None:
    images = _images(seed=0, count=30)
    whole = _result(images, positives_only)
    subset = {f"image{i}" for i in range(30) if i % 4 in (0, 3)}
    alone = _result([image for image in images if image[0] in subset], positives_only)
    keep = torch.tensor([k in image_keys(sorted(subset)).tolist() for k in whole.image_keys.tolist()])
    part = restrict(whole, keep, BUDGET)
    assert (part.num_images, part.num_gt) == (alone.num_images, alone.num_gt) and part.num_gt > 0
    assert sorted(part.image_keys.tolist()) == sorted(alone.image_keys.tolist())
    got, expected = part.per_threshold[0], alone.per_threshold[0]
    for name in ("fppi_curve", "tpr_curve", "score_thresholds", "tpr_at_fppi"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert (got.tpr, got.fppi) == (expected.tpr, expected.fppi)
    # each box still points at its own image: the per-image hits the bootstrap reweighs are the subset's own
    per_image = {k: float(got.box_tp[got.box_image == i].sum()) for i, k in enumerate(part.image_keys.tolist())}
    expected_hits = alone.per_threshold[0]
    assert per_image == {
        k: float(expected_hits.box_tp[expected_hits.box_image == i].sum())
        for i, k in enumerate(alone.image_keys.tolist())
    }
    assert torch.equal(restrict(whole, torch.ones(whole.num_images, dtype=torch.bool), BUDGET).image_gt, whole.image_gt)


def test_strata_are_sorted_with_unknown_last_and_cover_every_image() -> None:
    keys = image_keys(["a", "b", "c", "d", "e"])
    labels = dict(zip(keys.tolist()[:4], ["DENSITY C", "DENSITY A", "", "DENSITY C"], strict=True))  # "e" has none
    strata = strata_of(keys, labels)
    assert list(strata) == ["DENSITY A", "DENSITY C", UNKNOWN]
    assert [m.tolist() for m in strata.values()] == [
        [False, True, False, False, False],
        [True, False, False, True, False],
        [False, False, True, False, True],
    ]


def test_a_flag_per_image_is_required() -> None:
    whole = _result(_images(seed=1, count=6))
    with pytest.raises(ValueError, match="expected 6 flags"):
        restrict(whole, torch.ones(5, dtype=torch.bool), BUDGET)
