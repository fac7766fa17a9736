"""Paired bootstrap of two methods' pointing game or energy inside the masses: ``wsod report --compare A B
--figure pointing``.

The test report gives each method's pointing game with an interval of its own (``pointing_game.md``); whether
LayerCAM's maps point at the masses more often than CAM's is a question about the difference on the same images.
Both sides are drawn with the same resamples of whole studies, with the first side's seed, so each side's interval
is its report's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wsod_mammo.detection.bootstrap import resampled_means
from wsod_mammo.detection.compare import (
    load_side,
    paired_lines,
    paired_result,
    same_images,
    why_images,
    without_studies,
)
from wsod_mammo.detection.record_strata import in_density
from wsod_mammo.detection.report import count

FIGURES = {"pointing": "Pointing game", "energy": "Energy inside the masses"}


def scored(records: dict[str, Any], figure: str, label: str, masses: str | None = None) -> dict[int, float]:
    """``{image key: value}`` of the images ``figure`` scored (those with a mass in view; with ``masses``, a row of
    Table II per finding BI-RADS or per mass size: those with a mass of it in view, scored against those masses
    alone, as ``pointing_by_kind.md``); ValueError naming the side whose report predates the record."""
    if figure not in records:
        raise ValueError(f"--figure {figure}: {label}'s test report records no {FIGURES[figure].lower()} per image "
                         "(written before it did); test that run again")  # fmt: skip
    if masses is None:
        values, keys = records[figure], records["image_keys"]
    else:
        if "pointing_by_kind" not in records:
            raise ValueError(f"--masses: {label}'s test report records no {FIGURES[figure].lower()} per kind of mass "
                             "(written before it did, or its data names no mass's BI-RADS or size); test that run "
                             "again")  # fmt: skip
        rows = records["pointing_by_kind"]
        chosen = [i for i, stratum in enumerate(rows["stratum"]) if stratum == masses]
        values = [rows[figure][i] for i in chosen]
        keys = [records["image_keys"][rows["image"][i]] for i in chosen]
    return {int(k): float(v) for k, v in zip(keys, values, strict=True) if v is not None}


def paired_figure(
    a: dict[str, Any],
    b: dict[str, Any],
    figure: str,
    seed: int,
    labels: tuple[str, str] = ("A", "B"),
    masses: str | None = None,
) -> dict[str, Any]:
    """A's and B's mean ``figure`` and A - B, each ``{value, low, high}``, over the same resamples of the images both
    scored (with ``masses``, against those masses: :func:`scored`); ``p_a_not_better``: the share of resamples where
    A's is not above B's."""
    same_images(a, b, labels)
    values = [scored(a, figure, labels[0], masses), scored(b, figure, labels[1], masses)]
    keys = scored_keys(values, a, f"--compare: {labels[0]} and {labels[1]} scored different images ({len(values[0])} "
                       f"and {len(values[1])}): their masses in view differ (another input frame?)")  # fmt: skip
    if not keys:
        what = "a mass in view" if masses is None else f"a mass of {masses!r} in view"
        raise ValueError(f"--figure {figure}: {labels[0]} has no image with {what}")
    without = without_studies(a, b, labels)
    drawn = drawn_means(values, keys, a, seed, by_study=not without)
    return paired_result(drawn[0], drawn[1], len(keys), without)


def scored_keys(values: list[dict[int, float]], first: dict[str, Any], differing: str) -> list[int]:
    """The image keys every side of ``values`` (:func:`scored`'s) scored, in ``first``'s image order; ValueError
    ``differing`` where the sides scored different images."""
    if any(v.keys() != values[0].keys() for v in values):
        raise ValueError(differing)
    return [k for k in first["image_keys"] if k in values[0]]


def drawn_means(
    values: list[dict[int, float]], keys: list[int], first: dict[str, Any], seed: int, by_study: bool = True
) -> torch.Tensor:
    """``(len(values), 1 + B)``: each side's mean over the images ``keys``, the full sample then the same resamples
    (``seed``'s; whole studies of ``first``'s where ``by_study`` and recorded): the pointing game's draws, one rule
    for the test report, ``--compare`` and the study."""
    study = dict(zip(first["image_keys"], first.get("study_keys", first["image_keys"]), strict=True))
    groups = torch.tensor([study[k] for k in keys], dtype=torch.int64) if by_study and "study_keys" in first else None
    sides = [torch.tensor([v[k] for k in keys], dtype=torch.float64) for v in values]
    means = resampled_means(sides, torch.tensor(keys, dtype=torch.int64), groups, seed)
    return torch.stack([torch.cat([side.mean().reshape(1), drawn]) for side, drawn in zip(sides, means, strict=True)])


def compare_figure(
    spec_a: str,
    spec_b: str,
    default_run: Path,
    figure: str,
    subset: str = "mass",
    masses: str | None = None,
    density: str | None = None,
) -> str:
    """The comparison of two methods' ``figure`` (``pointing``, ``energy``) as one printed paragraph; ``masses``: on
    the images with a mass of that kind, against those masses alone; ``density``: on that density's images."""
    label_a, a, _, seed = load_side(spec_a, default_run, subset)
    label_b, b, _, _ = load_side(spec_b, default_run, subset)
    a, b = in_density(a, density, label_a), in_density(b, density, label_b)
    r = paired_figure(a, b, figure, seed, (label_a, label_b), masses)
    return (
        f"{FIGURES[figure]} on {count(r['num_images'], 'image')} with {scored_text(masses, density)}, paired "
        "bootstrap (95%) over "
        f"{r['resampled']}{why_images(r['without_studies'])}:\n" + paired_lines((label_a, label_b), r)
    )


def scored_text(masses: str | None, density: str | None) -> str:
    """Which images a pointing comparison scores, for its first line: those with a mass (of ``masses``) in view, of
    one ``density``."""
    what = "a mass in view" if masses is None else f"a mass of {masses} in view, against those masses alone"
    return what + ("" if density is None else f", of {density}")
