"""A test run's report logged to Weights & Biases: every table of ``detection.json`` as a W&B table and the plots
as images, under ``test/``, and the evaluated weights in the run's config, for each W&B logger of the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from wsod_mammo.detection.afroc_report import CSV_COLUMNS as AFROC_COLUMNS
from wsod_mammo.detection.afroc_report import afroc_rows
from wsod_mammo.detection.afroc_strata import CSV_COLUMNS as AFROC_BY_KIND_COLUMNS
from wsod_mammo.detection.afroc_strata import afroc_by_kind_rows
from wsod_mammo.detection.calibration import CSV_COLUMNS as CALIBRATION_COLUMNS
from wsod_mammo.detection.calibration import calibration_rows
from wsod_mammo.detection.pointing_report import CSV_COLUMNS as POINTING_COLUMNS
from wsod_mammo.detection.pointing_report import pointing_rows
from wsod_mammo.detection.pointing_strata import CSV_COLUMNS as POINTING_BY_KIND_COLUMNS
from wsod_mammo.detection.pointing_strata import pointing_by_kind_rows
from wsod_mammo.detection.report import SUBSETS, TABLE1_COLUMNS
from wsod_mammo.detection.table2_strata import STRATUM_TABLES
from wsod_mammo.training.table2_report import CI_COLUMNS, summary_row_label


def log_test_report(trainer: Trainer, directory: Path, summary: dict[str, Any], ci_rows: list[list[str]]) -> None:
    """``summary``: ``detection.json``'s content; ``ci_rows``: ``table2_row_ci.csv``'s rows; ``directory``: where
    the report's plots are."""
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        evaluated = {"evaluated_checkpoint": summary["checkpoint"], "evaluated_weights": summary["weights"]}
        if "coverage" in summary:  # a run's test of a few batches shows as such in W&B's runs table
            evaluated["evaluated_images"] = summary["coverage"]
        logger.experiment.config.update(evaluated, allow_val_change=True)
        _log_classification(logger, directory, summary)
        _log_detection(logger, directory, summary, ci_rows)


def _log_classification(logger: WandbLogger, directory: Path, summary: dict[str, Any]) -> None:
    """Table I (per image, per breast where the data names breasts, per breast density) and the calibration of its
    probabilities."""
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


def _log_detection(logger: WandbLogger, directory: Path, summary: dict[str, Any], ci_rows: list[list[str]]) -> None:
    """Table II's intervals and strata, the pointing game, the figures of merit (each where the report holds them)
    and Table II's cells with their FROC plots."""
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
            label = summary_row_label(summary["train_saliency"], cells, summary.get("weights", ""))
            data = [[label] + [c["cell"] for c in cells.values()]]
            logger.log_table(f"test/table2_{subset}", columns=["train"] + list(cells), data=data)
            logger.log_image(f"test/froc_{subset}", [str(directory / f"froc_{subset}.png")])
