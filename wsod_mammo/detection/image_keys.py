"""Counting each distinct image once: ``image_id`` keys and first-occurrence selection for metric states.

Evaluation sees an image more than once in two cases: Lightning's ``DistributedSampler`` pads the last batch of
every rank by repeating samples (5 images on 2 ranks are evaluated as 6), and ``selection: paper`` repeats an
image once per Mass finding row. Metric states therefore carry, per sample, a 64-bit key of its ``image_id``
(the same on every rank: a hash, not Python's salted ``hash``) and an occurrence number unique across ranks;
``compute`` keeps the first occurrence of each key, so the figures are those of the distinct images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

RANK_STRIDE = 1 << 40  # occurrence = rank * RANK_STRIDE + local counter


def image_keys(image_ids: Sequence[str], device: torch.device | str = "cpu") -> Tensor:
    """``(N,)`` int64 keys of ``image_ids``: the first 8 bytes of BLAKE2b, stable across processes and runs."""
    keys = [
        int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little", signed=True)
        for i in image_ids
    ]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def process_rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


_next_occurrence = [0]


def occurrences(count: int, device: torch.device | str = "cpu") -> Tensor:
    """``(count,)`` int64 occurrence numbers, increasing within this process and unique across ranks and metrics
    (one process-wide counter, so states merged with ``merge_state`` never collide)."""
    start = _next_occurrence[0]
    _next_occurrence[0] += count
    base = process_rank() * RANK_STRIDE + start
    return torch.arange(base, base + count, dtype=torch.int64, device=device)


def sample_keys(
    count: int, image_ids: Sequence[str] | None, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(keys, occurrence)`` of ``count`` samples about to enter a metric's states: each sample's ``image_id`` key,
    or without ids a distinct negative key per sample (``-1 - occurrence``; hashes are as likely negative, but the
    ids and the occurrence-derived keys of one metric never mix), and its occurrence number."""
    occurrence = occurrences(count, device)
    return (-1 - occurrence if image_ids is None else image_keys(image_ids, device)), occurrence


def first_occurrence_mask(keys: Tensor, occurrence: Tensor) -> Tensor:
    """``(N,)`` bool: True for the entry with the smallest occurrence number of each distinct key.

    Rank 0's occurrences come first, so under DDP an image padded onto another rank is dropped there.
    """
    if keys.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=keys.device)
    order = torch.argsort(occurrence, stable=True)
    sorted_keys = keys[order]
    by_key = torch.argsort(sorted_keys, stable=True)  # within a key, occurrence order is kept
    grouped = sorted_keys[by_key]
    first = torch.ones_like(grouped, dtype=torch.bool)
    first[1:] = grouped[1:] != grouped[:-1]
    mask = torch.zeros_like(first)
    mask[order[by_key[first]]] = True
    return mask
