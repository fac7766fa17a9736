"""The study's tables and FROC plot: formatting and file assembly only (no training or metric logic).

Table I: one row per head (global, local, fusion), columns accuracy, AUC, TPR, TNR.
Table II: one row per training saliency method, one column per test-time method, cells ``TPR@FPPI`` such as
``0.69@0.55``. A test run writes its own row with :func:`write_table2_row` to ``RUN_DIR/table2_row.csv``;
``wsod report RUN_DIR...`` (:mod:`wsod_mammo.detection.report_cli`) merges the rows of several runs into the full
matrix (:func:`collect_table2`).

A row file ends with two columns saying what the row is worth: ``weights`` (``checkpoint``, ``in_memory``: trained in
the same process, ``nyu``: NYU's weights as they are, ``untrained``: the freshly initialized network, a baseline) and
``thresholds`` (``validated``, or ``default`` / ``default: <methods>`` for the methods whose maps were binarized at
the default threshold: NOT VALIDATED), then ``; tied: <methods>`` for thresholds validation took from a tie at TPR
0 (no threshold found a mass: the grid's first, not a choice). The merged table names a row that is not a trained,
validated result in its training-method cell (:func:`row_label`: ``layercam (untrained, NOT VALIDATED)``,
``cam (TIED: gradcam)``), a row of its own; a row file written before these columns existed reads as before (no
mark).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsod_mammo.atomic_files import save_figure_atomic, write_atomic_together, write_text_atomic

if TYPE_CHECKING:
    from torch import Tensor

METHOD_ORDER: tuple[str, ...] = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam")
TABLE1_COLUMNS: tuple[tuple[str, str], ...] = (("accuracy", "accuracy"), ("auc", "AUC"), ("tpr", "TPR"), ("tnr", "TNR"))
TABLE2_ROW_FILE = "table2_row.csv"
# the test report's two subsets of images, each with its Table II: name -> positives only (the study's: mass images)
SUBSETS = {"mass": True, "all": False}
MISSING = "n/a"
WEIGHTS_COLUMN, THRESHOLDS_COLUMN = "weights", "thresholds"  # the last two columns of a row file
VALIDATED, TIED = "validated", "tied"  # a row file's thresholds, as thresholds_record writes them
# detection.json's ``threshold_from`` of a method's cell: where its binarization threshold came from
FROM_VALIDATION = "validation"
FROM_TIE = "validation, from a tie at TPR 0 (no threshold of the grid found a mass there): not a choice"
FROM_DEFAULT = "default (no threshold validated for this checkpoint)"
WEIGHTS_MARKS = {"checkpoint": "", "in_memory": "", "nyu": "NYU weights", "untrained": "untrained"}

log = logging.getLogger(__name__)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 run``, ``2 runs`` (``plural`` where adding an s is wrong: ``1 study``, ``2 studies``): the messages'
    counts read right whatever the number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def format_cell(tpr: float, fppi: float) -> str:
    """The study's ``TPR@FPPI`` cell, two decimals each (``0.69@0.55``); ``n/a`` when the TPR is undefined."""
    if tpr is None or math.isnan(tpr) or fppi is None or math.isnan(fppi):
        return MISSING
    return f"{tpr:.2f}@{fppi:.2f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A CSV document (header, then rows) as text, quoted where a value needs it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_table(path: Path, markdown: str, csv_document: str) -> None:
    """A table as both files a report keeps of it: ``path`` (markdown) and the CSV beside it (suffix ``.csv``), both
    written before either replaces an older one (``write_atomic_together``)."""
    write_atomic_together({path: markdown.encode(), path.with_suffix(".csv"): csv_document.encode()})


def remove_table(path: Path) -> None:
    """Remove a table an earlier report wrote (``path``, markdown, and the CSV beside it where it has one): a table
    left from another run of the report would look current."""
    path.unlink(missing_ok=True)
    path.with_suffix(".csv").unlink(missing_ok=True)


