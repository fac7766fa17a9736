"""The rows of Table II per kind of mass: a mass's finding BI-RADS and its size class, named alike by the test
report's tables and by ``wsod report --compare --masses`` (plain Python: ``wsod report`` stays light)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

UNKNOWN = "unknown"  # the row of masses (or images) whose category the data leaves empty
#: Table II per mass size: the edges (mm) between its rows, and the rows (a mass of exactly 10 mm is 10-20 mm)
SIZE_EDGES_MM = (10.0, 20.0)
SIZE_LABELS = ("< 10 mm", "10-20 mm", ">= 20 mm")
#: The strata the figures of merit are given per (``wafroc_by_kind``): key -> the tables' heading
KIND_TITLES = {"density": "breast density", "birads": "finding BI-RADS", "size": "mass size"}


def birads_label(category: int) -> str:
    """A mass's row in Table II per finding BI-RADS: ``BI-RADS 4``, or :data:`UNKNOWN` for 0 (an empty cell)."""
    return f"BI-RADS {category}" if category > 0 else UNKNOWN


def size_label(size_mm: float | None) -> str:
    """A mass's row in Table II per mass size, by its longer side: one of :data:`SIZE_LABELS`, or :data:`UNKNOWN`
    without a pixel spacing (None or NaN)."""
    if size_mm is None or math.isnan(size_mm):
        return UNKNOWN
    return SIZE_LABELS[sum(size_mm >= edge for edge in SIZE_EDGES_MM)]


def row_labels(kind: str, values: Sequence[Any]) -> list[str]:
    """Each mass's row: ``kind`` ``birads`` from its finding BI-RADS (0 unknown), ``size`` from its size in mm (None
    or NaN unknown). The one rule the test report's tables and ``--compare --masses`` both count by."""
    if kind == "birads":
        return [birads_label(int(v)) for v in values]
    return [size_label(None if v is None else float(v)) for v in values]


def row_order(kind: str, labels: Sequence[str]) -> list[str]:
    """The rows of ``labels`` (from :func:`row_labels`) in their tables' order: BI-RADS ascending, sizes small to
    large, :data:`UNKNOWN` last."""
    if kind == "size":
        return [label for label in (*SIZE_LABELS, UNKNOWN) if label in labels]
    return sorted(set(labels), key=lambda label: (label == UNKNOWN, label))


def label_rows(kind: str, labels: Sequence[str]) -> dict[str, list[bool]]:
    """``{row: which of labels are it}`` for each row of ``labels`` in :func:`row_order`; empty where none is known
    (every label :data:`UNKNOWN`, or none): a table per kind of mass leaves such a kind out."""
    if all(label == UNKNOWN for label in labels):
        return {}
    return {row: [label == row for label in labels] for row in row_order(kind, labels)}


def mass_kind(label: str) -> str:
    """Which table a row name belongs to: ``birads`` (``BI-RADS 4``) or ``size`` (``< 10 mm``); ValueError naming
    the choices otherwise."""
    if label in SIZE_LABELS:
        return "size"
    if re.fullmatch(r"BI-RADS [0-6]", label):
        return "birads"
    choices = ", ".join(f"'{name}'" for name in ("BI-RADS 3", "BI-RADS 4", "BI-RADS 5", *SIZE_LABELS))
    raise ValueError(f"--masses: expected a row of Table II per finding BI-RADS or per mass size ({choices}), "
                     f"found {label!r}")  # fmt: skip


def mass_note(category: int, size_mm: float | None) -> str:
    """A ground-truth mass as an overlay names it: ``BI-RADS 4, 13 mm``, either part alone, or "" knowing neither."""
    parts = ([f"BI-RADS {category}"] if category > 0 else []) + (
        [] if size_mm is None or math.isnan(size_mm) else [f"{size_mm:.0f} mm"]
    )
    return ", ".join(parts)


def strata_rows(strata: dict[str, Any], counts: Sequence[str], figures: Sequence[str]) -> list[list[Any]]:
    """A row per kind, stratum and test method of ``strata`` (``{kind: {label: {*counts, "methods": {method:
    {figure: {value, low, high}}}}}}``): ``[kind, label, *counts, method, *each figure's value, low, high]``, the
    CSV and W&B rows of the test report's tables per kind of mass."""
    return [
        [kind, label, *(row[c] for c in counts), method,
         *(f[k][end] for k in figures for end in ("value", "low", "high"))]
        for kind, rows in strata.items()
        for label, row in rows.items()
        for method, f in row["methods"].items()
    ]  # fmt: skip
