"""The test report's ``wafroc.md|csv``: each test-time method's wAFROC and AFROC figures of merit over every test
image, with Table II's 95% bootstrap intervals (the same draws of whole studies, class-stratified, the report's seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.afroc import (
    FIGURES,
    Ratings,
    figures_of_merit,
    ratings,
    wafroc_curve,
    with_normal_images,
)
from wsod_mammo.detection.bootstrap import LEVEL, detection_draws, interval, interval_text
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.report import _markdown, count, csv_text
from wsod_mammo.detection.square_plot import save_unit_square_plot

COUNTS = ("normal_images", "mass_images", "masses")
CSV_COLUMNS = ["test_method", *COUNTS, *(f"{f}{end}" for f in FIGURES for end in ("", "_low", "_high"))]


def result_ratings(result: DetectionResult, index: int = 0, normal_rating: Tensor | None = None) -> Ratings | None:
    """The :class:`Ratings` of a result's threshold ``index`` (a test result has one, its operating threshold), and
    of ``normal_rating (K,)`` more normal images (validation's, which its result leaves out); None where they hold
    no normal image or no mass, or the result records no mass per box."""
    r = result.per_threshold[index]
    if r.box_gt is None or result.gt_image is None:
        return None
    rated = ratings(result.image_gt, r.box_image, r.box_scores, r.box_gt, result.gt_image)
    if normal_rating is not None:
        rated = with_normal_images(rated, normal_rating)
    return rated if rated.normal.numel() and rated.lesion_image.numel() else None


def afroc_summary(
    results: dict[str, DetectionResult], seed: int, groups: dict[int, int] | None = None
) -> dict[str, Any] | None:
    """``{"normal_images", "mass_images", "masses", "methods": {method: {"wafroc", "afroc": {value, low, high}}}}``
    over every test image (``results``: the ``all`` subset); None where there are no normal images or no masses."""
    methods: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for method, result in results.items():
        rated = result_ratings(result)
        if rated is None:
            return None
        counts, methods[method] = figures_with_intervals(
            rated, detection_draws(result.image_gt, result.image_keys, seed, groups)
        )
    return {**counts, "methods": methods} if methods else None


def figures_with_intervals(rated: Ratings, draws: Tensor) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """``(counts, {"wafroc", "afroc": {value, low, high}})`` of ``rated``: its :data:`COUNTS` and each figure of
    merit with its interval over ``draws``."""
    full, drawn = figures_of_merit(rated), figures_of_merit(rated, draws)
    numbers = (rated.normal.numel(), torch.unique(rated.lesion_image).numel(), rated.lesion_image.numel())
    return dict(zip(COUNTS, map(int, numbers), strict=True)), {
        f: interval(drawn[f], float(full[f][0])) for f in FIGURES
    }


def afroc_text(summary: dict[str, Any], train_method: str, unit: str) -> tuple[str, str]:
    """``(markdown, csv)`` of :func:`afroc_summary`: per test-time method, both figures of merit with intervals."""
    preface = (
        f"wAFROC and AFROC figures of merit (trained with {train_method}; every test image: "
        f"{count(summary['normal_images'], 'normal image')}, {count(summary['mass_images'], 'mass image')} with "
        f"{count(summary['masses'], 'mass', 'masses')}): the probability that a mass's best box (IoU above the rule; "
        "none: lowest) scores above the best box of a normal image, ties 1/2, each mass image weighing the same "
        "(wAFROC) or each mass (AFROC); 0.5 marks nothing, 1 finds every mass above every normal image's boxes. "
        f"Boxes at Table II's binarization threshold. Value [{LEVEL:.0%} bootstrap interval over {unit}, drawn as "
        "Table II's].\n\n"
    )
    rows = [[m, *(interval_text(f[k], 3) for k in FIGURES)] for m, f in summary["methods"].items()]
    csv_rows = [[str(v) for v in row] for row in afroc_rows(summary)]
    return preface + _markdown(["test method", *FIGURES.values()], rows), csv_text(CSV_COLUMNS, csv_rows)


def afroc_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``wafroc.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return [
        [m, *(summary[c] for c in COUNTS), *(f[k][end] for k in FIGURES for end in ("value", "low", "high"))]
        for m, f in summary["methods"].items()
    ]


def plot_wafroc(
    results: dict[str, DetectionResult], summary: dict[str, Any], path: str | Path, title: str = ""
) -> None:
    """Each method's wAFROC curve (:func:`wafroc_curve`), its figure of merit (the area) in the legend."""

    def draw(axes: Any) -> None:
        axes.plot([0, 1], [0.5, 0.5], color="gray", linestyle="--", linewidth=1, label="marks nothing (0.5)")
        for method, result in results.items():
            rated = result_ratings(result)
            if rated is not None and method in summary["methods"]:
                fpf, wllf = wafroc_curve(rated)
                value = summary["methods"][method]["wafroc"]["value"]
                axes.plot(fpf.tolist(), wllf.tolist(), label=f"{method} (wAFROC {value:.3f})")

    save_unit_square_plot(path, draw, "share of normal images with a box scoring >= t",
                          "weighted share of masses found by a box scoring >= t", title, "lower right")  # fmt: skip
