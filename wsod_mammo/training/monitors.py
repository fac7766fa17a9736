"""Which logged figures rise as the model improves: what ``ReduceLROnPlateau`` and ``BestCheckpoint`` must watch
with ``mode: max``. Their defaults (torch's and Lightning's) are ``min``, right for a loss and backwards for an
AUROC, a TPR at an FPPI, a figure of merit or the pointing game: the learning rate would be cut while the model got
better, and ``best.ckpt`` would keep its worst epoch."""

from __future__ import annotations

from wsod_mammo.detection.froc import FPPI_POINTS
from wsod_mammo.training.classification import FIGURES, HEADS

RISING_GROUPS = ("wafroc", "afroc", "pointing")  # <stage>/wafroc/<method>, <stage>/pointing/<method>/hit|energy


def rises_as_the_model_improves(monitor: str) -> bool:
    """True for Table I's figures (``<stage>/<head>/auroc``, ...), Table II's (``.../tpr@fppi1``), the figures of
    merit and the pointing game; False for a loss, a threshold or any name this package does not log."""
    parts = monitor.split("/")
    return parts[-1] in FIGURES or parts[-1].startswith("tpr@fppi") or (len(parts) > 2 and parts[1] in RISING_GROUPS)


def check_mode(owner: str, mode: str, option: str, monitor: str | None, fix: str) -> None:
    """Refuse ``mode: min`` on a figure that rises as the model improves, naming ``owner``, its ``option`` and
    ``fix``."""
    if monitor and mode == "min" and rises_as_the_model_improves(monitor):
        raise ValueError(
            f"{owner} mode 'min' on {option} {monitor}, a figure that rises as the model improves: give {fix} (or a "
            "loss as the monitor)"
        )


#: what validation logs per method: ``val/<group>/<method>/<figure>``
METHOD_FIGURES = {
    "detection": ("threshold", *(f"tpr@fppi{point:g}" for point in FPPI_POINTS)),
    "pointing": ("hit", "energy"),
}


def unlogged_figure(monitor: str) -> str | None:
    """Why ``monitor``, named as a figure this package logs, is none a fit logs (a typo, a test figure); None for
    one it logs and for any name outside its patterns (a figure a custom module or callback logs), which Lightning
    checks after the first validation, an epoch of training later."""
    parts = monitor.split("/")
    if parts[0] == "test":
        return "a test figure: validation's are val/..."
    if parts[0] not in ("val", "train"):
        return None
    if len(parts) == 3 and (parts[1] in HEADS or parts[2] in FIGURES) and parts[1] not in RISING_GROUPS:
        if parts[1] not in HEADS:
            return f"no head {parts[1]!r}: expected one of {', '.join(HEADS)}"
        if parts[2] not in FIGURES:
            return f"no figure {parts[2]!r} of a head: expected one of {', '.join(FIGURES)}"
    if len(parts) == 4 and (figures := METHOD_FIGURES.get(parts[1])) is not None:
        if parts[0] == "train":
            return f"{parts[1]} figures are validation's: val/{'/'.join(parts[1:])}"
        if parts[3] not in figures:
            return f"no {parts[1]} figure {parts[3]!r}: expected one of {', '.join(figures)}"
    return None


def check_logged(owner: str, option: str, monitor: str | None) -> None:
    """Refuse a ``monitor`` this package would never log (:func:`unlogged_figure`) before the fit trains: Lightning
    stopped it at the end of its first validation, with nothing saved."""
    if monitor and (why := unlogged_figure(monitor)):
        raise ValueError(f"{owner} {option} {monitor} is never logged in a fit ({why})")
