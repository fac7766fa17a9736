"""``wsod report --compare`` of several runs a side: A's runs against B's, each run a random reader of the same test
images (Obuchowski-Rockette, readers and cases random; RJafroc's RRRC).

One run a side compares two trained models on one test set. Two training configurations compared over seeds (a new
saliency method of one's own against the study's, two learning rates) need the runs of each seed paired and a test
that counts both how training varies and what the test set's studies do to every run alike, as ``wsod study``'s
paired tables do: ``RUN_1,RUN_2,RUN_3:fusion`` names a side's runs, and the i-th run of A is paired with the i-th of
B. Heads' AUC uses DeLong's covariance of every run's AUC clustered by study (:func:`seeds_auc_test`), their Brier
scores the covariance over the first A run's report's bootstrap draws of the studies (:func:`seeds_brier_draws`), as
one run a side prints the Brier score beside the AUC; Table II's
TPR at the FPPI budget, ``--figure pointing`` / ``energy`` and ``--figure wafroc`` / ``afroc`` the covariance of every
run's figure over the same bootstrap draws of the studies (:func:`seeds_bootstrap_test`), the last beside the
jackknife's (:func:`seeds_jackknife_test`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from wsod_mammo.detection.afroc import FIGURES
from wsod_mammo.detection.bootstrap import bootstrap_covariance
from wsod_mammo.detection.compare import load_side, masses_only, resampled_tprs, same_images
from wsod_mammo.detection.compare_afroc import paired_fom, stratum_text
from wsod_mammo.detection.compare_auc import breast_side, load_head, p_text
from wsod_mammo.detection.compare_pointing import FIGURES as POINTING_FIGURES
from wsod_mammo.detection.compare_pointing import drawn_means, scored, scored_keys, scored_text
from wsod_mammo.detection.jackknife import jackknife_covariance
from wsod_mammo.detection.obuchowski_rockette import RESULT_KEYS, rrrc_test
from wsod_mammo.detection.record_strata import in_density
from wsod_mammo.detection.report import count
from wsod_mammo.detection.study_paired import seeds_auc_figures, seeds_brier_draws, seeds_draws_test


def run_specs(spec: str) -> list[str]:
    """``RUN_1,RUN_2:name`` -> ``[RUN_1:name, RUN_2:name]``; one run (or none: ``name``) -> ``[spec]``, and so is
    a run folder whose name holds a comma (``runs/Doe, J:cam`` was two runs, "runs/Doe: no such run directory")."""
    runs, colon, name = spec.rpartition(":")
    if "," not in runs or Path(runs).is_dir():
        return [spec]
    return [f"{run.strip()}{colon}{name}" for run in runs.split(",")]


def check_paired_runs(spec_a: str, spec_b: str) -> tuple[list[str], list[str]]:
    """Each side's run specs, as many on both sides: ValueError naming the counts otherwise."""
    runs_a, runs_b = run_specs(spec_a), run_specs(spec_b)
    if len(runs_a) != len(runs_b):
        raise ValueError(
            f"--compare {spec_a} {spec_b}: A names {len(runs_a)} run(s), B {len(runs_b)}; each side's i-th run is "
            "paired with the other's i-th (the same seed, say), so both sides need as many"
        )
    return runs_a, runs_b


def seeds_bootstrap_test(results: list[dict[str, Any]]) -> dict[str, float]:
    """Obuchowski-Rockette's test over runs (:func:`rrrc_test`'s keys) of one comparison from its per-run
    :func:`paired_fom` results drawn with the same resamples of the same studies: the covariance of the ``2 x runs``
    figures is theirs over those resamples (:func:`bootstrap_covariance`); NaN where the runs were tested on
    different cases."""
    full = _same_cases_figures(results)
    if full is None:
        return dict.fromkeys(RESULT_KEYS, math.nan)
    drawn = torch.stack([r["drawn"] for r in results], dim=1)  # (2, runs, resamples)
    return rrrc_test(full, bootstrap_covariance(drawn.reshape(2 * len(results), -1)))


def seeds_jackknife_test(results: list[dict[str, Any]]) -> dict[str, float]:
    """The same test from the jackknife's covariance of the runs' figures, each case (study) left out in turn."""
    full = _same_cases_figures(results)
    if full is None:
        return dict.fromkeys(RESULT_KEYS, math.nan)
    left = torch.stack([r["left_out"] for r in results], dim=1)  # (2, runs, cases)
    return rrrc_test(full, jackknife_covariance(left.reshape(2 * len(results), -1)))


def _same_cases_figures(results: list[dict[str, Any]]) -> torch.Tensor | None:
    """``(2, runs)``: A's and B's full-sample figure per run; None where the runs were tested on different cases
    (another test split), which no covariance over cases can pair."""
    first = results[0]
    if any(r["case"] != first["case"] or not torch.equal(r["case_keys"], first["case_keys"]) for r in results):
        return None
    return torch.tensor([[r["a"]["value"], r["b"]["value"]] for r in results], dtype=torch.float64).T


