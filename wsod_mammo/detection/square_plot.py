"""One figure on the unit square, as the test report's reliability diagram and wAFROC curves draw it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from wsod_mammo.atomic_files import save_figure_atomic


def save_unit_square_plot(
    path: str | Path,
    draw: Callable[[Any], None],
    xlabel: str,
    ylabel: str,
    title: str = "",
    legend: Literal["best", "upper left", "lower right"] = "best",
) -> None:
    """A 5.5 x 5 inch PNG at ``path``: ``draw(axes)`` draws on axes spanning [0, 1] x [0, 1], labelled, gridded,
    titled, with the legend at ``legend``. Matplotlib's Agg canvas: no display, no global pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 5), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title, fontsize=10)
    axes.legend(loc=legend)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(figure, Path(path))
