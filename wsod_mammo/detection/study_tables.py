"""The study's tables from its test runs: Table I and the 5 x 5 Table II with 95% intervals (also per breast
density), and the best pair.

Input: one ``detection.json`` per (train method, seed) test run, as ``wsod test`` writes it (keys ``table1``,
``mass``: ``{test method: {"tpr", "fppi", ...}}``). No torch here: plain numbers in, Markdown/CSV text out.

Intervals: over seeds, a Student-t 95% interval of the per-seed figures (two seeds or more; every table's then gets
one that counts the test set too, from the runs' image records where they give it: :mod:`study_over_seeds`,
:mod:`study_strata_over_seeds`); with one seed, the
bootstrap interval the test run reports, when it reports one (:func:`image_interval`: over the test studies, or
over images for a report written before intervals drew studies; ``detection.json``'s ``bootstrap.resampled``
says which), else none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsod_mammo.detection.json_figures import undefined_as_nan
from wsod_mammo.detection.report import (
    FROM_TIE,
    FROM_VALIDATION,
    METHOD_ORDER,
    MISSING,
    TABLE1_COLUMNS,
    _markdown,
    _ordered_methods,
    csv_text,
)

SUBSET = "mass"  # the study's Table II: mass images, as the paper
# A cell whose threshold some seed's validation did not choose, marked in Table II and explained below it
THRESHOLD_SYMBOLS = {"tied": "\u2020", "default": "\u2021"}
THRESHOLD_NOTES = {
    "tied": "the threshold is the grid's first, from a tie at TPR 0: validation found no mass within the FPPI budget "
    "at any threshold, so none was chosen",
    "default": "NOT VALIDATED: the maps were binarized at the default threshold; no validation chose one",
}
# A test report's cell (``detection.json``) holds its bootstrap interval (over studies, or images) as
# ``intervals["tpr"] = {"value", "low", "high"}`` (``training/table2_report.py``).


@dataclass(frozen=True)
class Estimate:
    """A mean over runs and its 95% interval (NaN bounds when there is none); ``basis`` says over what."""

    mean: float
    low: float
    high: float
    n: int
    basis: str  # "seeds" (Student-t), "studies" or "images" (a test report's bootstrap), "seeds and test set", "none"

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """``0.87 [0.75, 0.96]`` (``+0.01 [-0.02, +0.04]`` ``signed``, for differences); n/a without a mean."""
        if math.isnan(self.mean):
            return MISSING
        spec = f"{'+' if signed else ''}.{digits}f"
        value = f"{self.mean:{spec}}"
        return value if math.isnan(self.low) else f"{value} [{self.low:{spec}}, {self.high:{spec}}]"


def seed_interval(values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> Estimate:
    """Mean and Student-t interval of per-seed figures; NaN values (undefined figures) are left out. The interval
    is cut to ``bounds``, the values the figure can take (a fraction's [0, 1] by default: TPR 0.0, 0.05 and 0.1
    over three seeds reads [0.00, 0.17], not [-0.07, 0.17])."""
    n, mean, sd = mean_and_sd(values)
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, "none")
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]), n, "seeds")


def mean_and_sd(values: Sequence[float | None]) -> tuple[int, float, float]:
    """``(n, mean, sample standard deviation)`` of the defined ``values`` (None and NaN, undefined figures, left
    out); the mean NaN without any, the deviation NaN with fewer than two: what the seeds' interval and t-test use."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not finite:
        return 0, math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return 1, mean, math.nan
    return len(finite), mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def image_interval(cell: dict[str, Any], figure: str = "tpr", key: str = "intervals") -> tuple[float, float] | None:
    """A test report's 95% bootstrap interval (over studies, or images) of ``figure``, if ``cell[key]`` carries
    one (``key``: ``intervals`` in a Table II cell, ``table1_intervals[head]`` for Table I)."""
    value = (cell.get(key) or {}).get(figure)
    if isinstance(value, dict) and {"low", "high"} <= set(value):
        low, high = float(value["low"]), float(value["high"])
        return None if math.isnan(low) or math.isnan(high) else (low, high)
    return None


def tpr_estimate(cells: Sequence[dict[str, Any]], over: str = "images") -> Estimate:
    """TPR of one Table II cell over its seeds; one seed falls back on the report's bootstrap interval, drawn
    ``over`` what (``resampled``)."""
    return over_seeds_or_images([c.get("tpr", math.nan) for c in cells], cells[0], "tpr", over=over)


def resampled(report: dict[str, Any]) -> str:
    """What a test report's bootstrap drew: ``studies``, or ``images`` (a report written before it said)."""
    return str((report.get("bootstrap") or {}).get("resampled", "images"))