def table1(rows: dict[str, dict[str, float]]) -> tuple[str, str]:
    """Table I ``(markdown, csv)`` from ``{head: {"accuracy", "auc", "tpr", "tnr": value in [0, 1]}}``.

    Markdown shows three decimals (``n/a`` for NaN or a missing value); the CSV keeps full float precision
    (``repr``) so it parses back to the same numbers, with ``nan`` for undefined values.
    """
    header = ["head"] + [title for _, title in TABLE1_COLUMNS]
    md_rows, csv_rows = [], []
    for head, values in rows.items():
        numbers = [float(values.get(key, math.nan)) for key, _ in TABLE1_COLUMNS]
        md_rows.append([head] + [MISSING if math.isnan(v) else f"{v:.3f}" for v in numbers])
        csv_rows.append([head] + [repr(v) for v in numbers])
    return _markdown(header, md_rows), csv_text(["head"] + [key for key, _ in TABLE1_COLUMNS], csv_rows)


def _ordered_methods(columns: Sequence[str]) -> list[str]:
    """Canonical method order first (cam, gradcam, gradcampp, xgradcam, layercam), then others as first seen."""
    seen = list(dict.fromkeys(columns))
    return [m for m in METHOD_ORDER if m in seen] + [m for m in seen if m not in METHOD_ORDER]


def _ordered_rows(labels: Sequence[str]) -> list[str]:
    """Row labels in the canonical order of their training method, a marked row (``cam (untrained)``) after the
    plain one of its method."""
    bases = _ordered_methods([label.split(" (", 1)[0] for label in labels])
    return sorted(dict.fromkeys(labels), key=lambda label: (bases.index(label.split(" (", 1)[0]), " (" in label))


def row_label(train_method: str, weights: str = "", thresholds: str = "") -> str:
    """A Table II row's training-method cell: the method, followed by what makes the row something other than a
    trained, validated result (``layercam (untrained, NOT VALIDATED)``, ``cam (NOT VALIDATED: gradcam)``,
    ``cam (TIED: layercam)``: a threshold validation took from a tie at TPR 0, :func:`thresholds_record`). Empty
    ``weights`` and ``thresholds`` (a row file written before these columns existed): the method alone."""
    marks = [WEIGHTS_MARKS.get(weights, weights)] if weights else []
    for part in thresholds.split(";") if thresholds else ():  # thresholds_record's parts
        kind, _, which = (piece.strip() for piece in part.partition(":"))
        if kind != VALIDATED:
            mark = "TIED" if kind == TIED else "NOT VALIDATED"
            marks.append(f"{mark}: {which}" if which else mark)
    marks = [mark for mark in marks if mark]
    return f"{train_method} ({', '.join(marks)})" if marks else train_method


def thresholds_record(
    methods: Sequence[str], validated: Sequence[str] | frozenset[str], tied: Sequence[str] | frozenset[str] = ()
) -> str:
    """A row file's ``thresholds``: ``validated`` when validation chose every method's binarization threshold,
    ``default`` when it chose none, else ``default: <the methods at the default>``; then, after ``; ``,
    ``tied: <methods>`` for the validated methods whose threshold was the first of a tie at TPR 0 (no threshold
    found a mass in validation: the grid's first, not a choice), as ``validated; tied: cam``."""
    defaulted = [m for m in methods if m not in validated]
    tied_here = [m for m in methods if m in validated and m in tied]
    if not defaulted:
        record = VALIDATED
    else:
        record = "default" if len(defaulted) == len(methods) else "default: " + " ".join(_ordered_methods(defaulted))
    return f"{record}; {TIED}: {' '.join(_ordered_methods(tied_here))}" if tied_here else record


