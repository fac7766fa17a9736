"""Calibration of Table I's probabilities: the test report's ``calibration.md|csv`` and ``reliability.png``.

AUC says how well a head ranks images; a reader of ``wsod predict`` reads the probability itself, and a 0.8 that
comes true a third of the time misleads whatever the AUC. Per head: the Brier score (mean squared error of the
probability), the expected calibration error over equal-width bins (the images' share in each bin times its gap
between mean probability and share positive), the calibration slope and intercept (:mod:`recalibration`: too extreme
or too timid, too high or too low) and the reliability diagram, each figure with a 95% interval drawn as Table I's
are (whole studies, class-stratified, the report's seed). The ECE of a small test set lies above the population's
(each bin's gap holds its sampling noise: 0.025 above 0.119 at 120 images, 0.006 at 1,000, in
``tests/test_calibration.py``'s simulation), so its interval covers the population's less often than 95%. Beside it
the report gives the ECE a calibrated head would show on the same images (outcomes drawn as the probabilities say:
Bröcker & Smith's consistency resampling, 2007) and how often that reaches the observed ECE, a test of calibration
that carries the same noise; per bin, the range of shares positive a calibrated head would show (the reliability
diagram's consistency bars).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import figure_text, interval, interval_text, resample_weights
from wsod_mammo.detection.recalibration import recalibration
from wsod_mammo.detection.report import _markdown, count, csv_text
from wsod_mammo.detection.square_plot import save_unit_square_plot

BINS = 10
FIGURES = {"brier": "Brier score", "ece": f"ECE ({BINS} bins)", "slope": "slope", "intercept": "intercept"}
CSV_COLUMNS = ["head", "figure", "value", "low", "high"]
CALIBRATED_DRAWS = 1000  # sets of outcomes drawn as the probabilities say


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


def if_calibrated(
    probabilities: Tensor, seed: int, keys: Tensor | None = None, draws: int = CALIBRATED_DRAWS, bins: int = BINS
) -> dict[str, Tensor]:
    """What a calibrated head would show on these very images: outcomes drawn ``draws`` times, each image positive
    with its own probability. ``{"ece": (draws,), "shares": (draws, bins)}``: the ECE of each set of outcomes, and
    each bin's share positive (NaN for an empty bin). Seeded, own generator, on the CPU; ``keys (N,)`` (the images'
    ``image_keys``) fix which image each random number goes to whatever order they come in (one GPU or a DDP
    gather's interleaved ranks)."""
    p = probabilities.detach().cpu().double().reshape(-1)
    if keys is not None:
        p = p[torch.argsort(keys.cpu())]  # every figure here is a sum over images: their order only picks the draws
    generator = torch.Generator().manual_seed(seed)
    outcomes = (torch.rand(draws, p.numel(), generator=generator, dtype=torch.float64) < p).double()
    one_hot = torch.nn.functional.one_hot(bin_of(p, bins), bins).double()  # (N, K)
    ece = ((p - outcomes) @ one_hot).abs().sum(1) / max(p.numel(), 1)
    shares = (outcomes @ one_hot) / one_hot.sum(0)  # an empty bin: 0 / 0 = NaN
    return {"ece": ece, "shares": shares}


def calibrated_ece(drawn: Tensor, observed: float) -> dict[str, float]:
    """``{"value", "low", "high", "p"}``: the mean and 95% range of a calibrated head's ECE (``if_calibrated``'s
    ``ece``), and the share of its draws at or above the ``observed`` ECE, counting the observed one (a Monte Carlo
    p-value: small where the head is further from calibrated than a test set of this size strays by chance)."""
    low, high = torch.quantile(drawn, torch.tensor([0.025, 0.975], dtype=drawn.dtype)).tolist()
    p_value = (1 + int((drawn >= observed - 1e-12).sum())) / (drawn.numel() + 1)
    return {"value": float(drawn.mean()), "low": low, "high": high, "p": p_value}


def reliability(
    probabilities: Tensor, target: Tensor, bins: int = BINS, calibrated_shares: Tensor | None = None
) -> list[dict[str, Any]]:
    """The reliability diagram's points: per bin ``{"low", "high", "images", "mean_probability", "positive_share"}``
    (the means None for an empty bin); with ``calibrated_shares`` (``if_calibrated``'s ``shares``) also
    ``"calibrated_low"``, ``"calibrated_high"``: the 95% range of the bin's share positive were the head calibrated."""
    p, y, index = probabilities.double().reshape(-1), target.double().reshape(-1), bin_of(probabilities, bins)
    ends = None
    if calibrated_shares is not None:  # (2, K); an empty bin's NaN
        ends = torch.nanquantile(calibrated_shares, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)
    rows = []
    for k in range(bins):
        inside = index == k
        n = int(inside.sum())
        rows.append({"low": k / bins, "high": (k + 1) / bins, "images": n,
                     "mean_probability": float(p[inside].mean()) if n else None,
                     "positive_share": float(y[inside].mean()) if n else None})  # fmt: skip
        if ends is not None:
            rows[-1]["calibrated_low"] = float(ends[0, k]) if n else None
            rows[-1]["calibrated_high"] = float(ends[1, k]) if n else None
    return rows


def calibration_summary(record: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """``{"bins", "images", "heads": {head: {"brier", "ece", "slope", "intercept": {value, low, high},
    "ece_if_calibrated": {value, low, high, p}, "reliability": [...]}}}`` from Table I's image record (``image_keys``,
    ``study_keys`` where known, ``target``, ``heads``); None without one. ``seed`` draws the resamples and the
    calibrated outcomes."""
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
        calibrated = if_calibrated(p, seed, keys)
        heads[head]["ece_if_calibrated"] = calibrated_ece(calibrated["ece"], float(full["ece"][0]))
        heads[head]["reliability"] = reliability(p, target, calibrated_shares=calibrated["shares"])
    return {"bins": BINS, "images": int(keys.numel()), "heads": heads}


def _interval(samples: Tensor, value: float) -> dict[str, float]:
    """``interval``, but none where any resample has no estimate (a slope where a resample's probabilities separate
    the classes): the others alone would not be the figure's interval."""
    if bool(torch.isnan(samples).any()):
        return {"value": value, "low": math.nan, "high": math.nan}
    return interval(samples, value)


def calibration_text(summary: dict[str, Any], unit: str, class_name: str) -> tuple[str, str]:
    """``(markdown, csv)``: per head every figure with its interval and the ECE if calibrated with its p, then each
    head's reliability."""
    rows = []
    for head, f in summary["heads"].items():
        cells = [figure_text(f[name]) for name in FIGURES]  # the ECE if calibrated and its p beside the ECE
        rows.append([head, *cells[:2], *_calibrated_cells(f), *cells[2:]])
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
        "classes (a perfect ranking's slope is infinite), in the test set or, for the interval, in some resample. "
        "A small test set's ECE is above zero even for a calibrated head: ECE if calibrated is the ECE these "
        "probabilities show on these images when each image's outcome is drawn as its probability says "
        f"({CALIBRATED_DRAWS:,} draws: Bröcker & Smith's consistency resampling), mean [95% range]; p the share of "
        "those draws whose ECE reaches "
        "the observed one (small: further from calibrated than a test set of this size strays by chance).\n\n"
        + _markdown(["head", *list(FIGURES.values())[:2], "ECE if calibrated", "p", *list(FIGURES.values())[2:]], rows)
        + "\nReliability: per bin of probability, the share of its images that are positive (and how many images it "
        "holds); a calibrated head's share lies within its bin, give or take the sampling noise that "
        "reliability.png draws as a bar (the 95% range of the bin's share were the head calibrated).\n\n"
        + _markdown(["head", *edges], bins)
    )
    return markdown, csv_text(CSV_COLUMNS, [[str(v) for v in row] for row in calibration_rows(summary)])


def _calibrated_cells(figures: dict[str, Any]) -> list[str]:
    """The ECE-if-calibrated and p cells of a head's row (n/a in a report written before them)."""
    calibrated = figures.get("ece_if_calibrated")
    if calibrated is None:
        return ["n/a", "n/a"]
    return [interval_text({k: calibrated[k] for k in ("value", "low", "high")}, 3), f"{calibrated['p']:.3f}"]


def calibration_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``calibration.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike: each
    figure of :data:`FIGURES`, then ``ece_if_calibrated`` (mean, 95% range) and ``ece_p`` (its p; no interval)."""
    rows = []
    for head, f in summary["heads"].items():
        rows += [[head, name, *(f[name][end] for end in ("value", "low", "high"))] for name in FIGURES]
        if (calibrated := f.get("ece_if_calibrated")) is not None:
            rows.append([head, "ece_if_calibrated", calibrated["value"], calibrated["low"], calibrated["high"]])
            rows.append([head, "ece_p", calibrated["p"], math.nan, math.nan])
    return rows


def plot_reliability(summary: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Each head's reliability curve (mean probability against share positive per bin) beside the diagonal."""

    def draw(axes: Any) -> None:
        axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
        barred = False
        for head, f in summary["heads"].items():
            filled = [b for b in f["reliability"] if b["images"]]
            line = axes.plot([b["mean_probability"] for b in filled], [b["positive_share"] for b in filled], "o-",
                             label=f"{head} (ECE {f['ece']['value']:.3f})")[0]  # fmt: skip
            ranges = [b for b in filled if b.get("calibrated_low") is not None]
            if ranges:  # the 95% range of the bin's share were the head calibrated, at the bin's mean probability
                axes.vlines([b["mean_probability"] for b in ranges], [b["calibrated_low"] for b in ranges],
                            [b["calibrated_high"] for b in ranges], colors=line.get_color(), alpha=0.3,
                            linewidth=3)  # fmt: skip
                barred = True
        if barred:
            axes.vlines([], [], [], colors="gray", alpha=0.3, linewidth=3, label="95% range if calibrated")

    save_unit_square_plot(path, draw, "mean predicted probability in the bin",
                          "share of the bin's images that are positive", title, "upper left")  # fmt: skip
