"""The study's headline figures over several seeds with intervals that count the test set as well as the seeds.

The Student-t interval of a figure's per-seed values sees how training varies, not what the test set's studies do to
every seed alike: three seeds at 0.61, 0.62 and 0.63 read [0.59, 0.65] on a test set whose own bootstrap interval is
ten times as wide. Each seed is a reader of the same test images, so a figure's interval over seeds is Hillis's
single-treatment analysis with readers and cases random (:func:`single_treatment_interval`, checked against MRMCaov's
published intervals), the covariance of the seeds' figures taken over the same class-stratified bootstrap draws of
the test studies that their reports drew (the first seed's report's): Table II's TPR at the FPPI budget, Table I's
accuracy, AUC, TPR and TNR per head, at image and breast level, ``calibration.md``'s Brier score, ECE, slope and
intercept, ``wafroc.md``'s wAFROC and AFROC, and ``pointing_game.md``'s pointing game and energy inside the masses;
and, through :mod:`study_strata_over_seeds`, each of them per breast density, finding BI-RADS and mass size, each
seed's records restricted as its report restricted its result (:mod:`record_strata`).
All of a table's cells or none: where a run's image record cannot give them, the table keeps Student-t intervals and
a warning says why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from wsod_mammo.detection.afroc import figures_of_merit
from wsod_mammo.detection.bootstrap import (
    bootstrap_covariance,
    classification_figures,
    resample_weights,
)
from wsod_mammo.detection.calibration import calibration_figures
from wsod_mammo.detection.compare import (
    IMAGES_FILE,
    paired_draws,
    read_images_file,
    resampled_tprs,
    same_images,
    side_in,
)
from wsod_mammo.detection.compare_afroc import side_ratings, stratum_ratings
from wsod_mammo.detection.compare_auc import CLASSIFICATION, HEAD_NAMES, breast_side, head_side
from wsod_mammo.detection.compare_pointing import drawn_means, scored, scored_keys
from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
from wsod_mammo.detection.recalibration import recalibration
from wsod_mammo.detection.record_strata import density_only, stratum_restriction
from wsod_mammo.detection.study_cells import UNBOUNDED
from wsod_mammo.detection.study_cells import Cells as FigureCells
from wsod_mammo.detection.study_paired import (
    TEST_SET_AND_SEEDS,
    probabilities_in_order,
    report_seed,
)
from wsod_mammo.detection.study_tables import Estimate, mean_and_sd

log = logging.getLogger(__name__)

#: ``pointing_game.md``'s figures -> the names the runs' image records give them
POINTING_RECORDS = {"hit": "pointing", "energy": "energy"}

Cells = dict[str, dict[str, tuple[Estimate, Estimate]]]


def with_test_set_intervals(
    cells: Cells,
    runs: dict[tuple[str, int], Path],
    restrict: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
    what: str = "table2.md",
    files: dict[str, list[RunFile]] | None = None,
) -> tuple[Cells, bool]:
    """``cells`` (:func:`table2_cells`') with each TPR over two seeds or more given its interval over the seeds and
    the test set, and whether they were: all cells or none (one table, one kind of interval), none with a warning
    naming ``what`` and why where a run's image record cannot give it. ``runs``: ``(train, seed) -> detection.json``;
    ``restrict(records, label)``: each seed's records of one stratum (:func:`stratum_only`), for a per-stratum table;
    ``files``: the runs' image records by train method, read once for several calls (filled as read)."""
    tprs = {train: {test: {"tpr": tpr} for test, (tpr, _) in row.items()} for train, row in cells.items()}
    over, counted = cells_over_test_set(tprs, runs, partial(_resampled_tpr, restrict=restrict), what, files)
    return {train: {test: (over[train][test]["tpr"], fppi) for test, (_, fppi) in row.items()}
            for train, row in cells.items()}, counted  # fmt: skip


def _resampled_tpr(
    train: str, test: str, files: list[RunFile], restrict: Callable[[dict[str, Any], str], dict[str, Any]] | None
) -> dict[str, torch.Tensor]:
    """``{"tpr": (seeds, 1 + B)}`` of one Table II cell's runs: each seed's TPR at its FPPI budget over the full
    sample then the first seed's report's draws, each seed's records of one stratum where ``restrict`` is given."""
    loaded = _seed_sides(test, files, "mass")
    labels = [label for label, *_ in loaded]
    sides = [side if restrict is None else restrict(side, label) for label, side, *_ in loaded]
    return {"tpr": resampled_tprs(sides, loaded[0][2], loaded[0][3], labels)}


#: a seed's run as its image record was read once for a row of cells: (its label, the record's path, its content)
RunFile = tuple[str, Path, dict[str, Any]]


def _run_files(train: str, runs: dict[tuple[str, int], Path]) -> list[RunFile]:
    """Each seed's image record of ``train``'s runs, in seed order, read once for all of a table row's cells."""
    files = []
    for seed in sorted(s for m, s in runs if m == train):
        run = runs[(train, seed)].parent
        label, _, path, data = read_images_file(f"{run}:", run)
        files.append((label.removesuffix(":"), path, data))
    return files


def _seed_sides(test: str, files: list[RunFile], subset: str) -> list[tuple[str, dict[str, Any], float, int]]:
    """Each seed's side of test method ``test`` on ``subset``'s images (as :func:`load_side` gives it: label,
    records, FPPI budget and report's bootstrap seed)."""
    return [(f"{run}:{test}", *side_in(data, test, subset, f"{run}:{test}", path)) for run, path, data in files]


def figures_of_merit_over_test_set(cells: FigureCells, runs: dict[tuple[str, int], Path]) -> tuple[FigureCells, bool]:
    """``wafroc.md``'s ``cells`` (:func:`method_cells`') with each figure over two seeds or more given its interval
    over the seeds and the test set (every test image: the normal images hold the false positives), and whether they
    were: all cells or none, as :func:`with_test_set_intervals`."""
    return cells_over_test_set(cells, runs, resampled_figures_of_merit, "wafroc.md")


def pointing_over_test_set(cells: FigureCells, runs: dict[tuple[str, int], Path]) -> tuple[FigureCells, bool]:
    """``pointing_game.md``'s ``cells`` alike: the pointing game and the energy inside the masses over the images with
    a mass in view, each seed's mean over the same draws of the studies."""
    return cells_over_test_set(cells, runs, resampled_pointing, "pointing_game.md")


def cells_over_test_set(
    cells: FigureCells,
    runs: dict[tuple[str, int], Path],
    resampled: Callable[[str, str, list[RunFile]], dict[str, torch.Tensor]],
    what: str,
    files: dict[str, list[RunFile]] | None = None,
) -> tuple[FigureCells, bool]:
    """Each cell of two seeds or more with its figures over the seeds and the test set from ``resampled(train, test,
    files)``'s ``{figure: (seeds, 1 + B)}``; all cells or none, the warning naming ``what`` and why. ``files``: the
    runs' image records by train method, read once for several calls (filled as read)."""
    files = {} if files is None else files
    out: FigureCells = {}
    try:
        for train, row in cells.items():
            over_seeds = [any(e.basis == "seeds" for e in figures.values()) for figures in row.values()]
            if any(over_seeds) and train not in files:  # one seed: its report's interval counts the test set
                files[train] = _run_files(train, runs)
            for (test, figures), over in zip(row.items(), over_seeds, strict=True):
                if not over:
                    out.setdefault(train, {})[test] = figures
                    continue
                values = resampled(train, test, files[train])
                out.setdefault(train, {})[test] = {
                    figure: _estimate(values[figure], f"train {train}, test {test}, {figure}") for figure in figures
                }
    except (ValueError, KeyError) as error:
        log.warning("%s: its intervals are Student-t over the seeds only (the seeds' spread, not the test set's): %s",
                    what, error)  # fmt: skip
        return cells, False
    return out, True


def resampled_pointing(
    train: str, test: str, files: list[RunFile], stratum: tuple[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """``{"hit", "energy": (seeds, 1 + B)}`` of one cell's runs: each seed's mean over the images with a mass in view,
    the full sample then the first seed's report's draws of whole studies (as its ``pointing_game.md`` interval);
    ``stratum``: ``(kind, label)`` of ``pointing_by_kind.md``'s."""
    loaded = _seed_sides(test, files, "mass")
    first = loaded[0][1]
    out = {}
    for figure, recorded in POINTING_RECORDS.items():
        values = [_scored(side, recorded, label, stratum) for label, side, *_ in loaded]
        differing = f"train {train}, test {test}: the seeds' runs scored different images (masses in view)"
        out[figure] = drawn_means(values, scored_keys(values, first, differing), first, loaded[0][3])
    return out


def _scored(side: dict[str, Any], recorded: str, label: str, stratum: tuple[str, str] | None) -> dict[int, float]:
    """:func:`scored` of the side, or of its stratum: a density's images, a BI-RADS's or size's masses."""
    if stratum is None:
        return scored(side, recorded, label)
    kind, name = stratum
    if kind == "density":
        return scored(density_only(side, name, label), recorded, label)
    return scored(side, recorded, label, name)


def resampled_figures_of_merit(
    train: str, test: str, files: list[RunFile], stratum: tuple[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """``{"wafroc", "afroc": (seeds, 1 + B)}`` of one (train, test) cell's runs over every test image, the full sample
    then the first seed's report's draws; ``stratum``: ``(kind, label)`` of ``wafroc_by_kind.md``'s."""
    loaded = _seed_sides(test, files, "all")
    first_label, first, _, draws = loaded[0]
    rows: dict[str, list[torch.Tensor]] = {}
    for label, side, *_ in loaded:
        order, weights = _shared_draws(first, side, draws, (first_label, label))
        rated = side_ratings(side, order, label)
        if stratum is not None:  # wafroc_by_kind.md's rule: a density's images, a kind's masses and every normal
            kind, name = stratum
            density, masses = (name, None) if kind == "density" else (None, name)
            rated = stratum_ratings(rated, side, order, label, masses, density)
        for name, values in figures_of_merit(rated, weights).items():
            rows.setdefault(name, []).append(values)
    return {name: torch.stack(values) for name, values in rows.items()}


#: the last draws :func:`_shared_draws` made: ``{signature: (order, float64 weights (1 + B, N))}``, one entry
_LAST_DRAWS: dict[tuple[Any, ...], tuple[dict[int, int], torch.Tensor]] = {}


def _shared_draws(
    first: dict[str, Any], side: dict[str, Any], seed: int, labels: tuple[str, str]
) -> tuple[dict[int, int], torch.Tensor]:
    """:func:`paired_draws` of ``side`` against the first seed's ``first`` (its order, the full sample's and its
    report's draws' weights), kept while the first seed's images stay the same: every seed, test method and stratum of
    a train method's runs draws them alike, and at VinDr's size each draw costs about 10 ms and 30 MB."""
    if "study_keys" not in side:  # drawn image by image for this pair: not the shared draws
        order, weights, _ = paired_draws(first, side, seed, labels)
        return order, weights.double()
    same_images(first, side, labels)
    signature = (seed, tuple(first["image_keys"]), tuple(first.get("study_keys", ())),
                 tuple(g > 0 for g in first["image_gt"]))  # fmt: skip
    if signature not in _LAST_DRAWS:
        _LAST_DRAWS.clear()
        order, weights, _ = paired_draws(first, first, seed, (labels[0], labels[0]))
        _LAST_DRAWS[signature] = (order, weights.double())
    return _LAST_DRAWS[signature]


def table1_over_test_set(
    records: dict[tuple[str, int], dict[str, Any]], level: str = "image", density: str | None = None
) -> dict[tuple[str, str], dict[str, Estimate]] | None:
    """``{(train, head): {figure: Estimate}}``: Table I's figures (``accuracy``, ``auc``, ``tpr``, ``tnr``) of every
    train method run with two seeds or more, over its seeds and the test set, per image or (``level="breast"``) per
    breast as ``table1_breast.md`` rates them, or over one ``density``'s images (``table1_by_density.md``); None, with
    a warning naming why, where a run's image record cannot give them (the table then keeps its Student-t intervals).
    ``records``: the runs' classification image records, ``(train, seed) -> ``:func:`load_image_records`'s, read
    once for every level and density."""
    what = "table1.md" if level == "image" else "table1_breast.md"
    restrict = None
    if density is not None:
        what, restrict = f"table1_by_density.md ({density})", stratum_restriction("density", density)
    return _heads_over_test_set(records, level, classification_figures, lambda _, v, w: _estimate(v, w), what, restrict)


def calibration_over_test_set(
    records: dict[tuple[str, int], dict[str, Any]],
) -> dict[tuple[str, str], dict[str, Estimate]] | None:
    """``calibration.md``'s figures (Brier score, ECE, recalibration slope and intercept) of every train method run with
    two seeds or more, over its seeds and the test set, as :func:`table1_over_test_set`'s. A slope or intercept that a
    seed's probabilities or a drawn resample's leave without a finite estimate (they separate the classes) has the
    seeds' mean and no interval, as the test report gives none then."""
    return _heads_over_test_set(records, "image", _calibration_figures, _calibration_estimate, "calibration.md")


def _calibration_figures(weights: torch.Tensor, probabilities: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    return calibration_figures(weights, probabilities, target) | recalibration(weights, probabilities, target)


def _calibration_estimate(name: str, values: torch.Tensor, what: str) -> Estimate:
    if name in ("brier", "ece"):
        return _estimate(values, what)
    if not bool(torch.isfinite(values).all()):  # no finite fit for a seed or a resample: no interval
        n, mean, _ = mean_and_sd(values[:, 0].tolist())
        return Estimate(mean, math.nan, math.nan, n, TEST_SET_AND_SEEDS)
    return _estimate(values, what, UNBOUNDED)


def _heads_over_test_set(
    records: dict[tuple[str, int], dict[str, Any]],
    level: str,
    figures_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    estimate: Callable[[str, torch.Tensor, str], Estimate],
    what: str,
    restrict: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
) -> dict[tuple[str, str], dict[str, Estimate]] | None:
    """Per (train, head) of two seeds or more, ``figures_of(weights, probabilities, target)``'s figures over the seeds
    and the test set (``estimate(figure, values (seeds, 1 + B), what)``); None with a warning naming ``what``.
    ``restrict(record, run)``: each run's classification record of one stratum."""
    out = {}
    try:
        for train in dict.fromkeys(m for m, _ in sorted(records)):
            seeds = sorted(s for m, s in records if m == train)
            if len(seeds) < 2:
                continue
            for head in HEAD_NAMES:
                sides = []
                for seed in seeds:
                    if CLASSIFICATION not in records[(train, seed)]:  # a KeyError said 'classification' alone
                        raise ValueError(
                            f"run {train}_seed{seed}: its {IMAGES_FILE} (beside its detection.json) is "
                            "missing, unreadable or records no probabilities per image; test it again"
                        )
                    record = records[(train, seed)][CLASSIFICATION]
                    side = head_side(record if restrict is None else restrict(record, f"{train}_seed{seed}"), head)
                    sides.append(breast_side(side, f"{train}_seed{seed}") if level == "breast" else side)
                draws = report_seed(records[(train, seeds[0])])
                figures = _resampled_by_image(sides, draws, f"{train}_seed{seeds[0]}", figures_of)
                out[(train, head)] = {k: estimate(k, v, f"train {train}, head {head}, {k}") for k, v in figures.items()}
    except (ValueError, KeyError, TypeError) as error:
        log.warning("%s: its intervals over seeds are Student-t over the seeds only (the seeds' spread, not the test "
                    "set's): %s", what, error)  # fmt: skip
        return None
    return out


def _resampled_by_image(
    sides: list[dict[str, Any]],
    seed: int,
    label: str,
    figures_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """``{figure: (len(sides), 1 + B)}``: each side's figures over the full sample then over the first side's report's
    class-stratified draws of whole studies (images one by one where it records no studies)."""
    first = sides[0]
    order = {k: i for i, k in enumerate(first["image_keys"])}
    target = torch.tensor(first["target"], dtype=torch.float64)
    keys = torch.tensor(first["image_keys"], dtype=torch.int64)
    groups = torch.tensor(first["study_keys"], dtype=torch.int64) if "study_keys" in first else None
    weights = torch.cat([torch.ones(1, keys.numel()), resample_weights(target, seed=seed, keys=keys, groups=groups)])
    rows: dict[str, list[torch.Tensor]] = {}
    for side in sides:
        if (probabilities := probabilities_in_order(side, order, target)) is None:
            raise ValueError(f"the seeds' runs were tested on different images than {label} (or label them otherwise)")
        for name, values in figures_of(weights, probabilities, target).items():
            rows.setdefault(name, []).append(values)
    return {name: torch.stack(values) for name, values in rows.items()}


def _estimate(values: torch.Tensor, what: str, bounds: tuple[float, float] = (0.0, 1.0)) -> Estimate:
    """A figure over seeds and the test set from ``values (seeds, 1 + B)``: full sample, then the shared draws; the
    interval cut to ``bounds``, the values the figure can take."""
    interval = single_treatment_interval(values[:, 0], bootstrap_covariance(values[:, 1:]))
    if interval["low"] != interval["low"]:  # NaN: a seed's figure undefined, or no resample defines it
        raise ValueError(f"{what}: no interval over the test set")
    low, high = max(interval["low"], bounds[0]), min(interval["high"], bounds[1])
    return Estimate(interval["estimate"], low, high, values.shape[0], TEST_SET_AND_SEEDS)
