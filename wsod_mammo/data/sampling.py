"""Epoch-keyed shuffling: the order and every augmentation draw depend only on (seed, epoch, position).

That makes a run resumed from ``last.ckpt`` see exactly the data an uninterrupted run would, with any number of
workers (persistent or not) and under DDP, where Lightning wraps this sampler and forwards ``set_epoch`` to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

SampleKey = tuple[int, int]  # (dataset index, augmentation seed)
#: The seeds a run takes (``seed_everything``, ``data.seed``, ``data.augmentation.seed``, ``wsod study --seeds``):
#: Lightning's ``seed_everything`` (numpy's range) refuses the others, and numpy's generators a negative one.
SEEDS = range(0, 2**32)


class EpochShuffleSampler(Sampler[SampleKey]):
    """Yields ``(index, augmentation_seed)`` in a permutation drawn from ``seed`` and the current epoch.

    The dataset receives the pair as its key and seeds its augmentation with the second element, so no random
    state lives in worker processes. Lightning calls ``set_epoch`` at the start of every epoch.
    """

    def __init__(self, size: int, seed: int, augmentation_seed: int) -> None:
        self.size = size
        self.seed = seed  # the order's stream
        self.augmentation_seed = augmentation_seed  # the per-sample draws' stream
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        # a stream of its own: another augmentation seed changes the draws, not the order
        generator = torch.Generator().manual_seed(self.augmentation_seed * 1_000_003 + self.epoch + 500_009)
        seeds = torch.randint(0, 2**31 - 1, (self.size,), generator=generator).tolist()
        return iter(zip(order, seeds, strict=True))