def compare_auc_runs(
    spec_a: str, spec_b: str, default_run: Path, level: str = "image", density: str | None = None
) -> str:
    """Two heads compared over several runs a side (``RUN_1,RUN_2:fusion``), as one printed paragraph; ``density``:
    over that breast density's images."""
    runs_a, runs_b = check_paired_runs(spec_a, spec_b)
    labels: tuple[list[str], list[str]] = ([], [])
    pairs, seeds = [], []
    for run_a, run_b in zip(runs_a, runs_b, strict=True):
        (label_a, a, seed), (label_b, b, _) = load_head(run_a, default_run), load_head(run_b, default_run)
        seeds.append(seed)
        a, b = in_density(a, density, label_a), in_density(b, density, label_b)
        if level == "breast":
            a, b = breast_side(a, label_a), breast_side(b, label_b)
        labels[0].append(label_a)
        labels[1].append(label_b)
        pairs.append((a, b))
    figures, brier = seeds_auc_figures(pairs), seeds_brier_draws(pairs, seeds[0])
    if figures is None or brier is None:
        raise ValueError(
            f"--compare {spec_a} {spec_b}: the runs were tested on different images (or label them otherwise); "
            "runs compared over seeds must share one test set"
        )
    first = pairs[0][0]
    unit = "distinct test image" if level == "image" else "breast"
    of = "" if density is None else f" of {density}"
    clustered = "clustered by study" if all("study_keys" in side for pair in pairs for side in pair) else "per image"
    return (
        f"AUC on {count(len(first['target']), unit)}{of} ({int(sum(first['target']))} positive), {len(pairs)} runs a "
        f"side, A's i-th run paired with B's i-th, each run a random reader of the same test images "
        f"(Obuchowski-Rockette, readers and cases random, DeLong's covariance {clustered}, Hillis's degrees of "
        "freedom: RJafroc's RRRC):\n"
        + _runs_lines(labels, figures[0])
        + _rrrc_line("A - B", rrrc_test(*figures))
        + "Brier score of the same probabilities (lower is better), the same test over the first A run's report's "
        "draws:\n" + _over_draws_lines(labels, brier)
    )


def compare_fom_runs(
    spec_a: str, spec_b: str, default_run: Path, figure: str, masses: str | None = None, density: str | None = None
) -> str:
    """Two methods' ``figure`` (``wafroc``, ``afroc``) compared over several runs a side, as one printed paragraph:
    every pair of runs drawn with the first A run's bootstrap resamples, so one covariance holds them all."""
    runs_a, runs_b = check_paired_runs(spec_a, spec_b)
    # every test image, the density chosen by the ratings as wafroc_by_kind.md does (over wafroc.md's draws)
    labels, (sides_a, sides_b), _, draws = _run_sides(runs_a, runs_b, default_run, "all", None)
    results = [
        paired_fom(a, b, figure, draws, (label_a, label_b), masses, jackknife=True, density=density)
        for a, b, label_a, label_b in zip(sides_a, sides_b, *labels, strict=True)
    ]
    if (full := _same_cases_figures(results)) is None:
        raise ValueError(
            f"--compare {spec_a} {spec_b}: the runs were tested on different studies; runs compared over seeds "
            "must share one test set"
        )
    first = results[0]
    plural = "studies" if first["case"] == "study" else None
    return (
        f"{FIGURES[figure]} figure of merit on {stratum_text(first['num_images'], sides_a[0], masses, density)}, "
        f"{len(results)} runs a side, A's i-th run paired with B's i-th, each run a random reader of the same test "
        f"{'studies' if first['case'] == 'study' else 'images'} (Obuchowski-Rockette, readers and cases random, "
        "Hillis's degrees of freedom: RJafroc's RRRC):\n"
        + _runs_lines(labels, full)
        + _rrrc_line(f"A - B, covariance over {first['resamples']:,} bootstrap draws", seeds_bootstrap_test(results))
        + _rrrc_line(
            f"A - B, the jackknife's covariance over the {count(first['cases'], first['case'], plural)}",
            seeds_jackknife_test(results),
        )  # fmt: skip
    )