def over_seeds_or_images(
    values: Sequence[float],
    first: dict[str, Any],
    figure: str,
    key: str = "intervals",
    over: str = "images",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Estimate:
    """``seed_interval`` of ``values`` (cut to ``bounds``); with one seed, the bootstrap interval that ``first`` (its
    report's part) gives (``image_interval``)."""
    estimate = seed_interval(values, bounds=bounds)
    if estimate.n == 1 and (drawn := image_interval(first, figure, key)) is not None:
        return Estimate(estimate.mean, drawn[0], drawn[1], 1, over)
    return estimate


def load_reports(runs: dict[tuple[str, int], Path]) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(train method, seed): detection.json}``; a missing, unreadable or malformed file is an error naming the
    run and the file (before any output is written)."""
    reports = {}
    for (method, seed), path in runs.items():
        try:
            reports[(method, seed)] = undefined_as_nan(json.loads(Path(path).read_text(encoding="utf-8")))  # null: NaN
        except (OSError, ValueError) as error:
            raise ValueError(f"run {method} seed {seed}: cannot read its test report {path} ({error})") from None
        if problem := _report_problem(reports[(method, seed)]):
            raise ValueError(f"run {method} seed {seed}: {path} is not a `wsod test` report as expected: {problem}")
    return reports


def _report_problem(report: Any) -> str | None:
    """What keeps ``report`` from being read as a ``detection.json`` (None: nothing): the parts the tables read."""
    if not isinstance(report, dict):
        return f"expected a JSON object, found {type(report).__name__}"
    if not isinstance(report.get("table1"), dict):
        return "no 'table1' object (the classification figures)"
    cells = report.get(SUBSET, {})
    if not isinstance(cells, dict) or not all(isinstance(c, dict) for c in cells.values()):
        return f"'{SUBSET}' is not an object of one object per test method"
    for method, cell in cells.items():
        for figure in ("tpr", "fppi"):
            if not isinstance(cell.get(figure, math.nan), int | float) or isinstance(cell.get(figure), bool):
                return f"'{SUBSET}.{method}.{figure}' is {cell.get(figure)!r}, not a number"
    return None


# the test report's parts with a figure per test method, which --test_methods narrows as it narrows Table II
PER_METHOD_PARTS = ("pointing_game", "wafroc")  # the per-kind parts are narrowed in keep_test_methods too


def keep_test_methods(
    reports: dict[tuple[str, int], dict[str, Any]], methods: Sequence[str] | None = None
) -> dict[tuple[str, int], dict[str, Any]]:
    """The reports with only ``methods``' Table II cells, pointing game and figures of merit (``wsod study
    --test_methods``; None: every method any run was tested with). A run whose report lacks one of them (tested with
    other methods, or without mass images) is an error naming the run and what it has: averaged over the other seeds
    only, its cells would say "over seeds" of fewer seeds, or one seed's bootstrap interval, without a word."""
    tested = {m for r in reports.values() for m in r.get(SUBSET, {})}
    wanted = list(methods) if methods is not None else _ordered_methods(sorted(tested))
    kept = {}
    for (train, seed), report in reports.items():
        cells = report.get(SUBSET, {})
        if missing := [m for m in wanted if m not in cells]:
            has = ", ".join(cells) or f"none: no {SUBSET}-image results"
            common = [m for m in wanted if all(m in r.get(SUBSET, {}) for r in reports.values())]
            advice = f" (--test_methods {','.join(common)} keeps the methods every run has)" if common else ""
            raise ValueError(
                f"run {train} seed {seed}: its test report has no {', '.join(missing)} (it has {has}); test it "
                f"again with those methods, or leave them out of --test_methods{advice}"
            )
        kept[(train, seed)] = {**report, SUBSET: {m: cells[m] for m in wanted}}
        for key in PER_METHOD_PARTS:  # the tables per test method show Table II's columns too
            if isinstance(part := report.get(key), dict) and isinstance(part.get("methods"), dict):
                kept[(train, seed)][key] = _only_methods(part, wanted)
        if isinstance(by_kind := report.get("wafroc_by_kind"), dict):  # and so do those per kind of mass
            kept[(train, seed)]["wafroc_by_kind"] = _strata_methods(by_kind, wanted)
        if isinstance(pointing := report.get("pointing_by_kind"), dict) and isinstance(pointing.get("kinds"), dict):
            kept[(train, seed)]["pointing_by_kind"] = {**pointing, "kinds": _strata_methods(pointing["kinds"], wanted)}
    return kept


def _strata_methods(strata: dict[str, Any], wanted: Sequence[str]) -> dict[str, Any]:
    """``{kind: {label: part}}`` with only the ``wanted`` methods in each part."""
    return {kind: {label: _only_methods(row, wanted) for label, row in rows.items()} for kind, rows in strata.items()}


