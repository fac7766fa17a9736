"""Paired bootstrap of two methods' wAFROC or AFROC figure of merit: ``wsod report --compare A B --figure wafroc``.

The comparison JAFROC analyses make, with the study's own resampling: both sides drawn with the same class-stratified
resamples of whole studies of every test image (the first side's seed), so each side's interval is its
``wafroc.md``'s and the difference's interval accounts for the images both share.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.afroc import FIGURES, Ratings, figures_of_merit, image_subset, lesion_subset, ratings
from wsod_mammo.detection.compare import (
    load_side,
    mass_flags,
    paired_draws,
    paired_lines,
    paired_result,
    side_tensors,
    why_images,
)
from wsod_mammo.detection.compare_auc import p_text
from wsod_mammo.detection.jackknife import frrc_test, left_out_figures
from wsod_mammo.detection.record_strata import densities_of
from wsod_mammo.detection.report import count


def side_ratings(records: dict[str, Any], order: dict[int, int], label: str) -> Ratings:
    """One side's :class:`Ratings` with its images in ``order`` (``{image key: index}``); ValueError naming the side
    whose report records no mass per box (written before it did)."""
    if "box_gt" not in records or "gt_image" not in records:
        raise ValueError(f"--figure wafroc: {label}'s test report records no masses per box (written before it did); "
                         "test that run again")  # fmt: skip
    image_gt, box_image, scores, _ = side_tensors(records, order)
    position = torch.tensor([order[k] for k in records["image_keys"]], dtype=torch.long)
    gt_image = position[torch.tensor(records["gt_image"], dtype=torch.long)]
    return ratings(image_gt, box_image, scores, torch.tensor(records["box_gt"], dtype=torch.long), gt_image)


def stratum_ratings(
    rated: Ratings,
    side: dict[str, Any],
    order: dict[int, int],
    label: str,
    masses: str | None = None,
    density: str | None = None,
) -> Ratings:
    """``rated`` (``side``'s, its images in ``order``) of one stratum as ``wafroc_by_kind.md`` rates it: ``masses``
    (a row of Table II per finding BI-RADS or mass size) every normal image and only those masses, ``density`` that
    breast density's images; ``label`` names the side where its record lacks what the stratum needs."""
    if masses is not None:
        rated = lesion_subset(rated, torch.tensor(mass_flags(side, masses, label), dtype=torch.bool))
    if density is not None:
        keep = torch.zeros(len(order), dtype=torch.bool)
        for key, value in zip(side["image_keys"], densities_of(side, label), strict=True):
            keep[order[key]] = value == density
        rated = image_subset(rated, keep)
    return rated


def paired_fom(
    a: dict[str, Any],
    b: dict[str, Any],
    figure: str,
    seed: int,
    labels: tuple[str, str] = ("A", "B"),
    masses: str | None = None,
    jackknife: bool = False,
    density: str | None = None,
) -> dict[str, Any]:
    """A's and B's ``figure`` (``wafroc``, ``afroc``) and A - B, each ``{value, low, high}``, over the same
    resamples of every test image (:func:`paired_draws`, :func:`paired_result`); ``masses``: counting every normal
    image and only those masses (:func:`~wsod_mammo.detection.afroc.lesion_subset`, as ``wafroc_by_kind.md``);
    ``density``: that breast density's images (:func:`~wsod_mammo.detection.afroc.image_subset`, as it too);
    ``jackknife``: also the fixed-reader random-case jackknife test (``"jackknife"``: :func:`frrc_test`, with
    ``"cases"`` and ``"case"``: ``study`` where the reports record studies, else ``image``; ``"case_keys" (K,)``:
    each case's study or image key, in the order of ``"left_out" (2, K)``, A's and B's figure without each case, and
    ``"drawn" (2, B)``, A's and B's figure in each resample, for an analysis over several runs of the same cases)."""
    order, weights, without = paired_draws(a, b, seed, labels)
    rated = [stratum_ratings(side_ratings(side, order, label), side, order, label, masses, density)
             for side, label in zip((a, b), labels, strict=True)]  # fmt: skip
    if masses is not None and not rated[0].lesion_image.numel():
        raise ValueError(f"--masses: {labels[0]} has no mass of {masses!r} on its test images")
    if density is not None and not rated[0].lesion_image.numel():
        raise ValueError(f"--density: {labels[0]} has no mass on its test images of {density!r}")
    if not rated[0].normal.numel() or not rated[0].lesion_image.numel():
        raise ValueError(f"--figure {figure}: {labels[0]}'s test images need both normal images and masses")
    values = [figures_of_merit(r, weights)[figure] for r in rated]
    result = paired_result(values[0], values[1], len(order), without)
    if jackknife:
        case = "image" if without else "study"
        named = list(order) if without else a["study_keys"]  # in A's image order, as ``order``
        keys, cases = stratum_cases(torch.tensor(named, dtype=torch.long), rated)
        left = [left_out_figures(r, figure, cases) for r in rated]
        result["jackknife"] = frrc_test(float(values[0][0]), float(values[1][0]), left[0], left[1])
        result |= {"cases": int(cases.max()) + 1, "case": case, "case_keys": keys, "left_out": torch.stack(left),
                   "drawn": torch.stack([values[0][1:], values[1][1:]])}  # fmt: skip
    return result


def stratum_cases(named: Tensor, rated: list[Ratings]) -> tuple[Tensor, Tensor]:
    """``(keys (K,), cases (N,))``: the jackknife's cases of a figure of merit, each image's case ``named (N,)`` (its
    study or image key) numbered ``0..K-1`` among the cases holding an image the figure reads (a normal image or a
    mass of ``rated``, either side's), -1 for the others: a stratum's figure (``--density``, ``--masses``) does not
    change without a study outside it, and each such case left out in turn would count as one more case in the
    jackknife's ``(K - 1) / K``, its variance growing with the studies of other densities."""
    read = torch.zeros(named.numel(), dtype=torch.bool)
    for r in rated:
        read[r.normal] = True
        read[r.lesion_image] = True
    keys, inverse = torch.unique(named[read], return_inverse=True)
    cases = torch.full((named.numel(),), -1, dtype=torch.long)
    cases[read] = inverse
    return keys, cases


def compare_fom(
    spec_a: str, spec_b: str, default_run: Path, figure: str, masses: str | None = None, density: str | None = None
) -> str:
    """The comparison of two methods' ``figure`` (``wafroc``, ``afroc``) over every test image, as one paragraph;
    ``masses``: counting every normal image and only those masses; ``density``: that density's images."""
    label_a, a, _, seed = load_side(spec_a, default_run, "all")
    label_b, b, _, _ = load_side(spec_b, default_run, "all")
    r = paired_fom(a, b, figure, seed, (label_a, label_b), masses, jackknife=True, density=density)
    return (
        f"{FIGURES[figure]} figure of merit on {stratum_text(r['num_images'], a, masses, density)}, paired bootstrap "
        f"(95%) over {r['resampled']}{why_images(r['without_studies'])}:\n"
        + paired_lines((label_a, label_b), r)
        + jackknife_line(r)
    )


def stratum_text(num_images: int, side: dict[str, Any], masses: str | None, density: str | None) -> str:
    """The images a figure of merit counts, for the printed paragraph's first line: every test image (``num_images``)
    or ``side``'s of one ``density``, and (``masses``) every normal image and only those masses."""
    images = count(num_images, "test image")
    if density is not None:
        images = f"{count(sum(d == density for d in side['density']), 'test image')} of {density}"
    return images + ("" if masses is None else f", counting every normal image and the masses of {masses}")


def jackknife_line(r: dict[str, Any]) -> str:
    """The jackknife test's line under the bootstrap's: A - B, its 95% interval, z and p."""
    j = r["jackknife"]
    what = f"jackknife over the {count(r['cases'], r['case'], 'studies' if r['case'] == 'study' else None)}"
    if math.isnan(j["p"]):
        return f"  {what}: n/a (too few cases, or a case whose removal leaves no normal image or no mass)\n"
    return (
        f"  {what} (Obuchowski-Rockette, readers fixed, cases random: RJafroc's FRRC with one reader): A - B "
        f"{j['difference']:.3f} [{j['low']:.3f}, {j['high']:.3f}], z = {j['z']:.2f}, " + p_text(j["p"]) + "\n"
    )
