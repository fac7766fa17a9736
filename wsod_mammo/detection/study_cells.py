"""The study's tables of one figure per (train method, test method) cell, means over seeds: the pointing game and
the energy inside the masses, the wAFROC and AFROC figures of merit (each also per breast density, finding BI-RADS
and mass size), and the calibration of Table I's probabilities per train method. No torch here: the reports'
numbers in, Markdown/CSV text out; their intervals over the seeds and the test set come from
:mod:`study_over_seeds` and :mod:`study_strata_over_seeds`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from wsod_mammo.detection.mass_kinds import KIND_TITLES
from wsod_mammo.detection.report import MISSING, _markdown, _ordered_methods, csv_text
from wsod_mammo.detection.study_tables import SUBSET, Estimate, over_seeds_or_images, resampled, runs_by_method

POINTING_FIGURES = {"hit": "Pointing game", "energy": "Energy inside the masses"}
AFROC_FIGURES = {"wafroc": "wAFROC", "afroc": "AFROC"}

Cells = dict[str, dict[str, dict[str, Estimate]]]  # {train: {test: {figure: Estimate}}}


def method_cells(reports: dict[tuple[str, int], dict[str, Any]], key: str, figures: Iterable[str]) -> Cells:
    """``{train: {test: {figure: Estimate}}}``: each report's per-test-method ``figures`` under ``key``
    (``pointing_game``, ``wafroc``) over seeds (one seed: its bootstrap interval, as Table II's cells)."""
    cells: Cells = {}
    for train, runs in runs_by_method(reports).items():
        parts = [r[key]["methods"] for r in runs]
        over = resampled(runs[0])
        tested = {m for p in parts for m in p}
        for test in _ordered_methods(sorted(tested)):
            per_seed = [p[test] for p in parts if test in p]
            cells.setdefault(train, {})[test] = {
                figure: over_seeds_or_images([c[figure]["value"] for c in per_seed],
                                              {"intervals": per_seed[0]}, figure, over=over)
                for figure in figures
            }  # fmt: skip
    return cells


CELLS_COLUMNS = ["train_method", "test_method", "figure", "mean", "low", "high", "runs", "interval_over"]


def cells_rows(cells: Cells) -> list[list[str]]:
    """The rows of ``pointing_game.csv``, ``wafroc.csv`` (:data:`CELLS_COLUMNS`): a row per train method, test method
    and figure: the mean over seeds, its interval, the runs and what the interval is over (``seeds``, or one report's
    ``studies``)."""
    return [
        [train, test, figure, *(repr(v) for v in (e.mean, e.low, e.high)), str(e.n), e.basis]
        for train, row in cells.items()
        for test, figures in row.items()
        for figure, e in figures.items()
    ]


def cells_csv(cells: Cells) -> str:
    """``pointing_game.csv``, ``wafroc.csv``: :func:`cells_rows` under their header."""
    return csv_text(CELLS_COLUMNS, cells_rows(cells))


def cells_table(cells: Cells, figure: str, digits: int = 2) -> str:
    """One figure's train x test table, mean [95% interval]."""
    tests = list(dict.fromkeys(t for row in cells.values() for t in row))
    rows = [
        [train] + [row[t][figure].text(digits) if t in row else MISSING for t in tests] for train, row in cells.items()
    ]
    return _markdown(["train \\ test", *tests], rows)


def cells_sections(cells: Cells, figures: dict[str, str], digits: int = 2, heading: str = "##") -> str:
    """One train x test table per figure (``figures``: key -> title, under a ``heading`` of that level), mean [95%
    interval]."""
    return "\n".join(f"{heading} {title}\n\n" + cells_table(cells, figure, digits) for figure, title in figures.items())


def pointing_text(cells: Cells, tolerance: str, over_seeds: str | None = None) -> str:
    """``pointing_game.md``: one train x test table per figure, mean [95% interval]; ``tolerance``: ``15 px``;
    ``over_seeds``: what its intervals over seeds are, where not Student-t."""
    return (
        f"Pointing game ({SUBSET} images with a mass in view; the share of images whose min-max normalized map peaks "
        f"within {tolerance} of a mass, and the share of the map's energy inside the masses: free of the "
        f"binarization threshold and of the boxes; mean [95% interval {over_seeds or 'over seeds'}; with one seed, the "
        "test report's bootstrap interval])\n\n" + cells_sections(cells, POINTING_FIGURES)
    )


def afroc_text(cells: Cells, over_seeds: str | None = None) -> str:
    """``wafroc.md``: the wAFROC and AFROC figures of merit, one train x test table each, mean [95% interval];
    ``over_seeds``: what its intervals over seeds are, where not Student-t."""
    over = over_seeds or "over seeds"
    return (
        "wAFROC and AFROC figures of merit (every test image: the probability that a mass's best box scores above the "
        "best box of a normal image, each mass image weighing the same, or each mass; 0.5 marks nothing; mean [95% "
        f"interval {over}; with one seed, the test report's bootstrap interval])\n\n"
        + cells_sections(cells, AFROC_FIGURES, 3)
    )


def by_kind_cells(
    reports: dict[tuple[str, int], dict[str, Any]], strata: Callable[[dict[str, Any]], Any], figures: Iterable[str]
) -> dict[str, dict[str, Cells]]:
    """``{kind: {stratum: Cells}}``: each report's figures per density, finding BI-RADS and size (``strata(report)``:
    ``{kind: {label: {"methods": ...}}}``) as :func:`method_cells`, over the strata every report rates (the same
    test set gives the same). Call it with reports that all have them."""
    parts = [strata(r) for r in reports.values()]
    out: dict[str, dict[str, Cells]] = {}
    for kind, rows in parts[0].items():
        for label in rows:
            if all(label in p.get(kind, {}) for p in parts):
                views = {run: {**r, "stratum": strata(r)[kind][label]} for run, r in reports.items()}
                out.setdefault(kind, {})[label] = method_cells(views, "stratum", figures)
    return out


def afroc_by_kind_cells(reports: dict[tuple[str, int], dict[str, Any]]) -> dict[str, dict[str, Cells]]:
    """:func:`by_kind_cells` of the reports' ``wafroc_by_kind`` (wAFROC and AFROC per kind)."""
    return by_kind_cells(reports, lambda r: r["wafroc_by_kind"], AFROC_FIGURES)


def pointing_by_kind_cells(reports: dict[tuple[str, int], dict[str, Any]]) -> dict[str, dict[str, Cells]]:
    """:func:`by_kind_cells` of the reports' ``pointing_by_kind`` (the pointing game and energy per kind)."""
    return by_kind_cells(reports, lambda r: r["pointing_by_kind"]["kinds"], POINTING_FIGURES)


def pointing_by_kind_text(
    cells: dict[str, dict[str, Cells]], tolerance: str, over_seeds: str | None = None
) -> tuple[str, str]:
    """``pointing_by_kind.md|csv``: per kind and stratum a train x test table of each figure, mean [95% interval];
    ``over_seeds``: what its intervals over seeds are, where not Student-t."""
    sections = [
        f"## {KIND_TITLES[kind]}: {label}\n\n" + cells_sections(c, POINTING_FIGURES, heading="###")
        for kind, strata in cells.items()
        for label, c in strata.items()
    ]
    markdown = (
        f"Pointing game and energy inside the masses per breast density, finding BI-RADS and mass size (as "
        f"pointing_game.md, peaks within {tolerance}; a BI-RADS or size scores each image against its masses of "
        f"that kind alone, a density keeps its own images; mean [95% interval {over_seeds or 'over seeds'}; with one "
        "seed, the test report's bootstrap interval])\n\n" + "\n".join(sections)
    )
    return markdown, _by_kind_csv(cells)


def _by_kind_csv(cells: dict[str, dict[str, Cells]]) -> str:
    rows = [
        [kind, label, *row] for kind, strata in cells.items() for label, c in strata.items() for row in cells_rows(c)
    ]
    return csv_text(["kind", "stratum", *CELLS_COLUMNS], rows)


def afroc_by_kind_text(cells: dict[str, dict[str, Cells]], over_seeds: str | None = None) -> tuple[str, str]:
    """``wafroc_by_kind.md|csv``: per kind and stratum a train x test table of wAFROC, mean [95% interval]; the
    CSV has AFROC too. ``over_seeds``: what its intervals over seeds are, where not Student-t."""
    sections = [
        f"## {KIND_TITLES[kind]}: {label}\n\n" + cells_table(c, "wafroc", 3)
        for kind, strata in cells.items()
        for label, c in strata.items()
    ]
    markdown = (
        "wAFROC figures of merit per breast density, finding BI-RADS and mass size (as wafroc.md; a BI-RADS or size "
        f"keeps every normal image and only its masses, a density its own images; mean [95% interval "
        f"{over_seeds or 'over seeds'}; with one seed, the test report's bootstrap interval]; AFROC: "
        "wafroc_by_kind.csv)\n\n" + "\n".join(sections)
    )
    return markdown, _by_kind_csv(cells)


CALIBRATION_FIGURES = {"brier": "Brier score", "ece": "ECE", "slope": "slope", "intercept": "intercept"}
UNBOUNDED = (-math.inf, math.inf)  # a calibration slope or intercept is no fraction


def calibration_figures(reports: dict[tuple[str, int], dict[str, Any]]) -> dict[str, str]:
    """The calibration figures (key: title) every run's report gives for every head: all four, or the Brier score
    and ECE where some report was written before the slope and intercept."""
    heads = [h for r in reports.values() for h in r["calibration"]["heads"].values()]
    return {name: title for name, title in CALIBRATION_FIGURES.items() if all(name in h for h in heads)}


def calibration_table(
    reports: dict[tuple[str, int], dict[str, Any]],
    over_test_set: dict[tuple[str, str], dict[str, Estimate]] | None = None,
    over_seeds: str | None = None,
) -> str:
    """``calibration.md``: per train method and head, the Brier score, ECE, calibration slope and intercept of Table
    I's probabilities, mean over seeds [95% interval; with one seed the report's bootstrap interval]; the slope and
    intercept where every run's report gives them (reports written before them do not). ``over_test_set``: the
    estimates over seeds and the test set of the (train, head) rows it holds
    (:func:`~wsod_mammo.detection.study_over_seeds.calibration_over_test_set`), used instead; ``over_seeds``: what
    its intervals over seeds are, where not Student-t."""
    figures = calibration_figures(reports)
    heads = [h for r in reports.values() for h in r["calibration"]["heads"].values()]
    tested = all("ece_if_calibrated" in h for h in heads)  # reports written before the test of calibration: no column
    rows = []
    for train, runs in runs_by_method(reports).items():
        over = resampled(runs[0])
        for head in runs[0]["calibration"]["heads"]:
            given = (over_test_set or {}).get((train, head))
            per_seed = [r["calibration"]["heads"][head] for r in runs if head in r["calibration"]["heads"]]
            estimates = [
                given[name] if given else
                over_seeds_or_images([c[name]["value"] for c in per_seed], {"intervals": per_seed[0]}, name,
                                      over=over, bounds=(0.0, 1.0) if name in ("brier", "ece") else UNBOUNDED)
                for name in figures
            ]  # fmt: skip
            rows.append([train, head, *(e.text(3) for e in estimates)])
            if tested:  # the seeds whose report rejects calibration at 5%
                rows[-1].append(f"{sum(c['ece_if_calibrated']['p'] < 0.05 for c in per_seed)} of {len(per_seed)}")
    bins = next(iter(reports.values()))["calibration"]["bins"]
    undefined = "; no interval where a seed's or a resample's probabilities separate the classes" if over_seeds else ""
    test = (
        " ECE beyond chance: the seeds whose test report's ECE a calibrated head reaches in under 5% of its draws "
        "(the report's ECE if calibrated, p < 0.05): miscalibrated beyond what the test set's size explains."
        if tested
        else ""
    )
    return (
        f"Calibration of Table I's probabilities (the Brier score, and the expected calibration error over {bins} "
        "equal-width bins: lower is better; the slope and intercept of logistic recalibration: 1 and 0 when "
        f"calibrated, n/a where the probabilities separate the classes; mean [95% interval {over_seeds or 'over seeds'}"
        f"{undefined}; with one seed, the test report's bootstrap interval]){test}\n\n"
        + _markdown(["train", "head", *figures.values()] + (["ECE beyond chance"] if tested else []), rows)
    )
