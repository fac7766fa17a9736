"""``detection.json`` as strict JSON: an undefined figure (an AUROC of one class, a calibration slope where the
probabilities separate the classes, an interval no resample gives) is ``null``, not Python's ``NaN`` token, which
``jq``, JavaScript's ``JSON.parse`` and R's ``jsonlite`` refuse; the package's readers take it back as NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The keys under which a report holds a figure that may be undefined (an interval's ends, a cell's TPR and FPPI,
#: a p): read back as NaN, as reports written before this module hold them. Nowhere else does null mean NaN.
FIGURE_KEYS = frozenset({"value", "low", "high", "p", "tpr", "fppi"})
#: The keys whose every value is a figure: a FROC curve's points (TPR 0/0 without a mass), the TPR per FPPI budget.
FIGURES_KEYS = frozenset({"fppi_curve", "tpr_curve", "tpr_at_fppi", "monitored"})


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth, as None (JSON's null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` with undefined figures as null: a file every JSON reader parses."""
    return json.dumps(finite_or_null(value), allow_nan=False, **kwargs)


def undefined_as_nan(value: Any, figures: bool = False) -> Any:
    """A report read back: the null figures under :data:`FIGURE_KEYS` and :data:`FIGURES_KEYS` as NaN, what the
    tables and plots compute with (``figures``: ``value`` is such a key's, every null in it a figure)."""
    if value is None and figures:
        return math.nan
    if isinstance(value, dict):
        return {
            key: math.nan if v is None and key in FIGURE_KEYS else undefined_as_nan(v, figures or key in FIGURES_KEYS)
            for key, v in value.items()
        }
    if isinstance(value, list):
        return [undefined_as_nan(v, figures) for v in value]
    return value
