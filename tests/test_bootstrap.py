"""Bootstrap intervals: weights are stratified draws, and the vectorized figures equal the plain ones."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_recall, binary_specificity

from wsod_mammo.detection.bootstrap import (
    best_within,
    classification_figures,
    interval,
    resample_weights,
    resampled_froc,
)
from wsod_mammo.detection.froc import capped_operating_point, froc_curve, tpr_at_fppi


def test_weights_draw_each_stratum_to_its_size_and_repeat_with_the_seed():
    strata = torch.tensor([0, 1, 1, 0, 1, 1, 1])
    weights = resample_weights(strata, 200, seed=3)
    assert weights.shape == (200, 7)
    assert torch.equal(weights[:, strata == 0].sum(1), torch.full((200,), 2.0))
    assert torch.equal(weights[:, strata == 1].sum(1), torch.full((200,), 5.0))
    assert torch.equal(weights, resample_weights(strata, 200, seed=3))
    assert not torch.equal(weights, resample_weights(strata, 200, seed=4))
    assert weights.std(0).min() > 0  # every image is sometimes drawn more, sometimes less


def test_with_groups_whole_studies_are_drawn_within_strata_of_studies_in_any_order() -> None:
    """Images of one study (its CC and MLO views show the same mass) were drawn one by one: intervals too narrow."""
    groups = torch.tensor([10, 10, 20, 20, 30, 30, 40, 40, 50])  # four two-view studies and one single image
    strata = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 1])  # study 20 has one mass view: a study with a mass
    weights = resample_weights(strata, 300, seed=2, keys=torch.arange(9), groups=groups)
    assert torch.equal(weights[:, 0::2][:, :4], weights[:, 1::2])  # the two views of each study, always together
    per_study = weights[:, [0, 2, 4, 6, 8]]
    assert torch.equal(per_study[:, [0, 1, 4]].sum(1), torch.full((300,), 3.0))  # 3 studies with a mass
    assert torch.equal(per_study[:, [2, 3]].sum(1), torch.full((300,), 2.0))  # 2 without
    order = torch.randperm(9, generator=torch.Generator().manual_seed(5))  # a DDP gather's order
    shuffled = resample_weights(strata[order], 300, seed=2, keys=torch.arange(9)[order], groups=groups[order])
    assert torch.equal(shuffled, weights[:, order])


def test_views_hit_or_missed_together_widen_the_interval_drawn_by_study() -> None:
    """60 two-view studies whose views are hit or missed together: an interval drawn image by image is narrower by
    up to sqrt(2) than the honest one, drawn study by study."""
    hits = (torch.rand(60, generator=torch.Generator().manual_seed(0)) < 0.65).repeat_interleave(2).float()
    groups, strata = torch.arange(60).repeat_interleave(2), torch.ones(120, dtype=torch.long)
    width = {}
    for unit, given in (("images", None), ("studies", groups)):
        weights = resample_weights(strata, 1000, seed=0, keys=torch.arange(120), groups=given)
        tpr = (weights * hits).sum(1) / weights.sum(1)
        width[unit] = float(tpr.quantile(0.975) - tpr.quantile(0.025))
    assert 1.25 < width["studies"] / width["images"] < 1.6, width


def _boxes(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image_gt = torch.tensor([1, 2, 0, 1, 0, 1])
    box_image = torch.randint(0, 6, (30,), generator=gen)
    box_scores = torch.randint(0, 8, (30,), generator=gen).float() / 8  # ties on purpose
    box_tp = (torch.rand(30, generator=gen) < 0.4) & (image_gt[box_image] > 0)
    return image_gt, box_image, box_scores, box_tp


def test_with_keys_every_image_gets_the_same_draws_in_any_order() -> None:
    """A DDP gather interleaves the ranks' images: one and two GPUs must give one checkpoint the same intervals."""
    strata = torch.tensor([0, 1] * 10)
    keys = torch.randperm(20, generator=torch.Generator().manual_seed(3)) * 7919 - 50_000  # hashes: any integers
    order = torch.randperm(20, generator=torch.Generator().manual_seed(4))
    straight = resample_weights(strata, num_resamples=50, seed=1, keys=keys)
    shuffled = resample_weights(strata[order], num_resamples=50, seed=1, keys=keys[order])
    assert torch.equal(shuffled, straight[:, order])
    assert not torch.equal(resample_weights(strata[order], num_resamples=50, seed=1), straight[:, order])


