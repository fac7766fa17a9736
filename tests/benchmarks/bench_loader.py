"""Loader-only throughput (no model): worker scaling and the per-sample cost of each augmentation path.

Runs on any machine, so data-path regressions show without a GPU. From an NPY cache (synthdata.py's, or written
here), at the study's 2944 x 1920 by default:
- per sample, in this process (images/s of ONE worker: one OpenCV thread, warm, the paths alternating, the median
  of ``--rounds`` passes): the worker-side augmentation (albumentations: crop
  resized back + affine, two cv2 resamplings, uint16 out) vs the device-side worker half (draws, one matrix,
  box transform, uint16 copy), also with ``pixel_reads: main``, and, separately, the device half's cost per image
  on ``--device`` (``device_transform``: warp + standardization), eager vs ``torch.compile``;
- scaling: the training DataLoader of ``VinDrMammoDataModule`` (``standardize_on: device``) with 1, 2, 4, ...
  workers for both ``augment_on`` paths, and the device path with ``pixel_reads: main``: images/s of batches
  ready in this process (pinned by the DataLoader's pin-memory thread on CUDA; on CPU, ``pixel_reads: main``
  batches are read by ``on_before_batch_transfer``, as in a CPU run);
- transfer: batches of ready uint16 images (no decoding, no augmentation) out of ``--transfer_workers`` workers,
  stacked by ``torch.stack`` vs by the package's ``collate_samples`` (into shared memory): what the hand-over
  from the workers to this process costs;
- hand-over of a ready batch: milliseconds to take one training batch the workers have finished (``augment_on:
  device``, ``pixel_reads: main``, pixels left unread) with its small tensors (labels, ``theta``, boxes) sent
  through shared memory, a file descriptor fetched from the worker for each, vs by value (``collate_samples`` in
  a worker). On CUDA the pin-memory thread does this for every batch; it is timed here in this process, unpinned;
- transfer walk: the main thread's time to move a training batch to ``--device`` per step, Lightning's
  ``move_data_to_device`` (which visits every leaf of every image's ``meta``) vs ``VinDrMammoDataModule``'s
  ``transfer_batch_to_device`` (which skips ``meta`` and ``image_id``); the image is left out, the same copy in both;
- pin work: what the DataLoader's one pin-memory thread does per batch, into a reused destination (pinned on
  CUDA, as CUDA's caching host allocator hands back): copy a batch out of the workers' fresh shared memory
  (``pixel_reads: worker``) vs read the batch's cache files into it (``pixel_reads: main``). This thread serves
  every worker, so its rate is the loader's ceiling.

    python tests/benchmarks/bench_loader.py --workers 1,2 --studies 4
    python tests/benchmarks/bench_loader.py --data DIR --workers 1,2,4,8,12,16 --device cuda --json loader.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from synthdata import repeat_images

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from wsod_mammo.data.datamodule import AugmentOn, VinDrMammoDataModule
    from wsod_mammo.data.dataset import PixelReads

#: the least the DataModule takes (it refuses 0: validation picks the checkpoint): one study held out, so
#: --studies N trains on N - 1 studies' images
VAL_FRACTION = 1e-6

PREFETCH = 2  # batches each worker loads ahead (drawn untimed before each scaling point)

#: the loader paths timed per sample and in the scaling table: name, augment_on, pixel_reads
PATHS: tuple[tuple[str, AugmentOn, PixelReads], ...] = (
    ("worker", "worker", "worker"),
    ("device", "device", "worker"),
    ("device_main_reads", "device", "main"),
)


def _datamodule(
    args: argparse.Namespace, root: Path, cache: Path, augment_on: AugmentOn, workers: int,
    pixel_reads: PixelReads = "worker",
) -> VinDrMammoDataModule:  # fmt: skip
    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    dm = VinDrMammoDataModule(
        str(root), cache_dir=str(cache), selection="all", input_size=(args.height, args.width),
        val_fraction=VAL_FRACTION, batch_size=args.batch, num_workers=workers, pin_memory=args.device == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH if workers else None, standardize_on="device", augment_on=augment_on,
        pixel_reads=pixel_reads,
    )  # fmt: skip
    dm.setup("fit")
    return dm


def per_sample(args: argparse.Namespace, root: Path, cache: Path) -> dict[str, float]:
    """Images/s of one worker for each path's worker half, and warp_batch's per-image cost on the device.

    As a worker runs them: one OpenCV thread (``seed_worker``'s; OpenCV's pool otherwise lends the worker-side
    path this process's every core) and warm, the paths alternating over ``--rounds`` timed passes after an
    untimed one, each path's median pass reported. A first pass over freshly mapped files and buffers ran 2-4x
    slower than the next ones, and timed after one sample it decided which path looked faster."""
    import cv2

    from wsod_mammo.data.dataset import VinDrDataset

    datasets = {}
    for path, augment_on, pixel_reads in PATHS:
        dataset = _datamodule(args, root, cache, augment_on, 0, pixel_reads).datasets["train"]
        assert isinstance(dataset, VinDrDataset)  # a training split (keys: (index, augmentation seed))
        datasets[path] = dataset
    n = min(min(len(d) for d in datasets.values()), args.samples)
    rates: dict[str, list[float]] = {path: [] for path in datasets}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for round_ in range(args.rounds + 1):  # round 0 warms the page cache, the allocator and albumentations
            for path, dataset in datasets.items():
                start = time.perf_counter()
                drawn = [dataset[(i, round_ * n + i)] for i in range(n)]
                if round_:
                    rates[path].append(n / (time.perf_counter() - start))
                if path == "device":
                    samples = drawn  # uint16 images and thetas for the warp below
    finally:
        cv2.setNumThreads(threads)
    results = {f"{path}_augment_img_per_s": statistics.median(r) for path, r in rates.items()}
    batch = torch.stack([s["image"] for s in samples[: args.batch]]).to(args.device)
    theta = torch.stack([s["theta"] for s in samples[: args.batch]]).to(args.device)
    from wsod_mammo.data.device_augment import compiled_device_transform, device_transform

    for name, transform in (("eager", device_transform), ("compiled", compiled_device_transform())):
        transform(batch, theta)  # warm-up (the compilation, for the compiled one)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.warp_iters):
            transform(batch, theta)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.warp_iters / len(batch)
        results[f"device_warp_standardize_ms_per_img{'' if name == 'eager' else '_compiled'}"] = 1000 * seconds
    return results


def _batches(loader: DataLoader[Any], dm: VinDrMammoDataModule) -> Iterator[Any]:
    """The loader's batches over as many epochs as asked for (persistent workers: no restart between epochs), as
    Lightning hands them to the transfer (``on_before_batch_transfer`` reads unpinned ``pixel_reads: main`` ones)."""
    while True:
        for batch in loader:
            yield dm.on_before_batch_transfer(batch, 0)


def scaling(args: argparse.Namespace, root: Path, cache: Path) -> dict[str, dict[int, float]]:
    """Steady-state images/s out of the training loader per worker count, both paths.

    The batches the workers have prefetched (``workers * PREFETCH``) and the first are drawn untimed: timing from the
    first batch would count ready-made batches and report rates no loader sustains (seen: 52,078 img/s). The
    training images are repeated (the same files) until all of that fits in one epoch: a new epoch's iterator
    has its workers prefetch again, which timed 16 workers at 9,942 img/s on 160 images (an H200 machine).
    """
    table: dict[str, dict[int, float]] = {}
    for path, augment_on, pixel_reads in PATHS:
        table[path] = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            dm = _datamodule(args, root, cache, augment_on, workers, pixel_reads)
            repeat_images(dm.datasets["train"], (workers * PREFETCH + 2 + args.batches) * args.batch)
            loader = dm.train_dataloader()
            batches = _batches(loader, dm)
            for _ in range(workers * PREFETCH + 1):
                next(batches)
            start, images = time.perf_counter(), 0
            for _ in range(args.batches):
                images += len(next(batches)["image"])
            table[path][workers] = images / (time.perf_counter() - start)
            del batches, loader
            print(f"  {path:>17}, {workers:2d} workers: {table[path][workers]:8.1f} img/s", flush=True)
    return table


def hand_over(args: argparse.Namespace, root: Path, cache: Path) -> dict[str, float]:
    """Median milliseconds of ``next()`` on a batch the workers have already finished, small tensors through shared
    memory vs by value: the receiving thread's own work per batch (the pin-memory thread's on a GPU)."""
    from wsod_mammo.data.datamodule import collate_samples

    workers, results = args.transfer_workers, {}
    ready = workers * PREFETCH  # the batches the workers finish while this process sleeps
    for name, by_value in (("shared", False), ("by_value", None)):  # None: by value in a worker, as in training
        dm = _datamodule(args, root, cache, "device", workers, "main")
        repeat_images(dm.datasets["train"], (1 + ready * args.batches) * args.batch)
        loader = dm.train_dataloader()
        loader.collate_fn = functools.partial(collate_samples, by_value=by_value)
        loader.pin_memory = False  # the receiving work in this process, where it can be timed
        batches, costs = iter(loader), []
        next(batches)  # the workers started
        for _ in range(args.batches):
            time.sleep(1.0)
            for _ in range(ready):
                start = time.perf_counter()
                next(batches)
                costs.append(time.perf_counter() - start)
        del batches, loader
        results[f"{name}_ms_per_batch"] = 1000 * statistics.median(costs)
        print(f"  hand-over of a ready batch of {args.batch}, {workers} workers, small tensors {name:>8}: "
              f"{results[f'{name}_ms_per_batch']:6.2f} ms (median of {len(costs)})", flush=True)  # fmt: skip
    results["shared_over_by_value"] = results["shared_ms_per_batch"] / results["by_value_ms_per_batch"]
    return results


def transfer_walk(args: argparse.Namespace, root: Path, cache: Path) -> dict[str, float]:
    """Milliseconds per training batch of moving it to ``--device`` (its image left out): Lightning's walk vs the
    DataModule's, alternated, best of five rounds each."""
    from lightning.fabric.utilities import move_data_to_device

    from wsod_mammo.data.datamodule import collate_samples

    dm = _datamodule(args, root, cache, "device", 0, "main")
    batch = collate_samples([dm.datasets["train"][i % len(dm.datasets["train"])] for i in range(args.batch)])
    batch = dm.on_before_batch_transfer(batch, 0) | {"image": torch.zeros(1)}
    device, repeats = torch.device(args.device), 200
    moves = {"lightning": lambda: move_data_to_device(batch, device),
             "datamodule": lambda: dm.transfer_batch_to_device(batch, device, 0)}  # fmt: skip
    best = {name: float("inf") for name in moves}
    for _ in range(5):
        for name, move in moves.items():
            start = time.perf_counter()
            for _ in range(repeats):
                move()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / repeats)
    results = {f"{name}_ms_per_batch": ms for name, ms in best.items()}
    results["lightning_over_datamodule"] = best["lightning"] / best["datamodule"]
    print(f"  transfer walk of a batch of {args.batch} (image left out) to {args.device}: Lightning's "
          f"{best['lightning']:.3f} ms vs the DataModule's {best['datamodule']:.3f} ms", flush=True)  # fmt: skip
    return results


