"""Matching at IoU > 0.3, the FROC curve, TPR at FPPI and the operating point (pure torch, no numpy).

Matching is greedy by descending score, so a box's TP/FP status does not depend on any lower-scored box: one
matching pass per image, then a global sort and cumulative sums over all images give the whole FROC curve.

TPR = matched ground-truth boxes / all ground-truth boxes; FPPI = false positives / images. With no ground
truth the TPR is undefined and is NaN everywhere (callers say so rather than print 0); with no images the FPPI
is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from wsod_mammo.detection.boxes import box_iou

FPPI_POINTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def match_image(pred_boxes: Tensor, pred_scores: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.3) -> Tensor:
    """True-positive flags ``(P,)`` bool for one image's predictions ``(P, 4)``, ``(P,)`` against ``gt (G, 4)``
    (``matched_gt >= 0``)."""
    return matched_gt(pred_boxes, pred_scores, gt_boxes, iou_threshold) >= 0


def matched_gt(pred_boxes: Tensor, pred_scores: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.3) -> Tensor:
    """The ground-truth box each prediction matched, ``(P,)`` int64 index into ``gt (G, 4)``, -1 for a false positive.

    Boxes in descending score (ties: input order) each take the unmatched ground truth with the highest IoU if
    that IoU is strictly above ``iou_threshold`` (exactly 0.3 is a miss); each ground truth is matched once, so
    duplicates are false positives. Returned in the input order of the predictions; which box was found is what
    figures per kind of lesion (its BI-RADS) are counted from.
    """
    num_pred = pred_boxes.shape[0]
    if num_pred == 0 or gt_boxes.shape[0] == 0:
        return torch.full((num_pred,), -1, dtype=torch.int64, device=pred_boxes.device)
    order = torch.argsort(pred_scores, descending=True, stable=True).tolist()
    iou = box_iou(pred_boxes.float(), gt_boxes.to(pred_boxes.device).float())  # (P, G) float32
    # Compare in float32 (the IoU's precision): float32(30 / 100) must equal the threshold 0.3, not exceed it.
    eligible = torch.where(iou > iou_threshold, iou, torch.full_like(iou, -1.0)).cpu().tolist()  # P is small
    taken = [False] * gt_boxes.shape[0]
    matched = [-1] * num_pred
    for p in order:
        best_iou, best_gt = -1.0, -1
        for g, value in enumerate(eligible[p]):
            if not taken[g] and value > best_iou:
                best_iou, best_gt = value, g
        if best_gt >= 0:
            taken[best_gt] = True
            matched[p] = best_gt
    return torch.tensor(matched, dtype=torch.int64, device=pred_boxes.device)


def _rate(count: Tensor, total: int) -> Tensor:
    """``count / total`` in float32, NaN where ``total == 0`` (the rate is undefined)."""
    if total <= 0:
        return torch.full_like(count, float("nan"), dtype=torch.float32)
    return count.float() / float(total)


def froc_curve(scores: Tensor, is_tp: Tensor, num_gt: int, num_images: int) -> tuple[Tensor, Tensor, Tensor]:
    """FROC curve of pooled boxes ``scores (P,)`` and flags ``is_tp (P,)`` -> ``(fppi, tpr, thresholds)``, each (T,).

    Point ``k`` counts every box with ``score >= thresholds[k]``; there is one point per distinct score (tied
    scores form one step), preceded by the origin ``(0, 0)`` at threshold ``+inf`` (no box kept). Thresholds
    decrease, ``fppi`` and ``tpr`` are non-decreasing. ``tpr`` is NaN when ``num_gt == 0``.
    """
    scores, is_tp = scores.flatten().float(), is_tp.flatten().bool()
    if scores.shape != is_tp.shape:
        raise ValueError(f"froc_curve: scores {tuple(scores.shape)} and is_tp {tuple(is_tp.shape)} differ in shape")
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_scores, sorted_tp = scores[order], is_tp[order]  # (P,)
    cum_tp = torch.cumsum(sorted_tp.float(), 0)  # (P,)
    cum_fp = torch.cumsum((~sorted_tp).float(), 0)  # (P,)
    last_of_group = torch.ones_like(sorted_tp)
    last_of_group[:-1] = sorted_scores[1:] != sorted_scores[:-1]  # (P,) the last box of each tie group
    zero = torch.zeros(1, device=scores.device)
    tp = torch.cat([zero, cum_tp[last_of_group]])  # (T,)
    fp = torch.cat([zero, cum_fp[last_of_group]])
    thresholds = torch.cat([torch.full((1,), float("inf"), device=scores.device), sorted_scores[last_of_group]])
    return _rate(fp, num_images), _rate(tp, num_gt), thresholds


def curve_corners(fppi: Tensor, tpr: Tensor) -> tuple[Tensor, Tensor]:
    """The points of a FROC curve ``(fppi, tpr) (T,)`` where its steps turn, the first and last kept: a point between
    two of the same TPR (a false positive's step) or of the same FPPI (a hit's) lies on the segment joining them, so
    the curve drawn as steps, its TPR within any FPPI budget and its operating points are the same without it. A
    VinDr test split's curves have a point per box (~40,000, nearly all false positives'): ``detection.json`` held
    them all, ~13 MB and 460,000 lines for five methods, loaded whole by every study over its runs."""
    inner_same_tpr = (tpr[1:-1] == tpr[:-2]) & (tpr[1:-1] == tpr[2:])
    inner_same_fppi = (fppi[1:-1] == fppi[:-2]) & (fppi[1:-1] == fppi[2:])
    keep = torch.ones(fppi.shape, dtype=torch.bool, device=fppi.device)
    keep[1:-1] = ~(inner_same_tpr | inner_same_fppi)
    return fppi[keep], tpr[keep]


def tpr_at_fppi(fppi: Tensor, tpr: Tensor, points: Sequence[float] = FPPI_POINTS) -> Tensor:
    """TPR ``(len(points),)`` of the best operating point whose FPPI is within each budget (``fppi <= point``).

    The FPPI budget is a cap, not an interpolation: the curve is a step function and a point with a higher FPPI
    cannot be used. A curve from :func:`froc_curve` starts at the origin, so a budget below every other point
    gives 0. An undefined TPR (no ground truth) gives NaN.
    """
    budgets = torch.tensor([float(p) for p in points], dtype=torch.float32, device=tpr.device)  # (F,)
    if tpr.numel() == 0:
        return torch.zeros_like(budgets)
    if bool(torch.isnan(tpr).any()):
        return torch.full_like(budgets, float("nan"))
    allowed = fppi.float()[None, :] <= budgets[:, None]  # (F, T)
    masked = torch.where(allowed, tpr.float()[None, :], torch.zeros_like(allowed, dtype=torch.float32))
    return masked.max(1).values


def operating_point(
    scores: Tensor, is_tp: Tensor, num_gt: int, num_images: int, score_threshold: float = 0.0
) -> tuple[float, float]:
    """``(tpr, fppi)`` counting every box with ``score >= score_threshold``: the uncapped point of a
    ``DetectionMetric`` without ``operating_fppi`` (the reports' cells are ``capped_operating_point``'s).

    ``tpr`` is NaN when ``num_gt == 0``; ``fppi`` is NaN when ``num_images == 0``.
    """
    kept = scores.flatten() >= score_threshold
    tp_flags = is_tp.flatten().bool()
    tp = int((kept & tp_flags).sum())
    fp = int((kept & ~tp_flags).sum())
    tpr = tp / num_gt if num_gt > 0 else float("nan")
    fppi = fp / num_images if num_images > 0 else float("nan")
    return tpr, fppi


def capped_operating_point(fppi: Tensor, tpr: Tensor, fppi_budget: float) -> tuple[float, float]:
    """``(tpr, fppi)`` of the FROC point with the highest TPR at ``fppi <= fppi_budget`` (ties: the lowest FPPI).

    The same figure validation maximizes to choose a threshold, so the reported cell is the selected operating
    point. ``(nan, nan)`` without ground truth or without images.
    """
    if tpr.numel() == 0 or bool(torch.isnan(tpr).any()) or bool(torch.isnan(fppi).any()):
        return float("nan"), float("nan")
    allowed = fppi.float() <= fppi_budget  # (T,) the origin is always allowed
    best = float(torch.where(allowed, tpr.float(), torch.zeros_like(tpr, dtype=torch.float32)).max())
    at_best = allowed & (tpr.float() == best)
    return best, float(fppi.float()[at_best].min())
