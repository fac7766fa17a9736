"""The study's ``wafroc_paired.md``: every (train, test) pair's wAFROC figure of merit against the best pair's,
paired on the same test images.

``summary.md`` names the best pair by its mean; whether it localizes better than the runner-up or than CAM, or only
looks so on this test set, is a question about differences on the same images. For each seed, each pair is compared
with the best as ``wsod report --compare BEST_RUN:method RUN:method --figure wafroc`` does (the same class-stratified
resamples of whole test studies, :func:`paired_fom`): with one seed the paired bootstrap's interval and its two-sided
p; over two seeds or more Obuchowski-Rockette's test with each seed a random reader of the same test studies and the
covariance of all the runs' figures over those same resamples (:func:`seeds_bootstrap_test`), its interval and p,
which count the test set's sampling as well as the training's variation (the t-test of the per-seed differences, blind
to the first, put p below 0.05 in 22% of the test sets where two pairs are equally good). Holm's adjustment runs over
all the comparisons with the best pair (24 in the full study): the table asks one question, whether anything else is
as good as the best. Beside them, the jackknife test JAFROC analyses report (:mod:`wsod_mammo.detection.jackknife`):
with one seed readers fixed and cases random, over seeds the same Obuchowski-Rockette test from the jackknife's
covariance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from wsod_mammo.detection.compare import IMAGES_FILE
from wsod_mammo.detection.compare_afroc import paired_fom
from wsod_mammo.detection.compare_runs import seeds_bootstrap_test, seeds_jackknife_test
from wsod_mammo.detection.report import _markdown
from wsod_mammo.detection.study_cells import Cells
from wsod_mammo.detection.study_paired import (
    basis_text,
    holm,
    one_seed_estimate,
    p_cells,
    report_seed,
    seeds_estimate,
    two_seeds_note,
)
from wsod_mammo.detection.study_tables import Estimate

FIGURE = "wafroc"


def load_box_records(runs: dict[tuple[str, int], Path]) -> dict[tuple[str, int], dict[str, Any]]:
    """Each run's image record of every test image (``{"methods": {method: records}, "seed"}``, beside its
    ``detection.json``); ``{}`` where the file is missing, unreadable or written before it recorded each box's mass
    (the study then names the run)."""
    records = {}
    for key, report in runs.items():
        try:
            data = json.loads((Path(report).parent / IMAGES_FILE).read_text(encoding="utf-8"))
            methods = data["subsets"]["all"]
            usable = isinstance(methods, dict) and all("box_gt" in m and "gt_image" in m for m in methods.values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            usable = False
        records[key] = {"methods": methods, "seed": data.get("bootstrap_seed")} if usable else {}
    return records


def best_pair(cells: Cells) -> tuple[str, str]:
    """The (train, test) pair with the highest mean wAFROC (ties: the first in the table's order)."""
    pairs = [(train, test, figures[FIGURE].mean) for train, row in cells.items() for test, figures in row.items()]
    defined = [p for p in pairs if not math.isnan(p[2])]
    if not defined:
        raise ValueError("wafroc_paired.md: no pair has a wAFROC figure of merit")
    train, test, _ = max(defined, key=lambda p: p[2])  # max keeps the first of equals
    return train, test


def bootstrap_p(share_not_above: float, share_not_below: float, resamples: int) -> float:
    """Two-sided p of the paired bootstrap from the shares of resampled differences <= 0 and >= 0: twice the smaller
    tail, a difference of exactly 0 counting half to each (resamples that draw none of the studies where two pairs
    differ give 0, often), counted with one more (a share of 0 of 1,000 resamples is p < 0.002, not 0), at most 1."""
    tail = (1.0 - abs(share_not_above - share_not_below)) / 2
    return min(1.0, 2 * (tail * resamples + 1) / (resamples + 1))


def versus_best(
    records: dict[tuple[str, int], dict[str, Any]], cells: Cells
) -> tuple[tuple[str, str], dict[tuple[str, str], tuple[Estimate, float, float]]]:
    """The best pair, and per other pair ``(best's wAFROC minus the pair's over the seeds both ran, p, jackknife
    p)`` (:func:`jackknife_p`); raises ValueError naming the runs a pair cannot compare."""
    best_train, best_test = best_pair(cells)
    out = {}
    for train, row in cells.items():
        for test in row:
            if (train, test) == (best_train, best_test):
                continue
            seeds = sorted({s for m, s in records if m == train} & {s for m, s in records if m == best_train})
            draws = report_seed(records[(best_train, seeds[0])])  # the first seed's draws for all: one covariance
            results = []
            for seed in seeds:
                best_run, run = records[(best_train, seed)], records[(train, seed)]
                labels = (f"{best_train}_seed{seed}:{best_test}", f"{train}_seed{seed}:{test}")
                try:
                    results.append(paired_fom(best_run["methods"][best_test], run["methods"][test], FIGURE, draws,
                                              labels, jackknife=True))  # fmt: skip
                except (ValueError, KeyError) as error:
                    raise ValueError(f"wafroc_paired.md: {' and '.join(labels)}: {error}") from None
            if len(results) == 1:
                r = results[0]
                p = bootstrap_p(r["p_a_not_better"], r["p_a_not_worse"], r["resamples"])
                out[(train, test)] = one_seed_estimate(r), p, jackknife_p(results)
            else:
                over = seeds_bootstrap_test(results)
                differences = [r["difference"]["value"] for r in results]
                out[(train, test)] = seeds_estimate(over, differences), over["p"], jackknife_p(results)
    return (best_train, best_test), out


def jackknife_p(results: list[dict[str, Any]]) -> float:
    """The jackknife test's p of one comparison from its per-seed :func:`paired_fom` results: with one seed readers
    fixed and cases random, over seeds each seed a random reader (:func:`seeds_jackknife_test`); NaN where the seeds'
    runs were tested on different cases (another test split)."""
    if len(results) == 1:
        return float(results[0]["jackknife"]["p"])
    return seeds_jackknife_test(results)["p"]


def told_apart_text(differences: dict[tuple[str, str], tuple[Estimate, float, float]]) -> str:
    """What the summary says after the best pair: whether the jackknife test (Holm-adjusted over the comparisons)
    puts every other pair below it at 5%, and if not, which pairs it cannot tell from the best; empty without it."""
    adjusted = dict(zip(differences, holm([j for _, _, j in differences.values()]), strict=True))
    if not adjusted or all(math.isnan(p) for p in adjusted.values()):
        return ""
    close = [f"train {train}, test {test}" for (train, test), p in adjusted.items() if not p < 0.05]
    if not close:
        return "; below it, every other pair (jackknife p, Holm-adjusted, < 0.05)"
    return f"; not told apart from it (jackknife p, Holm-adjusted, >= 0.05 or undefined): {'; '.join(close)}"


def wafroc_paired_text(
    best: tuple[str, str], cells: Cells, differences: dict[tuple[str, str], tuple[Estimate, float, float]]
) -> str:
    """The table: per pair its wAFROC, the best pair's minus it with the interval, over what, p and Holm's p, and
    the jackknife test's p and its Holm's p."""
    adjusted = dict(zip(differences, holm([p for _, p, _ in differences.values()]), strict=True))
    jackknifed = dict(zip(differences, holm([j for _, _, j in differences.values()]), strict=True))
    rows = []
    for (train, test), (estimate, p, jackknife_p) in differences.items():
        rows.append([train, test, cells[train][test][FIGURE].text(3), estimate.text(3, signed=True),
                     basis_text(estimate), *p_cells(p, adjusted[(train, test)], jackknife_p,
                                                    jackknifed[(train, test)])])  # fmt: skip
    name = f"train {best[0]}, test {best[1]}"
    return (
        f"wAFROC paired: the best pair ({name}, wAFROC {cells[best[0]][best[1]][FIGURE].text(3)}) minus each other "
        "pair, on the same test images (every test image: the normal images hold the false positives the figure "
        "weighs); with one seed the 95% interval of the paired bootstrap over the best run's test report's draws "
        "of whole studies and its two-sided p (twice the smaller tail, a difference of 0 counting half to each, "
        "counted with one more: 1,000 resamples cannot say below 0.002); over the seeds both ran the 95% interval "
        "and two-sided p of Obuchowski-Rockette's test with each seed a random reader and the test studies random "
        "(the covariance of every run's figure over the same bootstrap draws, Hillis's degrees of freedom: "
        "RJafroc's RRRC), which count the test set's sampling as well as the training's (the Student-t interval "
        "of the per-seed differences, and no p, where the seeds' runs were tested on other studies); p (Holm): "
        "adjusted over every comparison with the best pair, so that 5% bounds the chance of any false finding "
        "among them; jackknife p: the test JAFROC analyses report (Obuchowski-Rockette, the jackknife over whole "
        "studies; one seed: readers fixed, cases random, RJafroc's FRRC; over seeds: the same test as p from the "
        "jackknife's covariance instead of the bootstrap's, RJafroc's RRRC), with "
        "its Holm adjustment\n\n"
        + _markdown(
            [
                "train",
                "test",
                "wAFROC",
                f"{name} minus it",
                "interval over",
                "p",
                "p (Holm)",
                "jackknife p",
                "jackknife p (Holm)",
            ],
            rows,
        )  # fmt: skip
        + two_seeds_note(e for e, _, _ in differences.values())
    )
