"""The test run's report: Table I (per image and per breast), the Table II row (and its cells per breast density,
per finding BI-RADS and per mass size), the pointing game and wAFROC, FROC plots, 95% bootstrap intervals, counts,
per-image records; each part is written by its own module, and this one assembles ``detection.json``.

``detection.json`` holds each figure as a plain value (``table1``, each method's ``tpr``, ``fppi``, ``tpr_at_fppi``)
and its 95% interval beside it as ``{"value", "low", "high"}`` (``table1_intervals``, each method's ``intervals``),
as do the ``*_ci.csv`` files (see :mod:`wsod_mammo.detection.bootstrap`). The Table II cell is the operating point
validation selects by (:mod:`wsod_mammo.training.table2_report`).
``detection_images.json`` keeps each distinct image's key, ground-truth count and boxes, for ``wsod report
--compare`` (a paired bootstrap between two methods or runs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch import LightningModule, Trainer

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.detection.afroc_report import afroc_summary, afroc_text, plot_wafroc
from wsod_mammo.detection.afroc_strata import afroc_by_kind, afroc_by_kind_text
from wsod_mammo.detection.bootstrap import LEVEL, NUM_RESAMPLES, SEED
from wsod_mammo.detection.compare import IMAGES_FILE
from wsod_mammo.detection.compare_auc import CLASSIFICATION
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.json_figures import dumps_strict
from wsod_mammo.detection.pointing_report import pointing_summary, pointing_text
from wsod_mammo.detection.pointing_strata import pointing_by_kind, pointing_by_kind_text
from wsod_mammo.detection.record_strata import with_densities
from wsod_mammo.detection.report import partial_coverage, write_table
from wsod_mammo.training.provenance import evaluated_weights, evaluation_setting, input_frame
from wsod_mammo.training.table1_report import Table1Figures, write_table1
from wsod_mammo.training.table2_report import (
    OPERATING_POINT,
    ROW_WEIGHTS,
    write_row_files,
    write_table2_rows,
    write_table2_strata,
)
from wsod_mammo.training.test_report_wandb import log_test_report
from wsod_mammo.training.test_split import density_labels, split_image_count, study_groups

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule

log = logging.getLogger(__name__)


def _class_names(trainer: Trainer | None, pl_module: LightningModule) -> list[str]:
    """The model's output classes by name (the checkpoint's, else the data's; ``class <k>`` where none says)."""
    count = int(getattr(getattr(pl_module, "model", None), "num_classes", 1) or 1)
    names = getattr(pl_module, "recorded_class_names", lambda: None)() or []
    names = names or list(getattr(getattr(trainer, "datamodule", None), "class_names", None) or [])
    return [str(n) for n in names] if len(names) == count else [f"class {k}" for k in range(count)]


def write_test_report(
    directory: Path,
    trainer: Trainer,
    pl_module: GMICLitModule,
    results: dict[tuple[str, str], DetectionResult],
    table1: Table1Figures,
    fppi_budget: float = 1.0,
    seed: int = SEED,
    iou_rule: float = 0.3,
    groups: dict[int, int] | None = None,
    densities: dict[int, str] | None = None,
    kept: bool = True,
) -> None:
    """Table I (``table1_intervals``: its rows with their counts written beside them, and the breast-level table
    where it has breast rows), the Table II row (mass images and all images) with intervals, FROC plots,
    ``detection.json``. ``groups``: ``study_groups`` (None: read from the trainer's data); ``densities``:
    ``density_labels`` (None: read from the trainer's data; empty: no Table II by density); ``kept``: False where
    ``directory`` is a scratch folder dropped after (``--trainer.fast_dev_run``: the figures are printed only)."""
    groups = study_groups(trainer) if groups is None else groups
    densities = density_labels(trainer) if densities is None else densities
    unit = "studies (each with all its images)" if groups else "images"
    train_method = pl_module.train_saliency.name
    names = _class_names(trainer, pl_module)
    weights = evaluated_weights(trainer, pl_module)
    table1_entries, printed = write_table1(directory, table1, unit, names, train_method, seed)
    summary: dict[str, Any] = {
        "train_saliency": train_method,
        **weights,
        "operating_point": OPERATING_POINT.format(budget=fppi_budget),
        "bootstrap": {
            "resamples": NUM_RESAMPLES,
            "seed": seed,
            "level": LEVEL,
            "stratified_by": "class",
            "resampled": "studies" if groups else "images",
        },
        **table1_entries,
        "evaluated_under": evaluation_setting(trainer),
        "input_frame": input_frame(trainer, pl_module),
    }
    rows = write_table2_rows(directory, train_method, results, fppi_budget, seed, iou_rule,
                             frozenset(pl_module.detection_thresholds),
                             ROW_WEIGHTS.get(weights["weights"], weights["weights"]), groups,
                             frozenset(getattr(pl_module, "tied_thresholds", ())))  # fmt: skip
    strata, strata_printed = write_table2_strata(directory, results, densities, fppi_budget, seed, groups)
    localization, localization_printed = _write_localization(directory, results, densities, train_method, unit,
                                                             seed, groups)  # fmt: skip
    # the distinct images tested: Table I's, or Table II's in a report of detection alone
    tested = max(table1.counts.get("images", 0), rows.entries.get("all_counts", {}).get("images", 0))
    summary |= rows.entries | strata | localization | _coverage(trainer, tested)
    printed += rows.printed + strata_printed + localization_printed
    write_text_atomic(directory / "detection.json", dumps_strict(summary, indent=2))  # NaN as null: jq, R, JS read it
    _write_image_records(directory, rows.records, table1, names[0], densities, fppi_budget, seed)
    write_row_files(rows)  # last: `wsod report` finds a test run by them, and reads detection.json beside them
    log_test_report(trainer, directory, summary, rows.ci_rows)
    checkpoint = summary["checkpoint"]
    what = f"{summary['weights']} {checkpoint['path']} (sha256 {checkpoint['sha256']}{epoch_text(checkpoint)})"
    under = summary["evaluated_under"]
    log.info("evaluated %s under precision %s, torch %s\n%s", what if checkpoint["path"] else summary["weights"],
             under["precision"], under["torch"], "\n".join(printed))  # fmt: skip
    if kept:
        log.info("test report (tables, intervals, detection.json, FROC plots) written to %s", directory)
    if partial_coverage(summary) is not None:  # the test `wsod report` and the study name under their tables
        limit, fast = getattr(trainer, "limit_test_batches", 1.0), getattr(trainer, "fast_dev_run", False)
        given = "" if isinstance(limit, float) and limit == 1.0 else f" (--trainer.limit_test_batches {limit})"
        given = f" (--trainer.fast_dev_run {str(fast).lower()})" if fast else given  # it sets the limit to 1 or n
        log.warning(
            "the report covers %d of the test split's %d images%s: its figures are not the test split's",
            summary["coverage"]["images_tested"], summary["coverage"]["images_in_split"], given,
        )  # fmt: skip


