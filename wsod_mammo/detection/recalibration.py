"""The calibration slope and intercept of a head's probabilities (logistic recalibration, Cox 1958).

The Brier score and ECE say how far the probabilities are off, not how: the slope ``b`` of ``logit P(y) = a +
b logit(p)`` says whether they are too extreme (below 1, an overfit model's signature) or too timid (above 1), and
the intercept ``a'`` of ``logit P(y) = a' + logit(p)`` (the slope held at 1; calibration-in-the-large) whether they
are too low (above 0) or too high on average. Van Calster et al. 2019 ("Calibration: the Achilles heel of
predictive analytics") ask for both beside the discrimination a paper reports.

Both are maximum-likelihood fits under the bootstrap's ``(B, N)`` image weights, every resample at once (Newton's
method, steps capped). The slope has no finite estimate where the probabilities separate the classes (every positive
at or above every negative, or the reverse: a perfect ranker's slope runs to infinity), nor the intercept without
both classes: those are NaN, said, not a number from an unconverged fit.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Probabilities are clamped this far inside (0, 1) before the logit: a 0 or 1 from the sigmoid in float32 is finite.
EPSILON = 1e-7
MAX_STEP = 4.0  # on the logit scale, per Newton iteration: keeps early steps from overshooting
ITERATIONS = 100
TOLERANCE = 1e-10
SETTLED = 1e-6  # the last step of a fit that counts as converged; larger, the resample's figure is NaN


def _separated(weights: Tensor, x: Tensor, positive: Tensor) -> Tensor:
    """``(B,)`` whether each resample's drawn images have no overlap of the classes along ``x``: then no finite
    slope maximizes the likelihood."""
    drawn = weights > 0
    top_negative = torch.where(drawn & ~positive, x, -torch.inf).amax(1)
    bottom_positive = torch.where(drawn & positive, x, torch.inf).amin(1)
    top_positive = torch.where(drawn & positive, x, -torch.inf).amax(1)
    bottom_negative = torch.where(drawn & ~positive, x, torch.inf).amin(1)
    return (top_negative <= bottom_positive) | (top_positive <= bottom_negative)


def recalibration(weights: Tensor, probabilities: Tensor, target: Tensor) -> dict[str, Tensor]:
    """``{"slope", "intercept"}``, each ``(B,)`` float64, of ``probabilities, target (N,)`` under ``weights (B, N)``;
    NaN where the fit has no finite estimate (see the module's note)."""
    w = weights.double()
    x = torch.logit(probabilities.double().reshape(-1).clamp(EPSILON, 1 - EPSILON))[None, :]  # (1, N)
    y = target.double().reshape(-1)[None, :]
    positive = y > 0.5
    both = ((w * positive).sum(1) > 0) & ((w * ~positive).sum(1) > 0)  # (B,) an intercept exists
    sloped = both & ~_separated(w, x.expand_as(w), positive.expand_as(w))  # (B,) a slope exists
    a, b, shift = (torch.full((w.shape[0],), value, dtype=w.dtype) for value in (0.0, 1.0, 0.0))
    for _ in range(ITERATIONS):
        mu = torch.sigmoid(a[:, None] + b[:, None] * x)
        residual, curvature = w * (y - mu), w * mu * (1 - mu)
        g0, g1 = residual.sum(1), (residual * x).sum(1)
        h00, h01, h11 = curvature.sum(1), (curvature * x).sum(1), (curvature * x * x).sum(1)
        determinant = (h00 * h11 - h01**2).clamp(min=1e-300)
        da = torch.where(sloped, ((h11 * g0 - h01 * g1) / determinant).clamp(-MAX_STEP, MAX_STEP), 0.0)
        db = torch.where(sloped, ((h00 * g1 - h01 * g0) / determinant).clamp(-MAX_STEP, MAX_STEP), 0.0)
        held = torch.sigmoid(shift[:, None] + x)  # the intercept's model: the slope held at 1
        step = (w * (y - held)).sum(1) / (w * held * (1 - held)).sum(1).clamp(min=1e-300)
        d_shift = torch.where(both, step.clamp(-MAX_STEP, MAX_STEP), 0.0)
        a, b, shift = a + da, b + db, shift + d_shift
        if max(float(da.abs().max()), float(db.abs().max()), float(d_shift.abs().max())) < TOLERANCE:
            break
    sloped &= (da.abs() < SETTLED) & (db.abs() < SETTLED)  # a fit still moving after every iteration: no estimate
    both &= d_shift.abs() < SETTLED
    return {"slope": torch.where(sloped, b, torch.nan), "intercept": torch.where(both, shift, torch.nan)}
