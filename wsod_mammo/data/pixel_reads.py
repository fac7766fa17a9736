"""``pixel_reads: main``: the cache's pixels read by the main process straight into the (pinned) batch.

With ``augment_on: device`` (and in evaluation with ``standardize_on: device``) the workers no longer change the
pixels: they draw the augmentation and move the boxes, and the cache's uint16 image is shipped as it is. Shipped
through the workers, each image is copied three times on the host: into the worker's memory, into a fresh
shared-memory segment, and, by the DataLoader's single pin-memory thread, out of that freshly mapped segment into
pinned memory. That last copy runs on one core for every batch of every worker, so it caps the loader however many
workers there are (``bench_loader.py``'s hand-over rows). Here a worker sends a :class:`PixelRef` (file, byte
offset, shape) per image instead, and the batch's :class:`PixelBatch` is read, in one copy, with a few threads from
the page cache into its destination: pinned memory from CUDA's caching host allocator when the pin-memory thread
calls ``pin_memory()``, plain memory in ``VinDrMammoDataModule.on_before_batch_transfer`` where nothing pins.

With ``copy_ahead`` (the DataModule's option of that name) the pin-memory thread also starts the copy to the GPU,
on a stream of its own, and hands over :class:`StagedPixels`. Copied in the training step, the batch's 68 MB
(six 2944 x 1920 uint16 images) go in stream order after the previous step's kernels and before the next's, the
GPU computing nothing meanwhile; copied ahead, the copy engine moves them while the previous step computes.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_pool: ThreadPoolExecutor | None = None
_copy_streams = threading.local()  # the stream each thread (the pin-memory thread) copies ahead on, per device


def _read_pool() -> ThreadPoolExecutor:
    """Threads that read images in parallel (file reads release the GIL); one pool per process, made on first use."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="wsod_pixel_read")
    return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads: it makes its own pool if it ever reads


os.register_at_fork(after_in_child=_forget_pool)


@dataclass(frozen=True)
class PixelRef:
    """Where a cached ``(H, W)`` uint16 image lies: ``path``, the byte ``offset`` of its pixels, its ``shape``."""

    path: str
    offset: int
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 2


def pixel_ref(image: np.ndarray) -> PixelRef | None:
    """The file location of a whole memory-mapped little-endian uint16 NPY image (``read_cached(raw=True)``), or
    None for anything that is not one (a decoded DICOM, a PNG cache image, a slice of a mapped file)."""
    if not isinstance(image, np.memmap) or image.filename is None or image.ndim != 2:
        return None
    if image.dtype != np.dtype("<u2") or not image.flags.c_contiguous:
        return None
    ref = PixelRef(str(image.filename), int(image.offset), (int(image.shape[0]), int(image.shape[1])))
    return ref if os.path.getsize(ref.path) == ref.offset + ref.nbytes else None


def _read_into(ref: PixelRef, destination: np.ndarray) -> None:
    """Read ``ref``'s pixels into the C-contiguous uint16 ``destination`` of its shape."""
    view = destination.data.cast("B")
    with open(ref.path, "rb", buffering=0) as file:
        file.seek(ref.offset)
        done = 0
        while done < ref.nbytes:
            count = file.readinto(view[done:])
            if not count:
                raise ValueError(
                    f"{ref.path}: the cached image ends after {done} of its {ref.nbytes} bytes (offset {ref.offset}, "
                    f"shape {ref.shape}); the file changed after the worker read its header: prepare the cache again"
                )
            done += count


class StagedPixels:
    """A batch's images on the GPU, copied there on the pin-memory thread's own stream (``copy_ahead``).

    Not a tensor and without ``to()``, so Lightning's transfer leaves it alone; ``ready()`` gives the tensor to the
    stream that uses it, after the copy, without a host sync."""

    def __init__(self, tensor: Tensor, copied: torch.cuda.Event) -> None:
        self.tensor, self.copied = tensor, copied

    def ready(self) -> Tensor:
        """The ``(N, 1, H, W)`` uint16 batch for the current stream: the stream waits for the copy on the GPU, and
        the caching allocator keeps the memory from the copy stream until this stream's queued work is done."""
        stream = torch.cuda.current_stream(self.tensor.device)
        stream.wait_event(self.copied)
        self.tensor.record_stream(stream)
        return self.tensor