class _ReadyImages(torch.utils.data.Dataset):
    """Samples whose image is ready (one clone of a random uint16 image): only the hand-over is left to time."""

    def __init__(self, height: int, width: int) -> None:
        self.image = torch.randint(0, 2**16, (1, height, width), dtype=torch.int32).to(torch.uint16)

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int) -> dict:
        return {"image": self.image.clone(), "label": torch.zeros(1), "boxes": torch.zeros(0, 4),
                "box_labels": torch.zeros(0), "image_id": str(index), "meta": {}}  # fmt: skip


def _private_stack(samples: list[dict]) -> dict:
    """The stacking ``collate_samples`` replaced: the batch is built in private memory, then copied to the queue."""
    return {"image": torch.stack([s["image"] for s in samples]), "label": torch.stack([s["label"] for s in samples])}


def transfer(args: argparse.Namespace) -> dict[str, float]:
    """Steady-state images/s of the hand-over from the workers, ``torch.stack`` vs ``collate_samples``."""
    from torch.utils.data import DataLoader

    from wsod_mammo.data.datamodule import collate_samples

    results = {}
    for name, collate in (("torch_stack", _private_stack), ("collate_samples", collate_samples)):
        loader = DataLoader(
            _ReadyImages(args.height, args.width), batch_size=args.batch, num_workers=args.transfer_workers,
            collate_fn=collate, prefetch_factor=PREFETCH, pin_memory=args.device == "cuda",
        )  # fmt: skip
        batches = iter(loader)
        for _ in range(args.transfer_workers * PREFETCH + 1):
            next(batches)
        start = time.perf_counter()
        for _ in range(args.batches * 4):
            next(batches)
        results[name] = args.batches * 4 * args.batch / (time.perf_counter() - start)
        del batches, loader
        print(f"  transfer, {args.transfer_workers} workers, {name:>15}: {results[name]:8.1f} img/s", flush=True)
    return results


