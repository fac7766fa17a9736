"""One directory per run, for its config, tables, plots and overlays (never shared between runs)."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import warnings
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

#: The file that marks a folder as holding a test's report (written with it, at the test's end).
REPORT_MARK = "detection.json"

#: The trainers whose ``report_withheld`` has been said (one line for the report and the overlays).
_WITHHELD_SAID: weakref.WeakSet[Trainer] = weakref.WeakSet()


def report_withheld(trainer: Trainer) -> bool:
    """True under ``--trainer.fast_dev_run``, said once per trainer: Lightning writes no checkpoint and no log there,
    so the test writes no report and no overlays either (its logger a ``DummyLogger``, ``run_directory`` was the
    working directory, which received the whole report). Same on every rank: no collective call is skipped by one."""
    if not getattr(trainer, "fast_dev_run", False):
        return False
    if trainer.is_global_zero and trainer not in _WITHHELD_SAID:
        _WITHHELD_SAID.add(trainer)
        log.info("test: --trainer.fast_dev_run writes no test report and no overlays (as no checkpoint or log); "
                 "its figures are printed only")  # fmt: skip
    return True


def run_directory(trainer: Trainer) -> Path:
    """``save_dir/name/version`` of the first logger (for W&B: ``save_dir/project/run_id``), else the root dir.

    Lightning's own ``trainer.log_dir`` is the bare ``save_dir`` for W&B, which two runs would share. Call on every
    rank: the path is broadcast from rank 0 (other ranks have no W&B run id).
    """
    path: str | None = None
    if trainer.is_global_zero:
        logger = trainer.loggers[0] if trainer.loggers else None
        if isinstance(logger, (TensorBoardLogger, CSVLogger)):
            path = logger.log_dir
        elif isinstance(logger, WandbLogger):
            path = os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), str(logger.version))
        elif logger is not None and logger.save_dir is not None:
            path = os.path.join(logger.save_dir, str(logger.name or ""), str(logger.version or ""))
        else:
            path = trainer.default_root_dir
    path = trainer.strategy.broadcast(path)
    assert path is not None  # every branch above sets it on rank 0, and every rank gets rank 0's
    directory = Path(path)
    if trainer.is_global_zero:
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def report_directory(trainer: Trainer, say: bool = False) -> Path:
    """Where a test writes its report and overlays: ``run_directory``, or where that holds an earlier test's report
    (``trainer.test`` without a logger: every test of a script gets ``default_root_dir``), its first
    ``test.<k>`` without one (``say``: said in the log). A second ``trainer.test`` replaced the first's report
    there, silently. Call on every rank, before the report is written (its callbacks all find the same folder)."""
    directory = run_directory(trainer)
    path: str | None = None
    if trainer.is_global_zero:
        path = str(directory)
        if (directory / REPORT_MARK).exists():
            free = (directory / f"test.{k}" for k in itertools.count(1))
            path = str(next(folder for folder in free if not (folder / REPORT_MARK).exists()))
            if say:
                log.warning("test: %s holds an earlier test's report; this one is written to %s", directory, path)
            Path(path).mkdir(parents=True, exist_ok=True)
    path = trainer.strategy.broadcast(path)
    assert path is not None  # set on rank 0, and every rank gets rank 0's
    return Path(path)


def logger_folders(loggers: Iterable[Any]) -> list[dict[str, str]]:
    """Each CSV or TensorBoard logger's run folder (``{"logger", "save_dir", "name", "version"}``), for a checkpoint
    to record: ``wsod fit --ckpt_path`` gives every such logger of a list the version it logged into, where a
    resumed fit went on in ``version_<k+1>`` (its metrics cut in two) for all but the first (whose run folder holds
    the checkpoints)."""
    return [
        {
            "logger": type(logger).__name__,
            "save_dir": str(logger.save_dir),
            "name": str(logger.name or ""),
            "version": logger.version if isinstance(logger.version, str) else f"version_{logger.version}",
        }
        for logger in loggers
        if isinstance(logger, (CSVLogger, TensorBoardLogger))
    ]


def resumed_step(checkpoint: dict[str, Any]) -> int | None:
    """The logging step a fit resumed from ``checkpoint`` logs its first row at (Lightning's ``_batches_that_stepped``,
    else ``global_step``): every row an earlier fit logged at it or later is logged again."""
    loop = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_loop.state_dict") or {}
    step = loop.get("_batches_that_stepped", checkpoint.get("global_step"))
    return step if isinstance(step, int) else None


def keep_csv_metrics(trainer: Trainer, step: int | None = None) -> None:
    """A CSV logger going on in a run folder that holds its ``metrics.csv`` (a resumed fit, ``continue_run``) keeps
    the rows there: Lightning's writer deletes the file when it is made ("Previous log files in this directory will
    be deleted"), so the epochs before the resume were lost. Rows at ``step`` (``resumed_step`` of the checkpoint)
    or later are dropped: the fit logs those steps again (a fit cut short in epoch 2, resumed from epoch 1's
    checkpoint), and a plot of the file drew them twice. Call before the fit (Lightning makes the writer before
    any hook), on rank 0 (the other ranks' loggers write nothing; before the fit, DDP's ranks are known from the
    environment alone)."""
    if not trainer.is_global_zero or getattr(rank_zero_only, "rank", 0) != 0:
        return
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger) or logger._experiment is not None:
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        rows = path.read_bytes()
        with path.open(newline="", encoding="utf-8") as file:
            header, *lines = list(csv.reader(file)) or [[]]
        if step is not None and "step" in header:
            kept = [line for line in lines if not _logged_from(line, header.index("step"), step)]
            if len(kept) < len(lines):  # written as Lightning's writer does (csv's default dialect)
                text = io.StringIO()
                csv.writer(text).writerows([header, *kept])
                rows = text.getvalue().encode("utf-8")
        with warnings.catch_warnings():  # the files it says it deletes are kept
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            writer = logger.experiment
        path.write_bytes(rows)
        writer.metrics_keys = list(header)  # new keys rewrite the file with them added (Lightning's writer)


def _logged_from(line: list[str], column: int, step: int) -> bool:
    """Whether a metrics.csv row was logged at ``step`` or later (a row without a readable step is kept)."""
    try:
        return float(line[column]) >= step
    except (IndexError, ValueError):
        return False