def _copy_stream() -> torch.cuda.Stream:
    """This thread's copy stream on the current device, made on first use."""
    device = torch.cuda.current_device()
    streams = _copy_streams.__dict__.setdefault("by_device", {})
    if device not in streams:
        streams[device] = torch.cuda.Stream(device)
    return streams[device]


class PixelBatch:
    """A batch's images, ``(1, H, W)`` each: :class:`PixelRef` to read, or uint16 tensors (images the worker had to
    decode, e.g. a DICOM missing from the cache). ``read`` makes the ``(N, 1, H, W)`` uint16 batch. With
    ``copy_ahead``, ``pin_memory`` also starts its copy to the GPU (:class:`StagedPixels`)."""

    def __init__(self, items: list[PixelRef | Tensor], copy_ahead: bool = False) -> None:
        sizes = [tuple(item.shape) if isinstance(item, PixelRef) else tuple(item.shape[-2:]) for item in items]
        shapes = set(sizes)
        if len(shapes) != 1:
            listed = [f"{item.path if isinstance(item, PixelRef) else 'a decoded image'} {size[0]}x{size[1]}"
                      for item, size in zip(items, sizes, strict=True)]  # fmt: skip
            raise ValueError(f"pixel_reads: images of one batch differ in size: {'; '.join(listed)}")
        self.items, (self.height, self.width) = list(items), shapes.pop()
        self.copy_ahead = copy_ahead

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.items), 1, self.height, self.width

    def read(self, out: Tensor | None = None, pin: bool = False) -> Tensor:
        """The ``(N, 1, H, W)`` uint16 batch, read into ``out`` (reused buffers) or a new tensor, pinned if ``pin``."""
        if out is None:
            out = torch.empty(self.shape, dtype=torch.uint16, pin_memory=pin)
        elif tuple(out.shape) != self.shape or out.dtype != torch.uint16 or not out.is_contiguous():
            raise ValueError(f"PixelBatch.read: out must be a contiguous uint16 {self.shape} tensor, got "
                             f"{out.dtype} {tuple(out.shape)}")  # fmt: skip
        pixels = out.numpy()

        def one(index: int) -> None:
            item = self.items[index]
            if isinstance(item, PixelRef):
                _read_into(item, pixels[index, 0])
            else:
                out[index].copy_(item.reshape(1, self.height, self.width))

        list(_read_pool().map(one, range(len(self.items))))  # list(): the first error is raised here
        return out

    def pin_memory(self, device: str | None = None) -> Tensor | StagedPixels:
        """Called by the DataLoader's pin-memory thread (which runs on the training GPU): read straight into pinned
        memory (the one host copy left) and, with ``copy_ahead``, start the copy to the GPU on this thread's stream.
        The pinned memory may be released at once: the caching host allocator reuses it only after the copy."""
        if not torch.cuda.is_available():
            return self.read()
        pinned = self.read(pin=True)
        if not self.copy_ahead:
            return pinned
        stream = _copy_stream()
        with torch.cuda.stream(stream):
            on_device = pinned.to(torch.cuda.current_device(), non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        return StagedPixels(on_device, copied)


def read_pixel_batch(batch: object) -> object:
    """``batch`` with a :class:`PixelBatch` image read into a tensor in this process (unpinned); else as it is."""
    if isinstance(batch, dict) and isinstance(batch.get("image"), PixelBatch):
        return batch | {"image": batch["image"].read()}
    return batch


def staged_pixels_ready(batch: dict) -> dict:
    """``batch`` with :class:`StagedPixels` images handed to the current stream (``copy_ahead``); else as it is."""
    if isinstance(batch.get("image"), StagedPixels):
        return batch | {"image": batch["image"].ready()}
    return batch
