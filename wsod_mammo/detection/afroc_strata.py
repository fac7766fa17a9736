"""The wAFROC and AFROC figures of merit per kind of mass and per breast density: ``wafroc_by_kind.md|csv``.

Table II per stratum reads the FROC curve at one point; the figure of merit summarises the whole curve, so a reader
can ask which method finds suspicious (BI-RADS 4-5) or small masses best without choosing an FPPI. A stratum of
masses (one finding BI-RADS, one size) keeps every normal image and only its masses: a mass image holding none of
them leaves the figure (it is neither normal nor of that kind), as JAFROC analyses of a lesion subgroup do. A breast
density keeps that density's normal images and the masses on its images. The intervals come from the same draws of
whole studies as ``wafroc.md``'s (Table II's, the report's seed), each stratum's figure computed on every resample.
"""

from __future__ import annotations

from typing import Any

import torch

from wsod_mammo.detection.afroc import FIGURES, Ratings, image_subset, lesion_subset
from wsod_mammo.detection.afroc_report import COUNTS, figures_with_intervals, result_ratings
from wsod_mammo.detection.bootstrap import LEVEL, detection_draws, figure_text
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.mass_kinds import KIND_TITLES, label_rows, row_labels, strata_rows
from wsod_mammo.detection.report import MISSING, _markdown, csv_text
from wsod_mammo.detection.strata import strata_of

CSV_COLUMNS = ["kind", "stratum", *COUNTS, "test_method",
               *(f"{f}{end}" for f in FIGURES for end in ("", "_low", "_high"))]  # fmt: skip

__all__ = ["CSV_COLUMNS", "afroc_by_kind", "afroc_by_kind_rows", "afroc_by_kind_text"]


def _strata(result: DetectionResult, rated: Ratings, densities: dict[int, str] | None) -> dict[str, dict[str, Ratings]]:
    """``{kind: {label: Ratings}}`` for each kind the data names: densities (``{image key: density}``), finding
    BI-RADS (``gt_category``), sizes in mm (``gt_size``); a kind no image or mass has a value of is left out."""
    out: dict[str, dict[str, Ratings]] = {}
    if densities:
        out["density"] = {label: image_subset(rated, keep) for label, keep in strata_of(result.image_keys,
                                                                                        densities).items()}  # fmt: skip
    lesion_values = {"birads": result.gt_category, "size": result.gt_size}
    for kind, values in lesion_values.items():
        if values is None:
            continue
        if rows := label_rows(kind, row_labels(kind, values.tolist())):
            out[kind] = {
                label: lesion_subset(rated, torch.tensor(keep, dtype=torch.bool)) for label, keep in rows.items()
            }
    return out


def afroc_by_kind(
    results: dict[str, DetectionResult],
    densities: dict[int, str] | None,
    seed: int,
    groups: dict[int, int] | None = None,
) -> dict[str, Any] | None:
    """``{kind: {label: {"normal_images", "mass_images", "masses", "methods": {method: {"wafroc", "afroc": {value,
    low, high}}}}}}`` over every test image (``results``: the ``all`` subset, by test-time method); None where the
    whole set has no figure of merit (no normal image or no mass) or the data names no stratum. A stratum without a
    normal image or a mass gives NaN."""
    summary: dict[str, Any] = {}
    for method, result in results.items():
        rated = result_ratings(result)
        if rated is None:
            return None
        draws = detection_draws(result.image_gt, result.image_keys, seed, groups)
        for kind, parts in _strata(result, rated, densities).items():
            for label, part in parts.items():
                counts, figures = figures_with_intervals(part, draws)
                summary.setdefault(kind, {}).setdefault(label, {**counts, "methods": {}})["methods"][method] = figures
    return summary or None


def afroc_by_kind_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The rows of ``wafroc_by_kind.csv`` (:data:`CSV_COLUMNS`) as values, for the CSV and W&B's table alike."""
    return strata_rows(summary, COUNTS, list(FIGURES))


def afroc_by_kind_text(summary: dict[str, Any], train_method: str, unit: str) -> tuple[str, str]:
    """``(markdown, csv)`` of :func:`afroc_by_kind`: a section per kind, a row per stratum, each method's wAFROC."""
    preface = (
        f"wAFROC figures of merit per kind of mass and per breast density (trained with {train_method}; as "
        "wafroc.md, over every test image): a finding BI-RADS or a size keeps every normal image and only its masses "
        "(a mass image with none of them is left out); a density keeps its own images. Value "
        f"[{LEVEL:.0%} bootstrap interval over {unit}, drawn as Table II's]; n/a where a stratum has no normal image "
        "or no mass. AFROC: wafroc_by_kind.csv.\n"
    )
    sections = []
    for kind, rows in summary.items():
        methods = list(dict.fromkeys(m for row in rows.values() for m in row["methods"]))
        md_rows = [
            [label, *(str(row[c]) for c in COUNTS)]
            + [figure_text(row["methods"][m]["wafroc"]) if m in row["methods"] else MISSING for m in methods]
            for label, row in rows.items()
        ]
        header = [KIND_TITLES[kind], "normal images", "mass images", "masses", *methods]
        sections.append(f"\n## {KIND_TITLES[kind]}\n\n" + _markdown(header, md_rows))
    csv_rows = [[str(v) for v in row] for row in afroc_by_kind_rows(summary)]
    return preface + "".join(sections), csv_text(CSV_COLUMNS, csv_rows)
