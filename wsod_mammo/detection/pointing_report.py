"""The test report's ``pointing_game.md|csv``: each test-time method's pointing game and energy inside the masses.

Figures over the mass images with a mass in view (``DetectionResult.pointing``), each with a 95% bootstrap
interval drawn as Table II's are (whole studies, the report's seed), so the study can average them over seeds.
"""

from __future__ import annotations

from typing import Any

import torch

from wsod_mammo.detection.bootstrap import LEVEL, groups_of, interval, interval_text, resampled_means
from wsod_mammo.detection.metrics import DetectionResult
from wsod_mammo.detection.report import _markdown, count, csv_text

FIGURES = {"hit": "pointing game", "energy": "energy inside the masses"}
CSV_COLUMNS = ["test_method", "images", *(f"{f}{end}" for f in FIGURES for end in ("", "_low", "_high"))]


def pointing_summary(
    results: dict[str, DetectionResult], seed: int, groups: dict[int, int] | None = None
) -> dict[str, Any] | None:
    """``{"tolerance_px", "images", "methods": {method: {"hit", "energy": {value, low, high}}}}`` over each method's
    images with a mass in view; None where no result scored maps (or no image has a mass in view)."""
    methods: dict[str, Any] = {}
    images = 0
    for method, r in results.items():
        if r.pointing is None or r.energy is None:
            return None
        scored = ~torch.isnan(r.pointing)
        images = int(scored.sum())
        if images == 0:
            return None
        keys = r.image_keys[scored]
        values = {"hit": r.pointing[scored].double(), "energy": r.energy[scored].double()}
        drawn = resampled_means(list(values.values()), keys, groups_of(keys, groups), seed)
        methods[method] = {
            figure: interval(means, float(v.mean())) for (figure, v), means in zip(values.items(), drawn, strict=True)
        }
    tolerance = next(iter(results.values())).pointing_tolerance if results else None
    return {"tolerance_px": tolerance, "images": images, "methods": methods} if methods else None


def pointing_text(summary: dict[str, Any], train_method: str, unit: str) -> tuple[str, str]:
    """``(markdown, csv)`` of :func:`pointing_summary`: per test-time method, both figures with their intervals."""
    preface = (
        f"Pointing game (trained with {train_method}; {count(summary['images'], 'mass image')} with a mass in view): "
        f"the share of images whose map peaks within {summary['tolerance_px']:g} px of a mass (ties: the share of the "
        "tied peaks that do), and the share of the map's energy inside the masses; free of the binarization "
        f"threshold and of the boxes. Mean [{LEVEL:.0%} bootstrap interval over {unit}].\n\n"
    )
    rows = [[m, *(interval_text(f[k]) for k in FIGURES)] for m, f in summary["methods"].items()]
    csv_rows = [[str(v) for v in row] for row in pointing_rows(summary)]
    return preface + _markdown(["test method", *FIGURES.values()], rows), csv_text(CSV_COLUMNS, csv_rows)


def pointing_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``pointing_game.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return [
        [m, summary["images"], *(f[k][end] for k in FIGURES for end in ("value", "low", "high"))]
        for m, f in summary["methods"].items()
    ]
