"""The study folder's outputs: Table I and II (Markdown, CSV), one FROC figure per train method, summary.md; the
other tables are :mod:`study_report_tables`'s."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.detection.report import METHOD_ORDER, PARTIAL_TEST, count, partial_coverage, plot_froc, write_table
from wsod_mammo.detection.study_afroc import best_pair
from wsod_mammo.detection.study_cells import Cells
from wsod_mammo.detection.study_over_seeds import Cells as Table2Cells
from wsod_mammo.detection.study_over_seeds import table1_over_test_set, with_test_set_intervals
from wsod_mammo.detection.study_paired import load_image_records
from wsod_mammo.detection.study_report_tables import OVER_TEST_SET, every_report_has, write_other_tables
from wsod_mammo.detection.study_tables import (
    SUBSET,
    Estimate,
    Marks,
    best_pairs,
    keep_test_methods,
    load_reports,
    resampled,
    symbols,
    table1_text,
    table2_cells,
    table2_text,
    threshold_marks,
)

log = logging.getLogger(__name__)


def _froc_figures(output: Path, reports: dict[tuple[str, int], dict[str, Any]]) -> list[Path]:
    """Per train method, every test method's FROC curve (each seed) with its operating point marked; the figure of
    a train method not in ``reports`` is removed."""
    paths = []
    for train in sorted({m for m, _ in reports}):
        curves, points, images, lesions = {}, {}, 0, 0
        for (method, seed), report in sorted(reports.items()):
            if method != train:
                continue
            for test, cell in report.get(SUBSET, {}).items():
                label = f"{test} (seed {seed})"
                curves[label] = (cell.get("fppi_curve", []), cell.get("tpr_curve", []))
                points[label] = (float(cell.get("fppi", math.nan)), float(cell.get("tpr", math.nan)))
                images, lesions = cell.get("num_images", 0), cell.get("num_gt", 0)
        path = output / f"froc_{train}.png"
        title = f"FROC, trained with {train}: {images} mass images, {lesions} lesions, hit = IoU > 0.3"
        plot_froc(curves, path, title=title, points=points)
        paths.append(path)
    for method in set(METHOD_ORDER) - {m for m, _ in reports}:  # an earlier study's would look current
        (output / f"froc_{method}.png").unlink(missing_ok=True)
    return paths


def _report_intervals(reports: dict[tuple[str, int], dict[str, Any]]) -> tuple[str, list[str]]:
    """What a one-seed table's intervals are (its runs' test report intervals: over studies, or over images for a
    report written before they drew studies), and the runs whose reports drew images: a study resumed across that
    version held both kinds in one table, and its captions named neither."""
    by_images = [f"{m}_seed{s}" for (m, s), r in sorted(reports.items()) if resampled(r) != "studies"]
    if not by_images:
        return "over studies", []
    if len(by_images) == len(reports):
        return "over images: reports written before intervals drew studies", by_images
    named = ", ".join(by_images)
    return f"over studies, but over images for {named} (tested before intervals drew studies)", by_images


def _best_by_wafroc(cells: Cells | None, lead: str = "") -> str:
    """The summary's line naming the pair with the best mean wAFROC (every test image, threshold and FPPI budget
    aside), which may not be Table II's, and ``lead``, what the paired tests say of its lead; empty without figures
    of merit."""
    if not cells:
        return ""
    try:
        train, test = best_pair(cells)
    except ValueError:
        return ""
    figure = cells[train][test]["wafroc"].text(3)
    return f"Best pair by wAFROC (every test image): train {train}, test {test}: {figure}{lead}\n"


def _best_pair_line(cells: Table2Cells, marks: Marks) -> str:
    """The summary's verdict: Table II's best train/test pair by mean TPR, every pair where several tie."""
    best = best_pairs(cells)
    if not best:
        return "Best pair: none (no cell has a defined TPR)"
    if len(best) == 1:
        train, test, tpr, fppi = best[0]
        verdict = f"Best pair: train {train}, test {test}: TPR {tpr.text()} at {fppi.mean:.2f} FPPI"
        return verdict + symbols(marks.get((train, test)))
    tied = "; ".join(f"train {train}, test {test}{symbols(marks.get((train, test)))}" for train, test, *_ in best)
    return f"Best pairs, tied at TPR {best[0][2].mean:.2f} and {best[0][3].mean:.2f} FPPI: {tied}"


#: The summary's line on runs fitted with different settings (``write_study_outputs``' ``settings_differ``).
SETTINGS_DIFFER = "RUNS FITTED WITH DIFFERENT SETTINGS"


def _partial_tests_line(reports: dict[tuple[str, int], dict[str, Any]]) -> str:
    """``PART OF THE TEST SPLIT: cam_seed42 tested 4 of its 8 images ...``: runs whose test report covers part of
    the split (``coverage``, a test cut to a few batches), whose figures the tables average in as they are; nothing
    where every run covers its split or the reports predate ``coverage``."""
    partial = [f"{m}_seed{s} {tested}" for (m, s), r in sorted(reports.items()) if (tested := partial_coverage(r))]
    if not partial:
        return ""
    line = f"{PARTIAL_TEST}: {'; '.join(partial)} (a test cut short, e.g. --trainer.limit_test_batches)"
    log.warning("study: %s; their figures are not the split's", line)
    return f"{line}: their figures are not the split's, and the tables average them in as they are\n\n"


def _checkpoints_line(reports: dict[tuple[str, int], dict[str, Any]], selection: str) -> str:
    """``Checkpoints tested: best.ckpt, kept by ...; epochs (0-based): cam_seed42 7, ...``: what kept the checkpoints
    (``selection``) and the epoch each run's test report records having evaluated; nothing where neither is known."""
    epochs = [
        f"{m}_seed{s} {r['checkpoint']['epoch']}"
        for (m, s), r in sorted(reports.items())
        if isinstance(r.get("checkpoint"), dict) and "epoch" in r["checkpoint"]
    ]
    parts = ([f"best.ckpt, kept by {selection}"] if selection else []) + (
        [f"epochs (0-based): {', '.join(epochs)}"] if epochs else []
    )
    return f"Checkpoints tested: {'; '.join(parts)}\n\n" if parts else ""


