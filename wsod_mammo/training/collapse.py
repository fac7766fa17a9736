"""Collapse: a model that gives every image the same probability, said instead of reported as a figure.

Such a model (dead features after a too-high learning rate, a head saturated at 0 or 1) has a Table I AUROC of 0.50
by ties and accuracy equal to the share of one class, which read as a weak model rather than a broken one. The
spread of the fusion probabilities is kept on the device per batch and read once per epoch, where the run
synchronizes anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

#: a class whose fusion probabilities span less than this over the images has collapsed to a constant (near 0 or 1:
#: this times 4 p, or 4 (1 - p), the slope of the sigmoid there: see :func:`_constants`)
COLLAPSE_SPREAD = 1e-6


class ProbabilitySpread:
    """The lowest and highest probability of each class over the images of an evaluation epoch, on the device."""

    def __init__(self) -> None:
        self._low_and_negated_high: Tensor | None = None  # (2, C): min, -max; one reduction (min) serves both
        self._count: Tensor | None = None

    def reset(self) -> None:
        self._low_and_negated_high = self._count = None

    def update(self, probabilities: Tensor) -> None:
        """Note a batch's ``(N, C)`` probabilities; device operations only. Non-finite values are left out (the
        divergence check names those)."""
        values = probabilities.detach().float().reshape(probabilities.shape[0], -1)
        finite = torch.isfinite(values)
        low = torch.where(finite, values, torch.inf).amin(dim=0)
        high = torch.where(finite, values, -torch.inf).amax(dim=0)
        batch = torch.stack((low, -high))
        count = finite.all(dim=1).sum()
        if self._low_and_negated_high is None or self._count is None:  # both are set together
            self._low_and_negated_high, self._count = batch, count
        else:
            self._low_and_negated_high = torch.minimum(self._low_and_negated_high, batch)
            self._count = self._count + count

    def collapsed(
        self,
        num_classes: int,
        reduce: Callable[[Tensor, str], Tensor] | None = None,
        device: torch.device | str = "cpu",
    ) -> list[float] | None:
        """Each class's constant probability when every class spans less than :data:`COLLAPSE_SPREAD` over two
        images or more (over every process, with ``reduce(tensor, "min" | "sum")``); else None. Resets the epoch.
        Synchronizes: every process must call it when one does."""
        state, count = self._low_and_negated_high, self._count
        self.reset()
        if state is None or count is None:
            state = torch.stack((torch.full((num_classes,), torch.inf), torch.full((num_classes,), torch.inf)))
            state, count = state.to(device), torch.zeros((), dtype=torch.long, device=device)
        if reduce is not None:
            state, count = reduce(state.clone(), "min"), reduce(count.clone(), "sum")
        return _constants(state[0], -state[1], int(count))


def constant_probabilities(probabilities: Tensor) -> list[float] | None:
    """Each class's constant probability when ``(N, C)`` ``probabilities`` (all finite) are one row repeated, to
    within :data:`COLLAPSE_SPREAD`, over two images or more; else None. The rule :class:`ProbabilitySpread` applies
    over an epoch, for rows already gathered (``wsod predict``'s)."""
    values = probabilities.float().reshape(probabilities.shape[0], -1)
    if values.shape[0] == 0:
        return None
    return _constants(values.amin(dim=0), values.amax(dim=0), values.shape[0])


def _constants(low: Tensor, high: Tensor, count: int) -> list[float] | None:
    """Each class's ``low`` when every class spans less than ``COLLAPSE_SPREAD`` on the sigmoid's scale: near 0 (or 1)
    float32 probabilities are distinct however close (8e-10 and 3e-7, logits -21 and -15, rank), and an absolute
    1e-6 called a model whose probabilities all lay below it collapsed, "AUROC 0.5 by ties", at an AUROC of 1."""
    if count < 2 or not bool(torch.isfinite(low).all()):
        return None
    slope = (4 * torch.minimum(high.double(), 1 - low.double())).clamp(max=1.0)  # 1 at 0.5, 4 p near 0
    if bool((((high.double() - low.double()) < COLLAPSE_SPREAD * slope) | (high == low)).all()):
        return [float(v) for v in low.tolist()]
    return None


def constants_text(constants: Sequence[float], class_names: Sequence[str]) -> str:
    """``"0.731059 for Mass, ..."``: a collapsed model's answer, as the warnings print it."""
    return ", ".join(f"{value:.6g} for {name}" for value, name in zip(constants, class_names, strict=True))


def collapsed_message(stage: str, constants: Sequence[float], class_names: Sequence[str], fitting: bool) -> str:
    """What the user reads when the fusion head gives every image the same probability."""
    what = {"val": "validation", "test": "test"}.get(stage, stage)
    values = constants_text(constants, class_names)
    head = (
        f"{what}: the model gives every image the same fusion probability ({values}): it has collapsed to a constant "
        "output, so its AUROC is 0.5 by ties (where defined) and its accuracy, TPR and TNR are those of always "
        "answering one class"
    )
    if fitting:
        return (
            head + "; the weights stopped learning (a learning rate too high for the batch, or dead features): "
            "lower --model.optimizer.init_args.lr or fit from NYU's weights"
        )
    return head + "; these weights are not a trained classifier"
