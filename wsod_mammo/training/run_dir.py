"""One directory per run, for its config, tables, plots and overlays (never shared between runs)."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger


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
