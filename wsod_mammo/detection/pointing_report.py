"""The test report's ``pointing_game.md|csv``: each test-time method's pointing game and energy inside the masses.

Figures over the mass images with a mass in view (``DetectionResult.pointing``), each with a 95% bootstrap
interval drawn as Table II's are (whole studies, the report's seed), so the study can average them over seeds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import LEVEL, groups_of, interval, interval_text, resampled_means
from wsod_mammo.detection.report import _markdown, count, csv_text

if TYPE_CHECKING:  # torchmetrics' import (seconds) stays out of `wsod study`, which reads tolerance_text only
    from wsod_mammo.detection.detection_result import DetectionResult

FIGURES = {"hit": "pointing game", "energy": "energy inside the masses"}
CSV_COLUMNS = ["test_method", "images", *(f"{f}{end}" for f in FIGURES for end in ("", "_low", "_high"))]


def pointing_summary(
    results: dict[str, DetectionResult], seed: int, groups: dict[int, int] | None = None
) -> dict[str, Any] | None:
    """``{"tolerance_px" | "tolerance_mm", "images", "unscored", "methods": {method: {"hit", "energy": {value, low,
    high}}}}`` over each method's images with a mass in view (``unscored``: those of them the pointing game leaves
    out, without a pixel spacing for a tolerance in mm); None where no result scored maps (or no image has a mass in
    view)."""
    methods: dict[str, Any] = {}
    images = pointed = 0
    for method, r in results.items():
        if r.pointing is None or r.energy is None:
            return None
        figures = figure_intervals(r.pointing, r.energy, r.image_keys, seed, groups)
        images, pointed = int((~torch.isnan(r.energy)).sum()), int((~torch.isnan(r.pointing)).sum())
        if images == 0:
            return None
        methods[method] = figures
    if not methods:
        return None
    first = next(iter(results.values()))
    tolerance = {f"tolerance_{first.pointing_unit}": first.pointing_tolerance}
    return {**tolerance, "images": images, "unscored": images - pointed, "methods": methods}


def figure_intervals(
    hit: Tensor, energy: Tensor, keys: Tensor, seed: int, groups: dict[int, int] | None = None
) -> dict[str, dict[str, float]]:
    """``{"hit", "energy": {value, low, high}}``: each figure's mean over the images it scores (not NaN; ``keys
    (I,)`` theirs) with its interval over whole studies (``groups``), NaN where it scores none."""
    figures = {}
    for figure, values in (("hit", hit), ("energy", energy)):
        scored = ~torch.isnan(values)
        if not bool(scored.any()):
            figures[figure] = interval(torch.full((1,), math.nan), math.nan)
            continue
        scored_keys = keys[scored]
        (drawn,) = resampled_means([values[scored].double()], scored_keys, groups_of(scored_keys, groups), seed)
        figures[figure] = interval(drawn, float(values[scored].double().mean()))
    return figures


def tolerance_text(summary: dict[str, Any]) -> str:
    """The pointing game's tolerance as its summary records it: ``15 px``, ``5 mm``."""
    unit = "mm" if "tolerance_mm" in summary else "px"
    return f"{summary[f'tolerance_{unit}']:g} {unit}"


def pointing_text(summary: dict[str, Any], train_method: str, unit: str) -> tuple[str, str]:
    """``(markdown, csv)`` of :func:`pointing_summary`: per test-time method, both figures with their intervals."""
    preface = (
        f"Pointing game (trained with {train_method}; {count(summary['images'], 'mass image')} with a mass in view"
        f"{unscored_text(summary)}): the share of images whose map peaks within {tolerance_text(summary)} of a mass "
        "(ties: the share of the tied peaks that do), and the share of the map's energy inside the masses; free of the "
        "binarization "
        f"threshold and of the boxes. Mean [{LEVEL:.0%} bootstrap interval over {unit}].\n\n"
    )
    rows = [[m, *(interval_text(f[k]) for k in FIGURES)] for m, f in summary["methods"].items()]
    csv_rows = [[str(v) for v in row] for row in pointing_rows(summary)]
    return preface + _markdown(["test method", *FIGURES.values()], rows), csv_text(CSV_COLUMNS, csv_rows)


def unscored_text(summary: dict[str, Any]) -> str:
    """``, 2 of them without a pixel spacing: energy only`` where a tolerance in mm left images out, else nothing."""
    unscored = summary.get("unscored", 0)
    return f", {unscored} of them without a pixel spacing: energy only" if unscored else ""


def pointing_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``pointing_game.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return [
        [m, summary["images"], *(f[k][end] for k in FIGURES for end in ("value", "low", "high"))]
        for m, f in summary["methods"].items()
    ]
