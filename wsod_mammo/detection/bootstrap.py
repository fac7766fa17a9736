"""Seeded, class-stratified bootstrap over studies: 95% intervals for Table I, Table II cells and FROC points.

One resample draws, within each stratum (studies with / without ground truth of the class, or the classification
label), as many studies as the stratum has, with replacement, each with all its images (``groups``; without them,
images one by one); it is a weight matrix ``(B, N)`` of how often each image was drawn. Every figure is then a
weighted sum over images, computed for all ``B`` resamples at once (cumulative sums over the score-sorted boxes for
the FROC), so 1,000 resamples of 500 images x 5 methods take a fraction of a second on a CPU
(``tests/benchmarks/bench_bootstrap.py``). Intervals are percentile intervals.
A figure is reported as ``{"value", "low", "high"}`` (``value`` is the full-sample figure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from wsod_mammo.detection.detection_result import DetectionResult

NUM_RESAMPLES = 1000
# the test report's default seed (the callback's bootstrap_seed), and the one --compare assumes for a report written
# before the seed was recorded in it (those were drawn with the same default)
SEED = 0
LEVEL = 0.95


def resample_weights(
    strata: Tensor,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = SEED,
    keys: Tensor | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """``(B, N)`` float32 draw counts: each resample draws ``n_s`` images with replacement within each stratum.

    ``strata (N,)`` integer class of each image; ``keys (N,)`` an integer per image (``image_keys``) that fixes which
    image each draw picks whatever order the images come in (a DDP gather interleaves the ranks: without keys, one
    and two GPUs would give one checkpoint different intervals). Deterministic for a given ``seed`` (own generator,
    on the CPU).

    ``groups (N,)``: an integer per image naming its cluster (the key of its ``study_id``: one exam, whose CC and MLO
    views of a breast show the same mass). Whole clusters are then drawn, as many as each stratum of clusters has (a
    cluster's stratum is its images' highest), and every image weighs as often as its cluster was drawn: images of
    one exam are not independent, and drawing them one by one gave intervals too narrow (up to sqrt(2) for two views
    that are hit or missed together).
    """
    strata = strata.reshape(-1).cpu()
    for name, given in (("keys", keys), ("groups", groups)):
        if given is not None and given.numel() != strata.numel():
            raise ValueError(
                f"resample_weights: expected {strata.numel()} {name} (one per image), found {given.numel()}"
            )
    if groups is not None:
        units, unit_of_image = torch.unique(groups.reshape(-1).cpu(), return_inverse=True)  # sorted: order-free
        unit_strata = torch.full((units.numel(),), torch.iinfo(torch.int64).min, dtype=torch.int64)
        unit_strata = unit_strata.scatter_reduce(0, unit_of_image, strata.long(), reduce="amax")
        return resample_weights(unit_strata, num_resamples, seed, keys=units)[:, unit_of_image]
    generator = torch.Generator().manual_seed(seed)
    weights = torch.zeros(num_resamples, strata.numel())
    for stratum in torch.unique(strata).tolist():  # sorted: the strata's order does not depend on the input order
        members = torch.nonzero(strata == stratum).flatten()  # (n_s,)
        if keys is not None:  # nor, by key, the members' order
            members = members[torch.argsort(keys.reshape(-1).cpu()[members], stable=True)]
        draws = members[torch.randint(0, members.numel(), (num_resamples, members.numel()), generator=generator)]
        weights.scatter_add_(1, draws, torch.ones(draws.shape))
    return weights


def interval_text(figure: dict[str, float], digits: int = 2) -> str:
    """``0.87 [0.75, 0.96]``, a figure with its interval as the reports print it; ``n/a`` where any part is NaN."""
    if any(math.isnan(v) for v in figure.values()):
        return "n/a"
    return f"{figure['value']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"


def figure_text(figure: dict[str, float], digits: int = 3) -> str:
    """As :func:`interval_text`, but a figure whose interval alone is missing keeps its value: ``0.912 [n/a]``."""
    if math.isnan(figure["value"]):
        return "n/a"
    return interval_text(figure, digits) if not math.isnan(figure["low"]) else f"{figure['value']:.{digits}f} [n/a]"


def resampled_means(values: Sequence[Tensor], keys: Tensor, groups: Tensor | None, seed: int) -> list[Tensor]:
    """``(B,)`` means of each ``values[i] (N,)`` over the same resamples of its ``N`` images (``keys``; whole
    ``groups`` where given; not stratified): the pointing game's intervals, in the test report and in ``wsod report
    --compare --figure``, drawn by this one rule so that each side of a comparison has its report's interval."""
    weights = resample_weights(torch.ones_like(keys), seed=seed, keys=keys, groups=groups).double()
    return [(weights @ v.double()) / weights.sum(1) for v in values]


def groups_of(keys: Tensor, groups: dict[int, int] | None) -> Tensor | None:
    """``(N,)`` study key of each image key (an image of no known study is a study of its own); None without
    ``groups`` (``{image key: study key}``): images are then drawn one by one."""
    return torch.tensor([groups.get(k, k) for k in keys.tolist()], dtype=torch.int64) if groups else None


