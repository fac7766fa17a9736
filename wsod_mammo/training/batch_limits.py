"""The option a user gave that cut validation to its first batches, for the warnings that say so."""

from __future__ import annotations

from typing import Any


def val_limit_option(trainer: Any) -> str:
    """``--trainer.<option> <value>`` that set ``trainer.limit_val_batches``: Lightning sets it from
    ``overfit_batches`` and ``fast_dev_run`` too, and the warnings named ``--trainer.limit_val_batches 2`` for a
    ``--trainer.overfit_batches 2`` the user gave (an option absent from their command and config)."""
    fast = getattr(trainer, "fast_dev_run", False)
    if fast:
        return f"--trainer.fast_dev_run {str(fast).lower()}"
    overfit = getattr(trainer, "overfit_batches", 0)
    if overfit:
        return f"--trainer.overfit_batches {overfit}"
    return f"--trainer.limit_val_batches {getattr(trainer, 'limit_val_batches', 1.0)}"
