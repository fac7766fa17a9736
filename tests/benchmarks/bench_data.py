"""Benchmark: images/second per dataloader worker at 2944 x 1920, DICOM decoding vs the prepared cache.

Writes a few synthetic DICOMs of real VinDr-Mammo size (3518 x 2800, 12-bit), prepares PNG and NPY caches,
then times the full sample path of the Dataset (load, flip/crop/resize or cache read, standardize) in a
fresh process per source, as one worker would run it; peak memory is the traced Python/NumPy peak
(tracemalloc) and the process's max RSS.

    python tests/benchmarks/bench_data.py [--studies 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

INPUT_SIZE = (2944, 1920)


def _measure(root: str, cache_dir: str | None, rounds: int, queue: mp.Queue) -> None:
    import torch

    from wsod_mammo.data.datamodule import VinDrDataset
    from wsod_mammo.data.prepare import load_manifest
    from wsod_mammo.data.transforms import BoxTransform
    from wsod_mammo.data.vindr import load_records, select_records

    torch.set_num_threads(1)  # as in a DataLoader worker
    records = select_records(load_records(root), ["Mass"], "all")
    cache = (Path(cache_dir), load_manifest(cache_dir)) if cache_dir else None
    dataset = VinDrDataset(records, ["Mass"], BoxTransform(INPUT_SIZE, train=False), cache=cache)
    dataset[0]  # warm-up: imports, first file-system touch
    base_rss = _high_water_mib()
    start = time.perf_counter()
    for _ in range(rounds):
        for index in range(len(dataset)):
            dataset[index]
    rate = rounds * len(dataset) / (time.perf_counter() - start)
    tracemalloc.start()
    dataset[1]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    queue.put((rate, peak / 2**20, _high_water_mib() - base_rss))


def _high_water_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(root: str, cache_dir: str | None, rounds: int) -> tuple[float, float, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(root, cache_dir, rounds, queue))
    process.start()
    result = queue.get()
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
    args = parser.parse_args()
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
        print(f"\nper worker (one process each, 1 torch thread), input {INPUT_SIZE[0]} x {INPUT_SIZE[1]}, eval sample:")
        print(f"{'source':<20}{'images/s':>9}{'vs raw':>8}{'vs J2K':>8}{'traced peak MiB':>17}{'RSS growth MiB':>16}")
        sources = (("DICOM uncompressed", root, None), ("DICOM JPEG 2000", str(Path(tmp) / "j2k"), None),
                   ("PNG cache", root, "png"), ("NPY cache (mmap)", root, "npy"))  # fmt: skip
        rates = {}
        for name, data, cache in sources:
            rate, peak, rss = _run(data, str(Path(tmp) / cache) if cache else None, args.rounds)
            rates[name] = rate
            raw, j2k = rate / rates[sources[0][0]], rate / rates.get(sources[1][0], rate)
            print(f"{name:<20}{rate:>9.2f}{raw:>7.1f}x{j2k:>7.1f}x{peak:>17.0f}{rss:>16.0f}")
        print(
            f"(MiB per image: DICOM {mib['raw']:.1f}, JPEG 2000 DICOM {mib['j2k']:.1f}, "
            f"PNG {sizes['png']:.1f}, NPY {sizes['npy']:.1f})"
        )


if __name__ == "__main__":
    main()
