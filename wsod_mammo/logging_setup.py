"""Terminal logging for the ``wsod`` command: the package's INFO lines shown, other libraries' tips and known
harmless warnings dropped.

The package logs where its outputs go (run folder, checkpoints, reports, predictions), the dataset's counts and
when synthetic data is written, at INFO under the ``wsod_mammo`` logger; Python's default (WARNING, no handler)
would hide all of it. Only the process of global rank 0 prints INFO, so DDP workers do not repeat every line.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

PACKAGE_LOGGER = "wsod_mammo"
# Loggers through which Lightning's rank_zero_info advertises other products ("💡 Tip: ... litlogger/litmodels").
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)

# Warnings the user cannot act on, as (message regex, category):
# - Lightning 2.6's pytree helper constructs torch's deprecated LeafSpec (a FutureWarning on every fit since torch
#   2.14; Lightning's to fix, not the user's);
# - under DDP Lightning advises `sync_dist=True` for every figure the DetectionMetrics callback logs (detection,
#   pointing game, (w)AFROC, breast-level AUROC: about 50 lines per validation or test): those figures are computed
#   from metric states already gathered from every process, so they are the same on all ranks and averaging them
#   again would change nothing;
# - under DDP `wsod validate` and `wsod test` were told to run on one device, since Lightning's DistributedSampler
#   pads the last batches with repeated images: every figure, table and report counts each image once (its
#   `image_id` key, detection/image_keys.py), so the padding changes nothing;
# - a fit in mixed precision (bf16-mixed: configs/trainer/gpu.yaml, ddp.yaml, gmic_vindr.yaml) was told its model
#   size "will not be accurate. Using 32 bits instead": mixed precision keeps the weights in float32, so 32 bits is
#   their size (Lightning's model summary knows only the *-true precisions).
HARMLESS_WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"It is recommended to use `self\.log\('((val|test)/(detection|pointing|wafroc|afroc)|test/breast)/", Warning),
    (r"Using `DistributedSampler` with the dataloaders\. During `trainer\.(validate|test)\(\)`", Warning),
    (r"Precision (bf16|16)-mixed is not supported by the model summary", UserWarning),
)


class DropAdvertisements(logging.Filter):
    """Drops Lightning's product tips (litlogger, litmodels); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith("💡 Tip")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a redirected or captured stderr included)."""

    _wsod = True  # marks the package's handler (getattr, not isinstance: a reloaded module has another class)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """While a progress bar shows (Lightning's, on stdout: the terminal mixes both), the line goes through
        ``tqdm.write``, which clears the bars, writes it on a line of its own and draws them again; written
        straight, it was glued to the bar's line ("Testing: ... ?it/s][wsod] cam: its threshold ...")."""
        from tqdm import tqdm

        # a DataLoader worker forked from the process holds copies of its bars: it must not draw them again
        if not getattr(tqdm, "_instances", None) or multiprocessing.parent_process() is not None:
            super().emit(record)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # as StreamHandler.emit: a failing write is reported, never raised into the run
            self.handleError(record)


def _global_rank() -> int:
    """This process's rank by the environment, 0 or not: ``RANK`` (torchrun's), else a ``LOCAL_RANK`` not 0 (the
    processes Lightning starts itself), else ``SLURM_PROCID``. A local rank not 0 is never global rank 0: the
    processes Lightning started in a SLURM shell (``srun --pty bash``, ``salloc``: SLURM_JOB_NAME bash, which Lightning
    does not take for SLURM) inherit its SLURM_PROCID 0, and the second said every line the first did."""
    if os.environ.get("RANK", "").isdigit():
        return int(os.environ["RANK"])
    local = int(os.environ["LOCAL_RANK"]) if os.environ.get("LOCAL_RANK", "").isdigit() else 0
    if local == 0 and os.environ.get("SLURM_PROCID", "").isdigit():
        return int(os.environ["SLURM_PROCID"])
    return local


def configure_logging(level: int = logging.INFO) -> None:
    """Attach one stderr handler to the package logger (idempotent), silence Lightning's product tips and the
    ``HARMLESS_WARNINGS`` (by message, so every other warning still shows).

    Non-zero ranks log at WARNING only. The handler is the package's own: the root logger and the user's
    configuration of other loggers are left alone (records still propagate, so pytest's caplog sees them).
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    if not any(getattr(h, "_wsod", False) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[wsod] %(message)s"))
        package.addHandler(handler)
    package.setLevel(level if _global_rank() == 0 else logging.WARNING)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropAdvertisements) for f in logger.filters):
            logger.addFilter(DropAdvertisements())
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def package_log_level() -> int | None:
    """The level ``configure_logging`` gave the package logger in this process; None when it was not called (a
    library user's own logging is theirs to set up)."""
    package = logging.getLogger(PACKAGE_LOGGER)
    return package.level if any(getattr(h, "_wsod", False) for h in package.handlers) else None


@contextmanager
def said_by_rank_zero(rank_zero: bool | None = None) -> Iterator[None]:
    """The package's warnings within said by one process of a DDP run, not once a process: Lightning starts each
    further process by running the command line again, so the checks before a run (and the model's set-up, the same
    everywhere) said each warning once a rank. ``rank_zero``: whether this process speaks (None: global rank 0 by the
    environment, as the launched processes have it before any trainer exists). Errors still show everywhere."""
    if rank_zero is None:
        rank_zero = _global_rank() == 0
    package = logging.getLogger(PACKAGE_LOGGER)
    level = package.level
    if not rank_zero:
        package.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package.setLevel(level)
