"""Table I of a test run: accuracy, AUC, TPR and TNR of each head with 95% bootstrap intervals, over the distinct
test images, their breasts and each breast density's images, and the calibration of its probabilities; computed
from the test metrics' states and written as ``table1*.{md,csv}``, ``calibration.{md,csv}``, ``reliability.png``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import Tensor
from torchmetrics import MetricCollection

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.detection.bootstrap import classification_figures, groups_of, interval, interval_text, resample_weights
from wsod_mammo.detection.breasts import breast_predictions
from wsod_mammo.detection.calibration import calibration_summary, calibration_text, plot_reliability
from wsod_mammo.detection.report import MISSING, TABLE1_COLUMNS, _markdown, csv_text, table1, write_table
from wsod_mammo.detection.strata import strata_of
from wsod_mammo.training.classification import HEADS, KeyedClassificationMetric

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule


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
    return _write_table1_files(directory, "table1_breast", ci, unit, preface)


def _write_table1_files(directory: Path, stem: str, ci: dict[str, dict[str, Any]], unit: str, preface: str) -> str:
    """``<stem>.{md,csv}`` and ``<stem>_ci.csv`` of a Table I (``_table1_text``); returns the markdown."""
    md, csv, ci_csv = _table1_text(ci, unit, preface)
    write_table(directory / f"{stem}.md", md, csv)
    write_text_atomic(directory / f"{stem}_ci.csv", ci_csv)
    return md


def _table1_preface(counts: dict[str, int], names: list[str]) -> str:
    """The lines under Table I: its counts, and which class it rates when the model has several."""
    preface = ""
    if counts:
        images, positive = counts["images"], counts["positive"]
        preface = f"\n{images} distinct test images: {positive} positive, {images - positive} negative.\n"
    if len(names) > 1:  # Table I rates the first output; Lightning's test/<head>/* scalars average every class
        preface = (
            f"\nTable I rates the {names[0]} output, the first of the model's {len(names)} classes "
            f"({', '.join(names)}): positive means with {names[0]}. The test/<head>/* figures Lightning logs (the "
            f"terminal's table, W&B) are the macro mean over the {len(names)} classes.\n" + preface
        )
    return preface


def write_table1(
    directory: Path, table: Table1Figures, unit: str, names: list[str], train_method: str, seed: int
) -> tuple[dict[str, Any], list[str]]:
    """Table I's files (per image; per breast and per density where the data names them) and the calibration of
    its first class's probabilities (``names``: the model's classes); returns ``detection.json``'s Table I entries
    and the terminal's sections. ``unit``: what the bootstrap draws, as the intervals' note names it."""
    table1_md = _write_table1_files(directory, "table1", table.rows, unit, _table1_preface(table.counts, names))
    printed = [f"Table I (classification, distinct test images)\n{table1_md}"]
    if table.breast_rows and table.breast_counts:
        breast_md = _write_breast_table1(directory, table.breast_rows, table.breast_counts, unit, names[0])
        printed.append(f"Table I, breast level (the mean of a breast's views)\n{breast_md}")
    if table.density_rows:
        density_md, density_csv = table1_by_density_text(table.density_rows, unit, names[0])
        write_table(directory / "table1_by_density.md", density_md, density_csv)
        printed.append(f"Table I by breast density\n{density_md}")
    calibration = calibration_summary(table.images, seed)
    if calibration:
        calibration_md, calibration_csv = calibration_text(calibration, unit, names[0])
        write_table(directory / "calibration.md", calibration_md, calibration_csv)
        plot_reliability(calibration, directory / "reliability.png",
                         f"Reliability of the {names[0]} probability, trained with {train_method}")  # fmt: skip
        printed.append(f"Calibration (Table I's probabilities)\n{calibration_md}")
    entries = {
        "table1_class": names[0],
        "table1": _values(table.rows),
        "table1_intervals": table.rows,
        "table1_counts": table.counts or None,
        "table1_breast": _values(table.breast_rows) or None,
        "table1_breast_intervals": table.breast_rows or None,
        "table1_breast_counts": table.breast_counts if table.breast_rows else None,
        "table1_by_density": table.density_rows or None,
        "calibration": calibration,
    }
    return entries, printed