def _coverage(trainer: Trainer, tested: int) -> dict[str, Any]:
    """``detection.json``'s ``coverage``: the distinct images tested beside the test split's (none where the data
    lists no records), so a report of a run cut to a few batches cannot pass for the split's."""
    in_split = split_image_count(trainer)
    return {} if in_split is None else {"coverage": {"images_tested": tested, "images_in_split": in_split}}


def _write_localization(
    directory: Path,
    results: dict[tuple[str, str], DetectionResult],
    densities: dict[int, str],
    train_method: str,
    unit: str,
    seed: int,
    groups: dict[int, int] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The pointing game on mass images and wAFROC on every image, each overall and per kind of mass; returns
    ``detection.json``'s entries (None where the maps or the data give none) and the terminal's sections."""
    mass_images = {m: r for (m, s), r in results.items() if s == "mass"}
    every_image = {m: r for (m, s), r in results.items() if s == "all"}
    entries: dict[str, Any] = {"pointing_game": pointing_summary(mass_images, seed, groups)}
    printed = []
    if entries["pointing_game"]:
        pointing_md, pointing_csv = pointing_text(entries["pointing_game"], train_method, unit)
        write_table(directory / "pointing_game.md", pointing_md, pointing_csv)
        printed.append(f"Pointing game (mass images)\n{pointing_md}")
    entries["pointing_by_kind"] = pointing_by_kind(mass_images, densities, seed, groups)
    if entries["pointing_by_kind"]:
        write_table(directory / "pointing_by_kind.md",
                    *pointing_by_kind_text(entries["pointing_by_kind"], train_method, unit))  # fmt: skip
    entries["wafroc"] = afroc_summary(every_image, seed, groups)
    if entries["wafroc"]:
        afroc_md, afroc_csv = afroc_text(entries["wafroc"], train_method, unit)
        write_table(directory / "wafroc.md", afroc_md, afroc_csv)
        plot_wafroc(every_image, entries["wafroc"], directory / "wafroc.png",
                    f"wAFROC, every test image, trained with {train_method}")  # fmt: skip
        printed.append(f"wAFROC figures of merit (all images)\n{afroc_md}")
    entries["wafroc_by_kind"] = afroc_by_kind(every_image, densities, seed, groups) if entries["wafroc"] else None
    if entries["wafroc_by_kind"]:
        write_table(directory / "wafroc_by_kind.md", *afroc_by_kind_text(entries["wafroc_by_kind"], train_method, unit))
    return entries, printed


def _write_image_records(
    directory: Path,
    records: dict[str, dict[str, Any]],
    table1: Table1Figures,
    class_name: str,
    densities: dict[int, str],
    budget: float,
    seed: int,
) -> None:
    """``detection_images.json``: what ``--compare`` redraws, and the study its intervals over seeds from (per
    density too: each image's density); with Table I's class, images and probabilities for ``A:fusion B:fusion``."""
    subsets = {s: {m: with_densities(r, densities) for m, r in methods.items()} for s, methods in records.items()}
    image_records = {"fppi_budget": budget, "bootstrap_seed": seed, "subsets": subsets}
    if table1.images:
        image_records[CLASSIFICATION] = {"class": class_name, **with_densities(table1.images, densities)}
    write_text_atomic(directory / IMAGES_FILE, json.dumps(image_records))


def epoch_text(checkpoint: dict[str, Any]) -> str:
    """``, epoch 7 (0-based), val/wafroc/cam 0.550`` for a checkpoint whose record has its epoch, else nothing."""
    if "epoch" not in checkpoint:
        return ""
    scores = "".join(f", {monitor} {score:.3f}" for monitor, score in checkpoint.get("monitored", {}).items())
    return f", epoch {checkpoint['epoch']} (0-based){scores}"
