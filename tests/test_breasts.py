"""Breast-level Table I: a breast's probability is its views' mean, its label any view's, whatever the images' order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from wsod_mammo.detection.bootstrap import classification_figures, interval, resample_weights
from wsod_mammo.detection.breasts import breast_key_of_images, breast_predictions
from wsod_mammo.detection.image_keys import image_keys
from wsod_mammo.training.classification import stage_head_metrics
from wsod_mammo.training.table1_report import table1_intervals

# study s1: left breast CC + MLO (a mass seen in the CC only), right breast CC + MLO (normal); study s2: left CC only
IDS = ["s1-LCC", "s1-LMLO", "s1-RCC", "s1-RMLO", "s2-LCC"]
STUDIES = ["s1", "s1", "s1", "s1", "s2"]
SIDES = ["L", "L", "R", "R", "L"]
PROBABILITIES = torch.tensor([0.9, 0.3, 0.2, 0.6, 0.45])
LABELS = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0])


def test_a_breast_is_the_mean_of_its_views_and_positive_when_any_view_is() -> None:
    breast_of = breast_key_of_images(IDS, STUDIES, SIDES)
    rated = breast_predictions(PROBABILITIES, LABELS, image_keys(IDS), breast_of)
    by_breast = {k: i for i, k in enumerate(rated.keys.tolist())}
    left, right, single = (by_breast[breast_of[k]] for k in image_keys(["s1-LCC", "s1-RCC", "s2-LCC"]).tolist())
    assert torch.allclose(rated.probabilities[[left, right, single]], torch.tensor([0.6, 0.4, 0.45]))
    assert rated.target[[left, right, single]].tolist() == [1.0, 0.0, 1.0]  # the mass in the CC only counts
    assert rated.views[[left, right, single]].tolist() == [2, 2, 1]
    assert rated.keys.tolist() == sorted(rated.keys.tolist())


def test_breast_rows_do_not_depend_on_the_order_the_images_come_in() -> None:
    """A DDP gather interleaves the processes' images: 1 and 2 processes must rate the breasts alike, bit for bit."""
    breast_of = breast_key_of_images(IDS, STUDIES, SIDES)
    keys = image_keys(IDS)
    first = breast_predictions(PROBABILITIES, LABELS, keys, breast_of)
    order = torch.tensor([4, 2, 0, 3, 1])
    second = breast_predictions(PROBABILITIES[order], LABELS[order], keys[order], breast_of)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_an_image_of_no_known_breast_gives_no_breast_rows() -> None:
    """Rating a breast on some of its views only, silently, would be wrong: no rows at all instead."""
    breast_of = breast_key_of_images(IDS[:4], STUDIES[:4], SIDES[:4])
    assert breast_predictions(PROBABILITIES, LABELS, image_keys(IDS), breast_of) is None
    assert breast_predictions(PROBABILITIES, LABELS, image_keys(IDS), {}) is None


def test_table1_intervals_rate_breasts_and_draw_whole_studies() -> None:
    """Breast rows are the figures of the breasts' own predictions, with intervals drawing whole studies of breasts
    (study s1's two breasts together), not breasts one by one."""
    module = SimpleNamespace(metrics=stage_head_metrics(1))
    for head in ("global", "local", "fusion"):
        module.metrics[f"test_{head}"].update(PROBABILITIES, LABELS, image_ids=IDS)
    breast_of = breast_key_of_images(IDS, STUDIES, SIDES)
    groups = dict(zip(image_keys(IDS).tolist(), image_keys(STUDIES).tolist(), strict=True))
    figures = table1_intervals(module, seed=0, groups=groups, breasts=breast_of)
    assert figures.counts == {"images": 5, "positive": 2}
    assert figures.breast_counts == {"breasts": 3, "positive": 2, "one_view": 1, "images": 5}
    # the normal right MLO at 0.6 is wrong, its breast at 0.4 right; s2's one view at 0.45 wrong at both levels
    assert figures.rows["fusion"]["accuracy"]["value"] == pytest.approx(3 / 5)
    assert figures.breast_rows["fusion"]["accuracy"]["value"] == pytest.approx(2 / 3)

    rated = breast_predictions(PROBABILITIES, LABELS, image_keys(IDS), breast_of)
    study_of_breast = {breast_of[k]: groups[k] for k in image_keys(IDS).tolist()}
    studies = torch.tensor([study_of_breast[k] for k in rated.keys.tolist()])
    full = classification_figures(torch.ones(1, 3), rated.probabilities, rated.target)
    for grouped, expect_equal in ((studies, True), (None, False)):
        weights = resample_weights(rated.target, seed=0, keys=rated.keys, groups=grouped)
        samples = classification_figures(weights, rated.probabilities, rated.target)
        expected = {k: interval(samples[k], float(full[k][0])) for k in samples}
        assert (figures.breast_rows["fusion"] == expected) is expect_equal
