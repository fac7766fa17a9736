"""The jackknife test JAFROC analyses report for two methods' figures of merit on the same images.

Obuchowski-Rockette's analysis with readers fixed and cases random (RJafroc's ``FRRC``; Chakraborty, "Observer
Performance Methods for Diagnostic Imaging", 2017, ch. 10) estimates the variance of each method's figure and their
covariance by the jackknife over cases. With one reader (a saliency method reads every image the same way) its
F statistic ``MS(T) / (Var - Cov1)`` with two treatments is the square of

    z = (theta_A - theta_B) / sqrt(Var_A + Var_B - 2 Cov_AB),  each (Var, Cov) = (K - 1) / K * sum over cases of
        (theta_(k) - mean) products,

compared with the normal distribution (its denominator degrees of freedom are infinite). A case here is a whole study
where the test report records studies (its views are not independent: the study's bootstrap draws them together
too), an image otherwise. Each left-out figure comes from :func:`~wsod_mammo.detection.afroc.figures_of_merit` under
draw counts that drop one case, a few hundred cases at a time.

Over several training seeds, each seed's model is a reader of the same cases and :func:`rrrc_test` is the analysis
with readers random as well (RJafroc's ``RRRC``; Hillis 2007, 2008): ``F = MS(T) / (MS(TR) + J max(Cov2 - Cov3, 0))``
with Hillis's denominator degrees of freedom, where ``MS(TR)`` is the spread of the per-seed differences (training)
and ``Cov2 - Cov3`` the part of the case sampling every seed shares (the test set), which a t-test over seeds misses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wsod_mammo.detection.afroc import Ratings, figures_of_merit

Z_95 = 1.959963984540054  # the normal distribution's 97.5th percentile
CHUNK = 256  # left-out cases per call: (CHUNK, images) weights and (CHUNK, normals or masses) partial sums


def left_out_figures(rated: Ratings, figure: str, cases: Tensor) -> Tensor:
    """``(K,)``: ``figure`` (``wafroc``, ``afroc``) with each of the ``K`` cases left out in turn; ``cases (N,)`` each
    image's case, numbered ``0..K-1``."""
    count = int(cases.max()) + 1 if cases.numel() else 0
    values = []
    for start in range(0, count, CHUNK):
        dropped = torch.arange(start, min(start + CHUNK, count))
        weights = (cases[None, :] != dropped[:, None]).double()  # (chunk, N): every image but the case's
        values.append(figures_of_merit(rated, weights)[figure])
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


def frrc_test(full_a: float, full_b: float, left_a: Tensor, left_b: Tensor) -> dict[str, float]:
    """``{"difference", "low", "high", "se", "z", "p"}``: A - B, its 95% interval ``difference +- 1.96 se``, its
    jackknife standard error, ``z`` and the two-sided p of the fixed-reader random-case test from the left-out
    figures ``left_a, left_b (K,)``; NaN where fewer than two cases or a left-out figure is undefined."""
    cases = left_a.numel()
    difference = full_a - full_b
    nan = {"difference": difference, "low": math.nan, "high": math.nan, "se": math.nan, "z": math.nan, "p": math.nan}
    if cases < 2 or not bool(torch.isfinite(left_a).all() and torch.isfinite(left_b).all()):
        return nan
    da, db = left_a - left_a.mean(), left_b - left_b.mean()
    scale = (cases - 1) / cases
    variance = scale * float((da * da).sum() + (db * db).sum() - 2 * (da * db).sum())
    se = math.sqrt(max(variance, 0.0))
    if se == 0.0:  # the same figure with any case left out: nothing to test against
        return {**nan, "se": 0.0}
    z = difference / se
    return {"difference": difference, "low": difference - Z_95 * se, "high": difference + Z_95 * se, "se": se,
            "z": z, "p": math.erfc(abs(z) / math.sqrt(2))}  # fmt: skip


def _block_mean(covariance: Tensor, readers: int, same_treatment: bool) -> float:
    """The mean of ``covariance (2J, 2J)``'s entries between different readers, of the same treatment (``Cov2``) or
    of different treatments (``Cov3``); rows are treatment-major (``i * J + j``)."""
    index = torch.arange(2 * readers)
    treatment, reader = index // readers, index % readers
    keep = (reader[:, None] != reader[None, :]) & ((treatment[:, None] == treatment[None, :]) == same_treatment)
    return float(covariance[keep].mean())


def rrrc_test(full: Tensor, left: Tensor) -> dict[str, float]:
    """``{"difference", "low", "high", "se", "df", "t", "p"}``: the mean over readers of A - B, its 95% interval, its
    standard error and the two-sided test of Obuchowski-Rockette's analysis with readers and cases random, from
    ``full (2, J)``, A's and B's figure per reader, and ``left (2, J, K)``, each with each of the ``K`` cases left
    out (the same cases for every reader); NaN where fewer than two readers or cases, or a figure is undefined."""
    readers, cases = full.shape[1], left.shape[2]
    theta = full.double()
    differences = theta[0] - theta[1]
    difference = float(differences.mean())
    nan = {"difference": difference, "low": math.nan, "high": math.nan, "se": math.nan, "df": math.nan,
           "t": math.nan, "p": math.nan}  # fmt: skip
    if readers < 2 or cases < 2 or not bool(torch.isfinite(theta).all() and torch.isfinite(left).all()):
        return nan
    ms_tr = float(((differences - difference) ** 2).sum()) / (2 * (readers - 1))
    flat = left.double().reshape(2 * readers, cases)
    deviations = flat - flat.mean(dim=1, keepdim=True)
    covariance = (cases - 1) / cases * (deviations @ deviations.T)
    shared = max(_block_mean(covariance, readers, True) - _block_mean(covariance, readers, False), 0.0)
    denominator = ms_tr + readers * shared
    if denominator == 0.0:  # every seed and every left-out case gives the same difference
        return {**nan, "se": 0.0}
    df = math.inf if ms_tr == 0.0 else denominator**2 * (readers - 1) / ms_tr**2
    se = math.sqrt(2 * denominator / readers)
    from scipy.stats import t as student

    statistic, quantile = difference / se, float(student.ppf(0.975, df))
    return {"difference": difference, "low": difference - quantile * se, "high": difference + quantile * se,
            "se": se, "df": df, "t": statistic, "p": float(2 * student.sf(abs(statistic), df))}  # fmt: skip
