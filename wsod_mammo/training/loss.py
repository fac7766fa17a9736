"""The GMIC training objective (Shen et al. 2021, eq. 9), computed in float32 outside autocast."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsod_mammo.models import GMICOutput

# Probabilities are clamped away from 0 and 1 so a saturated sigmoid cannot give an infinite BCE.
_EPS = 1e-6


@dataclass(frozen=True)
class GMICLoss:
    """The total loss and its terms, each a scalar tensor (the terms are for logging)."""

    total: Tensor
    global_bce: Tensor
    local_bce: Tensor
    fusion_bce: Tensor
    saliency_reg: Tensor

    def terms(self) -> dict[str, Tensor]:
        return {
            "loss": self.total,
            "loss_global": self.global_bce,
            "loss_local": self.local_bce,
            "loss_fusion": self.fusion_bce,
            "loss_reg": self.saliency_reg,
        }


def _bce(probabilities: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """BCE of the probabilities clamped to [1e-6, 1 - 1e-6] in value only: the gradient passes the clamp as if it
    were not there. A plain clamp gave a head that had saturated on the wrong side (a positive image's y_global
    below 1e-6, where the saliency regularizer pushes the map) zero gradient, so its BCE could never pull it back.

    A NaN or infinite probability (a diverged model) gives a NaN term instead of ``binary_cross_entropy``'s
    "all elements of input should be between 0 and 1" (a device-side assertion on CUDA, which ends the process):
    the module then says that training diverged and where. Finite probabilities give the same value and gradient
    as before, bit for bit."""
    probabilities = probabilities.float()
    finite = torch.isfinite(probabilities)
    clamped = probabilities + (probabilities.clamp(_EPS, 1.0 - _EPS) - probabilities).detach()
    loss = F.binary_cross_entropy(torch.where(finite, clamped, 0.5), target, reduction=reduction)
    poison = torch.where(finite, 0.0, float("nan"))  # + 0.0 changes no finite value (a BCE is >= 0) nor gradient
    return loss + (poison if reduction == "none" else poison.sum())


def _saliency_reg(saliency: Tensor) -> Tensor:
    """``(N,)`` the paper's ``L_reg`` of each image: the sum of ``|A|`` over classes and positions."""
    return saliency.float().abs().flatten(1).sum(dim=1)


def gmic_sample_losses(output: GMICOutput, target: Tensor, beta: float) -> Tensor:
    """``(N,)`` each image's share of ``gmic_loss``: their mean is its ``total`` (BCE as a mean over classes, ``L_reg``
    the image's own sum), for figures that count each distinct image once."""
    with torch.autocast(device_type=target.device.type, enabled=False):
        target = target.float()
        heads = (output.y_global, output.y_local, output.y_fusion)
        bce = sum(_bce(p, target, reduction="none").mean(dim=1) for p in heads)
        return bce + beta * _saliency_reg(output.saliency)


def gmic_loss(output: GMICOutput, target: Tensor, beta: float) -> GMICLoss:
    """BCE on the global, local and fusion heads plus ``beta * L_reg``.

    ``L_reg`` is the paper's: the sum of ``|A|`` over the saliency map's positions and classes, averaged over the
    images of the batch. NYU's model 1 was trained with beta = 3.259e-6 on it (nyukat/GMIC issue #4; models 2-5:
    9.4e-6 to 2.3e-4). An earlier version took the mean over positions with beta = 3.26, the same figure without
    its 1e-6: about 725 times NYU's weight at 2944 x 1920 (46 x 30 positions). ``target`` is the multi-hot
    ``(N, C)`` label. Everything runs in float32 with autocast disabled, since ``binary_cross_entropy`` is unsafe in
    half precision.
    """
    with torch.autocast(device_type=target.device.type, enabled=False):
        target = target.float()
        global_bce = _bce(output.y_global, target)
        local_bce = _bce(output.y_local, target)
        fusion_bce = _bce(output.y_fusion, target)
        saliency_reg = _saliency_reg(output.saliency).mean()
        total = global_bce + local_bce + fusion_bce + beta * saliency_reg
    return GMICLoss(total, global_bce, local_bce, fusion_bce, saliency_reg)