class _CachedRefs(torch.utils.data.Dataset):
    """Training samples of ``pixel_reads: main`` from the cache's files: the worker sends where the pixels lie."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int) -> dict:
        from wsod_mammo.data.pixel_reads import pixel_ref

        ref = pixel_ref(np.load(self.files[index % len(self.files)], mmap_mode="r"))
        return {"image": ref, "label": torch.zeros(1), "boxes": torch.zeros(0, 4), "box_labels": torch.zeros(0),
                "image_id": str(index), "meta": {}}  # fmt: skip


def pin_work(args: argparse.Namespace, cache: Path) -> dict[str, float]:
    """Milliseconds of the pin-memory thread's work per batch, into one reused destination, for both ``pixel_reads``
    (waiting for the workers is not counted: only what that one thread must do for each batch)."""
    from torch.utils.data import DataLoader

    from wsod_mammo.data.datamodule import collate_samples

    files = sorted((cache / "images").glob("*.npy"))
    cuda = args.device == "cuda"
    out = torch.empty((args.batch, 1, args.height, args.width), dtype=torch.uint16, pin_memory=cuda)
    results = {}
    for name, dataset in (("worker", _ReadyImages(args.height, args.width)), ("main", _CachedRefs(files))):
        loader = DataLoader(dataset, batch_size=args.batch, num_workers=args.transfer_workers,
                            collate_fn=collate_samples, prefetch_factor=PREFETCH)  # fmt: skip
        batches, seconds, count = iter(loader), 0.0, args.batches * 4
        for index in range(count + 2):
            image = next(batches)["image"]
            start = time.perf_counter()
            if name == "worker":
                out.copy_(image)
            else:
                image.read(out=out)
            if index >= 2:  # the first two: page cache and allocator warm-up
                seconds += time.perf_counter() - start
            del image
        del batches, loader
        results[f"{name}_ms_per_batch"] = 1000 * seconds / count
        results[f"{name}_ceiling_img_per_s"] = count * args.batch / seconds
        ceiling = results[f"{name}_ceiling_img_per_s"]
        print(f"  pin work, pixel_reads={name:>6}: {1000 * seconds / count:6.1f} ms per batch of {args.batch} "
              f"({ceiling:.0f} img/s for the one pin-memory thread)", flush=True)  # fmt: skip
    results["main_over_worker"] = results["main_ceiling_img_per_s"] / results["worker_ceiling_img_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="reuse DIR/vindr + DIR/cache (synthdata.py); else written to a temp dir")
    parser.add_argument("--studies", type=int, default=8, help="synthetic studies (4 images each) when no --data")
    parser.add_argument("--height", type=int, default=2944)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--workers", default="1,2", help="worker counts of the scaling table")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per point, after the prefetched")
    parser.add_argument("--samples", type=int, default=12, help="samples per path in the per-sample timing")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes of the samples per path (median)")
    parser.add_argument("--warp_iters", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (the warp on CPU)")
    parser.add_argument("--transfer_workers", type=int, default=2, help="workers of the transfer rows")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    from timing import require_device

    require_device(args)
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            root, cache = Path(args.data) / "vindr", Path(args.data) / "cache"
        else:
            from synthdata import make_data

            root, cache = make_data(Path(tmp), args.studies, (args.height, args.width), os.cpu_count() or 1)
        print(f"loader only at {args.height} x {args.width}, batch {args.batch}, NPY cache, device {args.device}")
        sample = per_sample(args, root, cache)
        ratio = sample["device_augment_img_per_s"] / sample["worker_augment_img_per_s"]
        worker, device, warp = (sample[k] for k in ("worker_augment_img_per_s", "device_augment_img_per_s",
                                                    "device_warp_standardize_ms_per_img"))  # fmt: skip
        print(f"per sample, one worker: worker-side augmentation {worker:.1f} img/s, device-side worker half "
              f"{device:.1f} img/s ({ratio:.1f}x), with pixel_reads: main (no pixels touched) "
              f"{sample['device_main_reads_augment_img_per_s']:.1f} img/s; warp + standardize on {args.device}: "
              f"{warp:.2f} ms/img eager, {sample['device_warp_standardize_ms_per_img_compiled']:.2f} ms/img compiled "
              f"({warp / sample['device_warp_standardize_ms_per_img_compiled']:.2f}x)")  # fmt: skip
        table = scaling(args, root, cache)
        pinning = pin_work(args, cache)
        handing = hand_over(args, root, cache)
        walking = transfer_walk(args, root, cache)
    moving = transfer(args)
    if args.json:
        figures = {"args": vars(args), "per_sample": sample, "scaling": table, "transfer": moving,
                   "pin_work": pinning, "hand_over": handing, "transfer_walk": walking}  # fmt: skip
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
