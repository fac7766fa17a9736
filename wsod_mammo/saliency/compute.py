"""Several saliency methods from one set of activations and at most ONE `torch.autograd.grad` call.

The target score `(N, C)` is differentiated with respect to every activation any requested method reads and whose
gradient the caller does not already know (`GMIC` knows the gradient of `y_global`'s score with respect to h_g in
closed form), in a single call: for C = 1 the sum over the batch, for C > 1 one-hot `grad_outputs` batched over
classes with `is_grads_batched=True`. The sum gives each image its own score's gradient only when the images are
independent (eval mode); a network in training mode couples them through BatchNorm's batch statistics, and the
sum's gradient at image i then holds how i's activations move the OTHER images' scores (up to a third of a
LayerCAM map's peak on a batch of 4): `per_image=True` differentiates each image's score alone, batched over
images. Never `.backward()`, so parameters' `.grad` are never touched. Callers make sure grad mode is on (see `GMIC`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from wsod_mammo.saliency.base import SaliencyInputs, SaliencyMethod


def required_layers(methods: Sequence[SaliencyMethod]) -> list[str]:
    """The union of the activations gradient methods read, in first-seen order."""
    names: list[str] = []
    for method in methods:
        if method.needs_gradients:
            names += [n for n in method.layers() if n not in names]
    return names


def check_layers(methods: Sequence[SaliencyMethod], valid: Sequence[str]) -> None:
    """Raise ValueError naming the method and the valid names if a method reads an unknown activation."""
    for method in methods:
        unknown = [n for n in method.layers() if n not in valid]
        if unknown:
            raise ValueError(
                f"saliency method {method.name!r}: unknown layer(s) {unknown}; valid layer names are {list(valid)}"
            )


def target_gradients(
    target: Tensor, activations: dict[str, Tensor], retain_graph: bool, per_image: bool = False
) -> dict[str, Tensor]:
    """d target[i, c] / d activation[i] for every image i and class c: {name: (N, C, K, h, w)}, one autograd call.

    ``per_image``: differentiate each image's score alone (a batch coupled by BatchNorm in training mode), at the
    cost of N backward passes batched into the one call; otherwise the scores of all images are summed."""
    names = list(activations)
    tensors = [activations[n] for n in names]
    n, c = target.shape
    if per_image and n > 1:  # one-hot over (image, class): (N * C, N, C) -> gradients (N * C, N, ...)
        one_hot = torch.eye(n * c, dtype=target.dtype, device=target.device).view(n * c, n, c)
        grads = torch.autograd.grad(
            target, tensors, grad_outputs=one_hot, retain_graph=retain_graph, is_grads_batched=True
        )
        images = torch.arange(n, device=target.device)
        # image i's own rows and its own slice: (N, C, N, ...)[i, :, i] -> (N, C, ...)
        return {name: g.view(n, c, *g.shape[1:])[images, :, images] for name, g in zip(names, grads, strict=True)}
    if c == 1:
        grads = torch.autograd.grad(target.sum(), tensors, retain_graph=retain_graph)
        return {name: g.unsqueeze(1) for name, g in zip(names, grads, strict=True)}
    one_hot = torch.eye(c, dtype=target.dtype, device=target.device)[:, None, :].expand(c, n, c).contiguous()
    grads = torch.autograd.grad(target, tensors, grad_outputs=one_hot, retain_graph=retain_graph, is_grads_batched=True)
    return {name: g.transpose(0, 1) for name, g in zip(names, grads, strict=True)}  # (C, N, ...) -> (N, C, ...)


def compute_saliency(
    methods: Sequence[SaliencyMethod],
    cam: Tensor,
    activations: dict[str, Tensor],
    target: Tensor | None,
    retain_graph: bool = False,
    known_gradients: dict[str, Tensor] | None = None,
    per_image: bool = False,
) -> dict[str, Tensor]:
    """{method.name: detached float32 map (N, C, h, w)} for all `methods` (autocast is off while maps are made).

    cam (N, C, h, w) is GMIC's sigmoid map; `activations` must hold every layer the methods read and be
    part of the graph that produced `target (N, C)` (needed only when a gradient method reads a layer missing from
    `known_gradients`, {layer: (N, C, K, h', w') gradient of `target` already computed}). `per_image`: see
    `target_gradients`. Two methods of one name keep the last one's map: `compute_saliency_list` keeps both.
    """
    maps = compute_saliency_list(methods, cam, activations, target, retain_graph, known_gradients, per_image)
    return {method.name: value for method, value in zip(methods, maps, strict=True)}


def compute_saliency_list(
    methods: Sequence[SaliencyMethod],
    cam: Tensor,
    activations: dict[str, Tensor],
    target: Tensor | None,
    retain_graph: bool = False,
    known_gradients: dict[str, Tensor] | None = None,
    per_image: bool = False,
) -> list[Tensor]:
    """`compute_saliency`'s maps in the order of `methods`, one per method even where names repeat (a patch
    method `GradCAM(layer="stage4")` beside the requested `gradcam`)."""
    layers = required_layers(methods)
    gradients = {n: g for n, g in (known_gradients or {}).items() if n in layers}
    unknown = [n for n in layers if n not in gradients]
    if unknown:
        if target is None:
            raise ValueError("compute_saliency: gradient methods need a target score, found target=None")
        gradients |= target_gradients(target, {n: activations[n] for n in unknown}, retain_graph, per_image)
    # every layer any method reads: a method without gradients may read activations too (an activation-norm map)
    read = list(dict.fromkeys([*layers, *(n for method in methods for n in method.layers())]))
    # maps in float32, from float32 inputs: under bf16-mixed the activations and their gradients are bf16, and a
    # method of one's own that does not cast them (the README's) made its map in bf16 (cells rounded to ties)
    with torch.no_grad(), torch.autocast(cam.device.type, enabled=False):
        inputs = SaliencyInputs(
            cam=cam.detach().float(),
            activations={n: activations[n].detach().float() for n in read},
            gradients={n: g.detach().float() for n, g in gradients.items()},
        )
        return [checked_map(method, method(inputs), cam) for method in methods]


def checked_map(method: SaliencyMethod, value: object, cam: Tensor) -> Tensor:
    """A method's map as float32, or a ValueError naming the method when it is no floating-point map of ``cam``'s
    shape (N, C, h, w): boxes, overlays and patches place each map cell as a cell of ``cam``, so a map of another
    size or a transposed one gave boxes elsewhere without a word, and one without its class axis a bare unpacking
    error."""
    if isinstance(value, Tensor) and value.shape == cam.shape and value.is_floating_point():
        return value.float()
    found = (
        f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
    )
    raise ValueError(
        f"saliency method {method.name!r} ({type(method).__module__}.{type(method).__qualname__}): compute() returned "
        f"{found}; expected a floating-point map of shape {tuple(cam.shape)} (N, C, h, w), inputs.cam's "
        "(upsample_saliency resizes a layer's map to it)"
    )
