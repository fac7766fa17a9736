"""Divergence: a model whose loss or probabilities became NaN or infinite, said where it happened.

A diverged run used to end in ``binary_cross_entropy``'s "all elements of input should be between 0 and 1" (a
device-side assertion on CUDA) with a long traceback, and a checkpoint written before that could hold the diverged
weights. Reading a loss on the host every step would synchronize the device, which the training step avoids
(tests/test_sync_free.py), so the first bad step is kept on the device and read where the run reads anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

#: the first bad step's value while there is none: the lowest of several processes' steps is the first
_NONE = 2**62


class TrainingDivergedError(RuntimeError):
    """The model's loss or probabilities are NaN or infinite: its figures and weights mean nothing from there."""


class DivergenceWatch:
    """The first global step whose training loss was not finite, kept on the device (no synchronization per step)."""

    def __init__(self) -> None:
        self._first_bad: Tensor | None = None

    def update(self, loss: Tensor, step: int) -> None:
        """Note ``loss`` of global step ``step``; a device operation only."""
        bad = ~torch.isfinite(loss.detach())
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), _NONE, dtype=torch.long, device=loss.device)
        self._first_bad = torch.where(bad, torch.clamp(self._first_bad, max=step), self._first_bad)

    def first_bad_step(
        self, reduce_min: Callable[[Tensor], Tensor] | None = None, device: torch.device | str = "cpu"
    ) -> int | None:
        """The first step with a non-finite loss (over every process, with ``reduce_min``), None if there was none.
        Synchronizes: call it where the run synchronizes anyway. Every process must call it when one does."""
        none = torch.full((), _NONE, dtype=torch.long, device=device)
        value = self._first_bad if self._first_bad is not None else none
        if reduce_min is not None:
            value = reduce_min(value.clone())
        step = int(value)
        return None if step >= _NONE else step


def count_nonfinite_images(heads: Sequence[Tensor]) -> Tensor:
    """How many images (rows) have a NaN or infinite probability in any of ``heads``, as a device scalar."""
    finite = torch.stack([torch.isfinite(h.detach()).flatten(1).all(dim=1) for h in heads]).all(dim=0)
    return (~finite).sum()


def diverged_training_message(first_step: int, epoch: int, lr: float | None, kept: Sequence[str]) -> str:
    """What the user reads when the training loss went NaN or infinite: where, and what to change."""
    lr_text = f", {lr:g} now" if lr is not None else ""
    kept_text = (
        f"; the checkpoints written before it are kept ({', '.join(kept)})" if kept else "; no checkpoint was written"
    )
    return (
        f"training diverged: the loss was NaN or infinite at step {first_step} (epoch {epoch}), and no checkpoint "
        f"was written from it{kept_text}. Lower the learning rate "
        f"(--model.optimizer.init_args.lr{lr_text}) or clip the gradients (--trainer.gradient_clip_val 1.0) and fit "
        "again"
    )


def diverged_evaluation_message(stage: str, count: int, checkpoint: str | Path | None, fitting: bool) -> str:
    """What the user reads when a model gives NaN or infinite probabilities in validation or test."""
    what = {"validate": "validation", "sanity_check": "validation", "test": "test"}.get(stage, stage)
    head = f"the model gave NaN or infinite probabilities for {count} {what} image(s)"
    if fitting:
        return f"training diverged: {head}, and no checkpoint was written from it"
    weights = f"the weights of {checkpoint}" if checkpoint else "the model's weights"
    outcome = "nothing was trained" if stage == "sanity_check" else "nothing was reported"
    return f"{head}: {weights} give no usable figures (their training diverged?); {outcome}"
