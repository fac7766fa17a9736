"""Needs CUDA. `pixel_reads: main` reads a batch straight into pinned memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsod_mammo.data.pixel_reads import PixelBatch, pixel_ref


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_the_pin_memory_thread_reads_into_pinned_memory(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.uint16).reshape(3, 4))
    ref = pixel_ref(np.load(tmp_path / "a.npy", mmap_mode="r"))
    pinned = PixelBatch([ref, ref]).pin_memory()
    assert pinned.is_pinned() and pinned.shape == (2, 1, 3, 4)