def test_resampled_froc_with_duplicated_images_equals_the_froc_of_the_duplicated_set():
    image_gt, box_image, box_scores, box_tp = _boxes()
    counts = torch.tensor([[1.0, 1, 1, 1, 1, 1], [2.0, 0, 1, 3, 0, 1]])
    fppi, tpr = resampled_froc(counts, image_gt, box_image, box_scores, box_tp)
    for b in range(2):
        reps = counts[b].long()
        take = torch.cat([torch.full((int(reps[i]),), i) for i in range(6)])
        sel = torch.cat([torch.nonzero(box_image == i).flatten() for i in take.tolist()])
        ref_fppi, ref_tpr, _ = froc_curve(box_scores[sel], box_tp[sel], int(image_gt[take].sum()), len(take))
        # the resample's curve has a point at every distinct score of the full set: compare where both have one
        keep = torch.isin(
            torch.cat([torch.tensor([float("inf")]), box_scores.unique().flip(0)]),
            torch.cat([torch.tensor([float("inf")]), box_scores[sel].unique().flip(0)]),
        )
        torch.testing.assert_close(fppi[b][keep], ref_fppi)
        torch.testing.assert_close(tpr[b][keep], ref_tpr)
        best, at = best_within(fppi[b : b + 1], tpr[b : b + 1], (0.5, 1.0))
        torch.testing.assert_close(best[0], tpr_at_fppi(ref_fppi, ref_tpr, (0.5, 1.0)))
        assert at[0, 1].item() == capped_operating_point(ref_fppi, ref_tpr, 1.0)[1]


def test_the_best_points_of_every_resample_equal_those_of_the_full_curves_bit_for_bit() -> None:
    """The test report made each resample's whole FROC curve, ``(B, P)``: ~2 GB and seconds per method, subset and
    stratum at a VinDr test split (40,000 boxes), minutes in all. The best points are read at the hit groups alone:
    the same numbers, ties, undrawn images, no hit, no box, hits without ground truth and no image among them."""
    from wsod_mammo.detection.bootstrap import resampled_best_within

    for seed in range(60):
        gen = torch.Generator().manual_seed(seed)
        images = 0 if seed == 0 else int(torch.randint(1, 40, (1,), generator=gen))
        image_gt = torch.randint(0, 3, (images,), generator=gen) * (torch.rand(images, generator=gen) < 0.4)
        boxes = 0 if images == 0 or seed == 1 else int(torch.randint(1, 200, (1,), generator=gen))
        box_image = torch.randint(0, max(images, 1), (boxes,), generator=gen)
        levels = int(torch.randint(1, 50, (1,), generator=gen))
        box_scores = torch.randint(0, levels, (boxes,), generator=gen).float() / levels  # ties
        box_tp = (torch.rand(boxes, generator=gen) < 0.3) & (image_gt[box_image] > 0)
        if seed % 7 == 2:
            box_tp = torch.rand(boxes, generator=gen) < 0.3  # hits on images without ground truth: malformed input
        weights = torch.randint(0, 3, (int(torch.randint(1, 30, (1,), generator=gen)), images), generator=gen).float()
        if images and seed % 3 == 0:
            weights = resample_weights((image_gt > 0).long(), 25, seed)
        budgets = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, float(torch.rand(1, generator=gen)) * 3)
        full = best_within(*resampled_froc(weights, image_gt, box_image, box_scores, box_tp), budgets)
        fast = resampled_best_within(weights, image_gt, box_image, box_scores, box_tp, budgets)
        for expected, got in zip(full, fast, strict=True):
            assert got.dtype == expected.dtype and torch.equal(got.isnan(), expected.isnan()), seed
            assert torch.equal(got.nan_to_num(-1.0), expected.nan_to_num(-1.0)), seed


