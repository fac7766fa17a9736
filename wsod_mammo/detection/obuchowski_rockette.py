"""Obuchowski-Rockette's test of two methods read by several readers of the same cases, readers and cases random.

The study trains each method with several seeds and tests every run on the same test set. Each seed's model is a
reader in the multi-reader multi-case sense (Obuchowski and Rockette 1995; Hillis 2007, 2008; RJafroc's ``RRRC``;
Chakraborty, "Observer Performance Methods for Diagnostic Imaging", 2017, ch. 10): with ``J`` readers, figures
``theta (2, J)`` and the covariance of those ``2J`` figures over case sampling (the jackknife's, or DeLong's for an
AUC), ``F = MS(T) / (MS(TR) + J max(Cov2 - Cov3, 0))`` on 1 and Hillis's ``(MS(TR) + J max(Cov2 - Cov3, 0))^2 /
(MS(TR)^2 / (J - 1))`` degrees of freedom. ``MS(TR)`` is the spread of the per-seed differences (training);
``Cov2 - Cov3`` the part of the case sampling every seed shares (what the test set's studies do to all runs alike),
which the t-test of the per-seed differences leaves out. With two methods ``F`` is the square of
``t = mean difference / sqrt(2 (MS(TR) + J max(Cov2 - Cov3, 0)) / J)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

RESULT_KEYS = ("difference", "low", "high", "se", "df", "t", "p")
SINGLE_KEYS = ("estimate", "low", "high", "se", "df")
#: A variance component below this, relative to the figures' squared scale, is float64 rounding, not spread: seeds
#: that agree exactly (0.925 - 0.725 and 0.825 - 0.625) left an MS(TR) of 1e-33 and printed t = 1.8e15 on 1 degree
#: of freedom, or t = 5.97 on 8e57, where the exact zero gives t = inf, or the same t on infinite degrees.
ROUNDING = 1e-20


def _rounded_to_zero(component: float, theta: Tensor) -> float:
    """``component`` (a mean square or covariance of the figures ``theta``), 0.0 where it is rounding noise."""
    scale = max(1.0, float(theta.abs().max())) if theta.numel() else 1.0
    return 0.0 if abs(component) <= ROUNDING * scale**2 else component


def _block_mean(covariance: Tensor, readers: int, same_method: bool) -> float:
    """The mean of ``covariance (2J, 2J)``'s entries between different readers, of the same method (``Cov2``) or of
    different methods (``Cov3``); rows are method-major (``i * J + j``)."""
    index = torch.arange(2 * readers)
    method, reader = index // readers, index % readers
    keep = (reader[:, None] != reader[None, :]) & ((method[:, None] == method[None, :]) == same_method)
    return float(covariance[keep].mean())


def rrrc_test(full: Tensor, covariance: Tensor) -> dict[str, float]:
    """``{"difference", "low", "high", "se", "df", "t", "p"}``: the mean over readers of A - B, its 95% interval, its
    standard error, degrees of freedom and the two-sided test, from ``full (2, J)``, A's and B's figure per reader,
    and ``covariance (2J, 2J)`` of those figures, method-major; NaN where fewer than two readers or anything is
    undefined."""
    readers = full.shape[1]
    theta = full.double()
    differences = theta[0] - theta[1]
    difference = float(differences.mean())
    nan = dict.fromkeys(RESULT_KEYS, math.nan) | {"difference": difference}
    if readers < 2 or not bool(torch.isfinite(theta).all() and torch.isfinite(covariance).all()):
        return nan
    ms_tr = _rounded_to_zero(float(((differences - difference) ** 2).sum()) / (2 * (readers - 1)), theta)
    shared = max(_rounded_to_zero(_block_mean(covariance, readers, True) - _block_mean(covariance, readers, False),
                                  theta), 0.0)  # fmt: skip
    denominator = ms_tr + readers * shared
    if denominator == 0.0:  # every reader and case sample gives one difference: p 1 where it is 0, else 0
        return {**nan, "low": difference, "high": difference, "se": 0.0, "df": math.inf, "t": 0.0 if difference == 0
                else math.copysign(math.inf, difference), "p": 1.0 if difference == 0 else 0.0}  # fmt: skip
    df = math.inf if ms_tr == 0.0 else denominator**2 * (readers - 1) / ms_tr**2
    se = math.sqrt(2 * denominator / readers)
    from scipy.stats import t as student

    statistic, quantile = difference / se, float(student.ppf(0.975, df))
    return {"difference": difference, "low": difference - quantile * se, "high": difference + quantile * se,
            "se": se, "df": df, "t": statistic, "p": float(2 * student.sf(abs(statistic), df))}  # fmt: skip


def single_treatment_interval(theta: Tensor, covariance: Tensor) -> dict[str, float]:
    """``{"estimate", "low", "high", "se", "df"}``: one method's figure averaged over ``J`` readers (seeds), its 95%
    interval with readers and cases random (Hillis 2007's single-treatment analysis; MRMCaov's "each analysis based
    only on data for the specified treatment"), from ``theta (J,)`` and ``covariance (J, J)`` of those figures over
    case sampling: ``se^2 = (MS(R) + J max(Cov2, 0)) / J`` with ``Cov2`` the mean covariance of two readers, on
    ``(MS(R) + J max(Cov2, 0))^2 / (MS(R)^2 / (J - 1))`` degrees of freedom. NaN bounds where fewer than two readers
    or anything is undefined."""
    readers = theta.numel()
    values = theta.double().reshape(-1)
    estimate = float(values.mean())
    nan = dict.fromkeys(SINGLE_KEYS, math.nan) | {"estimate": estimate}
    if readers < 2 or not bool(torch.isfinite(values).all() and torch.isfinite(covariance).all()):
        return nan
    ms_r = _rounded_to_zero(float(((values - estimate) ** 2).sum()) / (readers - 1), values)
    off_diagonal = ~torch.eye(readers, dtype=torch.bool)
    shared = _rounded_to_zero(float(covariance.double()[off_diagonal].mean()), values)
    numerator = ms_r + readers * max(shared, 0.0)
    if numerator == 0.0:  # every reader and case sample gives one figure
        return {"estimate": estimate, "low": estimate, "high": estimate, "se": 0.0, "df": math.inf}
    df = math.inf if ms_r == 0.0 else numerator**2 * (readers - 1) / ms_r**2
    se = math.sqrt(numerator / readers)
    from scipy.stats import t as student

    half = float(student.ppf(0.975, df)) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "se": se, "df": df}
