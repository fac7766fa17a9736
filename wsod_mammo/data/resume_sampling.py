"""A fit resumed from a checkpoint saved within an epoch goes on with that epoch's order where it stopped.

``last.ckpt`` saved every N steps (``every_n_train_steps``, ``train_time_interval``: what long epochs call for) can
stop a fit within an epoch. Lightning then continues that epoch at the batch after the saved one, but a sampler keeps
no position, so the epoch's order started again: its first batches were trained twice and as many of its last ones
never (Lightning warned, deep in the log), and the fit ended with other weights than an uninterrupted one. The
samplers here leave out the samples of the batches the resumed epoch had trained (under DDP, this process's share
of them) and pass every later epoch through; their length stays the whole epoch's, as Lightning counts the resumed
epoch's batches from the saved one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import Sampler

from wsod_mammo.data.sampling import EpochShuffleSampler, SampleKey


class ResumeWithinEpoch(Sampler[SampleKey]):
    """``inner``'s samples, but the first ``skip`` of epoch ``epoch``'s (one process)."""

    def __init__(self, inner: EpochShuffleSampler, skip: int, epoch: int) -> None:
        self.inner, self.skip, self.resumed_epoch, self.epoch = inner, skip, epoch, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[SampleKey]:
        return _after(iter(self.inner), self.skip if self.epoch == self.resumed_epoch else 0)


class ShardResumeWithinEpoch(DistributedSamplerWrapper):
    """This process's share of ``inner``'s samples (Lightning's sharding wrapper, which Lightning leaves in place as
    a ``DistributedSampler``), but the first ``skip`` of epoch ``epoch``'s."""

    def __init__(self, inner: EpochShuffleSampler, skip: int, epoch: int, **shards: Any) -> None:
        super().__init__(inner, shuffle=False, **shards)
        self.skip, self.resumed_epoch = skip, epoch
        self.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        return _after(super().__iter__(), self.skip if self.epoch == self.resumed_epoch else 0)


def _after(samples: Iterator[Any], skip: int) -> Iterator[Any]:
    return itertools.islice(samples, skip, None) if skip else samples


def stopped_epoch_as_unfinished(checkpoint: dict[str, Any]) -> None:
    """A checkpoint of an epoch that ``trainer.max_steps`` stopped within it (saved in that epoch's end hooks) is
    recorded as one saved within the epoch (Lightning's ``RESTARTED_MID_EPOCH``), so that a fit resumed from it goes
    on after the batches the epoch had trained. Lightning records that epoch processed: resumed, it trained the
    epoch's remaining batches drawn from the next epoch's order (images the epoch had trained, again, and never its
    last ones), and shuffled every later epoch as the one after it. ``checkpoint`` is changed in place."""
    fit = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs, batches = fit.get("epoch_progress"), fit.get("epoch_loop.batch_progress")
    if not isinstance(epochs, dict) or not isinstance(batches, dict) or batches.get("is_last_batch", True):
        return
    if not int((batches.get("current") or {}).get("processed", 0)):
        return  # stopped before its first batch: resumed at the epoch's start as it is
    counts = [epochs.get(part) for part in ("total", "current")]
    if all(
        isinstance(c, dict) and c.get("ready") == c.get("started") == c.get("processed") == c.get("completed", 0) + 1
        for c in counts
    ):
        for count in counts:
            count["processed"] -= 1  # type: ignore[index]  # checked to be a dict above
