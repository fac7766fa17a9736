"""The test run's report: Table I (per image and per breast), the Table II row (and its cells per breast density,
per finding BI-RADS and per mass size), FROC plots, 95% bootstrap intervals, counts, per-image records.

``detection.json`` holds each figure as a plain value (``table1``, each method's ``tpr``, ``fppi``, ``tpr_at_fppi``)
and its 95% interval beside it as ``{"value", "low", "high"}`` (``table1_intervals``, each method's ``intervals``),
as do the ``*_ci.csv`` files (see :mod:`wsod_mammo.detection.bootstrap`). The Table II cell is the operating point
validation selects by: the FROC point with the highest TPR at FPPI <= ``fppi_budget`` (``OPERATING_POINT`` below,
also written to the report).
``detection_images.json`` keeps each distinct image's key, ground-truth count and boxes, for ``wsod report
--compare`` (a paired bootstrap between two methods or runs).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torchmetrics import MetricCollection

from wsod_mammo.detection.afroc_report import CSV_COLUMNS as AFROC_COLUMNS
from wsod_mammo.detection.afroc_report import afroc_rows, afroc_summary, afroc_text, plot_wafroc
from wsod_mammo.detection.afroc_strata import CSV_COLUMNS as AFROC_BY_KIND_COLUMNS
from wsod_mammo.detection.afroc_strata import afroc_by_kind, afroc_by_kind_rows, afroc_by_kind_text
from wsod_mammo.detection.bootstrap import (
    LEVEL,
    NUM_RESAMPLES,
    SEED,
    classification_figures,
    detection_intervals,
    groups_of,
    interval,
    interval_text,
    resample_weights,
)
from wsod_mammo.detection.breasts import breast_key_of_images, breast_predictions
from wsod_mammo.detection.calibration import CSV_COLUMNS as CALIBRATION_COLUMNS
from wsod_mammo.detection.calibration import calibration_rows, calibration_summary, calibration_text, plot_reliability
from wsod_mammo.detection.compare import IMAGES_FILE
from wsod_mammo.detection.compare_auc import CLASSIFICATION
from wsod_mammo.detection.image_keys import image_keys
from wsod_mammo.detection.metrics import DetectionResult
from wsod_mammo.detection.pointing_kinds import kind_of_code
from wsod_mammo.detection.pointing_report import CSV_COLUMNS as POINTING_COLUMNS
from wsod_mammo.detection.pointing_report import pointing_rows, pointing_summary, pointing_text
from wsod_mammo.detection.pointing_strata import CSV_COLUMNS as POINTING_BY_KIND_COLUMNS
from wsod_mammo.detection.pointing_strata import pointing_by_kind, pointing_by_kind_rows, pointing_by_kind_text
from wsod_mammo.detection.record_strata import with_densities
from wsod_mammo.detection.report import (
    FROM_DEFAULT,
    FROM_TIE,
    FROM_VALIDATION,
    MISSING,
    SUBSETS,
    TABLE1_COLUMNS,
    _markdown,
    csv_text,
    format_cell,
    plot_froc,
    row_label,
    table1,
    table2,
    thresholds_record,
    write_table2_row,
)
from wsod_mammo.detection.strata import strata_of
from wsod_mammo.detection.table2_strata import (
    STRATUM_TABLES,
    by_density,
    by_finding_birads,
    by_mass_size,
    has_finding_birads,
    has_mass_sizes,
    why_no_sizes,
)
from wsod_mammo.training.classification import HEADS, KeyedClassificationMetric
from wsod_mammo.training.provenance import evaluated_weights, evaluation_setting

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule

log = logging.getLogger(__name__)

OPERATING_POINT = (
    "TPR@FPPI cell: the FROC point with the highest TPR at FPPI <= {budget:g} (box-score cut), "
    "the rule validation chooses the binarization threshold by"
)
CI_COLUMNS = ["subset", "method", "figure", "value", "low", "high"]
# detection.json's "weights" -> the row file's ``weights`` column (see wsod_mammo.detection.report)
ROW_WEIGHTS = {
    "checkpoint": "checkpoint",
    "NYU weights": "nyu",
    "weights in memory": "in_memory",
    "untrained network": "untrained",
}


def _test_records(trainer: Trainer | None) -> list[Any]:
    """The test split's image records (``VinDrDataset.records``); none for a dataset that lists none."""
    dataset = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("test")
    return list(getattr(dataset, "records", []))


