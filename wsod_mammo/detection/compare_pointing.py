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
    values_a, values_b = scored(a, figure, labels[0], masses), scored(b, figure, labels[1], masses)
    if values_a.keys() != values_b.keys():
        raise ValueError(f"--compare: {labels[0]} and {labels[1]} scored different images ({len(values_a)} and "
                         f"{len(values_b)}): their masses in view differ (another input frame?)")  # fmt: skip
    keys = [k for k in a["image_keys"] if k in values_a]
    if not keys:
        what = "a mass in view" if masses is None else f"a mass of {masses!r} in view"
        raise ValueError(f"--figure {figure}: {labels[0]} has no image with {what}")
    without = without_studies(a, b, labels)
    study = dict(zip(a["image_keys"], a.get("study_keys", a["image_keys"]), strict=True))
    groups = None if without else torch.tensor([study[k] for k in keys], dtype=torch.int64)
    sides = [torch.tensor([values[k] for k in keys], dtype=torch.float64) for values in (values_a, values_b)]
    means = resampled_means(sides, torch.tensor(keys, dtype=torch.int64), groups, seed)
    full_first = [torch.cat([side.mean().reshape(1), drawn]) for side, drawn in zip(sides, means, strict=True)]
    return paired_result(full_first[0], full_first[1], len(keys), without)


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
    what = "a mass in view" if masses is None else f"a mass of {masses} in view, against those masses alone"
    what += "" if density is None else f", of {density}"
    return (
        f"{FIGURES[figure]} on {count(r['num_images'], 'image')} with {what}, paired bootstrap (95%) over "
        f"{r['resampled']}{why_images(r['without_studies'])}:\n" + paired_lines((label_a, label_b), r)
    )
