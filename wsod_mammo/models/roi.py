"""GMIC's greedy patch selection on a saliency map and the batched crop of the full-resolution image.

Window selection runs without gradient (positions are integers); the crop is differentiable with respect to the
image. The K-step greedy loop is sequential
by definition (each pick zeroes its window before the next), batched over images; the crop gathers all
images' and patches' pixels with one advanced-indexing call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsod_mammo.saliency.base import normalize_saliency


def window_size(crop_shape: tuple[int, int], map_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """The crop's size at map resolution: round(crop * h / H) x round(crop * w / W), at least 1 x 1."""
    height, width = (max(1, round(c * m / i)) for c, m, i in zip(crop_shape, map_size, image_size, strict=True))
    return height, width


@torch.no_grad()
def select_windows(saliency: Tensor, window: tuple[int, int], num_patches: int, ties: Tensor | None = None) -> Tensor:
    """Greedy window picks on the class-summed, per-class min-max normalized map.

    saliency (N, C, h, w) -> corners (N, K, 2) long `(row, col)` top-left at map resolution. Each step takes
    the window with the largest mean (first maximum in row-major order on ties) and zeroes it. ``ties`` (N, C', h, w),
    normalized and zeroed alike, orders the windows that tie for the largest mean (GMIC's ``patch_ties: cam``): a
    gradient map with fewer than K positive windows (GradCAM's is ReLU of the head's logits, 0 on an image the model
    calls negative) otherwise gave its first window again and again, the same corner K times.

    Few kernels per step (this loop runs eagerly between the compiled networks, where every launch counts): the
    picked window is zeroed through a mask made by spreading the pick's one-hot over the window (a transposed
    convolution with a ones kernel: exactly 1 inside, 0 outside), and rows and columns are derived once at the end.
    """
    n, _, h, w = saliency.shape
    wh, ww = window
    scores = normalize_saliency(saliency.float()).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    second = None if ties is None else normalize_saliency(ties.float()).sum(dim=1, keepdim=True)
    out_h, out_w = h - wh + 1, w - ww + 1
    positions = torch.arange(out_h * out_w, device=saliency.device)
    spread = torch.ones(1, 1, wh, ww, device=saliency.device)
    picks = []
    for _ in range(num_patches):
        means = F.avg_pool2d(scores, (wh, ww), stride=1).flatten(1)  # (N, out_h * out_w)
        if second is None:
            best = means.argmax(dim=1, keepdim=True)  # (N, 1) first maximum
        else:  # the largest mean of `ties` among the windows tied for the largest mean (first of those on ties)
            tied = means == means.amax(dim=1, keepdim=True)
            order = F.avg_pool2d(second, (wh, ww), stride=1).flatten(1)
            best = order.masked_fill(~tied, -torch.inf).argmax(dim=1, keepdim=True)
        picks.append(best)
        one_hot = (positions == best).to(scores.dtype).view(n, 1, out_h, out_w)
        inside = F.conv_transpose2d(one_hot, spread) > 0.5  # (N, 1, h, w); > 0.5: exact under any conv algorithm
        scores = scores.masked_fill(inside, 0.0)
        if second is not None:
            second = second.masked_fill(inside, 0.0)
    best = torch.cat(picks, dim=1)  # (N, K)
    return torch.stack([best // out_w, best % out_w], dim=-1)  # (N, K, 2)


@torch.no_grad()
def corners_to_pixels(
    corners: Tensor, map_size: tuple[int, int], image_size: tuple[int, int], crop_shape: tuple[int, int]
) -> Tensor:
    """Map-resolution corners (N, K, 2) -> input-pixel top-left corners (N, K, 2) long.

    Scaled by H/h, W/w and rounded (half to even), then clamped so the whole crop lies inside the image.
    """
    # Python scales, not a host tensor: copying one to the GPU would synchronize every forward.
    top = torch.round(corners[..., 0].double() * (image_size[0] / map_size[0])).long()
    left = torch.round(corners[..., 1].double() * (image_size[1] / map_size[1])).long()
    top = top.clamp(0, image_size[0] - crop_shape[0])
    left = left.clamp(0, image_size[1] - crop_shape[1])
    return torch.stack([top, left], dim=-1)


def crop_patches(images: Tensor, corners: Tensor, crop_shape: tuple[int, int]) -> Tensor:
    """Gather crops: images (N, Ch, H, W), pixel corners (N, K, 2) -> (N, K, Ch, ch, cw), one indexing call.

    Differentiable with respect to `images` (the positions are fixed integers).
    """
    n, k, _ = corners.shape
    ch, cw = crop_shape
    device = images.device
    rows = corners[..., 0, None] + torch.arange(ch, device=device)  # (N, K, ch)
    cols = corners[..., 1, None] + torch.arange(cw, device=device)  # (N, K, cw)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, :, None], cols[:, :, None, :]]  # (N, K, ch, cw, Ch)
    return crops.permute(0, 1, 4, 2, 3)  # (N, K, Ch, ch, cw)


def corners_to_boxes(corners: Tensor, crop_shape: tuple[int, int]) -> Tensor:
    """Pixel corners (N, K, 2) `(top, left)` -> boxes (N, K, 4) float xyxy in input pixels."""
    top, left = corners[..., 0].float(), corners[..., 1].float()
    return torch.stack([left, top, left + crop_shape[1], top + crop_shape[0]], dim=-1)
