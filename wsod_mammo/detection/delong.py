"""DeLong's test of two correlated AUCs, clustered by study (Obuchowski 1997): the p-value a radiology reader asks for.

The paired bootstrap (:mod:`compare_auc`) gives the interval of the difference; reviewers of a diagnostic-accuracy
paper expect the test of DeLong, DeLong & Clarke-Pearson (Biometrics 1988) beside it. DeLong's variance assumes
independent images, yet a VinDr study holds the CC and MLO views of each breast, rated alike: treating them as
independent makes the variance too small and the test too eager. Obuchowski (Biometrics 1997, "Nonparametric analysis
of clustered ROC curve data") sums each image's structural components (placements) over its cluster and takes the
covariance over clusters; with one image per cluster it is exactly DeLong's.

Ties count one half (the Mann-Whitney AUC, as the bootstrap and torchmetrics count them).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import LEVEL


def placements(scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """DeLong's structural components of one scorer: ``(V10 (M,), V01 (N,))``, for each positive image the share of
    negatives it outranks, for each negative the share of positives that outrank it (ties one half). Their means are
    the AUC. ``scores, target (n,)``; O(n log n)."""
    scores, positive = scores.double().reshape(-1), target.reshape(-1) > 0.5
    pos, neg = scores[positive], scores[~positive]
    neg_sorted, pos_sorted = torch.sort(neg).values, torch.sort(pos).values
    below = torch.searchsorted(neg_sorted, pos, right=False) + torch.searchsorted(neg_sorted, pos, right=True)
    above = 2 * pos.numel() - torch.searchsorted(pos_sorted, neg, right=False)
    above = above - torch.searchsorted(pos_sorted, neg, right=True)
    return below.double() / (2 * max(neg.numel(), 1)), above.double() / (2 * max(pos.numel(), 1))


def auc_covariance(scores: Tensor, target: Tensor, clusters: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(AUC (k,), covariance (k, k))`` of ``k`` scorers rating the same images, ``scores (k, n)``, ``target (n,)``.

    ``clusters (n,)``: an integer per image naming its cluster (its study); without it, or with one image per
    cluster, DeLong's covariance. NaN where it is undefined: a class missing, or fewer than two clusters holding
    positives (or negatives) to estimate the spread from."""
    scores = scores.double().reshape(scores.shape[0] if scores.dim() > 1 else 1, -1)
    positive = target.reshape(-1) > 0.5
    k, n = scores.shape
    if clusters is None:
        clusters = torch.arange(n)
    _, cluster = torch.unique(clusters.reshape(-1).cpu(), return_inverse=True)
    per_scorer = [placements(s, positive) for s in scores]
    v10 = torch.stack([p[0] for p in per_scorer])  # (k, M)
    v01 = torch.stack([p[1] for p in per_scorer])  # (k, N)
    num_pos, num_neg = v10.shape[1], v01.shape[1]
    nan = torch.full((k, k), math.nan, dtype=torch.float64)
    if num_pos == 0 or num_neg == 0:
        return torch.full((k,), math.nan, dtype=torch.float64), nan
    auc = v10.mean(1)
    num_clusters = int(cluster.max()) + 1

    def per_cluster(components: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        """Each cluster's sum of components (k, I) and count of images (I,) of one class."""
        sums = torch.zeros(k, num_clusters, dtype=torch.float64).index_add_(1, members, components)
        counts = torch.bincount(members, minlength=num_clusters).double()
        return sums, counts

    x, m = per_cluster(v10, cluster[positive])
    y, n_neg = per_cluster(v01, cluster[~positive])
    holding_pos, holding_neg = int((m > 0).sum()), int((n_neg > 0).sum())
    if holding_pos < 2 or holding_neg < 2:
        return auc, nan
    dx = x - m * auc[:, None]  # (k, I): zero for clusters without positives
    dy = y - n_neg * auc[:, None]
    s10 = holding_pos / ((holding_pos - 1) * num_pos) * (dx @ dx.T)
    s01 = holding_neg / ((holding_neg - 1) * num_neg) * (dy @ dy.T)
    s11 = num_clusters / (num_clusters - 1) * (dx @ dy.T)
    covariance = s10 / num_pos + s01 / num_neg + (s11 + s11.T) / (num_pos * num_neg)
    return auc, covariance


def paired_test(
    a: Tensor, b: Tensor, target: Tensor, clusters: Tensor | None = None, level: float = LEVEL
) -> dict[str, float]:
    """DeLong's (clustered: Obuchowski's) test of AUC(a) = AUC(b) on the same images: ``difference`` (A - B), its
    ``se``, the normal ``low``/``high`` at ``level``, ``z`` and the two-sided ``p``. NaN where the variance is
    undefined (see :func:`auc_covariance`); identical ratings give difference 0 and p 1."""
    auc, cov = auc_covariance(torch.stack([a.reshape(-1), b.reshape(-1)]), target, clusters)
    difference = float(auc[0] - auc[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if math.isnan(variance) or math.isnan(difference):
        return dict.fromkeys(("difference", "se", "low", "high", "z", "p"), math.nan) | {"difference": difference}
    se = math.sqrt(max(variance, 0.0))
    half = NormalDist().inv_cdf(0.5 + level / 2) * se
    if se <= 1e-12:  # the two rank every pair alike: nothing to test
        z = 0.0 if abs(difference) <= 1e-12 else math.copysign(math.inf, difference)
    else:
        z = difference / se
    p = 2 * NormalDist().cdf(-abs(z)) if math.isfinite(z) else 0.0
    return {"difference": difference, "se": se, "low": difference - half, "high": difference + half, "z": z, "p": p}
