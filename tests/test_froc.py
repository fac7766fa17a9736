"""Matching at IoU > 0.3, FROC curve, TPR at FPPI and operating point, against hand counts and brute force."""

import math

import pytest
import torch

from wsod_mammo.detection.boxes import box_iou
from wsod_mammo.detection.froc import froc_curve, match_image, matched_gt, operating_point, tpr_at_fppi

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


def test_iou_exactly_threshold_is_a_miss_and_just_above_is_a_hit():
    exact = torch.tensor([[0.0, 0.0, 3.0, 10.0]])  # inside the ground truth: IoU = 30 / 100
    iou = box_iou(exact, GT)
    assert iou.dtype == torch.float32 and iou.item() == torch.tensor(0.3, dtype=torch.float32).item()
    assert match_image(exact, torch.ones(1), GT).tolist() == [False]
    above = torch.tensor([[0.0, 0.0, 3.01, 10.0]])  # IoU = 0.301
    assert box_iou(above, GT).item() > 0.3
    assert match_image(above, torch.ones(1), GT).tolist() == [True]


def test_duplicates_are_false_positives_and_highest_score_wins():
    preds = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    scores = torch.tensor([0.2, 0.9, 0.5])
    assert match_image(preds, scores, GT).tolist() == [False, True, False]


def test_box_takes_the_unmatched_gt_with_highest_iou():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0]])
    preds = torch.tensor([[3.0, 0.0, 13.0, 10.0], [0.0, 0.0, 9.0, 10.0]])  # first overlaps gt 1 most
    flags = match_image(preds, torch.tensor([0.9, 0.8]), gts)
    assert flags.tolist() == [True, True]  # the second box still finds gt 0
    assert match_image(preds, torch.tensor([0.9, 0.8]), gts[1:]).tolist() == [True, False]


def test_no_gt_or_no_prediction():
    assert match_image(torch.zeros(0, 4), torch.zeros(0), GT).shape == (0,)
    assert match_image(GT, torch.ones(1), torch.zeros(0, 4)).tolist() == [False]  # normal image: only FPs


def test_froc_curve_hand_computed_with_ties():
    scores = torch.tensor([0.9, 0.8, 0.8, 0.3, 0.1])
    is_tp = torch.tensor([True, False, True, False, True])
    fppi, tpr, thresholds = froc_curve(scores, is_tp, num_gt=4, num_images=2)
    assert thresholds.tolist() == [
        math.inf,
        pytest.approx(0.9),
        pytest.approx(0.8),
        pytest.approx(0.3),
        pytest.approx(0.1),
    ]
    assert fppi.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert tpr.tolist() == [0.0, 0.25, 0.5, 0.5, 0.75]
    assert tpr_at_fppi(fppi, tpr, (0.25, 0.5, 1.0, 2.0)).tolist() == [0.25, 0.5, 0.75, 0.75]
    assert operating_point(scores, is_tp, 4, 2, score_threshold=0.8) == (0.5, 0.5)
    assert operating_point(scores, is_tp, 4, 2) == (0.75, 1.0)


def test_budget_below_every_point_gives_zero():
    fppi, tpr, _ = froc_curve(torch.tensor([0.5]), torch.tensor([False]), num_gt=1, num_images=1)
    assert tpr_at_fppi(fppi, tpr, (0.5,)).tolist() == [0.0]


def test_no_ground_truth_gives_nan_not_zero():
    fppi, tpr, _ = froc_curve(torch.tensor([0.5, 0.2]), torch.tensor([False, False]), num_gt=0, num_images=3)
    assert torch.isnan(tpr).all() and fppi[-1].item() == pytest.approx(2 / 3)
    assert torch.isnan(tpr_at_fppi(fppi, tpr)).all()
    tpr_point, fppi_point = operating_point(torch.tensor([0.5]), torch.tensor([False]), 0, 3)
    assert math.isnan(tpr_point) and fppi_point == pytest.approx(1 / 3)


