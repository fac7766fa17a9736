"""Benchmark: images/second per dataloader worker at 2944 x 1920, DICOM decoding vs the prepared cache.

Writes a few synthetic DICOMs of real VinDr-Mammo size (3518 x 2800, 12-bit), prepares PNG and NPY caches,
then times the full sample path of the Dataset in a fresh process per variant, as one worker would run it:
evaluation samples (load, flip/crop/resize or cache read, standardize) from each source, and training samples
(augmentation on) from the NPY cache: float32 augmentation (the earlier path), uint16 augmentation, and uint16
augmentation with standardization left to the device (then also timed per image on the device). Peak memory is
the traced Python/NumPy peak (tracemalloc) and the process's max RSS growth.

    python tests/benchmarks/bench_data.py [--studies 2] [--rounds 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from wsod_mammo.data.vindr import ImageRecord

INPUT_SIZE = (2944, 1920)


def _measure(root: str, cache_dir: str | None, variant: str, rounds: int, queue: mp.Queue) -> None:
    import cv2
    import torch

    from wsod_mammo.data.datamodule import VinDrDataset
    from wsod_mammo.data.geometry import Geometry
    from wsod_mammo.data.prepare import load_manifest, read_cached
    from wsod_mammo.data.transforms import BoxTransform
    from wsod_mammo.data.vindr import load_records
    from wsod_mammo.data.vindr_selection import select_records

    class Float32Augmentation(VinDrDataset):
        """The earlier training path: cache pixels converted to float32 before augmentation."""

        def _load(self, record: ImageRecord) -> tuple[np.ndarray, Geometry, np.ndarray | None, list[str]]:
            assert self.cache is not None  # the train_float32 variant reads the NPY cache
            entry = self.cache[1]["images"][record.image_id]
            return read_cached(self.cache[0] / entry["file"]), Geometry.from_dict(entry["geometry"]), None, []

    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    records = select_records(load_records(root), ["Mass"], "all")
    manifest = load_manifest(cache_dir) if cache_dir else None
    assert not cache_dir or manifest is not None, f"{cache_dir}: no cache manifest"  # main prepared it just before
    cache = (Path(cache_dir), manifest) if cache_dir and manifest is not None else None
    train, standardize = variant != "eval", variant != "train_device"
    transform = BoxTransform(INPUT_SIZE, train=train, standardize=standardize)
    transform.set_seed(0)
    kind = Float32Augmentation if variant == "train_float32" else VinDrDataset
    dataset = kind(records, ["Mass"], transform, cache=cache)
    dataset[0]  # warm-up: imports, first file-system touch
    base_rss = _high_water_mib()
    start = time.perf_counter()
    for _ in range(rounds):
        for index in range(len(dataset)):
            dataset[index]
    rate = rounds * len(dataset) / (time.perf_counter() - start)
    tracemalloc.start()
    sample = dataset[1]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    image = sample["image"]
    queue.put((rate, peak / 2**20, _high_water_mib() - base_rss, image.numel() * image.element_size() / 2**20))


def _device_standardize_ms(device: str, batch: int = 6) -> float:
    """Milliseconds per image of ``standardize_batch`` on a uint16 batch already on ``device``."""
    import torch

    from wsod_mammo.data.transforms import standardize_batch

    raw = torch.randint(0, 4096, (batch, 1, *INPUT_SIZE), dtype=torch.int32).to(torch.uint16).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    standardize_batch(raw)
    sync()
    start, repeats = time.perf_counter(), 5
    for _ in range(repeats):
        standardize_batch(raw)
    sync()
    return (time.perf_counter() - start) / (repeats * batch) * 1000


def _high_water_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(root: str, cache_dir: str | None, variant: str, rounds: int) -> tuple[float, float, float, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(root, cache_dir, variant, rounds, queue))
    process.start()
    while True:  # a child that dies before it reports would leave a bare queue.get() waiting for ever
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not process.is_alive():
                what = f"bench_data: the {variant} child exited ({process.exitcode}) without a result"
                raise RuntimeError(what) from None
    process.join()
    return result


def _compress_copy(root: Path, target: Path) -> None:
    """Copy the dataset with every DICOM re-encoded as JPEG 2000 lossless (how many archives store them)."""
    import shutil

    import pydicom
    from pydicom.uid import JPEG2000Lossless

    shutil.copytree(root, target)
    settings = pydicom.config.settings
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
    for path in target.rglob("*.dicom"):
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        ds.save_as(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2, help="synthetic studies of 4 images each")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the images per source")
    parser.add_argument("--device", default="cpu", help="where the device-side standardization is timed")
    args = parser.parse_args()
    from timing import require_device

    require_device(args)
    from wsod_mammo.data.prepare import prepare
    from wsod_mammo.data.synthetic import make_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "vindr")
        start = time.perf_counter()
        make_synthetic_dataset(root, n_studies=args.studies, height=3518, width=2800, seed=0)
        print(f"wrote {4 * args.studies} DICOMs of 3518 x 2800 in {time.perf_counter() - start:.1f} s")
        sizes = {}
        for fmt in ("png", "npy"):
            start = time.perf_counter()
            prepare(root, str(Path(tmp) / fmt), input_size=INPUT_SIZE, workers=0, cache_format=fmt)
            files = list((Path(tmp) / fmt / "images").glob(f"*.{fmt}"))
            sizes[fmt] = sum(f.stat().st_size for f in files) / len(files) / 2**20
            print(f"prepare ({fmt}): {time.perf_counter() - start:.1f} s, {sizes[fmt]:.1f} MiB per image")
        start = time.perf_counter()
        _compress_copy(Path(root), Path(tmp) / "j2k")
        print(f"re-encoded them as JPEG 2000 lossless in {time.perf_counter() - start:.1f} s")
        mib = {name: sum(f.stat().st_size for f in Path(folder).rglob("*.dicom")) / (4 * args.studies) / 2**20
               for name, folder in (("raw", root), ("j2k", Path(tmp) / "j2k"))}  # fmt: skip
        print(f"\nper worker (one process each, 1 torch thread), input {INPUT_SIZE[0]} x {INPUT_SIZE[1]}:")
        print(f"{'sample':<46}{'images/s':>9}{'vs raw':>8}{'vs J2K':>8}{'traced MiB':>11}{'RSS MiB':>9}"
              f"{'MiB out':>8}")  # fmt: skip
        variants = (("eval, DICOM uncompressed", root, None, "eval"),
                    ("eval, DICOM JPEG 2000", str(Path(tmp) / "j2k"), None, "eval"),
                    ("eval, PNG cache", root, "png", "eval"),
                    ("eval, NPY cache (mmap)", root, "npy", "eval"),
                    ("train, NPY, float32 augmentation (before)", root, "npy", "train_float32"),
                    ("train, NPY, uint16 augmentation", root, "npy", "train"),
                    ("train, NPY, uint16 aug., standardize on device", root, "npy", "train_device"))  # fmt: skip
        rates = {}
        for name, data, cache, variant in variants:
            rate, peak, rss, out = _run(data, str(Path(tmp) / cache) if cache else None, variant, args.rounds)
            rates[name] = rate
            raw, j2k = rate / rates[variants[0][0]], rate / rates.get(variants[1][0], rate)
            print(f"{name:<46}{rate:>9.2f}{raw:>7.1f}x{j2k:>7.1f}x{peak:>11.0f}{rss:>9.0f}{out:>8.1f}")
        before, after = rates[variants[4][0]], rates[variants[6][0]]
        print(
            f"training sample per worker: {after / before:.2f}x the float32 path "
            f"({rates[variants[5][0]] / before:.2f}x from uint16 augmentation alone)"
        )
        print(f"standardize_batch on {args.device}: {_device_standardize_ms(args.device):.2f} ms per image")
        print(
            f"(MiB per image on disk: DICOM {mib['raw']:.1f}, JPEG 2000 DICOM {mib['j2k']:.1f}, "
            f"PNG {sizes['png']:.1f}, NPY {sizes['npy']:.1f})"
        )


if __name__ == "__main__":
    main()