def test_weighted_classification_figures_equal_the_unweighted_ones_on_duplicated_data():
    gen = torch.Generator().manual_seed(1)
    preds = torch.randint(0, 6, (12,), generator=gen).float() / 5  # ties
    target = (torch.rand(12, generator=gen) < 0.5).long()
    counts = torch.randint(0, 3, (1, 12), generator=gen).float()
    counts[0, 0], counts[0, 1] = 1, 1
    target[0], target[1] = 0, 1
    figures = classification_figures(counts, preds, target)
    take = torch.repeat_interleave(torch.arange(12), counts[0].long())
    assert abs(float(figures["auc"][0]) - float(binary_auroc(preds[take], target[take]))) < 1e-6
    predicted = preds[take] > 0.5
    assert abs(float(figures["accuracy"][0]) - float((predicted == target[take].bool()).float().mean())) < 1e-6


def test_table1_cuts_at_the_threshold_as_the_logged_metrics_do():
    """Table I counted p == 0.5 as positive (>=), torchmetrics' logged test metrics as negative (>): under bf16 every
    probability within ~0.002 of 0.5 is exactly 0.5."""
    preds, target = torch.tensor([0.5, 0.9, 0.2, 0.5]), torch.tensor([1, 1, 0, 0])
    figures = classification_figures(torch.ones(1, 4), preds, target)
    assert float(figures["tpr"][0]) == float(binary_recall(preds, target)) == 0.5
    assert float(figures["tnr"][0]) == float(binary_specificity(preds, target)) == 1.0


def test_interval_brackets_the_resamples():
    figure = interval(torch.linspace(0, 1, 1001), 0.5)
    assert figure["value"] == 0.5 and abs(figure["low"] - 0.025) < 1e-6 and abs(figure["high"] - 0.975) < 1e-6


def test_table1_intervals_resample_within_each_class() -> None:
    """Stratified by label: each resample keeps the test set's 10 positives and 10 negatives. Here every positive is
    right and every negative wrong, so accuracy is 0.5 in every stratified resample; drawn across classes it varied."""
    from types import SimpleNamespace

    from wsod_mammo.training.classification import stage_head_metrics
    from wsod_mammo.training.table1_report import table1_intervals

    module = SimpleNamespace(metrics=stage_head_metrics(1))
    preds, target = torch.full((20,), 0.9), torch.tensor([1] * 10 + [0] * 10)
    for head in ("global", "local", "fusion"):
        module.metrics[f"test_{head}"].update(preds, target, image_ids=[f"image{i}" for i in range(20)])
    figures = table1_intervals(module, seed=0)
    rows, counts = figures.rows, figures.counts
    assert counts == {"images": 20, "positive": 10}
    assert figures.breast_rows == {} and figures.breast_counts is None  # no breasts named
    assert figures.density_rows == {}  # nor densities
    assert list(figures.images["heads"]) == ["global", "local", "fusion"] and len(figures.images["image_keys"]) == 20
    assert rows["fusion"]["accuracy"] == {"value": 0.5, "low": 0.5, "high": 0.5}
    assert rows["fusion"]["tpr"]["low"] == 1.0 and rows["fusion"]["tnr"]["high"] == 0.0


def test_the_bootstrap_covariance_leaves_out_the_resamples_where_a_figure_is_undefined() -> None:
    """A resample without a normal image or a mass has no wAFROC for any run: it is left out of every pair of figures
    alike, so the matrix stays one covariance (Obuchowski-Rockette's over seeds reads it whole)."""
    from wsod_mammo.detection.bootstrap import bootstrap_covariance

    drawn = torch.tensor([[0.8, 0.9, float("nan"), 0.7, 0.85], [0.6, 0.65, 0.7, float("nan"), 0.66]])
    kept = drawn[:, [0, 1, 4]].double()
    deviations = kept - kept.mean(dim=1, keepdim=True)
    torch.testing.assert_close(bootstrap_covariance(drawn), deviations @ deviations.T / 2)
    assert bootstrap_covariance(drawn[:, [0, 2, 3]]).isnan().all()  # one resample left: no covariance
