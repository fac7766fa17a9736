"""Table II per stratum of the test set: per breast density (a stratum of images), per finding BI-RADS and per mass
size (strata of masses, every false positive kept), each method's cell at its Table II threshold with the TPR's
95% interval over studies. The test report writes them as ``table2_by_density``, ``table2_by_birads`` and
``table2_by_size`` (``.md``, ``.csv``, ``detection.json``'s ``by_*`` keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import detection_intervals, groups_of
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.mass_kinds import row_labels, row_order
from wsod_mammo.detection.report import MISSING, SUBSETS, _markdown, csv_text, format_cell
from wsod_mammo.detection.strata import restrict, restrict_lesions, strata_of

STRATUM_COLUMNS = ["studies", "images", "masses", "method", "tpr", "fppi", "tpr_low", "tpr_high"]
DENSITY_COLUMNS = ["subset", "density", *STRATUM_COLUMNS]
BIRADS_COLUMNS = ["subset", "finding_birads", *STRATUM_COLUMNS]
SIZE_COLUMNS = ["subset", "mass_size", *STRATUM_COLUMNS]


class StratumTable(NamedTuple):
    """One Table II per stratum of the report: ``detection.json``'s key, the files' stem (``.md``, ``.csv``; W&B's
    ``test/<stem>``), the title printed above it and its CSV columns."""

    key: str
    stem: str
    title: str
    columns: list[str]


STRATUM_TABLES = (
    StratumTable("by_density", "table2_by_density", "Table II by breast density", DENSITY_COLUMNS),
    StratumTable("by_finding_birads", "table2_by_birads", "Table II by finding BI-RADS", BIRADS_COLUMNS),
    StratumTable("by_mass_size", "table2_by_size", "Table II by mass size", SIZE_COLUMNS),
)


def by_density(
    results: dict[tuple[str, str], DetectionResult],
    labels: dict[int, str],
    budget: float,
    seed: int,
    groups: dict[int, int] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """Table II per breast density: each subset's (mass images, all images) method cells over the images of each
    density (``labels``: ``density_labels``), with the TPR's interval. Returns ``detection.json``'s ``by_density``
    (``{subset: {density: {"studies", "images", "masses", "cells": {method: {tpr, fppi, cell, tpr_interval}}}}}``;
    ``studies`` None where the data names none), the Markdown and the CSV. A density of few studies has a narrow
    interval for want of studies to draw, not for certainty: the table gives their number."""

    def parts(result: DetectionResult) -> dict[str, tuple[DetectionResult, Tensor]]:
        out = {}
        for label, keep in strata_of(result.image_keys, labels).items():
            part = restrict(result, keep, budget)
            out[label] = (part, torch.ones(part.num_images, dtype=torch.bool))
        return out

    note = (
        f"Each method at its Table II threshold; a cell is the FROC point of that density's images with the highest "
        f"TPR at FPPI <= {budget:g}, TPR [95% bootstrap interval] @ FPPI.\n\n"
    )
    return _strata_table(results, parts, ("density", DENSITY_COLUMNS), note, budget, seed, groups)


def has_finding_birads(results: dict[tuple[str, str], DetectionResult]) -> bool:
    """True where the data gave some mass a finding BI-RADS (``DetectionResult.gt_category``): Table II per BI-RADS
    is written then."""
    return any(r.gt_category is not None and bool((r.gt_category > 0).any()) for r in results.values())


def has_mass_sizes(results: dict[tuple[str, str], DetectionResult]) -> bool:
    """True where some mass has a size in mm (``DetectionResult.gt_size``: its DICOM gave a pixel spacing): Table II
    per mass size is written then."""
    return any(r.gt_size is not None and bool(torch.isfinite(r.gt_size).any()) for r in results.values())


def why_no_sizes(results: dict[tuple[str, str], DetectionResult]) -> str | None:
    """Why the report has no Table II per mass size although the test set has masses (None otherwise): a cache
    prepared before sizes were kept looks like data without them, and only a word tells the two apart."""
    if has_mass_sizes(results) or not any(r.num_gt for r in results.values()):
        return None
    return (
        "no Table II per mass size: no test mass has a size in mm, since no image gave a pixel spacing (PNG or TIFF "
        "files, DICOMs without PixelSpacing or ImagerPixelSpacing, or a cache prepared before sizes were kept: "
        "prepare it again into a new cache_dir)"
    )


def _lesion_parts(
    result: DetectionResult, labels: list[str], order: list[str], budget: float
) -> dict[str, tuple[DetectionResult, Tensor]]:
    """``result`` restricted to the masses of each label (``labels``: one per ground-truth row), in ``order``, each
    row counting the images that hold such a mass."""
    out = {}
    for label in order:
        part = restrict_lesions(result, torch.tensor([name == label for name in labels], dtype=torch.bool), budget)
        out[label] = (part, part.image_gt > 0)
    return out


def _lesion_note(kind: str, budget: float, more: str = "") -> str:
    return (
        f"Each method at its Table II threshold; a cell counts the masses of one {kind}: TPR over them (those out of "
        f"the input frame missed), FPPI over every image of the subset (no mass owns a false positive; a box on a "
        f"mass of another {kind} counts neither way), the FROC point with the highest TPR at FPPI <= {budget:g}, TPR "
        f"[95% bootstrap interval] @ FPPI. studies and images: those holding such a mass.{more}\n\n"
    )


def by_finding_birads(
    results: dict[tuple[str, str], DetectionResult], budget: float, seed: int, groups: dict[int, int] | None = None
) -> tuple[dict[str, Any], str, str]:
    """Table II per kind of mass: each subset's method cells counting only the masses of one finding BI-RADS
    (VinDr's ``finding_birads``: 3 probably benign, 4 suspicious, 5 highly suggestive of malignancy), with every
    false positive (``restrict_lesions``) and the TPR's interval. ``detection.json``'s ``by_finding_birads``, laid
    out as ``by_density`` (``studies``, ``images``: those holding such a mass), the Markdown and the CSV."""

    def parts(result: DetectionResult) -> dict[str, tuple[DetectionResult, Tensor]]:
        assert result.gt_category is not None  # has_finding_birads
        labels = row_labels("birads", result.gt_category.tolist())
        return _lesion_parts(result, labels, row_order("birads", labels), budget)

    note = _lesion_note("finding BI-RADS", budget)
    return _strata_table(results, parts, ("finding BI-RADS", BIRADS_COLUMNS), note, budget, seed, groups)


def by_mass_size(
    results: dict[tuple[str, str], DetectionResult], budget: float, seed: int, groups: dict[int, int] | None = None
) -> tuple[dict[str, Any], str, str]:
    """Table II per mass size (the box's longer side in mm: ``SIZE_LABELS``; small masses are the ones
    screening most wants found and a 64-pixel saliency grid most easily misses), laid out as
    :func:`by_finding_birads`: ``detection.json``'s ``by_mass_size``, the Markdown and the CSV."""

    def parts(result: DetectionResult) -> dict[str, tuple[DetectionResult, Tensor]]:
        assert result.gt_size is not None  # has_mass_sizes
        labels = row_labels("size", result.gt_size.tolist())
        return _lesion_parts(result, labels, row_order("size", labels), budget)

    note = _lesion_note("size", budget, " Size: the box's longer side, by the DICOM's pixel spacing.")
    return _strata_table(results, parts, ("mass size", SIZE_COLUMNS), note, budget, seed, groups)


def _strata_table(
    results: dict[tuple[str, str], DetectionResult],
    parts: Callable[[DetectionResult], dict[str, tuple[DetectionResult, Tensor]]],
    columns: tuple[str, list[str]],
    note: str,
    budget: float,
    seed: int,
    groups: dict[int, int] | None,
) -> tuple[dict[str, Any], str, str]:
    """Table II per stratum: ``parts(result)`` gives each stratum's restricted result and which of its images the
    row counts ``(I,)`` bool. Returns ``{subset: {stratum: {"studies", "images", "masses", "cells"}}}``,
    the Markdown (``note`` first) and the CSV (``columns``: the Markdown's stratum column and the CSV's columns)."""
    summary: dict[str, Any] = {}
    sections, csv_rows = [], []
    for subset in SUBSETS:
        subset_results = {m: r for (m, s), r in results.items() if s == subset and r.num_images}
        if not subset_results:
            continue
        rows: dict[str, Any] = {}
        for method, result in subset_results.items():
            for label, (part, counted) in parts(result).items():
                first = part.per_threshold[0]
                tpr_interval = detection_intervals(part, budget, seed, groups)["tpr"]
                studies = groups_of(part.image_keys[counted], groups)
                counts = {"studies": None if studies is None else int(studies.unique().numel()),
                          "images": int(part.image_keys[counted].numel()), "masses": part.num_gt}  # fmt: skip
                row = rows.setdefault(label, {**counts, "cells": {}})
                cell = format_cell(first.tpr, first.fppi)
                row["cells"][method] = {
                    "tpr": first.tpr,
                    "fppi": first.fppi,
                    "cell": cell,
                    "tpr_interval": tpr_interval,
                }
                csv_rows.append([subset, label, *(str(v) for v in counts.values()), method, repr(first.tpr),
                                 repr(first.fppi), repr(tpr_interval["low"]), repr(tpr_interval["high"])])  # fmt: skip
        summary[subset] = rows
        methods = list(subset_results)
        md_rows = [
            [label, MISSING if row["studies"] is None else str(row["studies"]), str(row["images"]), str(row["masses"])]
            + [_cell_with_interval(row["cells"][m]) if m in row["cells"] else MISSING for m in methods]
            for label, row in rows.items()
        ]
        title = f"{subset} images" if subset != "mass" else "mass images (the study's Table II)"
        sections.append(f"{title}\n\n" + _markdown([columns[0], "studies", "images", "masses", *methods], md_rows))
    return summary, note + "\n".join(sections), csv_text(columns[1], csv_rows)


def _cell_with_interval(cell: dict[str, Any]) -> str:
    if cell["cell"] == MISSING:
        return MISSING
    low, high = cell["tpr_interval"]["low"], cell["tpr_interval"]["high"]
    return f"{cell['tpr']:.2f} [{low:.2f}, {high:.2f}] @ {cell['fppi']:.2f}"