def compare_tpr_runs(
    spec_a: str,
    spec_b: str,
    default_run: Path,
    subset: str = "mass",
    masses: str | None = None,
    density: str | None = None,
) -> str:
    """Two methods' TPR at the FPPI budget (Table II's) compared over several runs a side, as one printed paragraph:
    the covariance of every run's TPR over the first A run's report's draws of whole studies."""
    runs_a, runs_b = check_paired_runs(spec_a, spec_b)
    labels, loaded, budget, draws = _run_sides(runs_a, runs_b, default_run, subset, density)
    sides = [[r if masses is None else masses_only(r, masses, label) for r, label in zip(records, names, strict=True)]
             for records, names in zip(loaded, labels, strict=True)]  # fmt: skip
    values = resampled_tprs([*sides[0], *sides[1]], budget, draws, [*labels[0], *labels[1]])  # (2 runs, 1 + B)
    counted = "" if masses is None else f", counting the masses of {masses}"
    images = count(len(sides[0][0]["image_keys"]), "mass image" if subset == "mass" else "test image")
    images += "" if density is None else f" of {density}"
    return (
        f"TPR at FPPI <= {budget:g} on {images}{counted}, {len(runs_a)} runs a side, A's i-th run paired with B's "
        "i-th, each run a random reader of the same test studies (Obuchowski-Rockette, readers and cases random, "
        "Hillis's degrees of freedom: RJafroc's RRRC):\n" + _over_draws_lines(labels, values)
    )


def compare_figure_runs(
    spec_a: str,
    spec_b: str,
    default_run: Path,
    figure: str,
    subset: str = "mass",
    masses: str | None = None,
    density: str | None = None,
) -> str:
    """Two methods' pointing game or energy inside the masses (``figure``) compared over several runs a side, as one
    printed paragraph: every run's mean over the images all of them scored, the covariance over the first A run's
    report's draws of whole studies (``masses``, ``density``: as one run a side counts them)."""
    runs_a, runs_b = check_paired_runs(spec_a, spec_b)
    labels, loaded, _, draws = _run_sides(runs_a, runs_b, default_run, subset, density)
    runs = list(zip([*loaded[0], *loaded[1]], [*labels[0], *labels[1]], strict=True))  # A's runs, then B's
    first = loaded[0][0]
    for records, label in runs:
        same_images(first, records, (labels[0][0], label))
    every = [scored(records, figure, label, masses) for records, label in runs]
    differing = f"--compare {spec_a} {spec_b}: the runs scored different images (their masses in view differ)"
    keys = scored_keys(every, first, differing)
    if not keys:
        raise ValueError(f"--figure {figure}: {labels[0][0]} has no image with a mass in view")
    drawn = drawn_means(every, keys, first, draws)
    return (
        f"{POINTING_FIGURES[figure]} on {count(len(keys), 'image')} with {scored_text(masses, density)}, "
        f"{len(runs_a)} runs a side, A's i-th run paired with B's i-th, each run a random reader of the same test "
        "studies (Obuchowski-Rockette, readers and cases random, Hillis's degrees of freedom: RJafroc's RRRC):\n"
        + _over_draws_lines(labels, drawn)
    )


def _run_sides(
    runs_a: list[str], runs_b: list[str], default_run: Path, subset: str, density: str | None
) -> tuple[tuple[list[str], list[str]], tuple[list[dict[str, Any]], list[dict[str, Any]]], float, int]:
    """``(labels, records, fppi budget, seed)``: A's and B's runs' labels and detection records on ``subset``'s
    images (over one ``density``'s where given), and the first A run's budget and report seed (whose draws every run
    of the comparison is drawn with)."""
    labels: tuple[list[str], list[str]] = ([], [])
    records: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    budget, draws = 0.0, 0
    for index, (run_a, run_b) in enumerate(zip(runs_a, runs_b, strict=True)):
        for side, spec in enumerate((run_a, run_b)):
            label, record, side_budget, seed = load_side(spec, default_run, subset)
            if index == 0 and side == 0:
                budget, draws = side_budget, seed
            labels[side].append(label)
            records[side].append(in_density(record, density, label))
    return labels, records, budget, draws


def _over_draws_lines(labels: tuple[list[str], list[str]], drawn: torch.Tensor) -> str:
    """Each run's figure and Obuchowski-Rockette's test of A - B from ``drawn (2 x runs, 1 + B)``: A's runs then
    B's, each its full sample's figure then the same bootstrap draws' (TPR, the pointing game and the Brier score over
    runs)."""
    return _runs_lines(labels, drawn[:, 0].reshape(2, -1)) + _rrrc_line(
        f"A - B, covariance over {drawn.shape[1] - 1:,} bootstrap draws", seeds_draws_test(drawn)
    )


def _runs_lines(labels: tuple[list[str], list[str]], figures: torch.Tensor) -> str:
    lines = ""
    for side, names, values in zip("AB", labels, figures.tolist(), strict=True):
        each = ", ".join(f"{name} {value:.3f}" for name, value in zip(names, values, strict=True))
        lines += f"  {side}: mean {sum(values) / len(values):.3f} ({each})\n"
    return lines


def _rrrc_line(what: str, r: dict[str, float]) -> str:
    if math.isnan(r["p"]):
        return f"  {what}: {r['difference']:+.3f}, n/a (fewer than two runs, or a figure undefined)\n"
    return (
        f"  {what}: {r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}], t = {r['t']:.2f} on "
        f"{r['df']:.1f} degrees of freedom, {p_text(r['p'])}\n"
    )