def write_study_outputs(
    output: Path,
    runs: dict[tuple[str, int], Path],
    test_methods: Sequence[str] | None = None,
    left_out: Sequence[str] = (),
    include_them: str = "",
    selection: str = "",
    settings_differ: str = "",
) -> str:
    """Write ``table1.md`` (and ``table1_breast.md`` where the reports rate breasts), ``table2.md``, ``table2.csv``,
    ``table1_paired.md`` (with two train methods or more), ``table1_by_density.md``, ``table2_by_density.md``,
    ``table2_by_birads.md``, ``table2_by_size.md``, ``pointing_game.md``, ``calibration.md``, ``wafroc.md``,
    ``wafroc_by_kind.md`` and ``wafroc_paired.md`` (where they rate densities, finding BI-RADS, mass sizes, pointing,
    calibration, figures of merit),
    ``froc_<train>.png`` and ``summary.md`` to ``output`` (Table II's columns: ``test_methods``, default every method
    the reports hold); return the summary's text (the tables and the best pair). ``left_out``: finished run folders
    not in these tables, named in the summary with ``include_them``, the options that would include them; the FROC
    figure of a train method not in the tables is removed (an earlier study's, it would look current). ``selection``:
    what kept the checkpoints tested, said under the title. ``settings_differ``: the settings the runs were fitted
    with differently (runs of an edited config in one study folder), said under it in capitals."""
    reports = keep_test_methods(load_reports(runs), test_methods)  # every run has every column's method
    tested = {key: runs[key] for key in reports}  # the runs in these tables: their image records are paired
    cells, over_test_set = with_test_set_intervals(table2_cells(reports), tested)
    marks = threshold_marks(reports)
    table2_md, table2_csv = table2_text(cells, marks)
    classification = load_image_records(tested) if len({s for _, s in reports}) > 1 else None
    output.mkdir(parents=True, exist_ok=True)
    table1 = _write_table1s(output, reports, classification)
    write_table(output / "table2.md", table2_md, table2_csv)
    figures = _froc_figures(output, reports)
    written, afroc_cells, lead = write_other_tables(output, reports, marks, tested, classification)
    seed_list = sorted({s for _, s in reports})
    seeds = ", ".join(map(str, seed_list))
    over_seeds = _interval_words(output, reports)
    breast_text = (
        f"Table I, breast level (a breast's probability is the mean of its views'; positive with the class in any "
        f"view; mean [95% interval, {over_seeds(table1.breast_over is not None)}])\n\n{table1.breast_markdown}\n"
        if table1.breast_markdown is not None
        else ""
    )
    text = (
        f"# Study: {count(len(reports), 'run')} ({'seed' if len(seed_list) == 1 else 'seeds'} {seeds})\n\n"
        + _checkpoints_line(reports, selection)
        + (f"{SETTINGS_DIFFER}: {settings_differ}; these tables average them together\n\n" if settings_differ else "")
        + _partial_tests_line(reports)
        + f"Table I (classification, test images; mean [95% interval, {over_seeds(table1.over is not None)}])\n\n"
        f"{table1.markdown}\n{breast_text}"
        f"Table II ({SUBSET} images; TPR [95% interval, {over_seeds(over_test_set)}] @ FPPI, means over seeds)\n\n"
        f"{table2_md}\n{_best_pair_line(cells, marks)}\n{_best_by_wafroc(afroc_cells, lead)}\n"
        f"FROC figures: {', '.join(p.name for p in figures)}\n"
        + "".join(f"{label}: {name}\n" for label, name in written if name)
    )
    if left_out:
        text += f"\nFinished runs in this folder left out of these tables: {', '.join(left_out)}"
        text += f". To include them: {include_them}\n" if include_them else "\n"
    write_text_atomic(output / "summary.md", text)
    return text


