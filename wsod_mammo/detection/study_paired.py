"""The study's ``table1_paired.md``: each train method's AUC minus the reference train method's, paired on the
same test images.

Table I's per-method intervals overlap wherever the classifiers are good, yet whether training GMIC with one
saliency method classifies better than with another is a question about the difference on the same images. For
each seed both methods ran, their heads are compared as ``wsod report --compare A:fusion B:fusion`` does (the
paired bootstrap over the same studies, :func:`paired_auc`): with one seed the paired bootstrap's interval, the share
of resamples where the method is not better and DeLong's test clustered by study (:mod:`delong`); over two seeds or
more Obuchowski-Rockette's test with each seed a random reader of the same test images and DeLong's clustered
covariance of all the runs' AUCs (:func:`seeds_auc_test`), its interval and p, which count what the test set does to
every seed alike as well as the seeds' spread (the Student-t interval and t-test of the per-seed differences see only
the spread: too narrow, and a p below 0.05 in 22% of the test sets where the methods are equally good). A section
of its own pairs the heads' Brier scores the same way (``calibration.md``'s: the better-ranking head need not be the
one whose probabilities can be taken at their word), the covariance over seeds from the first seed's draws.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch

from wsod_mammo.detection.bootstrap import SEED, bootstrap_covariance, resample_weights
from wsod_mammo.detection.calibration import calibration_figures
from wsod_mammo.detection.compare import IMAGES_FILE
from wsod_mammo.detection.compare_auc import CLASSIFICATION, HEAD_NAMES, breast_side, head_side, p_value, paired_auc
from wsod_mammo.detection.delong import auc_covariance
from wsod_mammo.detection.obuchowski_rockette import RESULT_KEYS, rrrc_test
from wsod_mammo.detection.report import METHOD_ORDER, MISSING, _markdown
from wsod_mammo.detection.study_tables import Estimate, seed_interval

# an Estimate's basis where its interval is Obuchowski-Rockette's over seeds (readers) and test cases, both random
TEST_SET_AND_SEEDS = "seeds and test set"


def load_image_records(runs: dict[tuple[str, int], Path]) -> dict[tuple[str, int], dict[str, Any]]:
    """Each run's ``classification`` image record (beside its ``detection.json``); ``{}`` where the file is missing,
    unreadable or written before it recorded one (the table then names the run)."""
    records = {}
    for key, report in runs.items():
        try:
            data = json.loads((Path(report).parent / IMAGES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        records[key] = {CLASSIFICATION: data[CLASSIFICATION], "seed": data.get("bootstrap_seed")} if (
            isinstance(data, dict) and isinstance(data.get(CLASSIFICATION), dict)
        ) else {}  # fmt: skip
    return records


def runs_without_breasts(records: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """The runs (``<method>_seed<seed>``) whose image record names no breast per image: the breast-level section
    needs every run's."""
    return [
        f"{m}_seed{s}" for (m, s), r in sorted(records.items()) if "breast_keys" not in (r.get(CLASSIFICATION) or {})
    ]


def paired_differences(
    records: dict[tuple[str, int], dict[str, Any]],
    reference: str,
    level: str = "image",
    figures: tuple[str, ...] = ("auc",),
) -> dict[str, dict[tuple[str, str], tuple[Estimate, float, float]]]:
    """``{figure: {(train method, head): (difference against reference, share of resamples not better, p)}}`` over
    the seeds both ran. ``auc``: the share with one seed only, else NaN; p: DeLong's clustered test with one seed,
    over seeds :func:`seeds_auc_test`'s. ``brier``: the Brier score (lower is better: the share of resamples where it
    is not below the reference's; no p with one seed, over seeds Obuchowski-Rockette's over the first seed's draws,
    :func:`seeds_brier_draws`). ``level``: ``image`` (Table I) or ``breast`` (its breast level, :func:`breast_side`).
    Raises ValueError naming the runs a pair cannot compare."""
    out: dict[str, dict[tuple[str, str], tuple[Estimate, float, float]]] = {figure: {} for figure in figures}
    for method in sorted({m for m, _ in records} - {reference}, key=METHOD_ORDER.index):
        seeds = sorted({s for m, s in records if m == method} & {s for m, s in records if m == reference})
        for head in HEAD_NAMES:
            results, pairs = [], []
            for seed in seeds:
                runs = (f"{method}_seed{seed}", f"{reference}_seed{seed}")
                try:
                    side, reference_side = (head_side(records[(m, seed)][CLASSIFICATION], head)
                                            for m in (method, reference))  # fmt: skip
                    if level == "breast":
                        side, reference_side = breast_side(side, runs[0]), breast_side(reference_side, runs[1])
                except ValueError as error:
                    raise ValueError(f"table1_paired.md: {' or '.join(runs)}: {error}") from None
                results.append(paired_auc(side, reference_side, report_seed(records[(method, seed)]), labels=runs,
                                          with_brier="brier" in figures))  # fmt: skip
                pairs.append((side, reference_side))
            if "brier" in figures:
                out["brier"][(method, head)] = _brier_estimate(results, pairs, report_seed(records[(method, seeds[0])]))
            if "auc" not in figures:
                continue
            if len(results) == 1:
                r = results[0]
                out["auc"][(method, head)] = one_seed_estimate(r), r["p_a_not_better"], r["delong"]["p"]
            else:
                test, differences = seeds_auc_test(pairs), [r["difference"]["value"] for r in results]
                out["auc"][(method, head)] = seeds_estimate(test, differences), math.nan, test["p"]
    return out