def study_groups(trainer: Trainer | None) -> dict[int, int]:
    """``{image key: study key}`` of the test split's images (``image_keys`` of their ``image_id`` and
    ``study_id``), for the bootstrap to draw whole studies; empty where the data names no studies."""
    records = [r for r in _test_records(trainer) if getattr(r, "study_id", None)]
    if not records:
        return {}
    images, studies = image_keys([r.image_id for r in records]), image_keys([r.study_id for r in records])
    return dict(zip(images.tolist(), studies.tolist(), strict=True))


def breast_groups(trainer: Trainer | None) -> dict[int, int]:
    """``{image key: breast key}`` of the test split's images (``breasts.breast_key_of_images``), for Table I at
    breast level; empty where the data names no studies or sides."""
    records = [r for r in _test_records(trainer) if getattr(r, "study_id", None) and getattr(r, "laterality", None)]
    if not records:
        return {}
    return breast_key_of_images([r.image_id for r in records], [r.study_id for r in records],
                                [r.laterality for r in records])  # fmt: skip


def density_labels(trainer: Trainer | None) -> dict[int, str]:
    """``{image key: breast density}`` of the test split's images (VinDr's ``breast_density``, ``DENSITY A`` to
    ``D``), for Table II by density; empty where the data gives no image a density."""
    records = _test_records(trainer)
    if not any(getattr(r, "breast_density", "") for r in records):
        return {}
    keys = image_keys([r.image_id for r in records]).tolist()
    return dict(zip(keys, [r.breast_density for r in records], strict=True))


class Table1Figures(NamedTuple):
    """Table I over the distinct test images and over their breasts: per head ``{accuracy, auc, tpr, tnr: {value,
    low, high}}`` of the first class, and the counts beside each; and over each breast density's images."""

    rows: dict[str, dict[str, Any]]
    counts: dict[str, int]  # {"images", "positive"}
    breast_rows: dict[str, dict[str, Any]]  # empty where the data names no breasts
    breast_counts: dict[str, int] | None  # {"breasts", "positive", "one_view", "images"}
    # {density: {"studies", "images", "positive", "heads": {head: figures}}}; empty where the data names no density
    density_rows: dict[str, dict[str, Any]] = {}
    # {"image_keys", "study_keys", "target", "heads": {head: probabilities}}, for `--compare A:fusion B:fusion`
    images: dict[str, Any] = {}


def _figures_with_intervals(
    preds: Tensor, target: Tensor, keys: Tensor, seed: int, groups: Tensor | None
) -> dict[str, dict[str, float]]:
    full = classification_figures(torch.ones(1, preds.numel()), preds, target)
    samples = classification_figures(resample_weights(target, seed=seed, keys=keys, groups=groups), preds, target)
    return {k: interval(samples[k], float(full[k][0])) for k in samples}


