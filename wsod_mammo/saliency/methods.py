"""CAM, GradCAM, GradCAM++, XGradCAM and LayerCAM, with pytorch-grad-cam's definitions.

Notation: A_k (N, K, h, w) the activation of channel k, G_ck (N, C, K, h, w) the gradient of class c's target
score with respect to it, sums over the spatial positions ij. Maps are computed in float32 (also under
autocast), batched over images and classes, and returned non-negative and un-normalized `(N, C, h, w)` at the
saliency-map resolution (a layer of another resolution is resized bilinearly to it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsod_mammo.saliency.base import (
    SaliencyInputs,
    SaliencyMethod,
    normalize_saliency,
    register_saliency_method,
    upsample_saliency,
)


@register_saliency_method("cam")
class CAM(SaliencyMethod):
    """Class activation map (Zhou et al., CVPR 2016), as GMIC defines it (Shen et al., MedIA 2021).

    map_c = sigmoid(sum_k W_ck A_k): GMIC's own saliency head applied to h_g, the map that its top-t%
    aggregation and patch selection use. Needs no gradients.
    """

    def compute(self, inputs: SaliencyInputs) -> Tensor:
        return inputs.cam.float()


class _ChannelWeightMethod(SaliencyMethod):
    """Grad-CAM family: map_c = ReLU(sum_k w_ck A_k); subclasses override only `channel_weights`."""

    needs_gradients = True

    def __init__(self, layer: str = "final") -> None:
        self.layer = layer

    def layers(self) -> tuple[str, ...]:
        return (self.layer,)

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """activations (N, 1, K, h, w), gradients (N, C, K, h, w) -> weights (N, C, K)."""
        raise NotImplementedError

    def compute(self, inputs: SaliencyInputs) -> Tensor:
        acts = inputs.activations[self.layer].float()  # (N, K, h, w)
        grads = inputs.gradients[self.layer].float()  # (N, C, K, h, w)
        weights = self.channel_weights(acts.unsqueeze(1), grads)  # (N, C, K)
        maps = F.relu(torch.einsum("nck,nkhw->nchw", weights, acts))  # (N, C, h, w)
        return upsample_saliency(maps, (inputs.cam.shape[-2], inputs.cam.shape[-1]))


@register_saliency_method("gradcam")
class GradCAM(_ChannelWeightMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017): w_ck = mean_ij G_ck; map_c = ReLU(sum_k w_ck A_k)."""

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=(-2, -1))


@register_saliency_method("gradcampp")
class GradCAMPlusPlus(_ChannelWeightMethod):
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018), pytorch-grad-cam's form.

    alpha = G^2 / (2 G^2 + (sum_ij A_k) G^3 + epsilon), alpha = 0 where G = 0;
    w_ck = sum_ij ReLU(G) alpha; map_c = ReLU(sum_k w_ck A_k).

    ``epsilon``: pytorch-grad-cam's 1e-6 by default (the study's). It is absolute, and GMIC's score gradients at
    h_g are the head's weights over the top-t% count: at 2944 x 1920 G^2 is about 1e-6 to 1e-8 and the 1e-6 then
    dominates the denominator (the normalized map moves by up to a quarter of its range from the paper's).
    ``epsilon=0`` is the paper's formula, with the authors' code's guard: a zero denominator counts as 1.
    """

    def __init__(self, layer: str = "final", epsilon: float = 1e-6) -> None:
        super().__init__(layer)
        if not epsilon >= 0:
            raise ValueError(f"GradCAMPlusPlus.epsilon: expected a number >= 0, found {epsilon!r}")
        self.epsilon = float(epsilon)

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        g2 = gradients.pow(2)
        sum_a = activations.sum(dim=(-2, -1), keepdim=True)  # (N, 1, K, 1, 1)
        denominator = 2 * g2 + sum_a * g2 * gradients + self.epsilon
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (F.relu(gradients) * alpha).sum(dim=(-2, -1))

    def __repr__(self) -> str:  # the default epsilon as before it was an option: checkpoints' records still match
        given = "" if self.epsilon == 1e-6 else f", epsilon={self.epsilon!r}"
        return f"{type(self).__name__}(layers={list(self.layers())}{given})"


@register_saliency_method("xgradcam")
class XGradCAM(_ChannelWeightMethod):
    """XGrad-CAM (Fu et al., BMVC 2020): w_ck = sum_ij G_ck A_k / (sum_ij A_k + 1e-7); map_c = ReLU(sum_k w_ck A_k)."""

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        sum_a = activations.sum(dim=(-2, -1))  # (N, 1, K)
        return (gradients * activations).sum(dim=(-2, -1)) / (sum_a + 1e-7)


@register_saliency_method("layercam")
class LayerCAM(SaliencyMethod):
    """LayerCAM (Jiang et al., IEEE TIP 2021): per layer l, map_c^l = ReLU(sum_k ReLU(G_ck) * A_k).

    With several layers they are fused as pytorch-grad-cam fuses them (each layer's map min-max normalized per
    image and class, resized to one size, averaged), at the saliency-map size rather than the input's: a finer
    layer's map is shrunk onto it by the mean of the cells each map cell covers (``upsample_saliency``), so every
    cell counts. A single layer is returned un-normalized (resized if needed).

    Default layers: `stage3`, `stage4`, `stage5`, the outputs of the global network's last three stages (the
    residual stream at 1/16, 1/32 and 1/64 of the input, as a hook on each stage module would see them; the
    paper's multi-layer LayerCAM). `final` (stage 5 after the final BN + ReLU) may be named as well.
    """

    needs_gradients = True
    DEFAULT_LAYERS: tuple[str, ...] = ("stage3", "stage4", "stage5")

    def __init__(self, layers: list[str] | None = None) -> None:
        chosen = tuple(layers) if layers is not None else self.DEFAULT_LAYERS
        if not chosen:
            raise ValueError("LayerCAM(layers=...): expected at least one layer name, found an empty list")
        self._layers = chosen

    def layers(self) -> tuple[str, ...]:
        return self._layers

    def compute(self, inputs: SaliencyInputs) -> Tensor:
        size = (inputs.cam.shape[-2], inputs.cam.shape[-1])
        per_layer = []
        for name in self._layers:
            acts = inputs.activations[name].float().unsqueeze(1)  # (N, 1, K, h', w')
            grads = inputs.gradients[name].float()  # (N, C, K, h', w')
            maps = F.relu((F.relu(grads) * acts).sum(dim=2))  # (N, C, h', w')
            per_layer.append(maps)
        if len(per_layer) == 1:
            return upsample_saliency(per_layer[0], size)
        fused = [F.relu(upsample_saliency(normalize_saliency(m), size)) for m in per_layer]
        return torch.stack(fused).mean(dim=0)  # (N, C, h, w)
