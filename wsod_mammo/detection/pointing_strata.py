"""The pointing game and the energy inside the masses per kind of mass and per breast density:
``pointing_by_kind.md|csv``.

``pointing_game.md`` judges each map over every mass image; here the same two figures per breast density (that
density's mass images), per finding BI-RADS and per mass size (each image against its masses of that kind alone:
:mod:`wsod_mammo.detection.pointing_kinds`), so a reader sees whether a method's maps find suspicious or small masses,
free of the threshold and of the boxes. Intervals are drawn over each stratum's studies, as ``pointing_game.md``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import LEVEL, figure_text
from wsod_mammo.detection.mass_kinds import KIND_TITLES, label_rows, strata_rows
from wsod_mammo.detection.pointing_kinds import kind_of_code
from wsod_mammo.detection.pointing_report import FIGURES, figure_intervals, tolerance_text
from wsod_mammo.detection.report import MISSING, _markdown, csv_text
from wsod_mammo.detection.strata import strata_of

if TYPE_CHECKING:
    from wsod_mammo.detection.detection_result import DetectionResult

COUNTS = ("images", "unscored")
CSV_COLUMNS = ["kind", "stratum", *COUNTS, "test_method",
               *(f"{f}{end}" for f in FIGURES for end in ("", "_low", "_high"))]  # fmt: skip


def _strata(result: DetectionResult, densities: dict[int, str] | None) -> dict[str, dict[str, tuple[Tensor, ...]]]:
    """``{kind: {label: (hit, energy, keys)}}``: the figures of each stratum's images and their keys; a kind whose
    every value is unknown (or that the data never names) is left out."""
    assert result.pointing is not None and result.energy is not None  # pointing_by_kind checks it first
    out: dict[str, dict[str, tuple[Tensor, ...]]] = {}
    if densities:
        out["density"] = {
            label: (result.pointing[keep], result.energy[keep], result.image_keys[keep])
            for label, keep in strata_of(result.image_keys, densities).items()
        }
    rows = result.kind_pointing
    if rows is None:
        return out
    named = [kind_of_code(int(code)) for code in rows.code.tolist()]
    for kind in ("birads", "size"):
        of_kind = torch.tensor([k == kind for k, _ in named], dtype=torch.bool)
        hit, energy, image = rows.hit[of_kind], rows.energy[of_kind], rows.image[of_kind]
        for label, keep in label_rows(kind, [label for k, label in named if k == kind]).items():
            mask = torch.tensor(keep)
            out.setdefault(kind, {})[label] = (hit[mask], energy[mask], result.image_keys[image[mask]])
    return out


def pointing_by_kind(
    results: dict[str, DetectionResult],
    densities: dict[int, str] | None,
    seed: int,
    groups: dict[int, int] | None = None,
) -> dict[str, Any] | None:
    """``{"tolerance_px" | "tolerance_mm", "kinds": {kind: {label: {"images", "unscored", "methods": {method:
    {"hit", "energy": {value, low, high}}}}}}}`` over the mass images (``results``: the ``mass`` subset, by
    test-time method); ``images``: those with a mass of the stratum in view, ``unscored``: those of them the pointing
    game leaves out (no pixel spacing for a tolerance in mm). None where no result scored maps or the data names no
    stratum."""
    kinds: dict[str, Any] = {}
    for method, result in results.items():
        if result.pointing is None or result.energy is None:
            return None
        for kind, parts in _strata(result, densities).items():
            for label, (hit, energy, keys) in parts.items():
                images = int((~torch.isnan(energy)).sum())
                if images == 0:  # a density without a mass in view: nothing to point at
                    continue
                row = kinds.setdefault(kind, {}).setdefault(
                    label, {"images": images, "unscored": images - int((~torch.isnan(hit)).sum()), "methods": {}}
                )
                row["methods"][method] = figure_intervals(hit, energy, keys, seed, groups)
    if not kinds:
        return None
    first = next(iter(results.values()))
    return {f"tolerance_{first.pointing_unit}": first.pointing_tolerance, "kinds": kinds}


def pointing_by_kind_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``pointing_by_kind.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return strata_rows(summary["kinds"], COUNTS, list(FIGURES))


def pointing_by_kind_text(summary: dict[str, Any], train_method: str, unit: str) -> tuple[str, str]:
    """``(markdown, csv)`` of :func:`pointing_by_kind`: per kind, a table per figure, a row per stratum."""
    preface = (
        f"Pointing game and energy inside the masses per kind of mass and per breast density (trained with "
        f"{train_method}; as pointing_game.md, over the mass images with a mass in view, peaks within "
        f"{tolerance_text(summary)}): a finding BI-RADS or a size scores each image against its masses of that kind "
        "alone; a density keeps its own images. Mean "
        f"[{LEVEL:.0%} bootstrap interval over {unit}]; n/a where no image of a stratum is scored.\n"
    )
    sections = []
    for kind, rows in summary["kinds"].items():
        methods = list(dict.fromkeys(m for row in rows.values() for m in row["methods"]))
        for figure, title in FIGURES.items():
            md_rows = [
                [label, str(row["images"])]
                + [figure_text(row["methods"][m][figure]) if m in row["methods"] else MISSING for m in methods]
                for label, row in rows.items()
            ]
            header = [KIND_TITLES[kind], "images", *methods]
            sections.append(f"\n## {KIND_TITLES[kind]}: {title}\n\n" + _markdown(header, md_rows))
    csv_rows = [[str(v) for v in row] for row in pointing_by_kind_rows(summary)]
    return preface + "".join(sections), csv_text(CSV_COLUMNS, csv_rows)