def table1_intervals(
    pl_module: GMICLitModule,
    seed: int,
    groups: dict[int, int] | None = None,
    breasts: dict[int, int] | None = None,
    densities: dict[int, str] | None = None,
) -> Table1Figures:
    """Table I with intervals over the distinct test images, of the first class (named in ``table1.md`` and
    ``detection.json``'s ``table1_class`` when the model has several), over their breasts (``breasts``:
    ``breast_groups``; none without it) and over each breast density's images (``densities``: ``density_labels``;
    none without it); whole studies are drawn (``groups``: ``study_groups``). Collective under DDP (the metric
    states are gathered): call on every rank."""
    rows: dict[str, dict[str, Any]] = {}
    breast_rows: dict[str, dict[str, Any]] = {}
    density_rows: dict[str, dict[str, Any]] = {}
    per_head: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    counts = {"images": 0, "positive": 0}
    breast_counts = None
    for head in HEADS:
        collection = cast(MetricCollection, pl_module.metrics[f"test_{head}"])  # stage_head_metrics
        metric = cast(KeyedClassificationMetric, collection["accuracy"])
        with metric.sync_context():
            preds, target, keys = metric.distinct()
        preds, target = preds.reshape(preds.shape[0], -1)[:, 0].cpu(), target.reshape(target.shape[0], -1)[:, 0].cpu()
        keys = keys.cpu()
        counts = {"images": int(preds.numel()), "positive": int((target > 0.5).sum())}
        if preds.numel() == 0:
            continue
        rows[head] = _figures_with_intervals(preds, target, keys, seed, groups_of(keys, groups))
        per_head[head] = keys, preds, target
        for label, keep in strata_of(keys, densities).items() if densities else ():
            studies = groups_of(keys[keep], groups)
            row = density_rows.setdefault(label, {
                "studies": None if studies is None else int(studies.unique().numel()),
                "images": int(keep.sum()), "positive": int((target[keep] > 0.5).sum()), "heads": {},
            })  # fmt: skip
            row["heads"][head] = _figures_with_intervals(preds[keep], target[keep], keys[keep], seed, studies)
        breast_of = breasts or {}
        rated = breast_predictions(preds, target, keys, breast_of)
        if rated is None:
            continue
        study_of_breast = {breast_of[k]: groups[k] for k in keys.tolist() if k in groups} if groups else {}
        breast_rows[head] = _figures_with_intervals(rated.probabilities, rated.target, rated.keys, seed,
                                                    groups_of(rated.keys, study_of_breast))  # fmt: skip
        breast_counts = {"breasts": int(rated.keys.numel()), "positive": int((rated.target > 0.5).sum()),
                         "one_view": int((rated.views == 1).sum()), "images": int(preds.numel())}  # fmt: skip
    images = _images_record(per_head, groups, breasts if breast_rows else None)
    return Table1Figures(rows, counts, breast_rows, breast_counts, density_rows, images)


