"""The per-stratum tables' intervals over seeds and the test set: Table II per breast density, finding BI-RADS and
mass size, Table I per density, wAFROC and the pointing game per kind.

Each stratum's cells are :mod:`study_over_seeds`' of the whole table, every seed's image record restricted to the
stratum as its test report restricted its result (:mod:`record_strata`); all strata of a table or none, as one table
holds one kind of interval, and the runs' records read once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from wsod_mammo.detection.record_strata import stratum_restriction
from wsod_mammo.detection.study_cells import Cells as FigureCells
from wsod_mammo.detection.study_over_seeds import (
    Cells,
    RunFile,
    cells_over_test_set,
    resampled_figures_of_merit,
    resampled_pointing,
    table1_over_test_set,
    with_test_set_intervals,
)
from wsod_mammo.detection.study_tables import Estimate


def table2_strata_over_test_set(
    cells: dict[str, Cells], runs: dict[tuple[str, int], Path], kind: str, what: str
) -> tuple[dict[str, Cells], bool]:
    """A per-stratum Table II's ``{stratum: cells}`` (``kind``: ``density``, ``birads``, ``size``) with each cell over
    the seeds and the test set, each seed's records restricted to the stratum (:func:`stratum_only`); all strata or
    none (``what``: the file, named in the warning), the records read once for all of them."""
    files: dict[str, list[RunFile]] = {}
    out = {}
    for stratum, stratum_cells in cells.items():
        restrict = stratum_restriction(kind, stratum)
        out[stratum], counted = with_test_set_intervals(stratum_cells, runs, restrict, f"{what} ({stratum})", files)
        if not counted:
            return cells, False
    return out, True


def table1_by_density_over_test_set(
    records: dict[tuple[str, int], dict[str, Any]], densities: Iterable[str]
) -> dict[str, dict[tuple[str, str], dict[str, Estimate]]] | None:
    """:func:`table1_over_test_set` of each density (``table1_by_density.md``); None where any cannot be given (one
    table, one kind of interval)."""
    out = {}
    for density in densities:
        if (over := table1_over_test_set(records, density=density)) is None:
            return None
        out[density] = over
    return out


#: ``{kind: {stratum: cells}}``: a per-kind table's cells (:func:`by_kind_cells`')
KindCells = dict[str, dict[str, FigureCells]]


def figures_of_merit_by_kind_over_test_set(
    cells: KindCells, runs: dict[tuple[str, int], Path]
) -> tuple[KindCells, bool]:
    """``wafroc_by_kind.md``'s cells over the seeds and the test set, each stratum's figures over the same draws as
    ``wafroc.md``'s by the test report's rule (:mod:`afroc_strata`: a density's own images, a BI-RADS's or size's
    masses with every normal image); all cells or none."""
    return _kinds_over_test_set(cells, runs, resampled_figures_of_merit, "wafroc_by_kind.md")


def pointing_by_kind_over_test_set(cells: KindCells, runs: dict[tuple[str, int], Path]) -> tuple[KindCells, bool]:
    """``pointing_by_kind.md``'s cells alike: a density's images with a mass in view, a BI-RADS's or size's images
    with such a mass in view scored against those masses (the records' ``pointing_by_kind``)."""
    return _kinds_over_test_set(cells, runs, resampled_pointing, "pointing_by_kind.md")


def _kinds_over_test_set(
    cells: KindCells,
    runs: dict[tuple[str, int], Path],
    resampled: Callable[..., dict[str, torch.Tensor]],
    what: str,
) -> tuple[KindCells, bool]:
    """Each stratum's cells by :func:`cells_over_test_set` with ``resampled(train, test, files, stratum=(kind,
    label))``, the runs' records read once for all of them; all strata or none."""
    files: dict[str, list[RunFile]] = {}
    out: KindCells = {}
    for kind, strata in cells.items():
        for label, stratum_cells in strata.items():
            stratum = partial(resampled, stratum=(kind, label))
            over, counted = cells_over_test_set(stratum_cells, runs, stratum, f"{what} ({kind} {label})", files)
            if not counted:
                return cells, False
            out.setdefault(kind, {})[label] = over
    return out, True