def _brier_estimate(
    results: list[dict[str, Any]], pairs: list[tuple[dict[str, Any], dict[str, Any]]], seed: int
) -> tuple[Estimate, float, float]:
    """:func:`paired_differences`'s entry for the Brier score from the seeds' :func:`paired_auc` ``results`` (with
    their ``brier``) and sides ``pairs``."""
    if len(results) == 1:
        brier = results[0]["brier"]
        return one_seed_estimate({**brier, "resampled": results[0]["resampled"]}), brier["p_a_not_better"], math.nan
    drawn = seeds_brier_draws(pairs, seed)
    test = dict.fromkeys(RESULT_KEYS, math.nan) if drawn is None else seeds_draws_test(drawn)
    return seeds_estimate(test, [r["brier"]["difference"]["value"] for r in results]), math.nan, test["p"]


def seeds_auc_test(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    """Obuchowski-Rockette's test (readers and cases random) of A's AUC minus B's, each seed a reader: ``pairs`` holds
    per seed A's and B's sides (:func:`head_side`, or :func:`breast_side`) of the same images, the covariance of the
    ``2 x seeds`` AUCs is DeLong's, clustered by study where every side records studies (:func:`rrrc_test`'s keys,
    NaN where the seeds' sides do not rate the same images alike)."""
    figures = seeds_auc_figures(pairs)
    if figures is None:
        return dict.fromkeys(RESULT_KEYS, math.nan)
    return rrrc_test(*figures)


def seeds_auc_figures(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(AUC (2, seeds), DeLong's covariance (2 seeds, 2 seeds))`` of :func:`seeds_auc_test`'s ``pairs``, A's row
    first; None where the seeds' sides do not rate the same images alike."""
    first = pairs[0][0]
    order = {k: i for i, k in enumerate(first["image_keys"])}
    target = torch.tensor(first["target"], dtype=torch.float64)
    scores = [probabilities_in_order(side, order, target) for side in [a for a, _ in pairs] + [b for _, b in pairs]]
    if any(s is None for s in scores):
        return None
    sides = [side for pair in pairs for side in pair]
    studies = torch.tensor(first["study_keys"]) if all("study_keys" in side for side in sides) else None
    auc, covariance = auc_covariance(torch.stack(cast(list[torch.Tensor], scores)), target, studies)
    return auc.reshape(2, len(pairs)), covariance


def seeds_brier_draws(pairs: list[tuple[dict[str, Any], dict[str, Any]]], seed: int) -> torch.Tensor | None:
    """``(2 x runs, 1 + B)``: the Brier score of every run of ``pairs`` (A's runs, then B's) on the full sample, then
    on each of the first A run's report's draws (``seed``; whole studies where every run recorded them): one run a
    side, the draws :func:`paired_auc` prints its Brier lines over. None where the runs do not rate the same images
    alike."""
    first = pairs[0][0]
    order = {k: i for i, k in enumerate(first["image_keys"])}
    target = torch.tensor(first["target"], dtype=torch.float64)
    sides = [a for a, _ in pairs] + [b for _, b in pairs]
    studies = torch.tensor(first["study_keys"], dtype=torch.int64) if all("study_keys" in s for s in sides) else None
    probabilities = [probabilities_in_order(side, order, target) for side in sides]
    if any(p is None for p in probabilities):
        return None
    keys = torch.tensor(first["image_keys"], dtype=torch.int64)
    drawn = resample_weights(torch.tensor(first["target"]), seed=seed, keys=keys, groups=studies)
    weights = torch.cat([torch.ones(1, keys.numel()), drawn]).double()  # once, not per run
    return torch.stack(
        [calibration_figures(weights, p, target)["brier"] for p in cast(list[torch.Tensor], probabilities)]
    )


def seeds_draws_test(drawn: torch.Tensor) -> dict[str, float]:
    """Obuchowski-Rockette's test of A - B (:func:`rrrc_test`'s keys) from ``drawn (2 x runs, 1 + B)``: A's runs then
    B's, each its full sample's figure then the same bootstrap draws', whose covariance is the runs' over the test
    set (:func:`seeds_brier_draws`; TPR and the pointing game over runs)."""
    return rrrc_test(drawn[:, 0].reshape(2, -1), bootstrap_covariance(drawn[:, 1:]))


def probabilities_in_order(side: dict[str, Any], order: dict[int, int], target: torch.Tensor) -> torch.Tensor | None:
    """``side``'s probabilities in ``order`` (image key -> position); None where it rates other images, or labels
    them otherwise than ``target``."""
    if len(side["image_keys"]) != len(order) or set(side["image_keys"]) != set(order):
        return None
    position = torch.tensor([order[k] for k in side["image_keys"]])
    scores, labels = torch.empty(len(order), dtype=torch.float64), torch.empty(len(order), dtype=torch.float64)
    scores[position] = torch.tensor(side["probabilities"], dtype=torch.float64)
    labels[position] = torch.tensor(side["target"], dtype=torch.float64)
    return scores if torch.equal(labels, target) else None


def report_seed(record: dict[str, Any]) -> int:
    """The bootstrap seed a run's test report drew with (``SEED`` for a report written before it was recorded): a
    paired comparison redraws with it, so the run's side has its report's interval."""
    return SEED if record.get("seed") is None else int(record["seed"])


def one_seed_estimate(result: dict[str, Any]) -> Estimate:
    """A paired difference of one seed's runs with its paired bootstrap's interval (over what it drew)."""
    d = result["difference"]
    return Estimate(d["value"], d["low"], d["high"], 1, result["resampled"])


def seeds_estimate(test: dict[str, float], differences: list[float]) -> Estimate:
    """A paired difference over seeds with the interval of its Obuchowski-Rockette ``test`` (:func:`rrrc_test`'s
    keys), which counts the test set's sampling as well as the seeds' spread, as its p does (cut to [-1, 1]); where
    that test is undefined (the seeds' runs rate other images), the Student-t interval of the per-seed
    ``differences``, the seeds' spread alone."""
    if math.isnan(test["low"]):
        return seed_interval(differences, bounds=(-1.0, 1.0))
    low, high = max(test["low"], -1.0), min(test["high"], 1.0)
    return Estimate(test["difference"], low, high, len(differences), TEST_SET_AND_SEEDS)


def basis_text(estimate: Estimate) -> str:
    """What a paired table's interval is over: ``3 seeds and the test set``, ``3 seeds``, ``studies (1 seed)``,
    ``one value``."""
    texts = {TEST_SET_AND_SEEDS: f"{estimate.n} seeds and the test set", "seeds": f"{estimate.n} seeds",
             "none": "one value"}  # fmt: skip
    return texts.get(estimate.basis, f"{estimate.basis} (1 seed)")


def p_cells(*p_values: float) -> list[str]:
    """p-values as a paired table prints them (``0.042``, ``< 0.001``; ``n/a`` for none)."""
    return [MISSING if math.isnan(p) else p_value(p) for p in p_values]


def table1_paired_text(
    differences: dict[tuple[str, str], tuple[Estimate, float, float]],
    reference: str,
    breasts: dict[tuple[str, str], tuple[Estimate, float, float]] | None = None,
    brier: dict[tuple[str, str], tuple[Estimate, float, float]] | None = None,
) -> str:
    """The table: per train method and head, the AUC difference with its interval, over what, (one seed) the share
    of the paired resamples where the method is not better, and the p-value of the difference; ``breasts``: the same
    at breast level, a section of its own; ``brier``: the Brier score's differences (:func:`paired_differences`'s
    ``brier``), another."""
    header = ["train", "head", f"AUC - {reference}'s", "interval over", f"share of resamples <= {reference}", "p",
              "p (Holm)"]  # fmt: skip
    breast_section = "" if breasts is None else (
        "\n## Breast level\n\nThe same per breast, as `table1_breast.md` rates them (a breast's probability the mean "
        "of its views')\n\n" + _markdown(header, _paired_rows(breasts))
    )  # fmt: skip
    return (
        f"Table I paired: each train method's AUC minus {reference}'s (the reference: the first train method of the "
        "study), on the same test images; with one seed the paired bootstrap's 95% interval over the test report's "
        f"draws, the share of those resamples where the method's AUC is not above {reference}'s and the two-sided p "
        "of DeLong's test clustered by study (Obuchowski 1997); over the seeds both ran the 95% interval and "
        "two-sided p of Obuchowski-Rockette's test with each seed a random reader and the test images random "
        "(DeLong's clustered covariance, Hillis's degrees of freedom: RJafroc's RRRC), which count the test set's "
        "sampling as well as the seeds' spread (the Student-t interval of the per-seed differences where the seeds' "
        "runs rate other images, and no p); p (Holm): adjusted for the comparisons of the head's "
        "column (one per train method), so that 5% bounds the chance of any false finding among them\n\n"
        + _markdown(header, _paired_rows(differences))
        + breast_section
        + ("" if brier is None else _brier_section(brier, reference))
        + two_seeds_note(e for e, _, _ in [*differences.values(), *(breasts or {}).values(), *(brier or {}).values()])
    )


def _brier_section(differences: dict[tuple[str, str], tuple[Estimate, float, float]], reference: str) -> str:
    """The Brier scores' section of ``table1_paired.md``: is the method's probability nearer the truth, image by
    image, than the reference's (``calibration.md``'s Brier score; lower is better)."""
    header = ["train", "head", f"Brier score - {reference}'s", "interval over",
              f"share of resamples >= {reference}", "p", "p (Holm)"]  # fmt: skip
    return (
        f"\n## Brier score\n\nEach train method's Brier score minus {reference}'s on the same test images "
        "(`calibration.md`'s; lower is better: a negative difference, probabilities nearer the truth): with one seed "
        f"the paired bootstrap's 95% interval over the test report's draws and the share of them where the method's "
        f"score is not below {reference}'s (no p); over the seeds both ran Obuchowski-Rockette's interval and p, "
        "each seed a random reader, the covariance of every run's score over the first seed's draws of the test "
        "studies\n\n" + _markdown(header, _paired_rows(differences))
    )


def two_seeds_note(estimates: Iterable[Estimate]) -> str:
    """A paragraph under a paired table whose tests over seeds rest on two seeds (empty otherwise): Obuchowski-
    Rockette's test then has one degree of freedom for how the seeds differ and rejects too often."""
    if not any(e.basis == TEST_SET_AND_SEEDS and e.n == 2 for e in estimates):
        return ""
    return (
        "\nTwo seeds: the test over seeds rests on one degree of freedom for how the seeds differ and can reject too "
        "often (at the 5% level, 11.6% of null test sets in `tests/test_jackknife.py`'s simulation of the pointing "
        "game, where each method fares on a study much the same however trained, 10.5% in its TPR one, 6.3% in its "
        "wAFROC one, 5.9% in its Brier score one; 7.6% and 6.2% with three seeds): read its p with care, or run three "
        "seeds or more.\n"
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (NaN ones left out of the count and kept NaN): the i-th smallest
    of m times (m - i + 1), never below an earlier one, at most 1."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def _paired_rows(differences: dict[tuple[str, str], tuple[Estimate, float, float]]) -> list[list[str]]:
    keys = list(differences)
    adjusted: dict[tuple[str, str], float] = {}
    for head in dict.fromkeys(h for _, h in keys):  # each head's comparisons, one per train method
        column = [k for k in keys if k[1] == head]
        adjusted |= dict(zip(column, holm([differences[k][2] for k in column]), strict=True))
    rows = []
    for (method, head), (estimate, share, p) in differences.items():
        shown = MISSING if math.isnan(share) else f"{share:.3f}"
        rows.append([method, head, estimate.text(3, signed=True), basis_text(estimate), shown,
                     *p_cells(p, adjusted[(method, head)])])  # fmt: skip
    return rows
