"""Table II's cells over several seeds with intervals that count the test set as well as the seeds.

The Student-t interval of a cell's per-seed TPRs sees how training varies, not what the test set's masses do to every
seed alike: three seeds at 0.61, 0.62 and 0.63 read [0.59, 0.65] on a test set whose own bootstrap interval is ten
times as wide. Each seed is a reader of the same test images, so the cell's interval is Hillis's single-treatment
analysis with readers and cases random (:func:`single_treatment_interval`, checked against MRMCaov's published
intervals), the covariance of the seeds' TPRs taken over the same class-stratified bootstrap draws of the test
studies that their reports drew (the first seed's report's).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wsod_mammo.detection.bootstrap import bootstrap_covariance
from wsod_mammo.detection.compare import load_side, resampled_tprs
from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
from wsod_mammo.detection.study_paired import TEST_SET_AND_SEEDS
from wsod_mammo.detection.study_tables import Estimate

log = logging.getLogger(__name__)

Cells = dict[str, dict[str, tuple[Estimate, Estimate]]]


def with_test_set_intervals(cells: Cells, runs: dict[tuple[str, int], Path]) -> tuple[Cells, bool]:
    """``cells`` (:func:`table2_cells`') with each TPR over two seeds or more given its interval over the seeds and
    the test set, and whether they were: all cells or none (one table, one kind of interval), none with a warning
    naming why where a run's image record cannot give it. ``runs``: ``(train, seed) -> detection.json``."""
    out: Cells = {}
    try:
        for train, row in cells.items():
            seeds = sorted(s for m, s in runs if m == train)
            for test, (tpr, fppi) in row.items():
                out.setdefault(train, {})[test] = (_cell(tpr, train, test, seeds, runs), fppi)
    except (ValueError, KeyError) as error:
        log.warning("table2.md: its intervals are Student-t over the seeds only (the seeds' spread, not the test "
                    "set's): %s", error)  # fmt: skip
        return cells, False
    return out, True


def _cell(tpr: Estimate, train: str, test: str, seeds: list[int], runs: dict[tuple[str, int], Path]) -> Estimate:
    if tpr.basis != "seeds":  # one seed: its report's bootstrap interval already counts the test set
        return tpr
    sides: list[dict[str, Any]] = []
    labels: list[str] = []
    budget, draws = 0.0, 0
    for seed in seeds:
        run = runs[(train, seed)].parent
        label, side, budget, seed_of_draws = load_side(f"{run}:{test}", run, "mass")
        draws = seed_of_draws if not sides else draws
        sides.append(side)
        labels.append(label)
    values = resampled_tprs(sides, budget, draws, labels)  # (seeds, 1 + B)
    interval = single_treatment_interval(values[:, 0], bootstrap_covariance(values[:, 1:]))
    if interval["low"] != interval["low"]:  # NaN: a seed's TPR undefined, or no resample with a mass
        raise ValueError(f"train {train}, test {test}: no interval over the test set ({', '.join(labels)})")
    low, high = max(interval["low"], 0.0), min(interval["high"], 1.0)
    return Estimate(interval["estimate"], low, high, len(seeds), TEST_SET_AND_SEEDS)