def _only_methods(part: dict[str, Any], wanted: Sequence[str]) -> dict[str, Any]:
    """A report's part (``{..., "methods": {method: ...}}``) with only the ``wanted`` methods it has."""
    return {**part, "methods": {m: part["methods"][m] for m in wanted if m in part["methods"]}}


def runs_by_method(reports: dict[tuple[str, int], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{train method: its runs' reports, in seed order}``, the methods in the paper's order (others after)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for (method, _), report in sorted(reports.items()):
        grouped.setdefault(method, []).append(report)
    return {m: grouped[m] for m in [*METHOD_ORDER, *sorted(set(grouped) - set(METHOD_ORDER))] if m in grouped}


def table2_cells(reports: dict[tuple[str, int], dict[str, Any]]) -> dict[str, dict[str, tuple[Estimate, Estimate]]]:
    """``{train: {test: (TPR estimate, FPPI estimate)}}`` over seeds, at each run's validated threshold."""
    cells: dict[str, dict[str, tuple[Estimate, Estimate]]] = {}
    for train, runs in runs_by_method(reports).items():
        tests = [m for m in METHOD_ORDER if any(m in r.get(SUBSET, {}) for r in runs)]
        for test in tests:
            per_seed = [r[SUBSET][test] for r in runs if test in r.get(SUBSET, {})]
            defined = [c for c in per_seed if not math.isnan(float(c.get("tpr", math.nan)))]  # TPR's seeds
            fppi = seed_interval([c.get("fppi", math.nan) for c in defined], bounds=(0.0, math.inf))
            over = resampled(next(r for r in runs if test in r.get(SUBSET, {})))
            cells.setdefault(train, {})[test] = (tpr_estimate(per_seed, over), fppi)
    return cells


def threshold_kind(cell: dict[str, Any]) -> str:
    """Where a report cell's threshold came from: ``validated`` (validation chose it), ``tied`` (the grid's first,
    from a tie at TPR 0) or ``default`` (no validation); a report written before ``threshold_from``: validated."""
    source = str(cell.get("threshold_from", FROM_VALIDATION))
    return "tied" if source == FROM_TIE else "default" if source.startswith("default") else "validated"


Marks = dict[tuple[str, str], dict[str, list[int]]]


def threshold_marks(reports: dict[tuple[str, int], dict[str, Any]]) -> Marks:
    """``{(train, test): {"tied" | "default": [seeds]}}``: the cells some seed's threshold was not validation's
    choice in; a mean over seeds says nothing of it, so Table II marks them (:data:`THRESHOLD_SYMBOLS`)."""
    marks: Marks = {}
    for (train, seed), report in sorted(reports.items()):
        for test, cell in report.get(SUBSET, {}).items():
            if (kind := threshold_kind(cell)) != "validated":
                marks.setdefault((train, test), {}).setdefault(kind, []).append(seed)
    return marks


def symbols(kinds: dict[str, list[int]] | None) -> str:
    """A cell's marks, `` \u2020`` and/or `` \u2021``, or nothing."""
    marked = "".join(THRESHOLD_SYMBOLS[kind] for kind in THRESHOLD_SYMBOLS if kind in (kinds or {}))
    return f" {marked}" if marked else ""


def _notes(marks: Marks) -> str:
    """The lines under Table II that say what each mark means and which cells and seeds carry it."""
    lines = []
    for kind, symbol in THRESHOLD_SYMBOLS.items():
        where = [
            f"train {train}, test {test} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
            for (train, test), kinds in marks.items()
            if (s := kinds.get(kind))
        ]
        if where:
            lines.append(f"{symbol} {THRESHOLD_NOTES[kind]}: {'; '.join(where)}.\n")
    return "".join(lines)


def _cell(cell: tuple[Estimate, Estimate]) -> str:
    tpr, fppi = cell
    return MISSING if math.isnan(tpr.mean) else f"{tpr.text()} @ {fppi.mean:.2f}"


def table2_text(cells: dict[str, dict[str, tuple[Estimate, Estimate]]], marks: Marks | None = None) -> tuple[str, str]:
    """Table II ``(markdown, csv)``: cells ``TPR [low, high] @ FPPI`` (means over seeds); a cell some seed's
    threshold was not validation's choice in carries its mark (``marks``, :func:`threshold_marks`), explained
    under the table, and the CSV names those seeds (``tied_seeds``, ``default_seeds``)."""
    marks = marks or {}
    tests = [m for m in METHOD_ORDER if any(m in row for row in cells.values())]
    md_rows = [
        [train] + [_cell(row[t]) + symbols(marks.get((train, t))) if t in row else MISSING for t in tests]
        for train, row in cells.items()
    ]
    header = ["train_method", "test_method", "tpr", "tpr_low", "tpr_high", "fppi", "runs", "interval_over"]
    header += [f"{kind}_seeds" for kind in THRESHOLD_SYMBOLS]
    csv_rows = [
        [train, test, *(repr(v) for v in (tpr.mean, tpr.low, tpr.high, fppi.mean)), str(tpr.n), tpr.basis]
        + [" ".join(map(str, marks.get((train, test), {}).get(kind, []))) for kind in THRESHOLD_SYMBOLS]
        for train, row in cells.items()
        for test, (tpr, fppi) in row.items()
    ]
    markdown = _markdown(["train \\ test", *tests], md_rows)
    return markdown + (f"\n{notes}" if (notes := _notes(marks)) else ""), csv_text(header, csv_rows)


def table1_text(
    reports: dict[tuple[str, int], dict[str, Any]],
    key: str = "table1",
    over_test_set: dict[tuple[str, str], dict[str, Estimate]] | None = None,
) -> str:
    """Table I in Markdown: per train method and head, each figure's mean [95% interval] over seeds (with one seed,
    the test report's ``<key>_intervals``, as Table II's cells). ``key``: ``table1`` (images) or ``table1_breast``
    (breasts). ``over_test_set``: the estimates over seeds and the test set of the (train, head) rows it holds
    (:func:`~wsod_mammo.detection.study_over_seeds.table1_over_test_set`), used instead."""
    rows = []
    for train, runs in runs_by_method(reports).items():
        for head in ("global", "local", "fusion"):
            intervals = {f"{key}_intervals": (runs[0].get(f"{key}_intervals") or {}).get(head)}
            given = (over_test_set or {}).get((train, head))
            values = [
                given[k] if given else
                over_seeds_or_images([(r.get(key) or {}).get(head, {}).get(k, math.nan) for r in runs], intervals, k,
                                      f"{key}_intervals", resampled(runs[0]))
                for k, _ in TABLE1_COLUMNS
            ]  # fmt: skip
            rows.append([train, head] + [v.text(3) for v in values])
    return _markdown(["train", "head", *(title for _, title in TABLE1_COLUMNS)], rows)


def table1_density_reports(
    reports: dict[tuple[str, int], dict[str, Any]],
) -> dict[str, tuple[dict[str, Any], dict[tuple[str, int], dict[str, Any]]]]:
    """Per breast density of the test report's ``table1_by_density``, in the report's order: its counts (the first
    run's) and the reports with that density's figures as ``table1_density`` (and ``_intervals``), for
    ``table1_text(..., "table1_density")``. Call it with reports that all have ``table1_by_density``."""
    first = next(iter(reports.values()))["table1_by_density"]
    out = {}
    for density, row in first.items():
        per_run = {}
        for key, report in reports.items():
            heads = (report["table1_by_density"].get(density) or {}).get("heads", {})
            values = {head: {k: f["value"] for k, f in figures.items()} for head, figures in heads.items()}
            per_run[key] = {**report, "table1_density": values, "table1_density_intervals": heads}
        out[density] = ({k: row.get(k) for k in ("studies", "images", "positive")}, per_run)
    return out


def stratum_reports(
    reports: dict[tuple[str, int], dict[str, Any]], strata: str = "by_density"
) -> dict[str, tuple[dict[str, Any], dict[tuple[str, int], dict[str, Any]]]]:
    """Per stratum of the test report's ``strata`` (``by_density``: breast densities, ``by_finding_birads``: kinds
    of mass; mass images), in the report's order: its counts (the first run's: every run tests the same images) and
    the reports with that stratum's cells as their Table II cells, for :func:`table2_cells` (the cells' thresholds
    are Table II's: its :func:`threshold_marks` hold). Call it with reports that all have ``strata``."""
    first = next(iter(reports.values()))[strata][SUBSET]
    out = {}
    for stratum, row in first.items():
        per_run = {}
        for key, report in reports.items():
            cells = report[strata][SUBSET].get(stratum, {}).get("cells", {})
            per_run[key] = {**report, SUBSET: {
                method: {"tpr": c["tpr"], "fppi": c["fppi"], "intervals": {"tpr": c["tpr_interval"]}}
                for method, c in cells.items() if method in report[SUBSET]
            }}  # fmt: skip
        out[stratum] = ({k: row.get(k) for k in ("studies", "images", "masses")}, per_run)
    return out


def best_pairs(cells: dict[str, dict[str, tuple[Estimate, Estimate]]]) -> list[tuple[str, str, Estimate, Estimate]]:
    """Every (train, test) pair at the highest mean TPR and, among those, the lowest mean FPPI, in table order: a
    small test set often ties several, and naming one would be an arbitrary pick. Empty if no cell is defined."""
    candidates = [
        ((tpr.mean, -fppi.mean), (train, test, tpr, fppi))
        for train, row in cells.items()
        for test, (tpr, fppi) in row.items()
        if not math.isnan(tpr.mean)
    ]
    if not candidates:
        return []
    top = max(key for key, _ in candidates)
    return [pair for key, pair in candidates if key == top]