def _images_record(
    per_head: dict[str, tuple[Tensor, Tensor, Tensor]],
    groups: dict[int, int] | None = None,
    breasts: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Each head's probability per distinct image, in the first head's order of ``(keys, probabilities, target)``
    (the order its Table I interval drew in, so ``--compare`` redraws that interval exactly), each image's study
    (``groups``: ``study_groups``; none without it) and breast (``breasts``: ``breast_groups``, where Table I rated
    breasts: ``--compare --level breast``)."""
    if not per_head:
        return {}
    keys, _, target = next(iter(per_head.values()))
    heads = {}
    for head, (head_keys, probabilities, _) in per_head.items():
        position = {k: i for i, k in enumerate(head_keys.tolist())}
        heads[head] = [probabilities[position[k]].item() for k in keys.tolist()]
    studies = groups_of(keys, groups)
    rated_breasts = {"breast_keys": [breasts[k] for k in keys.tolist()]} if breasts else {}
    return {"image_keys": keys.tolist(), **({} if studies is None else {"study_keys": studies.tolist()}),
            "target": target.tolist(), "heads": heads, **rated_breasts}  # fmt: skip


def _class_names(trainer: Trainer | None, pl_module: LightningModule) -> list[str]:
    """The model's output classes by name (the checkpoint's, else the data's; ``class <k>`` where none says)."""
    count = int(getattr(getattr(pl_module, "model", None), "num_classes", 1) or 1)
    names = getattr(pl_module, "recorded_class_names", lambda: None)() or []
    names = names or list(getattr(getattr(trainer, "datamodule", None), "class_names", None) or [])
    return [str(n) for n in names] if len(names) == count else [f"class {k}" for k in range(count)]


def _ci_rows(subset: str, method: str, figures: dict[str, Any]) -> list[list[str]]:
    rows = [[subset, method, name, *map(repr, figures[name].values())] for name in ("tpr", "fppi")]
    for point, value in figures["tpr_at_fppi"].items():
        rows.append([subset, method, f"tpr@fppi{point}", *map(repr, value.values())])
    return rows


def _method_summary(
    r: DetectionResult, cell: str, intervals: dict[str, Any], validated: bool, tied: bool = False
) -> dict[str, Any]:
    first = r.per_threshold[0]
    source = (FROM_TIE if tied else FROM_VALIDATION) if validated else FROM_DEFAULT
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
        "fppi_curve": first.fppi_curve.tolist(),
        "tpr_curve": first.tpr_curve.tolist(),
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
) -> tuple[dict[str, Any], list[list[str]], dict[str, Any], str]:
    """One subset's Table II row (md/csv, with an interval table), FROC plot; returns its summary, CI rows,
    per-image records and the row's markdown (with its note and intervals) for the terminal. ``validated``: the
    methods whose binarization threshold validation chose (None: all); the others' cells are marked. ``weights``:
    the row file's ``weights`` (``checkpoint``, ``in_memory``, ``nyu``, ``untrained``), in the row's label too.
    ``groups``: ``study_groups``, the studies the bootstrap draws whole. ``tied``: the validated methods whose
    threshold was the first of a tie at TPR 0 (no threshold found a mass in validation); their cells are marked."""
    validated = frozenset(results) if validated is None else validated
    cells = {m: format_cell(r.per_threshold[0].tpr, r.per_threshold[0].fppi) for m, r in results.items()}
    intervals = {m: detection_intervals(r, budget, seed, groups) for m, r in results.items()}
    suffix = "" if subset == "mass" else "_all_images"
    thresholds = thresholds_record(list(results), validated, tied)
    write_table2_row(directory / f"table2_row{suffix}.csv", train_method, cells, weights, thresholds)
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
    (directory / f"table2_row{suffix}.md").write_text(row_md + note + ci_md)
    curves = {m: (r.per_threshold[0].fppi_curve, r.per_threshold[0].tpr_curve) for m, r in results.items()}
    points = {m: (r.per_threshold[0].fppi, r.per_threshold[0].tpr) for m, r in results.items()}
    title = (
        f"FROC, {subset} images, trained with {train_method}: {first.num_images} images, "
        f"{first.num_gt} lesions, hit = IoU > {iou_rule:g}"
    )
    plot_froc(curves, directory / f"froc_{subset}.png", title=title, points=points)
    summary = {m: _method_summary(r, cells[m], intervals[m], m in validated, m in tied) for m, r in results.items()}
    ci_rows = [row for m in results for row in _ci_rows(subset, m, intervals[m])]
    return summary, ci_rows, {m: _image_records(r, groups) for m, r in results.items()}, row_md + note + ci_md


