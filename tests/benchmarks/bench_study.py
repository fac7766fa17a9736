"""Time `wsod study --aggregate_only`'s tables at the size of VinDr-Mammo's test set, from a finished study.

A study's tables are computed from its runs' test reports and image records (``detection_images.json``): over
seeds, every interval of Table I, Table II, calibration, wAFROC and the pointing game redraws each run's test images
1,000 times. The demo's 38 test images say nothing of the time at VinDr's size, so each run's image record is
repeated ``--copies`` times (new image, study and breast keys per copy; boxes, masses and per-image figures with
them) and the study's tables written from the repeated records beside the originals, in one process. ``--trains``
fills the study's train methods up to that many by copying the runs of the first (a full study: 5 train methods x 3
seeds = 15 runs). Prints seconds per aggregation, and (``--profile N``) the N functions that take the most of the
large one.

    wsod study --config configs/demo.yaml --train_methods cam,gradcam --seeds 42,43 --output runs/study_seeds
    python tests/benchmarks/bench_study.py --study runs/study_seeds --copies 100 [--trains 5] [--profile 20]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wsod_mammo.detection.study_report import write_study_outputs
from wsod_mammo.detection.study_tables import METHOD_ORDER
from wsod_mammo.study_runs import finished_report

#: the image record's lists, by what their entries index (``detection_images.json`` as `wsod test` writes it)
PER_IMAGE = {"image_gt", "pointing", "energy", "target", "density"}
PER_BOX = {"box_scores", "box_tp"}
PER_MASS = {"gt_birads", "gt_size_mm"}
KEYS = {"image_keys", "study_keys", "breast_keys"}


def repeated(record: dict[str, Any], copies: int, dense: dict[str, dict[int, int]]) -> dict[str, Any]:
    """One method's (or the classification's) record with its images repeated ``copies`` times: each key made
    ``dense[kind][key] + copy * len(dense[kind])`` (the keys are 63-bit hashes), positions (``box_image``,
    ``gt_image``, ``box_gt``) shifted by the copy's first row."""
    images, masses = len(record["image_keys"]), len(record.get("gt_image", []))
    out: dict[str, Any] = {}
    for name, values in record.items():
        if name in KEYS:
            out[name] = [dense[name][k] + c * len(dense[name]) for c in range(copies) for k in values]
        elif name in PER_IMAGE | PER_BOX | PER_MASS:
            out[name] = values * copies
        elif name in ("box_image", "gt_image"):
            out[name] = [i + c * images for c in range(copies) for i in values]
        elif name == "box_gt":
            out[name] = [g + c * masses if g >= 0 else -1 for c in range(copies) for g in values]
        elif name == "heads":
            out[name] = {head: p * copies for head, p in values.items()}
        elif name == "pointing_by_kind":
            out[name] = {k: [i + c * images for c in range(copies) for i in v] if k == "image" else v * copies
                         for k, v in values.items()}  # fmt: skip
        elif name == "class":
            out[name] = values
        else:
            raise ValueError(f"bench_study: the image record holds '{name}', which this script does not repeat")
    return out


def repeated_file(data: dict[str, Any], copies: int) -> dict[str, Any]:
    """``detection_images.json`` with every record's images repeated, the same keys for one image in every record."""
    classification = data.get("classification") or {}  # none in a report from before Table I's probabilities
    records = [*(m for s in data["subsets"].values() for m in s.values()), classification]
    dense = {key: {k: i for i, k in enumerate(sorted({k for r in records for k in r.get(key, [])}))} for key in KEYS}
    subsets = {s: {m: repeated(r, copies, dense) for m, r in ms.items()} for s, ms in data["subsets"].items()}
    return {
        **data,
        "subsets": subsets,
        **({"classification": repeated(classification, copies, dense)} if classification else {}),
    }


def copied_runs(study: Path, into: Path, copies: int, trains: int) -> dict[tuple[str, int], Path]:
    """The study's finished runs copied under ``into`` (report, Table II row, image record repeated ``copies`` times),
    filled up to ``trains`` train methods with copies of the first's runs."""
    found = {}
    for run in sorted((study / "runs").iterdir()):
        if (match := re.fullmatch(r"(.+)_seed(-?\d+)", run.name)) and (run / "test.done").exists():
            found[(match[1], int(match[2]))] = finished_report(run)
    if not found:
        raise SystemExit(f"bench_study: {study / 'runs'} holds no finished run (`wsod study` writes them)")
    first = min(m for m, _ in found)
    missing = [m for m in METHOD_ORDER if m not in {m for m, _ in found}][: max(trains - len({m for m, _ in found}), 0)]
    sources = {**found, **{(m, s): found[(first, s)] for m in missing for (f, s) in found if f == first}}
    runs = {}
    for (method, seed), report in sources.items():
        target = into / f"{method}_seed{seed}"
        target.mkdir(parents=True)
        shutil.copy(report, target / "detection.json")
        shutil.copy(report.parent / "table2_row.csv", target / "table2_row.csv")
        data = json.loads((report.parent / "detection_images.json").read_text())
        (target / "detection_images.json").write_text(json.dumps(repeated_file(data, copies) if copies > 1 else data))
        runs[(method, seed)] = target / "detection.json"
    return runs


def _test_images(report: Path) -> int:
    subsets = json.loads((report.parent / "detection_images.json").read_text())["subsets"]
    return len(next(iter(subsets["all"].values()))["image_keys"])


def timed(runs: dict[tuple[str, int], Path], output: Path) -> float:
    start = time.perf_counter()
    write_study_outputs(output, runs)
    return time.perf_counter() - start


def profiled(runs: dict[tuple[str, int], Path], output: Path, top: int) -> None:
    """The package's functions that take the most of one more aggregation, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(write_study_outputs, output, runs)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"wsod_mammo", top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="a finished `wsod study` output folder")
    parser.add_argument("--copies", type=int, default=100, help="times each run's test images are repeated")
    parser.add_argument("--trains", type=int, default=0, help="fill up to this many train methods (copies)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="then profile the large aggregation once more and list its N costliest functions",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        small = copied_runs(args.study, Path(tmp) / "small", 1, args.trains)
        large = copied_runs(args.study, Path(tmp) / "large", args.copies, args.trains)
        images = [_test_images(next(iter(runs.values()))) for runs in (small, large)]
        seconds = [timed(runs, Path(tmp) / f"out_{i}") for i, runs in enumerate((small, large))]
        print(f"runs: {len(small)} ({len({m for m, _ in small})} train methods x {len({s for _, s in small})} seeds)")
        print(f"{'test images a run':>20} {'seconds':>10}")
        for count, elapsed in zip(images, seconds, strict=True):
            print(f"{count:>20} {elapsed:>10.1f}")
        if args.profile:
            profiled(large, Path(tmp) / "profiled", args.profile)


if __name__ == "__main__":
    main()
