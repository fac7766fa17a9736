"""Shared by the benchmarks: a synthetic VinDr-format dataset and its NPY cache, written by many processes.

``make_synthetic_dataset`` is one process; at 2944 x 1920 that is the slowest part of a benchmark run on a
many-core machine. Here shards (one per process, distinct seeds, so distinct study ids) are written in parallel
and merged into one root (images moved, CSV rows concatenated), then ``prepare`` caches them with as many workers.

    python tests/benchmarks/synthdata.py DIR --studies 40 --height 2944 --width 1920 --processes 16
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.data import Dataset


def _shard(args: tuple[Path, int, int, int, int]) -> Path:
    from wsod_mammo.data.synthetic import make_synthetic_dataset

    root, studies, height, width, seed = args
    return make_synthetic_dataset(root, studies, height, width, seed=seed, test_fraction=0.0)


def make_data(out: Path, studies: int, size: tuple[int, int], processes: int) -> tuple[Path, Path]:
    """Write ``4 * studies`` training images under ``out/vindr`` and their NPY cache ``out/cache``; returns both."""
    from wsod_mammo.data.prepare import prepare
    from wsod_mammo.data.vindr import FINDING_CSV

    root, cache = out / "vindr", out / "cache"
    processes = max(1, min(processes, studies))
    counts = [studies // processes + (i < studies % processes) for i in range(processes)]
    jobs = [(out / f"shard{i}", n, *size, 1000 + i) for i, n in enumerate(counts)]
    with ProcessPoolExecutor(processes) as pool:
        shards = list(pool.map(_shard, jobs))
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in sorted({p.name for s in shards for p in s.glob("*.csv")}):
        lines = [s.joinpath(name).read_text(encoding="utf-8").splitlines() for s in shards]
        rows = [lines[0][0]] + [row for shard in lines for row in shard[1:]]
        (root / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    for shard in shards:
        for study in (shard / "images").iterdir():
            shutil.move(str(study), root / "images" / study.name)
        shutil.rmtree(shard)
    assert (root / FINDING_CSV).is_file()
    prepare(str(root), str(cache), input_size=size, workers=processes, cache_format="npy")
    return root, cache


def repeat_images(dataset: Dataset[Any], at_least: int) -> None:
    """Repeat a ``VinDrDataset``'s records (the same files) until an epoch holds at least ``at_least`` images: a
    benchmark's few synthetic images would otherwise put an epoch end (and a loader refill) every few batches."""
    from wsod_mammo.data.dataset import VinDrDataset

    assert isinstance(dataset, VinDrDataset), "a DataModule's training split (a VinDrDataset)"
    if 0 < len(dataset) < at_least:
        dataset.records = dataset.records * -(-at_least // len(dataset))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--studies", type=int, default=40, help="4 images each")
    parser.add_argument("--height", type=int, default=2944)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    start = time.perf_counter()
    make_data(args.out, args.studies, (args.height, args.width), args.processes)
    print(f"{4 * args.studies} images written and cached (npy) in {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