def detection_draws(image_gt: Tensor, keys: Tensor, seed: int, groups: dict[int, int] | None) -> Tensor:
    """The ``(B, N)`` draw counts of a detection result's intervals (Table II's, the figures of merit's): stratified
    by mass image or normal (``image_gt (N,)``: masses per image), whole studies where ``groups`` names them
    (:func:`groups_of`), the report's ``seed``."""
    return resample_weights((image_gt > 0).long(), seed=seed, keys=keys, groups=groups_of(keys, groups))


def interval(samples: Tensor, value: float, level: float = LEVEL) -> dict[str, float]:
    """``{"value", "low", "high"}``: the percentile interval of ``samples (B,)`` (NaN resamples ignored)."""
    samples = samples.double()
    if bool(torch.isnan(samples).all()) or value != value:
        return {"value": float(value), "low": float("nan"), "high": float("nan")}
    tail = (1.0 - level) / 2
    low, high = torch.nanquantile(samples, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return {"value": float(value), "low": low, "high": high}


def bootstrap_covariance(drawn: Tensor) -> Tensor:
    """``(R, R)``: the covariance over resamples of ``R`` figures drawn under the same resamples, ``drawn (R, B)``;
    resamples where any figure is undefined (NaN: no normal image or no mass drawn) are left out (NaN with fewer
    than two left). The bootstrap's counterpart of :func:`~wsod_mammo.detection.jackknife.jackknife_covariance`, as
    RJafroc's ``covEstMethod = "bootstrap"``."""
    drawn = drawn.double()
    kept = drawn[:, torch.isfinite(drawn).all(dim=0)]
    if kept.shape[1] < 2:
        return torch.full((drawn.shape[0], drawn.shape[0]), math.nan, dtype=torch.float64)
    return torch.cov(kept)


def resampled_froc(
    weights: Tensor, image_gt: Tensor, box_image: Tensor, box_scores: Tensor, box_tp: Tensor
) -> tuple[Tensor, Tensor]:
    """FROC curves of every resample: ``(fppi, tpr)``, each ``(B, T)`` with the origin first.

    ``weights (B, N)`` from :func:`resample_weights`; ``image_gt (N,)`` ground-truth boxes per image; boxes
    ``box_image (P,)`` (index into the N images), ``box_scores (P,)``, ``box_tp (P,)`` bool. Point ``t`` keeps
    every box scoring at least the t-th distinct score, as :func:`wsod_mammo.detection.froc.froc_curve`.
    """
    order = torch.argsort(box_scores.float(), descending=True, stable=True)
    scores, tp = box_scores.float()[order], box_tp.bool()[order]
    box_weights = weights[:, box_image.long()[order]]  # (B, P)
    cum_tp = torch.cumsum(box_weights * tp.float(), 1)  # (B, P)
    cum_fp = torch.cumsum(box_weights * (~tp).float(), 1)
    last = torch.ones_like(tp)
    last[:-1] = scores[1:] != scores[:-1]  # (P,) the last box of each tie group
    zero = torch.zeros(weights.shape[0], 1)
    tp_counts, fp_counts = torch.cat([zero, cum_tp[:, last]], 1), torch.cat([zero, cum_fp[:, last]], 1)  # (B, T)
    num_images = weights.sum(1, keepdim=True)  # (B, 1)
    num_gt = weights @ image_gt.float().reshape(-1, 1)  # (B, 1)
    return fp_counts / num_images, tp_counts / num_gt  # NaN TPR where a resample has no ground truth


def resampled_best_within(
    weights: Tensor, image_gt: Tensor, box_image: Tensor, box_scores: Tensor, box_tp: Tensor, budgets: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """``best_within(*resampled_froc(weights, image_gt, box_image, box_scores, box_tp), budgets)``, equal to it bit
    for bit, without the ``(B, P)`` curves: at a VinDr test split (4,000 images, ~40,000 boxes) those took seconds
    and ~2 GB per call, and the test report makes one per method, subset and stratum (minutes in all).

    The TPR steps only at tie groups holding a hit, and the best point within a budget is the last of those whose
    FPPI is within it (both curves non-decreasing), reached first at one of them or at the origin: the curves at the
    origin and those ``J`` groups give the same answers. Each resample's counts there are one sparse ``(J, N)`` by
    ``(N, B)`` product (float64, exact; float32 as the full curves' cumulative sums are, exact below 2**24).
    """
    order = torch.argsort(box_scores.float(), descending=True, stable=True)
    scores, tp, images = box_scores.float()[order], box_tp.bool()[order], box_image.long()[order]
    new_group = torch.ones_like(tp)
    new_group[1:] = scores[1:] != scores[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1  # (P,) each box's tie group, in descending score
    hit_groups = torch.unique(group[tp])  # (J,) the groups holding a hit
    point = torch.searchsorted(hit_groups, group)  # (P,) the first of them at or after each box's (J: none)
    per_image = weights.double().T.contiguous()  # (N, B)

    def counts(flags: Tensor) -> Tensor:
        """``(B, 1 + J)``: the drawn boxes of ``flags`` at or above the origin and each hit group."""
        kept = flags & (point < hit_groups.numel())
        index = torch.stack([point[kept], images[kept]])
        ones = torch.ones(index.shape[1], dtype=torch.float64)
        boxes = torch.sparse_coo_tensor(index, ones, (hit_groups.numel(), weights.shape[1]), check_invariants=True)
        drawn = torch.sparse.mm(boxes.coalesce(), per_image).T  # (B, J)
        return torch.cat([torch.zeros(weights.shape[0], 1), torch.cumsum(drawn, 1).float()], 1)

    num_images = weights.sum(1, keepdim=True)  # (B, 1), as resampled_froc divides
    num_gt = weights @ image_gt.float().reshape(-1, 1)  # (B, 1)
    return best_within(counts(~tp) / num_images, counts(tp) / num_gt, budgets)


def best_within(fppi: Tensor, tpr: Tensor, budgets: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Per resample and budget ``(B, F)``: the highest TPR at ``fppi <= budget`` and the lowest FPPI reaching it.

    Both curves are non-decreasing along T (cumulative counts), so the best point within a budget is the last one
    under it, and the lowest FPPI with that TPR is at the first point reaching it: two binary searches per row.
    """
    limits = torch.tensor([float(b) for b in budgets], dtype=fppi.dtype).expand(fppi.shape[0], -1).contiguous()
    last = torch.searchsorted(fppi.contiguous(), limits, right=True) - 1  # (B, F); the origin is always within
    best = torch.gather(tpr, 1, last)  # (B, F)
    undefined = torch.isnan(tpr).any(1, keepdim=True)  # (B, 1) a resample without ground truth
    safe_tpr = torch.where(undefined, torch.zeros_like(tpr), tpr).contiguous()
    first = torch.searchsorted(safe_tpr, torch.where(undefined, torch.zeros_like(best), best).contiguous())
    fppis = torch.gather(fppi, 1, first)
    return torch.where(undefined, torch.full_like(best, float("nan")), best), fppis


def _weighted_auroc(weights: Tensor, scores: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` AUROC of ``scores (N,)`` against 0/1 ``target (N,)`` under each resample's weights (ties: 1/2)."""
    order = torch.argsort(scores.float(), stable=True)
    s, positive = scores.float()[order], target.bool()[order]
    w = weights[:, order]  # (B, N)
    negatives_below = torch.cumsum(w * (~positive).float(), 1)  # (B, N) inclusive
    new_group = torch.ones_like(positive)
    new_group[1:] = s[1:] != s[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1  # (N,) tie-group index
    starts = torch.nonzero(new_group).flatten()  # (G,)
    ends = torch.cat([starts[1:], torch.tensor([s.numel()])]) - 1
    before = torch.cat([torch.zeros(w.shape[0], 1), negatives_below], 1)[:, starts[group]]  # negatives strictly below
    equal = negatives_below[:, ends[group]] - before  # negatives tied with this score
    pos_w = w * positive.float()
    wins = (pos_w * (before + 0.5 * equal)).sum(1)
    return wins / (pos_w.sum(1) * (w * (~positive).float()).sum(1))


def classification_figures(weights: Tensor, probabilities: Tensor, target: Tensor, threshold: float = 0.5) -> dict:
    """Table I figures ``{accuracy, auc, tpr, tnr: (B,)}`` of one head, binary ``probabilities, target (N,)``;
    positive above ``threshold`` (strictly, as torchmetrics cuts the logged metrics)."""
    predicted, positive = probabilities.float() > threshold, target.bool()
    correct = (predicted == positive).float()
    return {
        "accuracy": (weights * correct).sum(1) / weights.sum(1),
        "auc": _weighted_auroc(weights, probabilities, target),
        "tpr": (weights * (predicted & positive).float()).sum(1) / (weights * positive.float()).sum(1),
        "tnr": (weights * (~predicted & ~positive).float()).sum(1) / (weights * (~positive).float()).sum(1),
    }


def detection_intervals(
    result: DetectionResult, fppi_budget: float, seed: int, groups: dict[int, int] | None = None
) -> dict[str, Any]:
    """Intervals of one method's operating point (``tpr``, ``fppi``) and of TPR at each FROC point, drawing
    whole studies (``groups``: ``study_groups``)."""
    r = result.per_threshold[0]
    weights = detection_draws(result.image_gt, result.image_keys, seed, groups)
    points = list(result.fppi_points)
    best, at = resampled_best_within(weights, result.image_gt, r.box_image, r.box_scores, r.box_tp,
                                     points + [fppi_budget])  # fmt: skip
    return {
        "tpr": interval(best[:, -1], r.tpr),
        "fppi": interval(at[:, -1], r.fppi),
        "tpr_at_fppi": {f"{p:g}": interval(best[:, i], float(r.tpr_at_fppi[i])) for i, p in enumerate(points)},
    }
