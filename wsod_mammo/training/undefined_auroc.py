"""The warning for a validation split on which a class's AUROC is undefined (all its images of one kind), said once
a fit, with what it does to ``best.ckpt``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsod_mammo.training.batch_limits import val_limit_option
from wsod_mammo.training.checkpoints import BestCheckpoint


def undefined_auroc_message(undefined: Sequence[tuple[int, str]], names: Sequence[str], trainer: Any) -> str:
    """The warning for classes whose validation AUROC is undefined (``KeyedClassificationMetric.undefined``), with
    what it does to the checkpoints that monitor a validation AUROC."""
    lacking = {"positive": "no image with {}", "negative": "no image without {}", "any": "no image to rate {} on"}
    missing = "; ".join(lacking[kind].format(names[c]) for c, kind in undefined)
    every = len(undefined) == len(names)
    limit = getattr(trainer, "limit_val_batches", 1.0)
    # the batches validated, not the split (the DataModule names a split of one kind at setup)
    partial = getattr(trainer, "fast_dev_run", False) or not (isinstance(limit, float) and limit == 1.0)
    where = f" in the batches it ran ({val_limit_option(trainer)})" if partial else ""
    if every:
        text = f"validation has {missing}{where}: AUROC is undefined there, so val/<head>/auroc is NaN (not 0.0)"
    else:
        its = "its" if len(undefined) == 1 else "their"
        text = (
            f"validation has {missing}{where}: {its} AUROC is undefined, so val/<head>/auroc averages the other "
            "classes'"
        )
    monitors = sorted(
        {
            str(c.monitor)
            for c in getattr(trainer, "checkpoint_callbacks", [])
            if isinstance(c, BestCheckpoint) and c.monitor and str(c.monitor).startswith("val/")
            and str(c.monitor).endswith("/auroc")
        }
    )  # fmt: skip
    if every and monitors and getattr(trainer.state.fn, "value", None) == "fit":
        text += (
            f"; best.ckpt (kept by {', '.join(monitors)}) then follows the newest epoch, as last.ckpt does, "
            "unless an earlier epoch had an AUROC: a NaN never replaces one"
        )
    if partial:
        return text + "."
    return text + ". Another --data.seed or --data.val_fraction may give a validation split with images of both kinds."