class _Table1(NamedTuple):
    """Table I's text at the image level and, where every report rates breasts, at the breast level, each with its
    intervals over the seeds and the test set (None where they are over seeds, or the test report's)."""

    markdown: str
    over: dict[tuple[str, str], dict[str, Estimate]] | None
    breast_markdown: str | None
    breast_over: dict[tuple[str, str], dict[str, Estimate]] | None


def _write_table1s(
    output: Path,
    reports: dict[tuple[str, int], dict[str, Any]],
    classification: dict[tuple[str, int], dict[str, Any]] | None,
) -> _Table1:
    """``table1.md`` and ``table1_breast.md`` (where every report rates breasts; an earlier study's is removed
    otherwise), over the seeds and the test set from the runs' ``classification`` image records where given."""
    over = table1_over_test_set(classification) if classification is not None else None
    markdown = table1_text(reports, over_test_set=over)
    write_text_atomic(output / "table1.md", markdown)
    if not every_report_has(reports, lambda r: r.get("table1_breast"), output, output / "table1_breast.md",
                             "breast-level Table I", "rate no breasts"):  # fmt: skip
        return _Table1(markdown, over, None, None)
    breast_over = None
    if classification is not None and over is not None:  # the image level could give them
        breast_over = table1_over_test_set(classification, "breast")
    breast_markdown = table1_text(reports, "table1_breast", breast_over)
    write_text_atomic(output / "table1_breast.md", breast_markdown)
    return _Table1(markdown, over, breast_markdown, breast_over)


def _interval_words(output: Path, reports: dict[tuple[str, int], dict[str, Any]]) -> Callable[[bool], str]:
    """What a table's intervals are over, given whether they count the test set (over the seeds and the test set,
    else Student-t over seeds; with one seed the test reports' own); warns where one seed's reports drew theirs
    over different units."""
    seeds = {s for _, s in reports}
    unit, by_images = _report_intervals(reports)
    if by_images and len(by_images) < len(reports) and len(seeds) == 1:
        log.warning("study %s: the test reports of %s drew their intervals over images (tested before intervals drew "
                    "studies), the others over studies; test those runs again for intervals of one kind", output,
                    ", ".join(by_images))  # fmt: skip

    def over_seeds(counts_test_set: bool) -> str:
        if len(seeds) == 1:
            return f"the test report's bootstrap {unit}, where it gives one"
        return OVER_TEST_SET if counts_test_set else "Student-t over seeds"

    return over_seeds
