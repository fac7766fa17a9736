"""The learning-rate schedule GMICLitModule hands Lightning: stepped once an epoch, a ``ReduceLROnPlateau`` after
each validation; refused or said where it would work against the training (``mode: min`` on a figure that rises,
a cosine schedule shorter than the training)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from wsod_mammo.training.monitors import check_mode

log = logging.getLogger(__name__)


def scheduler_config(scheduler: Any, monitor: str, max_epochs: int | None, every: Any) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry for ``scheduler`` watching ``monitor``, validation every ``every`` epochs
    (``check_val_every_n_epoch``)."""
    _warn_if_cosine_restarts(scheduler, max_epochs)
    _check_plateau_mode(scheduler, monitor)
    schedule = {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and isinstance(every, int) and every > 1:
        # it steps on a validation figure: after each validation, not after the epochs without one (Lightning
        # stopped the fit there, "ReduceLROnPlateau conditioned on metric ... which is not available")
        schedule["frequency"] = every
    return schedule


def _check_plateau_mode(scheduler: Any, monitor: str) -> None:
    """``ReduceLROnPlateau`` defaults to ``mode: min``: on the default monitor, an AUROC, it would cut the learning
    rate whenever the model stopped getting worse, that is while it improved."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        check_mode("model.scheduler: ReduceLROnPlateau with", scheduler.mode, "scheduler_monitor", monitor,
                   "--model.scheduler.mode max")  # fmt: skip


def _warn_if_cosine_restarts(scheduler: Any, max_epochs: int | None) -> None:
    """A cosine schedule shorter than the training (``--trainer.max_epochs`` raised, ``T_max`` left as the config's)
    climbs back to the full learning rate after ``T_max`` epochs instead of staying at its end: say so."""
    t_max = getattr(scheduler, "T_max", None)
    if (
        isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
        and max_epochs
        and t_max is not None
        and 0 < t_max < max_epochs
    ):
        log.warning(
            "model.scheduler: CosineAnnealingLR with T_max %d < trainer.max_epochs %d: the learning rate climbs back "
            "up after epoch %d; set --model.scheduler.init_args.T_max %d to decay over the whole training",
            t_max, max_epochs, t_max, max_epochs,
        )  # fmt: skip
