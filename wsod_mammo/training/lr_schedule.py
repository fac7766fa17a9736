"""The learning-rate schedule GMICLitModule hands Lightning: stepped once an epoch, a ``ReduceLROnPlateau`` after
each validation, torch's batch schedules (``OneCycleLR``, ``CyclicLR``) after each optimizer step; refused or said
where it would work against the training (``mode: min`` on a figure that rises, a cosine schedule shorter than the
training, a one-cycle schedule of another length than the fit's optimizer steps)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from wsod_mammo.training.monitors import check_logged, check_mode

log = logging.getLogger(__name__)

#: Schedules torch defines per batch ("step should be called after a batch has been used for training"): stepped
#: once an epoch, a OneCycleLR sized in steps ended a 6-step fit at lr 8e-4 (max_lr 1e-3), its cycle not annealed.
BATCH_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


def scheduler_config(
    scheduler: Any, monitor: str, max_epochs: int | None, every: Any, optimizer_steps: float | None = None
) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry for ``scheduler`` watching ``monitor``, validation every ``every`` epochs
    (``check_val_every_n_epoch``); ``optimizer_steps``: the fit's (``Trainer.estimated_stepping_batches``: batches
    over ``accumulate_grad_batches``), which a ``OneCycleLR``'s ``total_steps`` should be."""
    _warn_if_cosine_restarts(scheduler, max_epochs)
    _check_plateau_mode(scheduler, monitor)
    _warn_if_one_cycle_length_differs(scheduler, optimizer_steps)
    interval = "step" if isinstance(scheduler, BATCH_SCHEDULERS) else "epoch"
    schedule = {"scheduler": scheduler, "monitor": monitor, "interval": interval}
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
        check_logged("model.scheduler: ReduceLROnPlateau with", "scheduler_monitor", monitor)


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


def _warn_if_one_cycle_length_differs(scheduler: Any, optimizer_steps: float | None) -> None:
    """A ``OneCycleLR`` is stepped at each optimizer step, that is every ``accumulate_grad_batches`` batches: a
    ``total_steps`` counted in batches, or for other ``max_epochs``, ends the cycle early (torch then raises at the
    next step, ending the fit) or leaves the learning rate high at the fit's end."""
    total = getattr(scheduler, "total_steps", None)
    if not isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) or total is None or optimizer_steps is None:
        return
    # not finite or -1: Lightning cannot count the batches (a data set without a length, no max_steps)
    if not math.isfinite(optimizer_steps) or optimizer_steps < 1 or int(optimizer_steps) == total:
        return
    steps = int(optimizer_steps)
    if total < steps:
        what = f"torch raises at optimizer step {total + 1} and the fit stops there"
    else:
        what = f"the fit ends {total - steps} steps before the cycle does, its learning rate not annealed"
    log.warning(
        "model.scheduler: OneCycleLR with total_steps %d, but the fit takes %d optimizer steps (batches per epoch "
        "over trainer.accumulate_grad_batches, times trainer.max_epochs): %s; set "
        "--model.scheduler.init_args.total_steps %d",
        total, steps, what, steps,
    )  # fmt: skip
