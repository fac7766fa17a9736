"""Which logged figures rise as the model improves: what ``ReduceLROnPlateau`` and ``BestCheckpoint`` must watch
with ``mode: max``. Their defaults (torch's and Lightning's) are ``min``, right for a loss and backwards for an
AUROC, a TPR at an FPPI, a figure of merit or the pointing game: the learning rate would be cut while the model got
better, and ``best.ckpt`` would keep its worst epoch."""

from __future__ import annotations

from wsod_mammo.training.classification import FIGURES

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
