"""Table II of a test run: each test-time method's TPR@FPPI cell on mass images and on all images with 95% bootstrap
intervals, the FROC plots, and each distinct image's record of boxes, hits and masses for ``wsod report --compare``.

The Table II cell is the operating point validation selects by: the FROC point with the highest TPR at FPPI <=
``fppi_budget`` (``OPERATING_POINT`` below, also written to the report).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.detection.bootstrap import detection_intervals, groups_of, interval_text
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.froc import curve_corners
from wsod_mammo.detection.pointing_kinds import kind_of_code
from wsod_mammo.detection.report import (
    FROM_DEFAULT,
    FROM_TIE,
    FROM_VALIDATION,
    SUBSETS,
    csv_text,
    format_cell,
    plot_froc,
    row_label,
    table2,
    thresholds_record,
    write_table,
    write_table2_row,
)
from wsod_mammo.detection.table2_strata import (
    STRATUM_TABLES,
    by_density,
    by_finding_birads,
    by_mass_size,
    has_finding_birads,
    has_mass_sizes,
    why_no_sizes,
)

log = logging.getLogger(__name__)

OPERATING_POINT = (
    "TPR@FPPI cell: the FROC point with the highest TPR at FPPI <= {budget:g} (box-score cut), "
    "the rule validation chooses the binarization threshold by"
)
CI_COLUMNS = ["subset", "method", "figure", "value", "low", "high"]


def _ci_rows(subset: str, method: str, figures: dict[str, Any]) -> list[list[str]]:
    rows = [[subset, method, name, *map(repr, figures[name].values())] for name in ("tpr", "fppi")]
    for point, value in figures["tpr_at_fppi"].items():
        rows.append([subset, method, f"tpr@fppi{point}", *map(repr, value.values())])
    return rows


# detection.json's "weights" -> the row file's ``weights`` column (see wsod_mammo.detection.report)
ROW_WEIGHTS = {
    "checkpoint": "checkpoint",
    "NYU weights": "nyu",
    "weights in memory": "in_memory",
    "untrained network": "untrained",
}


def summary_row_label(train_method: str, cells: dict[str, dict[str, Any]], weights: str) -> str:
    """The label ``table2_row.md`` gives its row (``cam (untrained, NOT VALIDATED)``), from one subset's cells of
    the test summary and its ``weights`` (detection.json's): W&B's Table II showed ``cam`` alone, an untrained,
    unvalidated or tied row alike a validated one."""
    validated = [m for m, c in cells.items() if c["threshold_from"] != FROM_DEFAULT]
    tied = [m for m, c in cells.items() if c["threshold_from"] == FROM_TIE]
    return row_label(train_method, ROW_WEIGHTS.get(weights, weights), thresholds_record(list(cells), validated, tied))


def _method_summary(
    r: DetectionResult, cell: str, intervals: dict[str, Any], validated: bool, tied: bool = False
) -> dict[str, Any]:
    first = r.per_threshold[0]
    source = (FROM_TIE if tied else FROM_VALIDATION) if validated else FROM_DEFAULT
    fppi_curve, tpr_curve = curve_corners(first.fppi_curve, first.tpr_curve)  # the same steps, a point per turn
    return {
        "threshold": first.threshold,
        "threshold_from": source,
        "cell": cell,
        "tpr": first.tpr,
        "fppi": first.fppi,
        "tpr_at_fppi": {f"{p:g}": v for p, v in zip(r.fppi_points, first.tpr_at_fppi.tolist(), strict=True)},
        "num_gt": r.num_gt,
        "num_images": r.num_images,
        "num_samples": r.num_samples,
        "intervals": intervals,
        "fppi_curve": fppi_curve.tolist(),
        "tpr_curve": tpr_curve.tolist(),
    }


def _image_records(r: DetectionResult, groups: dict[int, int] | None = None) -> dict[str, Any]:
    """``detection_images.json``'s record of one method: per image its key (and study) and ground-truth count, per
    box its image, score and hit; for ``--compare --masses``, per mass its image, BI-RADS and size in mm (null
    unknown) and per box the mass it found (-1 none); for ``--compare --figure pointing|energy``, per image its
    pointing-game hit and energy inside its masses (null without a mass in view), and (``--masses``) per image and
    kind of its masses in view, the same against that kind's masses alone (``pointing_by_kind``)."""
    first = r.per_threshold[0]
    studies = groups_of(r.image_keys, groups)
    masses: dict[str, Any] = {}
    if r.gt_image is not None and r.gt_category is not None and first.box_gt is not None:
        sizes = [] if r.gt_size is None else _nullable(r.gt_size)
        masses = {"gt_image": r.gt_image.tolist(), "gt_birads": r.gt_category.tolist(),
                  "gt_size_mm": sizes or [None] * r.gt_image.numel(), "box_gt": first.box_gt.tolist()}  # fmt: skip
    maps: dict[str, Any] = {
        name: _nullable(values)
        for name, values in (("pointing", r.pointing), ("energy", r.energy))
        if values is not None
    }
    if (kinds := r.kind_pointing) is not None:  # for --figure pointing|energy --masses: per image and kind of mass
        maps["pointing_by_kind"] = {
            "image": kinds.image.tolist(),
            "stratum": [kind_of_code(int(code))[1] for code in kinds.code.tolist()],
            "pointing": _nullable(kinds.hit),
            "energy": _nullable(kinds.energy),
        }  # fmt: skip
    return {
        "image_keys": r.image_keys.tolist(),
        **({"study_keys": studies.tolist()} if studies is not None else {}),
        "image_gt": r.image_gt.tolist(),
        "box_image": first.box_image.tolist(),
        "box_scores": first.box_scores.tolist(),
        "box_tp": first.box_tp.int().tolist(),
        **masses,
        **maps,
    }


def _nullable(values: Tensor) -> list[float | None]:
    """``values`` as JSON holds them: NaN (unknown, unscored) as null."""
    return [None if math.isnan(v) else v for v in values.tolist()]


def write_subset(
    directory: Path,
    train_method: str,
    subset: str,
    results: dict[str, DetectionResult],
    budget: float,
    seed: int,
    iou_rule: float = 0.3,
    validated: frozenset[str] | None = None,
    weights: str = "checkpoint",
    groups: dict[int, int] | None = None,
    tied: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[list[str]], dict[str, Any], str, RowFile]:
    """One subset's Table II row (md, with an interval table), FROC plot; returns its summary, CI rows, per-image
    records, the row's markdown (with its note and intervals) for the terminal and its CSV, to write last.
    ``validated``: the methods whose binarization threshold validation chose (None: all); the others' cells are
    marked. ``weights``: the row file's ``weights`` (``checkpoint``, ``in_memory``, ``nyu``, ``untrained``), in the
    row's label too.
    ``groups``: ``study_groups``, the studies the bootstrap draws whole. ``tied``: the validated methods whose
    threshold was the first of a tie at TPR 0 (no threshold found a mass in validation); their cells are marked."""
    validated = frozenset(results) if validated is None else validated
    cells = {m: format_cell(r.per_threshold[0].tpr, r.per_threshold[0].fppi) for m, r in results.items()}
    intervals = {m: detection_intervals(r, budget, seed, groups) for m, r in results.items()}
    suffix = "" if subset == "mass" else "_all_images"
    thresholds = thresholds_record(list(results), validated, tied)
    row_file = RowFile(directory / f"table2_row{suffix}.csv", train_method, cells, weights, thresholds)
    row_md, _ = table2({row_label(train_method, weights, thresholds): cells})
    ci_md, _ = table2({f"{train_method} TPR 95% CI": {m: interval_text(i["tpr"]) for m, i in intervals.items()}})
    first = next(iter(results.values()))
    counts = f"{first.num_images} distinct images ({first.num_samples} samples evaluated)"
    note = f"\n{counts}. {OPERATING_POINT.format(budget=budget)}.\n\n"
    if defaulted := [m for m in results if m not in validated]:
        cut = results[defaulted[0]].per_threshold[0].threshold
        note += (
            f"NOT VALIDATED: the maps of {', '.join(defaulted)} were binarized at the default threshold {cut:g}; "
            "no validation chose one for these weights, so these cells are not the study's protocol.\n\n"
        )
    if tied_here := [m for m in results if m in validated and m in tied]:
        note += (
            f"TIED: validation found no mass at FPPI <= {budget:g} at any threshold of the grid for "
            f"{', '.join(tied_here)}: the threshold stored is the grid's first, not a choice.\n\n"
        )
    if weights == "untrained":
        note += "UNTRAINED: the freshly initialized network (`--ckpt_path untrained`), a baseline, not a result.\n\n"
    write_text_atomic(directory / f"table2_row{suffix}.md", row_md + note + ci_md)
    curves = {m: (r.per_threshold[0].fppi_curve, r.per_threshold[0].tpr_curve) for m, r in results.items()}
    points = {m: (r.per_threshold[0].fppi, r.per_threshold[0].tpr) for m, r in results.items()}
    title = (
        f"FROC, {subset} images, trained with {train_method}: {first.num_images} images, "
        f"{first.num_gt} lesions, hit = IoU > {iou_rule:g}"
    )
    plot_froc(curves, directory / f"froc_{subset}.png", title=title, points=points)
    summary = {m: _method_summary(r, cells[m], intervals[m], m in validated, m in tied) for m, r in results.items()}
    ci_rows = [row for m in results for row in _ci_rows(subset, m, intervals[m])]
    records = {m: _image_records(r, groups) for m, r in results.items()}
    return summary, ci_rows, records, row_md + note + ci_md, row_file


class RowFile(NamedTuple):
    """A run's ``table2_row[_all_images].csv`` (``write_table2_row``'s arguments), written once the rest of the
    report is: ``wsod report`` finds a test run by that file, and one found while the test was still writing read
    its row without the ``detection.json`` that says whether the test covered the whole split."""

    path: Path
    train_method: str
    cells: dict[str, str]
    weights: str
    thresholds: str


class Table2Rows(NamedTuple):
    """What ``write_table2_rows`` wrote, for ``detection.json``, the terminal, W&B and ``detection_images.json``;
    and the row CSVs to write last (``write_row_files``)."""

    entries: dict[str, Any]  # per subset its methods' summaries and counts
    printed: list[str]  # each subset's row, note and intervals
    ci_rows: list[list[str]]  # table2_row_ci.csv's rows (CI_COLUMNS)
    records: dict[str, dict[str, Any]]  # {subset: {method: _image_records}}
    row_files: list[RowFile]


def write_row_files(rows: Table2Rows) -> None:
    """The Table II row CSVs, the report's last files (``RowFile``)."""
    for row in rows.row_files:
        write_table2_row(row.path, row.train_method, row.cells, row.weights, row.thresholds)


def write_table2_rows(
    directory: Path,
    train_method: str,
    results: dict[tuple[str, str], DetectionResult],
    budget: float,
    seed: int,
    iou_rule: float,
    validated: frozenset[str],
    weights: str,
    groups: dict[int, int] | None,
    tied: frozenset[str],
) -> Table2Rows:
    """Each subset's Table II row (``write_subset``; a subset without images gets none, one without mass boxes
    cells of n/a, each said in the log) and ``table2_row_ci.csv``; ``results``: ``{(method, subset): result}``. The
    row CSVs are left to ``write_row_files``, once the report's other files are written."""
    entries: dict[str, Any] = {}
    printed, ci_rows, records, row_files = [], [], {}, []
    for subset in SUBSETS:
        subset_results = {m: r for (m, s), r in results.items() if s == subset}
        any_result = next(iter(subset_results.values()))
        if any_result.num_images == 0:
            log.error("the test set has no %s images: no detection figures for them", subset)
            continue
        if not any_result.tpr_defined:
            log.error("the test set has no mass boxes (%s images): TPR is undefined, cells read n/a", subset)
        entries[subset], rows, records[subset], row_text, row_file = write_subset(
            directory, train_method, subset, subset_results, budget, seed, iou_rule, validated, weights, groups, tied
        )
        row_files.append(row_file)
        printed.append(f"Table II row, {subset} images (TPR@FPPI, hit = IoU > {iou_rule:g})\n{row_text}")
        entries[f"{subset}_counts"] = {"images": any_result.num_images, "samples": any_result.num_samples}
        ci_rows += rows
    write_text_atomic(directory / "table2_row_ci.csv", csv_text(CI_COLUMNS, ci_rows))
    return Table2Rows(entries, printed, ci_rows, records, row_files)


def write_table2_strata(
    directory: Path,
    results: dict[tuple[str, str], DetectionResult],
    densities: dict[int, str],
    budget: float,
    seed: int,
    groups: dict[int, int] | None,
) -> tuple[dict[str, Any], list[str]]:
    """Table II's cells per breast density, per finding BI-RADS and per mass size, each where the data names its
    strata (``STRATUM_TABLES``); returns ``detection.json``'s entries (None for a table not made) and the
    terminal's sections."""
    makers: dict[str, Callable[[], tuple[dict[str, Any], str, str]] | None] = {
        "by_density": (lambda: by_density(results, densities, budget, seed, groups)) if densities else None,
        "by_finding_birads": (lambda: by_finding_birads(results, budget, seed, groups))
        if has_finding_birads(results)
        else None,
        "by_mass_size": (lambda: by_mass_size(results, budget, seed, groups)) if has_mass_sizes(results) else None,
    }
    entries: dict[str, Any] = {}
    printed = []
    for table in STRATUM_TABLES:
        entries[table.key] = None
        if (make := makers[table.key]) is not None:
            entries[table.key], markdown, csv = make()
            write_table(directory / f"{table.stem}.md", markdown, csv)
            printed.append(f"{table.title}\n{markdown}")
    if why := why_no_sizes(results):
        log.info("%s", why)
    return entries, printed
