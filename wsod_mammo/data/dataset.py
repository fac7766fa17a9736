"""What runs in the DataLoader workers: the dataset, the collate function and the worker's setup.

Kept free of Lightning (6.7 s to import on a 2-core CPU against 3.4 s for torch, OpenCV, albumentations and
pydicom together), because workers are started from a fork server that imports this module once, not from the
training process itself (``worker_context``).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from wsod_mammo.data.device_augment import DeviceAugmentTransform
from wsod_mammo.data.dicom import DicomError
from wsod_mammo.data.errors import DataError
from wsod_mammo.data.geometry import Geometry, box_sizes_mm, boxes_to_input, clip_boxes
from wsod_mammo.data.images import current_doubt, load_input_image
from wsod_mammo.data.lifetime import exit_with, leave_ctrl_c_to_owner
from wsod_mammo.data.pixel_reads import PixelBatch, PixelRef, pixel_ref
from wsod_mammo.data.prepare import read_cached, read_padding
from wsod_mammo.data.sampling import SampleKey
from wsod_mammo.data.transforms import BoxTransform, stack_padding
from wsod_mammo.data.vindr import ImageRecord
from wsod_mammo.logging_setup import PACKAGE_LOGGER, configure_logging

log = logging.getLogger(__name__)
Missing = Literal["error", "skip"]
PixelReads = Literal["worker", "main"]
WorkerStart = Literal["forkserver", "fork", "spawn"]
WORKER_START_METHODS: tuple[str, ...] = get_args(WorkerStart)


def worker_context(start: WorkerStart) -> BaseContext:
    """The multiprocessing context the DataLoader starts its workers with.

    ``fork`` copies the training process, threads' locks included, while its other threads run: W&B's, Lightning's
    DDP observer, the pin-memory thread. A lock one of them holds at that instant stays held forever in the copy,
    and the worker hangs before its first sample (seen once in CI: a DDP rank's worker stuck in ``os.fork()``
    beside W&B's threads; Python 3.12 warns about forking a multi-threaded process, 3.14 stopped defaulting to it).
    ``forkserver`` forks the workers from a single-threaded server process started once per training process, which
    imports this module (and ``__main__``, as Python's default does) before its first fork, so each worker starts
    with torch and OpenCV loaded. ``spawn`` starts each worker as a fresh interpreter.
    """
    if start not in WORKER_START_METHODS:
        raise ValueError(f"data.worker_start: expected one of {WORKER_START_METHODS}, found {start!r}")
    if start not in multiprocessing.get_all_start_methods():
        raise ValueError(
            f"data.worker_start: {start!r} is not available on this platform "
            f"(available: {multiprocessing.get_all_start_methods()})"
        )
    context = multiprocessing.get_context(start)
    if start == "forkserver":
        context.set_forkserver_preload(["__main__", __name__])  # no effect once this process's server runs
    return context


class _PickledByValue:
    """A small tensor that crosses a worker's queue inside the pickle, as bytes, and arrives as a plain tensor.

    The queue's pickler moves any tensor into shared memory and sends its file descriptor, which the receiving
    thread (the pin-memory thread on a GPU, else the main one) fetches from the worker's resource-sharer thread: a
    round trip that waits for the worker's GIL. Worth it for an image, megabytes; for a training batch's fourteen
    small tensors it was 5.4-10.3 ms a batch of six on the 2-core CPU against 0.5-0.7 ms by value
    (``bench_loader.py``'s hand-over row).
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple[Any, tuple[np.ndarray]]:
        return torch.from_numpy, (self.tensor.numpy(),)


def collate_samples(
    samples: list[dict[str, Any]], copy_ahead: bool = False, by_value: bool | None = None
) -> dict[str, Any]:
    """Stack images ``(N, 1, H, W)`` and labels ``(N, C)``; keep boxes, box labels, ids and meta as lists.

    Images are stacked by ``default_collate``, which inside a worker writes the batch straight into shared memory:
    ``torch.stack`` would build it in private memory and the queue would copy it again (68 MB per batch of six
    2944 x 1920 images; 1.4x the loader's images/s with two workers, ``bench_loader.py``'s transfer rows).
    The small tensors (labels, ``theta``, boxes, box labels) cross a worker's queue by value (``_PickledByValue``):
    ``by_value`` None does so when this runs in a DataLoader worker; they arrive as plain tensors either way.
    ``padding (N, 1, H, W)`` bool when any sample has a padding mask (all False for those without), else absent.
    Images sent as ``PixelRef`` (``pixel_reads: main``) make a ``PixelBatch``, read later in the main process (and
    copied to the GPU by the pin-memory thread with ``copy_ahead``).
    """
    if by_value is None:
        by_value = get_worker_info() is not None
    small = _PickledByValue if by_value else lambda tensor: tensor
    images = [s["image"] for s in samples]
    batch = {
        "image": PixelBatch(images, copy_ahead)
        if any(isinstance(i, PixelRef) for i in images)
        else default_collate(images),
        "label": small(torch.stack([torch.as_tensor(s["label"]) for s in samples])),
        "boxes": [small(s["boxes"]) for s in samples],
        "box_labels": [small(s["box_labels"]) for s in samples],
        "image_id": [s["image_id"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }
    if "theta" in samples[0]:
        batch["theta"] = small(torch.stack([s["theta"] for s in samples]))
    padding = stack_padding([s.get("padding") for s in samples])
    return batch if padding is None else batch | {"padding": padding}


class VinDrDataset(Dataset):
    """Selected VinDr records -> samples, from the prepared cache where it has the image, else the DICOM."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        classes: Sequence[str],
        transform: BoxTransform | DeviceAugmentTransform,
        crop_breast: bool = True,
        cache: tuple[Path, dict[str, Any]] | None = None,
        missing: Missing = "error",
        resize: str = "stretch",
        pixel_reads: PixelReads = "worker",
    ):
        self.records, self.classes, self.transform = list(records), list(classes), transform
        self.crop_breast, self.cache, self.missing, self.resize = crop_breast, cache, missing, resize
        # a cached image the transform leaves as it is travels as its file location, read by the main process
        self.send_refs = pixel_reads == "main" and getattr(transform, "keeps_pixels", False)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, record: ImageRecord) -> tuple[np.ndarray, Geometry, np.ndarray | None, list[str]]:
        """The input-frame image, its geometry, its padding mask (None without padding, as in older caches) and why
        it may not be what training expects (``load_input_image``'s warnings; the cache's, found by prepare)."""
        if self.cache is not None and record.image_id in self.cache[1]["images"]:
            entry = self.cache[1]["images"][record.image_id]
            # uint16 as cached: augmentation and standardization both take it as it is (no float32 pass)
            image = read_cached(self.cache[0] / entry["file"], raw=True)
            if image.shape != tuple(self.transform.input_size):  # the header's shape: costs no pixel read
                raise ValueError(
                    f"{self.cache[0] / entry['file']}: a cached image of {image.shape[0]}x{image.shape[1]}, the "
                    f"data's input_size is {self.transform.input_size[0]}x{self.transform.input_size[1]}; prepare "
                    "the cache again into a new cache_dir"
                )
            padding = read_padding(self.cache[0] / entry["padding"]) if entry.get("padding") else None
            cached = [current_doubt(w) for w in entry.get("warnings", ())]
            return image, Geometry.from_dict(entry["geometry"]), padding, cached
        warnings: list[str] = []
        image, geometry, _, padding = load_input_image(
            record.path, record.laterality, self.transform.input_size, self.crop_breast, record.size, self.resize,
            warnings,
        )  # fmt: skip
        return image, geometry, padding, warnings

    def _out_of_frame(self, classes: list[str]) -> str:
        """Why an image's label names findings that its input frame does not show (a ``native`` window smaller than
        the breast, a finding outside the breast crop): training learns it positive with nothing to find, and Table II
        counts its masses as missed (``meta["out_of_frame"]``)."""
        names = ", ".join(classes)
        return (
            f"every {names} box lies outside the input frame (resize {self.resize}, "
            f"{self.transform.input_size[0]}x{self.transform.input_size[1]}, crop_breast {self.crop_breast}): the "
            f"image stays labelled {names} with none in view"
        )

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """``key`` is an index, or ``(index, augmentation_seed)`` from :class:`EpochShuffleSampler`."""
        if isinstance(key, tuple):
            index, augmentation_seed = key
            self.transform.set_seed(augmentation_seed)
        else:
            index = key
        record, (image, geometry, padding, warnings) = self._first_readable(index)
        boxes, box_labels, box_birads = record.box_findings(self.classes)
        sizes = box_sizes_mm(boxes, geometry.spacing_mm)  # (M,) from the CSV's boxes, in the DICOM's pixels
        boxes = np.asarray(boxes_to_input(boxes, geometry), np.float32)  # (M, 4) input frame
        boxes, keep = clip_boxes(boxes, geometry.out_height, geometry.out_width)
        if lost := sorted(set(box_labels.tolist()) - set(box_labels[keep].tolist())):
            warnings = [*warnings, self._out_of_frame([self.classes[c] for c in lost])]
        pixels: np.ndarray | PixelRef = (pixel_ref(image) or image) if self.send_refs else image
        out = self.transform.apply(pixels, boxes, box_labels[keep], padding)  # + theta with augment_on: device
        meta = {
            "study_id": record.study_id,
            "series_id": record.series_id,
            "laterality": record.laterality,
            "view": record.view,
            "split": record.split,
            "path": str(record.path),
            "geometry": geometry.to_dict(),
            "error": None,
            "warnings": warnings,  # said once per image by the DataModule (data_warnings.py), not by the worker
            **_box_meta(box_labels, box_birads, sizes, keep),
        }
        label = torch.from_numpy(record.label(self.classes))
        return out | {"label": label, "image_id": record.image_id, "meta": meta}

    def _first_readable(
        self, index: int
    ) -> tuple[ImageRecord, tuple[np.ndarray, Geometry, np.ndarray | None, list[str]]]:
        """Record ``index`` and what ``_load`` gives of it; with ``missing: skip``, the next readable record's where
        it cannot be read (a warning names it). DataError naming the file where it stops."""
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                return record, self._load(record)
            except (DicomError, OSError, ValueError) as err:
                if self.missing == "error":  # one line naming the file, as for an image missing at setup
                    raise DataError(f"{err} (set data.missing: skip to leave unreadable images out)") from err
                log.warning("missing=skip: skipping unreadable image %s (%s)", record.image_id, err)
        raise DataError(
            f"missing=skip: none of the {len(self.records)} images of this split could be read (the first: "
            f"{self.records[0].path}); check data_root and the cache"
        )


def _box_meta(box_labels: np.ndarray, box_birads: np.ndarray, sizes: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    """What the evaluation reads of an image's boxes besides the boxes themselves, the in-frame boxes' (``keep``)
    in their order, then the out-of-frame ones'."""
    return {
        # the classes of the boxes the input frame does not hold (wholly outside, or under a pixel of it inside):
        # masses Table II counts, as misses
        "out_of_frame": box_labels[~keep].tolist(),
        # each box's finding BI-RADS (0: none given), the in-frame boxes' in their order (evaluation transforms
        # keep every box in order), then the out-of-frame ones': Table II per BI-RADS
        "box_birads": box_birads[keep].tolist(),
        "out_of_frame_birads": box_birads[~keep].tolist(),
        # each box's size in mm (its longer side; None without a pixel spacing), ordered as box_birads
        "box_size_mm": _sizes(sizes[keep]),
        "out_of_frame_size_mm": _sizes(sizes[~keep]),
    }


def _sizes(values: np.ndarray) -> list[float | None]:
    """Sizes as the meta carries them: plain floats, None for unknown (NaN is no JSON)."""
    return [None if np.isnan(v) else float(v) for v in values]


def seed_worker(
    worker_id: int, log_level: int | None = None, owner_pid: int | None = None, ctrl_c_to_owner: bool = True
) -> None:
    """Give each dataloader worker its own augmentation stream, derived from torch's seeded worker seed.

    Also one OpenCV and one torch thread per worker: N workers already use N cores, and each library's own
    thread pool per worker would make them fight over the same cores (measured: +16% with 12 workers).
    Workers from the fork server set it here (the server never ran OpenCV's pool); with ``worker_start: fork``,
    ``_loader`` sets it in the parent before the fork instead: calling ``cv2.setNumThreads`` in a forked child whose
    parent had started OpenCV's pool can deadlock (the pool's threads do not survive fork).
    ``log_level``: the level of the training process's ``[wsod]`` terminal handler (``package_log_level``), set up
    again in a worker that did not inherit it, so its warnings (an image skipped, a mirrored DICOM) read alike.
    ``owner_pid``: the training process; the worker ends when it does (see ``lifetime``: a killed trainer's
    fork-server workers otherwise stayed forever).
    ``ctrl_c_to_owner``: SIGINT is ignored here and left to the training process, which stops its workers in order
    (see ``lifetime``: a worker Ctrl-C killed could hang its owner's shutdown); False only for ``bench_ctrl_c.py``'s
    side without the fix.
    """
    if ctrl_c_to_owner:
        leave_ctrl_c_to_owner()
    if owner_pid is not None:
        exit_with(owner_pid)
    if log_level is not None and not logging.getLogger(PACKAGE_LOGGER).handlers:
        configure_logging(log_level)
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    torch.set_num_threads(1)
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if info is not None and isinstance(transform, (BoxTransform, DeviceAugmentTransform)):
        transform.set_seed(int(info.seed % 2**32))
