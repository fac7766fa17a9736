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

Over several training seeds, each seed's model is a reader of the same cases: :func:`jackknife_covariance` of their
left-out figures is what :func:`~wsod_mammo.detection.obuchowski_rockette.rrrc_test` needs, readers random as well.
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
    image's case, numbered ``0..K-1`` (-1: an image of no case, never left out)."""
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
    covariance = jackknife_covariance(torch.stack([left_a, left_b]))
    se = math.sqrt(max(float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]), 0.0))
    if se == 0.0:  # the same difference with any case left out: p 1 where it is 0, else 0 (as DeLong's test)
        return {**nan, "low": difference, "high": difference, "se": 0.0, "z": 0.0 if difference == 0 else
                math.copysign(math.inf, difference), "p": 1.0 if difference == 0 else 0.0}  # fmt: skip
    z = difference / se
    return {"difference": difference, "low": difference - Z_95 * se, "high": difference + Z_95 * se, "se": se,
            "z": z, "p": math.erfc(abs(z) / math.sqrt(2))}  # fmt: skip


def jackknife_covariance(left: Tensor) -> Tensor:
    """``(R, R)``: the jackknife covariance of ``R`` figures over cases, from ``left (R, K)``, each with each of the
    ``K`` cases left out: ``(K - 1) / K`` times the sum over cases of the deviations' products (NaN with fewer than
    two cases)."""
    flat = left.double().reshape(left.shape[0], -1)
    cases = flat.shape[1]
    if cases < 2:
        return torch.full((flat.shape[0], flat.shape[0]), math.nan, dtype=torch.float64)
    deviations = flat - flat.mean(dim=1, keepdim=True)
    return (cases - 1) / cases * (deviations @ deviations.T)
