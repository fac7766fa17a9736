"""A run's image record (``detection_images.json``) restricted to one stratum of the per-stratum tables.

The study's intervals over seeds and the test set redraw each seed's recorded images; a table per breast density keeps
a density's own images (``restrict``'s rule in :mod:`strata`), one per finding BI-RADS or mass size keeps every
image and only that kind's masses (``restrict_lesions``', :func:`~wsod_mammo.detection.compare.masses_only`). The
same rules on the records give each seed's figure of the stratum exactly as its test report gave it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from wsod_mammo.detection.compare import masses_only
from wsod_mammo.detection.mass_kinds import UNKNOWN

#: the lists of a detection record with one entry per image (a classification record's are ``IMAGE_LISTS`` too)
IMAGE_LISTS = (
    "image_keys",
    "study_keys",
    "breast_keys",
    "image_gt",
    "pointing",
    "energy",
    "density",
    "target",
    "probabilities",
)  # the last: a head's side of --compare (compare_auc.head_side)


def with_densities(record: dict[str, Any], densities: dict[int, str] | None) -> dict[str, Any]:
    """``record`` with each image's breast density (``density_labels``; :data:`UNKNOWN` where the data names none),
    which the study's per-density intervals over the test set restrict by; unchanged without densities."""
    if not densities or not record:
        return record
    return record | {"density": [densities.get(k) or UNKNOWN for k in record["image_keys"]]}


def densities_of(record: dict[str, Any], label: str) -> list[str]:
    """Each image's breast density in ``record``; ValueError naming the run (``label``) where it records none."""
    if "density" not in record:
        raise ValueError(f"{label}'s test report records no breast density per image (tested before it did, or the "
                         "data names none); test that run again")  # fmt: skip
    return record["density"]


def density_only(record: dict[str, Any], density: str, label: str) -> dict[str, Any]:
    """``record`` (a method's detection record or the classification one) over the images of one breast ``density``:
    their boxes and masses, positions renumbered; ``label`` names the run in errors."""
    keep = [d == density for d in densities_of(record, label)]
    if not any(keep):
        raise ValueError(f"{label} has no test image of density {density!r}")
    new_image = _renumbered(keep)
    out: dict[str, Any] = {name: _kept(record[name], keep) for name in IMAGE_LISTS if name in record}
    if "heads" in record:
        out["heads"] = {head: _kept(values, keep) for head, values in record["heads"].items()}
    if "gt_image" in record:
        kept_masses = [keep[i] for i in record["gt_image"]]
        new_mass = _renumbered(kept_masses)
        out["gt_image"] = [new_image[i] for i in _kept(record["gt_image"], kept_masses)]
        out |= {name: _kept(record[name], kept_masses) for name in ("gt_birads", "gt_size_mm") if name in record}
    if "box_image" in record:
        kept_boxes = [keep[i] for i in record["box_image"]]
        out["box_image"] = [new_image[i] for i in _kept(record["box_image"], kept_boxes)]
        out |= {name: _kept(record[name], kept_boxes) for name in ("box_scores", "box_tp")}
        if "box_gt" in record:  # a kept box's mass lies on its (kept) image
            out["box_gt"] = [new_mass[g] if g >= 0 else -1 for g in _kept(record["box_gt"], kept_boxes)]
    if "pointing_by_kind" in record:
        kinds = record["pointing_by_kind"]
        kept_rows = [keep[i] for i in kinds["image"]]
        rows = {name: _kept(values, kept_rows) for name, values in kinds.items()}
        out["pointing_by_kind"] = rows | {"image": [new_image[i] for i in rows["image"]]}
    return record | out


def in_density(record: dict[str, Any], density: str | None, label: str) -> dict[str, Any]:
    """``record`` over one breast ``density``'s images (:func:`density_only`), or whole where ``density`` is None:
    ``wsod report --compare --density``'s sides."""
    return record if density is None else density_only(record, density, label)


def stratum_only(record: dict[str, Any], kind: str, stratum: str, label: str) -> dict[str, Any]:
    """``record`` restricted to one row of a per-stratum table: ``kind`` ``density`` keeps that density's images,
    ``birads`` or ``size`` every image and only the masses of ``stratum`` (``BI-RADS 4``, ``< 10 mm``)."""
    return density_only(record, stratum, label) if kind == "density" else masses_only(record, stratum, label)


def stratum_restriction(kind: str, stratum: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    """:func:`stratum_only` of one stratum in the ``restrict(record, run label)`` form the study's builders call."""
    return partial(_restricted, kind=kind, stratum=stratum)


def _restricted(record: dict[str, Any], label: str, kind: str, stratum: str) -> dict[str, Any]:
    return stratum_only(record, kind, stratum, label)


def _kept(values: list[Any], keep: list[bool]) -> list[Any]:
    return [v for v, k in zip(values, keep, strict=True) if k]


def _renumbered(keep: list[bool]) -> list[int]:
    """Each kept entry's position among the kept ones (-1 for the others)."""
    out, position = [], 0
    for k in keep:
        out.append(position if k else -1)
        position += k
    return out
