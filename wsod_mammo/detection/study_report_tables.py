"""Every table of the study beside Table I and II (per breast density, finding BI-RADS and mass size; the
pointing game; the figures of merit; calibration; the paired comparisons), each written where every run's test
report gives it, and an earlier study's removed where not: it would look current."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.detection.pointing_report import tolerance_text
from wsod_mammo.detection.report import METHOD_ORDER, count, remove_table, write_table
from wsod_mammo.detection.study_afroc import load_box_records, told_apart_text, versus_best, wafroc_paired_text
from wsod_mammo.detection.study_cells import (
    AFROC_FIGURES,
    POINTING_FIGURES,
    Cells,
    afroc_by_kind_cells,
    afroc_by_kind_text,
    afroc_text,
    calibration_figures,
    calibration_table,
    cells_csv,
    method_cells,
    pointing_by_kind_cells,
    pointing_by_kind_text,
    pointing_text,
)
from wsod_mammo.detection.study_over_seeds import (
    calibration_over_test_set,
    figures_of_merit_over_test_set,
    pointing_over_test_set,
)
from wsod_mammo.detection.study_paired import (
    load_image_records,
    paired_differences,
    runs_without_breasts,
    table1_paired_text,
)
from wsod_mammo.detection.study_strata_over_seeds import (
    figures_of_merit_by_kind_over_test_set,
    pointing_by_kind_over_test_set,
    table1_by_density_over_test_set,
    table2_strata_over_test_set,
)
from wsod_mammo.detection.study_tables import (
    SUBSET,
    Marks,
    stratum_reports,
    table1_density_reports,
    table1_text,
    table2_cells,
    table2_text,
)

log = logging.getLogger(__name__)

#: how summary.md names an interval over seeds that counts the test set (:mod:`study_over_seeds`)
OVER_TEST_SET = (
    "over the seeds and the test set: Obuchowski-Rockette, each seed a random reader of the same test studies"
)


def every_report_has(
    reports: dict[tuple[str, int], dict[str, Any]], part: Any, output: Path, path: Path, table: str, lack: str
) -> bool:
    """Whether every run's report holds ``part(report)``. Otherwise the ``table`` at ``path`` is not written (an
    earlier study's, with its CSV, is removed: it would look current) and, where some runs have it, a warning names
    the others: averaged over the seeds that have it only, the table would claim seeds it lacks."""
    lacking = [f"{m}_seed{s}" for (m, s), r in sorted(reports.items()) if not part(r)]
    if not lacking:
        return True
    remove_table(path)
    if len(lacking) < len(reports):
        log.warning("study %s: no %s: the test reports of %s %s (tested before); test those runs again", output,
                    table, ", ".join(lacking), lack)  # fmt: skip
    return False


SINGULAR = {"studies": "study", "images": "image", "masses": "mass"}  # the stratum headings' counts


class Strata(NamedTuple):
    """One per-stratum Table II of the study: the test report's key, the file, its title (``{interval}``: what its
    intervals are), what a run lacking it rates not, and the kind of stratum (:func:`stratum_only`'s)."""

    key: str
    file: str
    title: str
    lack: str
    kind: str


STRATA = (
    Strata("by_density", "table2_by_density.md", f"Table II per breast density ({SUBSET} images of that density; TPR "
           "[95% interval{interval}] @ FPPI, means over seeds, each run at its validated thresholds)",
           "rate no densities", "density"),
    Strata("by_finding_birads", "table2_by_birads.md", f"Table II per finding BI-RADS ({SUBSET} images; TPR over the "
           "masses of that BI-RADS [95% interval{interval}] @ FPPI over every image, means over seeds, each run at its "
           "validated thresholds; a heading's studies and images hold such a mass)", "rate no finding BI-RADS",
           "birads"),
    Strata("by_mass_size", "table2_by_size.md", f"Table II per mass size ({SUBSET} images; TPR over the masses of "
           "that size, the box's longer side [95% interval{interval}] @ FPPI over every image, means over seeds, each "
           "run at its validated thresholds; a heading's studies and images hold such a mass)", "rate no mass sizes",
           "size"),
)  # fmt: skip


def _name(strata: Strata) -> str:
    """The table's name, its title without the parenthesis: "Table II per breast density"."""
    return strata.title.split(" (")[0]


def _write_by_stratum(
    output: Path,
    reports: dict[tuple[str, int], dict[str, Any]],
    marks: Marks,
    strata: Strata,
    runs: dict[tuple[str, int], Path],
) -> str | None:
    """``strata.file``: Table II over each stratum (breast density, finding BI-RADS, mass size), as ``table2.md``
    (means over seeds, over two seeds intervals over the seeds and the test set from the ``runs``' image records
    where they give every section's, the runs' threshold ``marks``: the thresholds are Table II's); returns its
    name, or None where not every run's report rates the strata (an earlier study's file is then removed: it would
    look current)."""
    path = output / strata.file
    if not every_report_has(reports, lambda r: (r.get(strata.key) or {}).get(SUBSET), output, path,
                             _name(strata), strata.lack):  # fmt: skip
        return None
    per_stratum = stratum_reports(reports, strata.key)
    cells = {stratum: table2_cells(by_run) for stratum, (_, by_run) in per_stratum.items()}
    seeds = len({s for _, s in reports})
    over_test_set = seeds > 1
    if over_test_set:
        cells, over_test_set = table2_strata_over_test_set(cells, runs, strata.kind, strata.file)
    sections = []
    for stratum, (counts, _) in per_stratum.items():
        markdown, _ = table2_text(cells[stratum], marks)
        what = ", ".join(count(v, SINGULAR[k], plural=k) for k, v in counts.items() if v is not None)
        sections.append(f"## {stratum} ({what})\n\n{markdown}")
    interval = "" if seeds == 1 else f", {OVER_TEST_SET if over_test_set else 'Student-t over seeds'}"
    write_text_atomic(path, strata.title.format(interval=interval) + "\n\n" + "\n".join(sections))
    return path.name


def _write_table1_by_density(
    output: Path,
    reports: dict[tuple[str, int], dict[str, Any]],
    records: dict[tuple[str, int], dict[str, Any]] | None,
) -> str | None:
    """``table1_by_density.md``: Table I over each breast density's test images, as ``table1.md`` (means over seeds,
    intervals; over the seeds and the test set from the runs' classification image ``records`` where they give
    every density's); returns its name, or None where not every run's report rates densities (an earlier study's
    file is then removed)."""
    path = output / "table1_by_density.md"
    if not every_report_has(reports, lambda r: r.get("table1_by_density"), output, path, "Table I per breast density",
                             "rate no densities"):  # fmt: skip
        return None
    per_density = table1_density_reports(reports)
    over = None if records is None else table1_by_density_over_test_set(records, per_density)
    sections = []
    for density, (counts, by_run) in per_density.items():
        studies = [] if counts["studies"] is None else [count(counts["studies"], "study", "studies")]
        what = ", ".join([*studies, count(counts["images"], "image"), f"{counts['positive']} positive"])
        sections.append(f"## {density} ({what})\n\n{table1_text(by_run, 'table1_density', (over or {}).get(density))}")
    interval = OVER_TEST_SET if over is not None else "over seeds"
    write_text_atomic(
        path,
        f"Table I per breast density (the test images of that density; mean [95% interval {interval}; with one seed, "
        "the test report's bootstrap interval])\n\n" + "\n".join(sections),
    )
    return path.name


def _write_pointing_game(
    output: Path, reports: dict[tuple[str, int], dict[str, Any]], runs: dict[tuple[str, int], Path]
) -> str | None:
    """``pointing_game.md|csv``: the pointing game and the energy inside the masses, train x test, means over seeds
    (intervals over the seeds and the test set, from the ``runs``' image records, where they give them); returns
    the Markdown's name, or None where not every run's report scored them (an earlier study's files are then removed;
    so where the runs scored with different tolerances, which do not average)."""
    path = output / "pointing_game.md"
    tolerance: dict[str, list[str]] = {}
    for (method, seed), report in sorted(reports.items()):
        if report.get("pointing_game"):
            tolerance.setdefault(tolerance_text(report["pointing_game"]), []).append(f"{method}_seed{seed}")
    if len(tolerance) > 1:
        named = "; ".join(f"{t}: {', '.join(names)}" for t, names in tolerance.items())
        log.warning("study %s: no pointing game: the runs scored it with different tolerances (%s); test them again "
                    "with one DetectionMetrics pointing_tolerance and pointing_unit", output, named)  # fmt: skip
    if len(tolerance) != 1 or not every_report_has(reports, lambda r: r.get("pointing_game"), output, path,
                                                    "pointing game", "score no pointing game"):  # fmt: skip
        remove_table(path)
        return None
    cells, over_test_set = pointing_over_test_set(method_cells(reports, "pointing_game", POINTING_FIGURES), runs)
    write_table(path, pointing_text(cells, next(iter(tolerance)), OVER_TEST_SET if over_test_set else None),
                cells_csv(cells))  # fmt: skip
    return path.name


def _write_figures_of_merit(
    output: Path, reports: dict[tuple[str, int], dict[str, Any]], runs: dict[tuple[str, int], Path]
) -> Cells | None:
    """``wafroc.md|csv``: the wAFROC and AFROC figures of merit, train x test, means over seeds (intervals over the
    seeds and the test set, from the ``runs``' image records, where they give them); returns their cells, or None
    where not every run's report gives them (an earlier study's files are then removed)."""
    path = output / "wafroc.md"
    if not every_report_has(reports, lambda r: r.get("wafroc"), output, path, "wAFROC figures of merit",
                             "give no wAFROC figure of merit"):  # fmt: skip
        return None
    cells, over_test_set = figures_of_merit_over_test_set(method_cells(reports, "wafroc", AFROC_FIGURES), runs)
    write_table(path, afroc_text(cells, OVER_TEST_SET if over_test_set else None), cells_csv(cells))
    return cells


def _write_figures_of_merit_by_kind(
    output: Path, reports: dict[tuple[str, int], dict[str, Any]], runs: dict[tuple[str, int], Path]
) -> str | None:
    """``wafroc_by_kind.md|csv``: the figures of merit per breast density, finding BI-RADS and mass size, train x
    test, means over seeds (intervals over the seeds and the test set where the ``runs``' image records give them);
    returns its name, or None where not every run's report gives them (an earlier study's files are then
    removed)."""
    path = output / "wafroc_by_kind.md"
    if not every_report_has(reports, lambda r: r.get("wafroc_by_kind"), output, path,
                             "wAFROC figures of merit per kind of mass", "give none per kind of mass"):  # fmt: skip
        return None
    cells, over_test_set = figures_of_merit_by_kind_over_test_set(afroc_by_kind_cells(reports), runs)
    write_table(path, *afroc_by_kind_text(cells, OVER_TEST_SET if over_test_set else None))
    return path.name


def _write_pointing_by_kind(
    output: Path, reports: dict[tuple[str, int], dict[str, Any]], runs: dict[tuple[str, int], Path], pointing: bool
) -> str | None:
    """``pointing_by_kind.md|csv``: the pointing game and energy per breast density, finding BI-RADS and mass size,
    train x test, means over seeds (intervals over the seeds and the test set where the ``runs``' image records give
    them); returns its name, or None without the study's pointing game (``pointing``: one tolerance, every run
    scored) or where not every run's report gives them per kind (an earlier study's files are then removed)."""
    path = output / "pointing_by_kind.md"
    lack = "give none per kind of mass"
    if not (pointing and every_report_has(reports, lambda r: r.get("pointing_by_kind"), output, path,
                                           "pointing game per kind of mass", lack)):  # fmt: skip
        remove_table(path)
        return None
    tolerance = tolerance_text(next(iter(reports.values()))["pointing_game"])
    cells, over_test_set = pointing_by_kind_over_test_set(pointing_by_kind_cells(reports), runs)
    write_table(path, *pointing_by_kind_text(cells, tolerance, OVER_TEST_SET if over_test_set else None))
    return path.name


def _write_wafroc_paired(
    output: Path, runs: dict[tuple[str, int], Path], cells: Cells | None
) -> tuple[str, str] | None:
    """``wafroc_paired.md``: the best pair's wAFROC minus every other pair's, paired on the same test images
    (:mod:`study_afroc`); returns its name and what the summary says of the best pair's lead
    (:func:`told_apart_text`), or None without figures of merit or a second pair, or where some run's test report
    records no mass per box or a pair cannot be compared (a warning says which; an earlier study's file is
    removed)."""
    path = output / "wafroc_paired.md"
    if cells is None or sum(len(row) for row in cells.values()) < 2:
        remove_table(path)
        return None
    records = load_box_records(runs)
    if not every_report_has(records, lambda r: r, output, path, "paired wAFROC", "record no mass per box"):
        return None
    try:
        best, differences = versus_best(records, cells)
    except ValueError as error:
        remove_table(path)
        log.warning("study %s: no paired wAFROC: %s", output, error)
        return None
    write_text_atomic(path, wafroc_paired_text(best, cells, differences))
    return path.name, told_apart_text(differences)


def _write_calibration(
    output: Path, reports: dict[tuple[str, int], dict[str, Any]], records: dict[tuple[str, int], dict[str, Any]] | None
) -> tuple[str, str] | None:
    """``calibration.md``: the Brier score, ECE, slope and intercept per train method and head, means over seeds
    (over the seeds and the test set from the runs' classification image ``records``, where they give them);
    returns its name and the figures it gives (the summary names them), or None where not every run's report
    measured them (an earlier study's file is then removed)."""
    path = output / "calibration.md"
    if not every_report_has(reports, lambda r: r.get("calibration"), output, path, "calibration",
                             "measure no calibration"):  # fmt: skip
        return None
    over = calibration_over_test_set(records) if records is not None else None
    write_text_atomic(path, calibration_table(reports, over, OVER_TEST_SET if over is not None else None))
    recalibration = "slope" in calibration_figures(reports)
    return path.name, "Brier score, ECE, recalibration slope and intercept" if recalibration else "Brier score and ECE"


def _write_table1_paired(output: Path, runs: dict[tuple[str, int], Path]) -> str | None:
    """``table1_paired.md``: each train method's AUC and Brier score minus the first train method's, paired on the
    same test images (:mod:`study_paired`); returns its name, or None with one train method, or where some run's
    test report records no probabilities per image or a pair cannot be compared (a warning says which; an earlier
    study's file is removed)."""
    path = output / "table1_paired.md"
    methods = sorted({m for m, _ in runs}, key=METHOD_ORDER.index)
    if len(methods) < 2:  # nothing to pair: the runs' image records are not read
        remove_table(path)
        return None
    records = load_image_records(runs)
    if not every_report_has(records, lambda r: r, output, path, "paired Table I", "record no probabilities per image"):
        return None
    unnamed = runs_without_breasts(records)
    if unnamed and len(unnamed) < len(records):
        log.warning("study %s: table1_paired.md has no breast level: the test reports of %s name no breast per image "
                    "(tested before they did); test those runs again", output, ", ".join(unnamed))  # fmt: skip
    try:
        paired = paired_differences(records, methods[0], figures=("auc", "brier"))
        breasts = None if unnamed else paired_differences(records, methods[0], "breast")["auc"]
    except ValueError as error:
        remove_table(path)
        log.warning("study %s: no paired Table I: %s", output, error)
        return None
    write_text_atomic(path, table1_paired_text(paired["auc"], methods[0], breasts, paired["brier"]))
    return path.name


def write_other_tables(
    output: Path,
    reports: dict[tuple[str, int], dict[str, Any]],
    marks: Marks,
    tested: dict[tuple[str, int], Path],
    classification: dict[tuple[str, int], dict[str, Any]] | None,
) -> tuple[list[tuple[str, str | None]], Cells | None, str]:
    """Every table beside Table I and II, each where the reports give it (an earlier study's removed otherwise) ->
    the summary's list of them ((what, file), file None where not written), the figures of merit's cells and what
    the paired tests say of the best pair's lead."""
    by_stratum = {strata.key: _write_by_stratum(output, reports, marks, strata, tested) for strata in STRATA}
    table1_density = _write_table1_by_density(output, reports, classification)
    table1_paired = _write_table1_paired(output, tested)
    pointing = _write_pointing_game(output, reports, tested)
    pointing_by_kind = _write_pointing_by_kind(output, reports, tested, pointing is not None)
    calibration = _write_calibration(output, reports, classification)
    afroc_cells = _write_figures_of_merit(output, reports, tested)
    afroc_by_kind = _write_figures_of_merit_by_kind(output, reports, tested)
    wafroc_paired = _write_wafroc_paired(output, tested, afroc_cells)
    written = [
        ("Table I per breast density", table1_density),
        ("Table I paired (each train method's AUC and Brier score minus the first's)", table1_paired),
        ("Pointing game (each map's peak and energy against the masses)", pointing),
        ("Pointing game per breast density, finding BI-RADS and mass size", pointing_by_kind),
        (f"Calibration ({calibration[1]} of Table I's probabilities)" if calibration else "",
         calibration[0] if calibration else None),
        ("wAFROC and AFROC figures of merit (every test image)", "wafroc.md" if afroc_cells else None),
        ("wAFROC per breast density, finding BI-RADS and mass size", afroc_by_kind),
        ("wAFROC paired (the best pair's minus every other's)", wafroc_paired[0] if wafroc_paired else None),
        *((_name(strata), by_stratum[strata.key]) for strata in STRATA),
    ]  # fmt: skip
    return written, afroc_cells, wafroc_paired[1] if wafroc_paired else ""
