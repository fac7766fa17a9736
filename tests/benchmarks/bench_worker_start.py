"""What each ``data.worker_start`` costs: seconds from asking a fresh training process's DataModule for its
training loader to its first batch, then to the first validation batch (a second loader, as in a fit), and the
memory of the process with its fork server and training workers (PSS, Linux).

Each measurement runs in a fresh Python process (a fork server lives as long as the process that started it, so a
second measurement in one process would find it warm), the methods taking turns, ``--repeats`` rounds.

    python tests/benchmarks/bench_worker_start.py --workers 2
    python tests/benchmarks/bench_worker_start.py --workers 2,8 --repeats 3 --json start.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from wsod_mammo.data.dataset import WorkerStart


def _pss_mib(pid: int) -> float:
    """Proportional set size (shared pages split between the processes mapping them), Linux only; NaN elsewhere."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return float("nan")
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")) / 1024


def probe(root: str, cache: str, method: WorkerStart, workers: int, size: tuple[int, int]) -> None:
    """In this fresh process: time the first training batch and then the first validation batch, then the memory
    of this process, the fork server (if any) and the training loader's workers together; print JSON."""
    import multiprocessing.forkserver

    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    dm = VinDrMammoDataModule(
        root, cache_dir=cache, selection="all", input_size=size, batch_size=2, num_workers=workers,
        worker_start=method, val_fraction=0.25,
    )  # fmt: skip
    dm.setup("fit")
    start = time.perf_counter()
    batches = iter(dm.train_dataloader())
    next(batches)
    train = time.perf_counter() - start
    next(iter(dm.val_dataloader()))
    val = time.perf_counter() - start - train
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    processes = getattr(batches, "_workers", [])  # a multiprocessing iterator's (none with 0 workers)
    pids = [os.getpid(), *([server] if server else []), *(w.pid for w in processes)]
    print(json.dumps({"train_first_batch_s": train, "val_first_batch_s": val,
                      "pss_mib": sum(_pss_mib(pid) for pid in pids)}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="2", help="worker counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    probe_fields = ("ROOT", "CACHE", "METHOD", "WORKERS", "HxW")  # one measurement, in the fresh process
    parser.add_argument("--probe", nargs=5, metavar=probe_fields, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        root, cache, method, workers, size = args.probe
        height, width = (int(v) for v in size.split("x"))
        # one of WORKER_START_METHODS, as main passes it (the DataModule checks it too)
        probe(root, cache, cast("WorkerStart", method), int(workers), (height, width))
        return
    from synthdata import make_data

    from wsod_mammo.data.dataset import WORKER_START_METHODS as METHODS

    figures: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = make_data(Path(tmp), 4, (args.height, args.width), os.cpu_count() or 1)
        print(f"worker start at {args.height} x {args.width}, {os.cpu_count()} CPUs, fresh process per measurement")
        for workers in [int(w) for w in args.workers.split(",")]:
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
            for _ in range(args.repeats):
                for method in METHODS:
                    command = [sys.executable, __file__, "--probe", str(root), str(cache), method, str(workers),
                               f"{args.height}x{args.width}"]  # fmt: skip
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    runs[method].append(json.loads(out.strip().splitlines()[-1]))
            for method in METHODS:
                row = {key: statistics.median(r[key] for r in runs[method]) for key in runs[method][0]}
                figures.setdefault(str(workers), {})[method] = row
                print(f"  {workers:2d} workers, {method:>10}: first training batch {row['train_first_batch_s']:5.2f} s,"
                      f" then first validation batch {row['val_first_batch_s']:5.2f} s; memory (PSS) of the process,"
                      f" its fork server and training workers {row['pss_mib']:6.0f} MiB", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