def table2(rows: dict[str, dict[str, str]]) -> tuple[str, str]:
    """Table II ``(markdown, csv)`` from ``{train_method: {test_method: "0.69@1.55"}}``.

    Rows and columns follow the canonical method order; a missing cell is ``n/a`` in Markdown and empty in CSV.
    The CSV header is ``train_method,<test methods...>``, the format of ``table2_row.csv`` (less its ``weights``
    and ``thresholds``: a row label carries their mark, :func:`row_label`).
    """
    methods = _ordered_methods([m for cells in rows.values() for m in cells])
    train_methods = _ordered_rows(list(rows))
    md_rows = [[t] + [rows[t].get(m) or MISSING for m in methods] for t in train_methods]
    csv_rows = [[t] + [rows[t].get(m, "") for m in methods] for t in train_methods]
    return _markdown(["train \\ test", *methods], md_rows), csv_text(["train_method", *methods], csv_rows)


def write_table2_row(
    path: Path, train_method: str, cells: dict[str, str], weights: str | None = None, thresholds: str | None = None
) -> None:
    """Write one run's Table II row to ``path`` (normally ``RUN_DIR/table2_row.csv``).

    Format: a header ``train_method,<test methods in canonical order>,weights,thresholds`` and one row
    ``<train method>,<cells>,<weights>,<thresholds>`` (see the module's docstring); without ``weights`` and
    ``thresholds``, the format before them (no last two columns).
    """
    methods = _ordered_methods(list(cells))
    header, row = ["train_method", *methods], [train_method, *(cells[m] for m in methods)]
    if weights is not None or thresholds is not None:
        header, row = [*header, WEIGHTS_COLUMN, THRESHOLDS_COLUMN], [*row, weights or "", thresholds or ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(path), csv_text(header, [row]))


def _read_rows(path: Path) -> list[dict[str, str]]:
    """A ``table2_row.csv``'s rows; a header without ``train_method`` or with a column twice, a row with more
    fields than the header, or a file that is not UTF-8 text is an error naming the file (and row)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if header is None or "train_method" not in header:
                raise ValueError(f"{path}: expected a header starting with 'train_method', found {header}")
            if twice := sorted({c for c in header if header.count(c) > 1}):
                raise ValueError(f"{path}: the header names {', '.join(twice)} more than once: {header}")
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    for line, row in enumerate(rows, start=2):
        if None in row:
            raise ValueError(f"{path}, row {line}: {len(header) + len(row[None])} fields, the header has {len(header)}")
    return rows


NESTED_LEVELS = 3  # <save_dir>/<project>/<run id>/ of a test run, and a study's runs/<run>/ one level above


@functools.cache
def say_test_run(run_dir: Path, found: Path) -> None:
    """Which test run below ``run_dir`` a report reads, said once: ``wsod report RUN --compare cam gradcam`` found it
    for the table and again for each side, and printed the line three times. ``wsod report`` clears it per call."""
    log.info("report: %s: using the test run %s", run_dir, found)


def find_run_dir(run_dir: Path) -> Path:
    """The test run folder of ``run_dir``: itself when it holds ``table2_row.csv``, else the one folder below it (up
    to ``NESTED_LEVELS`` down) that does: a user passes the folder of a run (``runs/study/runs/cam_seed42``), the
    test writes its report in ``<project>/<run id>/`` inside. Several found, or none, is an error naming them."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    if (run_dir / TABLE2_ROW_FILE).is_file():
        return run_dir
    patterns = ["/".join(["*"] * depth + [TABLE2_ROW_FILE]) for depth in range(1, NESTED_LEVELS + 1)]
    found = sorted({path.parent for pattern in patterns for path in run_dir.glob(pattern) if path.is_file()})
    if len(found) == 1:
        say_test_run(run_dir, found[0])
        return found[0]
    if (studied := _study_test_run(run_dir)) in found:  # a study run tested again: the test its tables read
        say_test_run(run_dir, studied)
        return studied
    if found:
        raise ValueError(
            f"{run_dir}: expected one test run with {TABLE2_ROW_FILE}, found {len(found)}: "
            f"{', '.join(map(str, found))}; give the one to use"
        )
    raise ValueError(f"{run_dir}: expected {TABLE2_ROW_FILE} (written by `wsod test`), found none")