def _values(ci: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{head: {figure: value}}`` of Table I's ``{head: {figure: {value, low, high}}}``."""
    return {h: {k: v["value"] for k, v in row.items()} for h, row in ci.items()}


def _table1_text(ci: dict[str, dict[str, Any]], unit: str, preface: str) -> tuple[str, str, str]:
    """Table I's ``(markdown with its intervals, csv, intervals csv)`` from ``{head: {figure: {value, low, high}}}``;
    ``preface``: the lines between the table and its intervals (counts, notes)."""
    md, csv = table1(_values(ci))
    header = "| head | accuracy | AUC | TPR | TNR |\n|---|---|---|---|---|\n"
    lines = [f"| {h} | " + " | ".join(interval_text(v) for v in row.values()) + " |" for h, row in ci.items()]
    md += f"{preface}\n95% bootstrap intervals over {unit}, stratified by class:\n\n{header}" + "\n".join(lines) + "\n"
    ci_rows = [[h, k, *map(repr, v.values())] for h, row in ci.items() for k, v in row.items()]
    return md, csv, csv_text(["head", "figure", "value", "low", "high"], ci_rows)


def table1_by_density_text(rows: dict[str, dict[str, Any]], unit: str, class_name: str) -> tuple[str, str]:
    """Table I per breast density ``(markdown, csv)`` from ``Table1Figures.density_rows``: each density's counts and,
    per head, every figure with its interval (a density without negatives has no AUC or TNR: n/a)."""
    figures = [key for key, _ in TABLE1_COLUMNS]
    md_rows, csv_rows = [], []
    for density, row in rows.items():
        counts = [MISSING if row["studies"] is None else str(row["studies"]), str(row["images"]), str(row["positive"])]
        for head, values in row["heads"].items():
            md_rows.append([density, *counts, head, *(interval_text(values[k]) for k in figures)])
            csv_rows += [[density, *counts, head, k, *map(repr, values[k].values())] for k in figures]
    header = ["density", "studies", "images", "positive", "head", *(title for _, title in TABLE1_COLUMNS)]
    note = (
        f"Table I over each breast density's test images (VinDr's breast_density), positive meaning with {class_name}; "
        f"95% bootstrap intervals over {unit}, stratified by class. A density of few studies has a narrow interval for "
        "want of studies to draw, not for certainty.\n\n"
    )
    columns = ["density", "studies", "images", "positive", "head", "figure", "value", "low", "high"]
    return note + _markdown(header, md_rows), csv_text(columns, csv_rows)


def _write_breast_table1(
    directory: Path, ci: dict[str, dict[str, Any]], counts: dict[str, int], unit: str, class_name: str
) -> str:
    """``table1_breast.{md,csv}`` and ``table1_breast_ci.csv``; returns the markdown."""
    breasts, positive, one_view = counts["breasts"], counts["positive"], counts["one_view"]
    preface = (
        f"\nBreast level: {breasts} breasts of the {counts['images']} distinct test images ({one_view} with one view "
        f"tested), {positive} positive (with {class_name} in any view), {breasts - positive} negative. A breast's "
        "probability is the mean of its views'.\n"
    )
    md, csv, ci_csv = _table1_text(ci, unit, preface)
    (directory / "table1_breast.md").write_text(md)
    (directory / "table1_breast.csv").write_text(csv)
    (directory / "table1_breast_ci.csv").write_text(ci_csv)
    return md


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
) -> None:
    """Table I (``table1_intervals``: its rows with their counts written beside them, and the breast-level table
    where it has breast rows), the Table II row (mass images and all images) with intervals, FROC plots,
    ``detection.json``. ``groups``: ``study_groups`` (None: read from the trainer's data); ``densities``:
    ``density_labels`` (None: read from the trainer's data; empty: no Table II by density)."""
    groups = study_groups(trainer) if groups is None else groups
    densities = density_labels(trainer) if densities is None else densities
    unit = "studies (each with all its images)" if groups else "images"
    train_method = pl_module.train_saliency.name
    validated = frozenset(pl_module.detection_thresholds)
    table1_ci, table1_counts, breast_ci, breast_counts, density_table1, _ = table1
    table1_rows = _values(table1_ci)
    names = _class_names(trainer, pl_module)
    preface = ""
    if table1_counts:
        images, positive = table1_counts["images"], table1_counts["positive"]
        preface = f"\n{images} distinct test images: {positive} positive, {images - positive} negative.\n"
    if len(names) > 1:  # Table I rates the first output; Lightning's test/<head>/* scalars average every class
        preface = (
            f"\nTable I rates the {names[0]} output, the first of the model's {len(names)} classes "
            f"({', '.join(names)}): positive means with {names[0]}. The test/<head>/* figures Lightning logs (the "
            f"terminal's table, W&B) are the macro mean over the {len(names)} classes.\n" + preface
        )
    table1_md, table1_csv, table1_ci_csv = _table1_text(table1_ci, unit, preface)
    (directory / "table1.md").write_text(table1_md)
    (directory / "table1.csv").write_text(table1_csv)
    (directory / "table1_ci.csv").write_text(table1_ci_csv)
    breast_md = None
    if breast_ci and breast_counts:
        breast_md = _write_breast_table1(directory, breast_ci, breast_counts, unit, names[0])
    summary_calibration = calibration_summary(table1.images, seed)
    calibration_md = None
    if summary_calibration:
        calibration_md, calibration_csv = calibration_text(summary_calibration, unit, names[0])
        (directory / "calibration.md").write_text(calibration_md)
        (directory / "calibration.csv").write_text(calibration_csv)
        plot_reliability(summary_calibration, directory / "reliability.png",
                         f"Reliability of the {names[0]} probability, trained with {train_method}")  # fmt: skip
    density_table1_md = None
    if density_table1:
        density_table1_md, density_table1_csv = table1_by_density_text(density_table1, unit, names[0])
        (directory / "table1_by_density.md").write_text(density_table1_md)
        (directory / "table1_by_density.csv").write_text(density_table1_csv)
    weights = evaluated_weights(trainer, pl_module)
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
        "table1_class": names[0],
        "table1": table1_rows,
        "table1_intervals": table1_ci,
        "table1_counts": table1_counts or None,
        "table1_breast": _values(breast_ci) or None,
        "table1_breast_intervals": breast_ci or None,
        "table1_breast_counts": breast_counts if breast_ci else None,
        "table1_by_density": density_table1 or None,
        "calibration": summary_calibration,
        "evaluated_under": evaluation_setting(trainer),
    }
    ci_rows, records = [], {}
    row_weights = ROW_WEIGHTS.get(weights["weights"], weights["weights"])
    printed = [f"Table I (classification, distinct test images)\n{table1_md}"]
    if breast_md is not None:
        printed.append(f"Table I, breast level (the mean of a breast's views)\n{breast_md}")
    if density_table1_md is not None:
        printed.append(f"Table I by breast density\n{density_table1_md}")
    if calibration_md is not None:
        printed.append(f"Calibration (Table I's probabilities)\n{calibration_md}")
    for subset in SUBSETS:
        subset_results = {m: r for (m, s), r in results.items() if s == subset}
        any_result = next(iter(subset_results.values()))
        if any_result.num_images == 0:
            log.error("the test set has no %s images: no detection figures for them", subset)
            continue
        if not any_result.tpr_defined:
            log.error("the test set has no mass boxes (%s images): TPR is undefined, cells read n/a", subset)
        summary[subset], rows, records[subset], row_text = write_subset(
            directory,
            train_method,
            subset,
            subset_results,
            fppi_budget,
            seed,
            iou_rule,
            validated,
            row_weights,
            groups,
            frozenset(getattr(pl_module, "tied_thresholds", ())),
        )
        printed.append(f"Table II row, {subset} images (TPR@FPPI, hit = IoU > {iou_rule:g})\n{row_text}")
        summary[f"{subset}_counts"] = {"images": any_result.num_images, "samples": any_result.num_samples}
        ci_rows += rows
    (directory / "table2_row_ci.csv").write_text(csv_text(CI_COLUMNS, ci_rows))
    makers: dict[str, Callable[[], tuple[dict[str, Any], str, str]] | None] = {
        "by_density": (lambda: by_density(results, densities, fppi_budget, seed, groups)) if densities else None,
        "by_finding_birads": (lambda: by_finding_birads(results, fppi_budget, seed, groups))
        if has_finding_birads(results)
        else None,
        "by_mass_size": (lambda: by_mass_size(results, fppi_budget, seed, groups)) if has_mass_sizes(results) else None,
    }
    for table in STRATUM_TABLES:  # each where the data names its strata
        summary[table.key] = None
        if (make := makers[table.key]) is not None:
            summary[table.key], markdown, csv = make()
            (directory / f"{table.stem}.md").write_text(markdown)
            (directory / f"{table.stem}.csv").write_text(csv)
            printed.append(f"{table.title}\n{markdown}")
    if why := why_no_sizes(results):
        log.info("%s", why)
    mass_images = {m: r for (m, s), r in results.items() if s == "mass"}
    summary["pointing_game"] = pointing_summary(mass_images, seed, groups)
    if summary["pointing_game"]:
        pointing_md, pointing_csv = pointing_text(summary["pointing_game"], train_method, unit)
        (directory / "pointing_game.md").write_text(pointing_md)
        (directory / "pointing_game.csv").write_text(pointing_csv)
        printed.append(f"Pointing game (mass images)\n{pointing_md}")
    summary["pointing_by_kind"] = pointing_by_kind(mass_images, densities, seed, groups)
    if summary["pointing_by_kind"]:
        by_kind_md, by_kind_csv = pointing_by_kind_text(summary["pointing_by_kind"], train_method, unit)
        (directory / "pointing_by_kind.md").write_text(by_kind_md)
        (directory / "pointing_by_kind.csv").write_text(by_kind_csv)
    every_image = {m: r for (m, s), r in results.items() if s == "all"}
    summary["wafroc"] = afroc_summary(every_image, seed, groups)
    if summary["wafroc"]:
        afroc_md, afroc_csv = afroc_text(summary["wafroc"], train_method, unit)
        (directory / "wafroc.md").write_text(afroc_md)
        (directory / "wafroc.csv").write_text(afroc_csv)
        plot_wafroc(every_image, summary["wafroc"], directory / "wafroc.png",
                    f"wAFROC, every test image, trained with {train_method}")  # fmt: skip
        printed.append(f"wAFROC figures of merit (all images)\n{afroc_md}")
    summary["wafroc_by_kind"] = afroc_by_kind(every_image, densities, seed, groups) if summary["wafroc"] else None
    if summary["wafroc_by_kind"]:
        by_kind_md, by_kind_csv = afroc_by_kind_text(summary["wafroc_by_kind"], train_method, unit)
        (directory / "wafroc_by_kind.md").write_text(by_kind_md)
        (directory / "wafroc_by_kind.csv").write_text(by_kind_csv)
    (directory / "detection.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    # --compare redraws these, and the study its intervals over seeds (per density too: each image's density)
    subsets = {s: {m: with_densities(r, densities) for m, r in methods.items()} for s, methods in records.items()}
    image_records = {"fppi_budget": fppi_budget, "bootstrap_seed": seed, "subsets": subsets}
    if table1.images:  # and --compare A:fusion B:fusion these: Table I's class, images and probabilities
        image_records[CLASSIFICATION] = {"class": names[0], **with_densities(table1.images, densities)}
    (directory / IMAGES_FILE).write_text(json.dumps(image_records))
    _log_to_wandb(trainer, directory, summary, ci_rows)
    checkpoint = summary["checkpoint"]
    what = f"{summary['weights']} {checkpoint['path']} (sha256 {checkpoint['sha256']}{epoch_text(checkpoint)})"
    under = summary["evaluated_under"]
    log.info("evaluated %s under precision %s, torch %s\n%s", what if checkpoint["path"] else summary["weights"],
             under["precision"], under["torch"], "\n".join(printed))  # fmt: skip
    log.info("test report (tables, intervals, detection.json, FROC plots) written to %s", directory)


def epoch_text(checkpoint: dict[str, Any]) -> str:
    """``, epoch 7 (0-based), val/wafroc/cam 0.550`` for a checkpoint whose record has its epoch, else nothing."""
    if "epoch" not in checkpoint:
        return ""
    scores = "".join(f", {monitor} {score:.3f}" for monitor, score in checkpoint.get("monitored", {}).items())
    return f", epoch {checkpoint['epoch']} (0-based){scores}"


def _log_to_wandb(trainer: Trainer, directory: Path, summary: dict[str, Any], ci_rows: list[list[str]]) -> None:
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        evaluated = {"evaluated_checkpoint": summary["checkpoint"], "evaluated_weights": summary["weights"]}
        logger.experiment.config.update(evaluated, allow_val_change=True)
        for table in ("table1", "table1_breast"):
            if table == "table1_breast" and not summary[table]:  # the data names no breasts
                continue
            rows = [[head] + list(values.values()) for head, values in summary[table].items()]
            logger.log_table(f"test/{table}", columns=["head", "accuracy", "auc", "tpr", "tnr"], data=rows)
            ci = [
                [h, k, v["value"], v["low"], v["high"]]
                for h, r in summary[f"{table}_intervals"].items()
                for k, v in r.items()
            ]
            logger.log_table(f"test/{table}_ci", columns=["head", "figure", "value", "low", "high"], data=ci)
        if summary["table1_by_density"]:
            data = [
                [density, row["studies"], row["images"], row["positive"], head, *(f["value"] for f in values.values())]
                for density, row in summary["table1_by_density"].items()
                for head, values in row["heads"].items()
            ]
            columns = ["density", "studies", "images", "positive", "head", *(k for k, _ in TABLE1_COLUMNS)]
            logger.log_table("test/table1_by_density", columns=columns, data=data)
        if calibration := summary["calibration"]:
            logger.log_table("test/calibration", columns=CALIBRATION_COLUMNS, data=calibration_rows(calibration))
            logger.log_image("test/reliability", [str(directory / "reliability.png")])
        data = [[s, m, f, float(v), float(lo), float(hi)] for s, m, f, v, lo, hi in ci_rows]
        logger.log_table("test/detection_ci", columns=CI_COLUMNS, data=data)
        for strata in STRATUM_TABLES:
            if summary[strata.key]:
                data = [
                    [subset, stratum, row["studies"], row["images"], row["masses"], method, c["tpr"], c["fppi"],
                     c["tpr_interval"]["low"], c["tpr_interval"]["high"]]
                    for subset, rows in summary[strata.key].items()
                    for stratum, row in rows.items()
                    for method, c in row["cells"].items()
                ]  # fmt: skip
                logger.log_table(f"test/{strata.stem}", columns=strata.columns, data=data)
        if pointing := summary["pointing_game"]:
            logger.log_table("test/pointing_game", columns=POINTING_COLUMNS, data=pointing_rows(pointing))
        if pointing_kinds := summary["pointing_by_kind"]:
            logger.log_table("test/pointing_by_kind", columns=POINTING_BY_KIND_COLUMNS,
                             data=pointing_by_kind_rows(pointing_kinds))  # fmt: skip
        if figures_of_merit := summary["wafroc"]:
            logger.log_table("test/wafroc", columns=AFROC_COLUMNS, data=afroc_rows(figures_of_merit))
            logger.log_image("test/wafroc_curve", [str(directory / "wafroc.png")])
        if by_kind := summary["wafroc_by_kind"]:
            logger.log_table("test/wafroc_by_kind", columns=AFROC_BY_KIND_COLUMNS, data=afroc_by_kind_rows(by_kind))
        for subset in SUBSETS:
            if subset in summary:
                cells = summary[subset]
                data = [[summary["train_saliency"]] + [c["cell"] for c in cells.values()]]
                logger.log_table(f"test/table2_{subset}", columns=["train"] + list(cells), data=data)
                logger.log_image(f"test/froc_{subset}", [str(directory / f"froc_{subset}.png")])
