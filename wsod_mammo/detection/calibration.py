"""Calibration of Table I's probabilities: the test report's ``calibration.md|csv`` and ``reliability.png``.

AUC says how well a head ranks images; a reader of ``wsod predict`` reads the probability itself, and a 0.8 that
comes true a third of the time misleads whatever the AUC. Per head: the Brier score (mean squared error of the
probability), the expected calibration error over equal-width bins (the images' share in each bin times its gap
between mean probability and share positive), the calibration slope and intercept (:mod:`recalibration`: too extreme
or too timid, too high or too low) and the reliability diagram, each figure with a 95% interval drawn as Table I's
are (whole studies, class-stratified, the report's seed). The ECE of a small test set lies above the population's
(each bin's gap holds its sampling noise: 0.025 above 0.119 at 120 images, 0.006 at 1,000, in
``tests/test_calibration.py``'s simulation), so its interval covers the population's less often than 95%.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import figure_text, interval, resample_weights
from wsod_mammo.detection.recalibration import recalibration
from wsod_mammo.detection.report import _markdown, count, csv_text
from wsod_mammo.detection.square_plot import save_unit_square_plot

BINS = 10
FIGURES = {"brier": "Brier score", "ece": f"ECE ({BINS} bins)", "slope": "slope", "intercept": "intercept"}
CSV_COLUMNS = ["head", "figure", "value", "low", "high"]


def bin_of(probabilities: Tensor, bins: int = BINS) -> Tensor:
    """``(N,)`` int64 equal-width bin of each probability in [0, 1] (1.0 in the last bin)."""
    return (probabilities.double() * bins).floor().clamp(0, bins - 1).long()


def calibration_figures(weights: Tensor, probabilities: Tensor, target: Tensor, bins: int = BINS) -> dict[str, Tensor]:
    """``{"brier", "ece": (B,)}`` under each resample's image weights ``(B, N)`` of ``probabilities, target (N,)``."""
    weights, p, y = weights.double(), probabilities.double().reshape(-1), target.double().reshape(-1)
    total = weights.sum(1)
    brier = (weights * (p - y) ** 2).sum(1) / total
    one_hot = torch.nn.functional.one_hot(bin_of(p, bins), bins).double()  # (N, K)
    gap = (weights * (p - y)) @ one_hot  # (B, K): each bin's weighted sum of p - y
    # sum over bins of (W_k / W) |mean p - mean y| = sum over bins of |sum (p - y)| / W
    return {"brier": brier, "ece": gap.abs().sum(1) / total}


def reliability(probabilities: Tensor, target: Tensor, bins: int = BINS) -> list[dict[str, Any]]:
    """The reliability diagram's points: per bin ``{"low", "high", "images", "mean_probability", "positive_share"}``
    (the means None for an empty bin)."""
    p, y, index = probabilities.double().reshape(-1), target.double().reshape(-1), bin_of(probabilities, bins)
    rows = []
    for k in range(bins):
        inside = index == k
        n = int(inside.sum())
        rows.append({"low": k / bins, "high": (k + 1) / bins, "images": n,
                     "mean_probability": float(p[inside].mean()) if n else None,
                     "positive_share": float(y[inside].mean()) if n else None})  # fmt: skip
    return rows


def calibration_summary(record: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """``{"bins", "images", "heads": {head: {"brier", "ece": {value, low, high}, "reliability": [...]}}}`` from Table
    I's image record (``image_keys``, ``study_keys`` where known, ``target``, ``heads``); None without one."""
    if not record or not record.get("image_keys"):
        return None
    keys = torch.tensor(record["image_keys"], dtype=torch.int64)
    target = torch.tensor(record["target"], dtype=torch.float64)
    groups = torch.tensor(record["study_keys"], dtype=torch.int64) if "study_keys" in record else None
    weights = resample_weights((target > 0.5).long(), seed=seed, keys=keys, groups=groups)
    heads: dict[str, dict[str, Any]] = {}
    for head, values in record["heads"].items():
        p = torch.tensor(values, dtype=torch.float64)
        full = calibration_figures(torch.ones(1, keys.numel()), p, target) | recalibration(
            torch.ones(1, keys.numel()), p, target
        )
        drawn = calibration_figures(weights, p, target) | recalibration(weights, p, target)
        heads[head] = {name: _interval(drawn[name], float(full[name][0])) for name in FIGURES}
        heads[head]["reliability"] = reliability(p, target)
    return {"bins": BINS, "images": int(keys.numel()), "heads": heads}


def _interval(samples: Tensor, value: float) -> dict[str, float]:
    """``interval``, but none where any resample has no estimate (a slope where a resample's probabilities separate
    the classes): the others alone would not be the figure's interval."""
    if bool(torch.isnan(samples).any()):
        return {"value": value, "low": math.nan, "high": math.nan}
    return interval(samples, value)


def calibration_text(summary: dict[str, Any], unit: str, class_name: str) -> tuple[str, str]:
    """``(markdown, csv)``: per head the Brier score and ECE with their intervals, then each head's reliability."""
    rows = [[head, *(figure_text(f[name]) for name in FIGURES)] for head, f in summary["heads"].items()]
    bins = []
    for head, f in summary["heads"].items():
        cells = [
            f"{b['positive_share']:.2f} ({b['images']})" if b["images"] else "-" for b in f["reliability"]
        ]  # fmt: skip
        bins.append([head, *cells])
    edges = [f"{b['low']:.1f}-{b['high']:.1f}" for b in next(iter(summary["heads"].values()))["reliability"]]
    markdown = (
        f"Calibration of the {class_name} probability on {count(summary['images'], 'distinct test image')}: the Brier "
        "score (mean squared error of the probability; lower is better) and the expected calibration error (per "
        "equal-width bin, its share of the images times the gap between its mean probability and its share "
        "positive), and the calibration slope and intercept of logistic recalibration (logit P = a + b logit p: "
        "the slope b is 1 when calibrated, below 1 when the probabilities are too extreme, above when too timid; "
        "logit P = a' + logit p: the intercept a' is 0 when calibrated, above 0 when they are too low on average). "
        f"Value [95% bootstrap interval over {unit}]; n/a: no finite estimate, the probabilities separate the "
        "classes (a perfect ranking's slope is infinite), in the test set or, for the interval, in some resample.\n\n"
        + _markdown(["head", *FIGURES.values()], rows)
        + "\nReliability: per bin of probability, the share of its images that are positive (and how many images it "
        "holds); a calibrated head's share lies within its bin. reliability.png draws it.\n\n"
        + _markdown(["head", *edges], bins)
    )
    return markdown, csv_text(CSV_COLUMNS, [[str(v) for v in row] for row in calibration_rows(summary)])


def calibration_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``calibration.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return [
        [head, name, *(f[name][end] for end in ("value", "low", "high"))]
        for head, f in summary["heads"].items()
        for name in FIGURES
    ]


def plot_reliability(summary: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Each head's reliability curve (mean probability against share positive per bin) beside the diagonal."""

    def draw(axes: Any) -> None:
        axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
        for head, f in summary["heads"].items():
            points = [(b["mean_probability"], b["positive_share"]) for b in f["reliability"] if b["images"]]
            axes.plot([x for x, _ in points], [y for _, y in points], "o-",
                      label=f"{head} (ECE {f['ece']['value']:.3f})")  # fmt: skip

    save_unit_square_plot(path, draw, "mean predicted probability in the bin",
                          "share of the bin's images that are positive", title, "upper left")  # fmt: skip