def _random_image(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    num_gt, num_pred = int(torch.randint(0, 3, (1,), generator=gen)), int(torch.randint(0, 5, (1,), generator=gen))
    corners = torch.rand(num_gt, 2, generator=gen) * 20
    gt = torch.cat([corners, corners + 6 + torch.rand(num_gt, 2, generator=gen) * 6], 1)
    base = gt[torch.randint(0, max(num_gt, 1), (num_pred,), generator=gen)] if num_gt else torch.zeros(num_pred, 4)
    preds = base + (torch.rand(num_pred, 4, generator=gen) - 0.5) * 8
    preds[:, 2:] = torch.maximum(preds[:, 2:], preds[:, :2] + 1)
    scores = torch.round(torch.rand(num_pred, generator=gen) * 10) / 10  # coarse: many ties
    return preds, scores, gt


def test_froc_matches_brute_force_threshold_sweep():
    gen = torch.Generator().manual_seed(0)
    images = [_random_image(gen) for _ in range(40)]
    flags = [match_image(p, s, g) for p, s, g in images]
    scores = torch.cat([s for _, s, _ in images])
    num_gt = sum(g.shape[0] for _, _, g in images)
    fppi, tpr, thresholds = froc_curve(scores, torch.cat(flags), num_gt, len(images))
    assert len(thresholds) == len(torch.unique(scores)) + 1
    assert 0 < tpr[-1] < 1 and fppi[-1] > 0  # the sample has hits, misses and false positives
    assert (fppi.diff() >= 0).all() and (tpr.diff() >= 0).all() and (thresholds.diff() < 0).all()
    for k in range(1, len(thresholds)):
        # Re-run matching from scratch on the boxes kept at this threshold only.
        tp = fp = 0
        for preds, s, gt in images:
            kept = s >= thresholds[k]
            hits = match_image(preds[kept], s[kept], gt)
            tp, fp = tp + int(hits.sum()), fp + int((~hits).sum())
        assert tpr[k].item() == pytest.approx(tp / num_gt) and fppi[k].item() == pytest.approx(fp / len(images))


def test_matched_gt_names_the_ground_truth_each_box_found() -> None:
    """Greedy by score: the brighter of two boxes on the same mass takes it, the other finds the second mass it
    overlaps, a box on nothing is -1; the flags of ``match_image`` are the same matches."""
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    preds = torch.tensor([[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0],
                          [19.0, 0.0, 29.0, 10.0]])  # fmt: skip
    scores = torch.tensor([0.5, 0.9, 0.8, 0.3])
    assert matched_gt(preds, scores, gts).tolist() == [-1, 0, -1, 1]
    assert match_image(preds, scores, gts).tolist() == [False, True, False, True]
    assert matched_gt(preds, scores, torch.zeros(0, 4)).tolist() == [-1, -1, -1, -1]


def test_the_curve_at_its_corners_keeps_every_step_and_figure_with_a_point_per_turn() -> None:
    """detection.json held a point per box (~40,000 at a VinDr test split, ~13 MB for five methods): the corners alone
    draw the same steps and give the same TPR within every budget and the same operating point."""
    from wsod_mammo.detection.froc import capped_operating_point, curve_corners

    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        boxes = int(torch.randint(0, 3000, (1,), generator=gen))
        levels = int(torch.randint(1, 400, (1,), generator=gen))
        scores = torch.randint(0, levels, (boxes,), generator=gen).float() / levels  # ties
        hits = torch.rand(boxes, generator=gen) < 0.05
        fppi, tpr, _ = froc_curve(scores, hits, max(int(hits.sum()), 1), 300)
        corner_fppi, corner_tpr = curve_corners(fppi, tpr)
        assert corner_fppi.numel() <= min(fppi.numel(), 2 * int(hits.sum()) + 3), seed
        assert (corner_fppi[0], corner_tpr[0], corner_fppi[-1], corner_tpr[-1]) == (fppi[0], tpr[0], fppi[-1], tpr[-1])
        budgets = [*fppi.tolist(), *(fppi + 1e-4).tolist(), 0.0, 0.25, 1.0, 4.0]
        assert torch.equal(tpr_at_fppi(corner_fppi, corner_tpr, budgets), tpr_at_fppi(fppi, tpr, budgets)), seed
        for budget in budgets[::7]:
            assert capped_operating_point(corner_fppi, corner_tpr, budget) == capped_operating_point(fppi, tpr, budget)


def test_detection_json_holds_the_froc_curves_at_their_corners(tmp_path) -> None:
    from wsod_mammo.detection.detection_result import DetectionResult, threshold_result
    from wsod_mammo.training.table2_report import write_table2_rows

    gen = torch.Generator().manual_seed(0)
    image_gt = (torch.arange(400) % 10 == 0).long()
    box_image = torch.arange(400).repeat_interleave(10)
    scores, hits = torch.rand(4000, generator=gen), torch.zeros(4000, dtype=torch.bool)
    hits[torch.arange(0, 4000, 100)] = True  # the first box of every mass image
    results = {}
    for subset in ("mass", "all"):
        r = threshold_result(0.5, scores, hits, box_image, int(image_gt.sum()), 400, (0.25, 1.0), 1.0)
        results[("cam", subset)] = DetectionResult((r,), (0.25, 1.0), torch.arange(400), image_gt, 400)
    rows = write_table2_rows(tmp_path, "cam", results, 1.0, 0, 0.3, frozenset({"cam"}), "checkpoint", None,
                             frozenset())  # fmt: skip
    cell = rows.entries["mass"]["cam"]
    assert len(cell["fppi_curve"]) == len(cell["tpr_curve"]) <= 2 * 40 + 3  # 4,001 points before
    full = results[("cam", "mass")].per_threshold[0]
    assert cell["tpr_at_fppi"] == {"0.25": float(full.tpr_at_fppi[0]), "1": float(full.tpr_at_fppi[1])}
    stored = (torch.tensor(cell["fppi_curve"]), torch.tensor(cell["tpr_curve"]))
    assert torch.equal(tpr_at_fppi(*stored, full.fppi_curve.tolist()), tpr_at_fppi(full.fppi_curve, full.tpr_curve,
                                                                                 full.fppi_curve.tolist()))  # fmt: skip
