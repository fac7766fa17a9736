"""``wsod predict``'s answer per breast: the images of one exam side (DICOM StudyInstanceUID, laterality) together.

A reader points ``wsod predict`` at an exam's DICOMs and decides per breast; the test report rates breasts the same
way (``detection/breasts.py``): a breast's probability is the mean of its views'. Only DICOMs name their exam, so
PNG/TIFF files and untagged DICOMs are left out (a folder of files says nothing of which exam an image is from).
"""

from __future__ import annotations

import json
import math
from typing import Any

BREAST_CSV_COLUMNS = [
    "study", "laterality", "class", "probability", "images", "views", "image_ids", "laterality_from", "warning",
]  # fmt: skip


def breast_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (study, laterality) of the readable records that name their study, in the order of each breast's
    first image: its images' ids and views, the mean of their probabilities (``probability`` of the records'
    class, ``probabilities`` per class; None where a view has none, a model output that was not finite), and where
    the laterality came from (``dicom`` tags, ``given``, ``inferred`` from the image), and its views' warnings
    (``<image_id>: <warning>``: a view of another modality, raw data... is in the mean). One image given twice (a
    link to it, a copy in another folder, the same path twice: one DICOM SOPInstanceUID) is one view: its first
    input alone, or the mean counted it twice and ``images`` named views the breast does not have."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    # (study, SOPInstanceUID, view) of the views already in a breast: the view too, lest an export that gives all
    # its images one made-up UID lose all but one view of each breast
    seen: set[tuple[str, str, str]] = set()
    for record in records:
        if record.get("error") or not record.get("study"):
            continue
        if instance := record.get("instance"):
            key = (record["study"], instance, record.get("view") or "")
            if key in seen:
                continue
            seen.add(key)
        groups.setdefault((record["study"], record["laterality"]), []).append(record)
    rows = []
    for (study, side), members in groups.items():
        names = list(members[0]["probabilities"])
        probabilities = {name: _mean([m["probabilities"].get(name) for m in members]) for name in names}
        rows.append({
            "study": study,
            "laterality": side,
            "class": members[0]["class"],
            "probability": probabilities.get(members[0]["class"]),
            "probabilities": probabilities,
            "image_ids": [m["image_id"] for m in members],
            "views": [m.get("view") or "" for m in members],
            "laterality_from": sorted({str(m.get("laterality_source")) for m in members}),
            # a view the model may not read as a mammogram (a screenshot of the exam, raw FOR PROCESSING data):
            # its probability is in the mean, and only its own row said so
            "warnings": [f"{m['image_id']}: {w}" for m in members for w in m.get("warnings") or ()],
        })  # fmt: skip
    return rows


def breast_csv_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """``breasts.csv``'s rows (:data:`BREAST_CSV_COLUMNS`): lists as JSON arrays (``breasts.json`` keeps them as
    lists), no probability left empty. Joined by ``; ``, the ids ``a; b`` and ``c`` read as the three ``a``, ``b``,
    ``c``: an image_id is a file's name, which may hold ``; `` (``json.loads`` splits a cell; R's ``jsonlite``)."""
    return [
        {
            "study": row["study"],
            "laterality": row["laterality"],
            "class": row["class"],
            "probability": "" if row["probability"] is None else f"{row['probability']:.6f}",
            "images": str(len(row["image_ids"])),
            "views": _json_list(row["views"]),
            "image_ids": _json_list(row["image_ids"]),
            "laterality_from": _json_list(row["laterality_from"]),
            "warning": _json_list(row.get("warnings", ())),
        }
        for row in rows
    ]


def _json_list(values: Any) -> str:
    """``["a; b", "c"]``: a list in one CSV cell that splits back exactly (letters as they are, not ``\\u`` escapes)."""
    return json.dumps(list(values), ensure_ascii=False)


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if len(finite) == len(values) else None