def _study_test_run(run_dir: Path) -> Path | None:
    """The test run folder that a ``wsod study`` run's ``test.done`` names (the test its tables read); None outside a
    study. A study run tested twice (its test stopped or failed after writing its report, then run again) made
    ``wsod report runs/study/runs/cam_seed42`` refuse, naming two folders and neither as the study's."""
    from wsod_mammo.study_runs import TEST_DONE, finished_report

    try:
        return finished_report(run_dir).parent if (run_dir / TEST_DONE).is_file() else None
    except (OSError, ValueError):
        return None


#: said beside a run whose test covered part of its split, in `wsod report`'s Table II and a study's summary
PARTIAL_TEST = "PART OF THE TEST SPLIT"


def partial_coverage(report: Mapping[str, Any]) -> str | None:
    """``tested 8 of its 38 images`` for a ``detection.json`` whose test covered part of its split (``coverage``:
    a test cut to a few batches, ``--trainer.limit_test_batches``); None where it covered the split or the report
    predates ``coverage``."""
    coverage = report.get("coverage")
    if not isinstance(coverage, dict) or coverage.get("images_tested", 0) >= coverage.get("images_in_split", 0):
        return None
    return f"tested {coverage['images_tested']} of its {coverage['images_in_split']} images"


def _partial_test_of(run_dir: Path) -> str | None:
    """:func:`partial_coverage` of the ``detection.json`` beside a run's ``table2_row.csv`` (None without one)."""
    try:
        report = json.loads((run_dir / "detection.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return partial_coverage(report) if isinstance(report, dict) else None


def collect_table2(run_dirs: Sequence[str | Path]) -> tuple[str, str]:
    """Merge the ``table2_row.csv`` of several test runs into one Table II ``(markdown, csv)``.

    Runs with the same training method merge their columns; two different values for one cell are an error,
    as is a run directory without ``table2_row.csv`` (in it, or in the one test run below it: :func:`find_run_dir`).
    A row of untrained or NYU weights, or of thresholds not validated, is a row of its own labelled so
    (:func:`row_label`), never merged into the same method's trained, validated row, and a warning names its run.
    """
    if not run_dirs:
        raise ValueError("collect_table2: expected at least one run directory, found none")
    matrix: dict[str, dict[str, str]] = {}
    origin: dict[tuple[str, str], Path] = {}
    partial: list[str] = []
    for run_dir in map(Path, run_dirs):
        path = find_run_dir(run_dir) / TABLE2_ROW_FILE
        if (tested := _partial_test_of(path.parent)) is not None:
            partial.append(f"{path.parent} {tested}")
            log.warning("report: %s %s (a test cut short): its row is not the split's", path.parent, tested)
        for line, row in enumerate(_read_rows(path), start=2):
            train = row.pop("train_method") or ""
            if not train:
                raise ValueError(f"{path}, row {line}: expected a training method name, found an empty cell")
            weights, thresholds = row.pop(WEIGHTS_COLUMN, None) or "", row.pop(THRESHOLDS_COLUMN, None) or ""
            label = row_label(train, weights, thresholds)
            if label != train:
                log.warning(
                    "report: %s: its %s row (weights %s, thresholds %s) is not a trained, validated result: "
                    "marked '%s' in Table II",
                    path.parent,
                    train,
                    weights or "not recorded",
                    thresholds or "not recorded",
                    label,
                )
            train = label
            for method, cell in row.items():
                if not cell:
                    continue
                previous = matrix.setdefault(train, {}).get(method)
                if previous is not None and previous != cell:
                    raise ValueError(
                        f"{path}, row {line}: cell ({train}, {method}) is {cell}, "
                        f"but {origin[(train, method)]} already gave {previous}: list one run per training "
                        "method (two seeds of one method: `wsod study` averages them; --compare RUN_DIR:method "
                        "needs no listing)"
                    )
                matrix[train][method] = cell
                origin[(train, method)] = path
    markdown, table_csv = table2(matrix)
    if partial:  # the rows a test cut short gave, under the table a user copies
        markdown += f"\n{PARTIAL_TEST} (a test cut short, e.g. --trainer.limit_test_batches): {'; '.join(partial)}\n"
    return markdown, table_csv


FPPI_AXIS = (0.125, 8.0)  # the FROC literature's range of false positives per image, on a log scale
FPPI_AXIS_FLOOR = 2.0**-10  # the lowest left edge: one false positive in ~1,000 images


def plot_froc(
    curves: Mapping[str, tuple[Sequence[float] | Tensor, Sequence[float] | Tensor]],
    path: str | Path,
    title: str = "",
    points: dict[str, tuple[float, float]] | None = None,
    fppi_axis: tuple[float, float] | None = None,
) -> None:
    """Draw FROC curves ``{name: (fppi (T,), tpr (T,))}`` as steps in one PNG at ``path``.

    FPPI on a log axis over ``fppi_axis`` (default ``froc_axis``: the literature's 1/8 to 8, reaching lower when
    the data do); each curve ends where its data end (no extension past the largest FPPI measured); ``points``
    ``{name: (fppi, tpr)}`` marks each method's operating point (its Table II cell) in the curve's colour. FPPI 0
    sits on the left edge. Curves with an undefined TPR (NaN) are listed in the legend as ``n/a``. Uses the Agg
    canvas directly (no display, no global backend switch).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fppi_axis = fppi_axis or froc_axis(curves, points)
    figure = Figure(figsize=(7, 5), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, (fppi, tpr) in curves.items():
        x, y = _floats(fppi), _floats(tpr)
        if not y or any(math.isnan(v) for v in y):
            axes.plot([], [], label=f"{name} (n/a: no ground truth)")
            continue
        x = [max(v, fppi_axis[0]) for v in x]  # FPPI below the axis (0 included) sits on its left edge
        (line,) = axes.step(x, y, where="post", label=name)
        if points and name in points and not math.isnan(points[name][1]):
            px, py = points[name]
            marker: dict[str, Any] = {"color": line.get_color(), "markersize": 7, "mec": "black", "clip_on": False}
            axes.plot([max(px, fppi_axis[0])], [py], "o", **marker)
    axes.set_xscale("log", base=2)
    axes.set_xlim(*fppi_axis)
    ticks = [2.0**k for k in range(round(math.log2(fppi_axis[0])), round(math.log2(fppi_axis[1])) + 1)]
    axes.set_xticks(ticks, [f"1/{round(1 / t)}" if t < 1 else f"{t:g}" for t in ticks])
    axes.set_ylim(0, 1.0)
    axes.set_xlabel("false positives per image (log scale; 0 on the left edge)")
    axes.set_ylabel("true positive rate (lesion sensitivity)")
    axes.grid(alpha=0.3, which="both")
    if title:
        axes.set_title(title, fontsize=10)
    if curves:
        axes.legend(loc="lower right", title="dots: operating points" if points else None)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(figure, Path(path))


def froc_axis(
    curves: Mapping[str, tuple[Sequence[float] | Tensor, Sequence[float] | Tensor]],
    points: dict[str, tuple[float, float]] | None = None,
) -> tuple[float, float]:
    """The FPPI axis: ``FPPI_AXIS`` (1/8 to 8), its left edge lowered to the power of 2 at or below the smallest
    positive FPPI of the curves and points (operating points at FPPI 0.05 would otherwise sit on the 1/8 edge,
    looking like 1/8), not below ``FPPI_AXIS_FLOOR``."""
    values = [v for fppi, _ in curves.values() for v in _floats(fppi)] + [f for f, _ in (points or {}).values()]
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    low = FPPI_AXIS[0]
    if positive and min(positive) < low:
        low = max(FPPI_AXIS_FLOOR, 2.0 ** math.floor(math.log2(min(positive))))
    return low, FPPI_AXIS[1]


def _floats(values: Sequence[float] | Tensor) -> list[float]:
    if hasattr(values, "detach"):
        return values.detach().float().cpu().tolist()
    return [float(v) for v in values]
