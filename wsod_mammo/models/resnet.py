"""GMIC's global backbone (a pre-activation ResNet-22) and the local ResNet-18 from timm.

The global network is written here because its layout (pre-activation blocks, a 1x1 shortcut without BN on
the pre-activated input in every stage's first block, no BN/ReLU between the first conv and the max-pool)
must match NYU's checkpoints key for key; the local network is timm's ResNet-18, whose state-dict keys
already equal those of NYU's `dn_resnet`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Activation names `ResNet22.forward` returns: the five stage outputs (the residual stream, before the next
#: block's BN + ReLU) and `final` (stage 5 after the final BN + ReLU: `h_g`, what the saliency head reads).
ACTIVATION_NAMES: tuple[str, ...] = ("stage1", "stage2", "stage3", "stage4", "stage5", "final")

#: How the global network computes its first convolution (7x7, stride 2, pad 3): `conv` as written, or
#: `space_to_depth`, the same convolution as a 4x4 stride-1 convolution of the input's 2x2 pixel blocks.
StemLayout = Literal["conv", "space_to_depth"]
STEM_LAYOUTS: tuple[str, ...] = get_args(StemLayout)

#: Total downsampling of the global network: an input of H x W maps to H/64 x W/64.
GLOBAL_STRIDE = 64


def _conv3x3(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings"): BN-ReLU-conv3x3 twice plus a shortcut.

    With `projection`, the shortcut is a 1x1 conv (no BN) applied to the pre-activated input, as in GMIC.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels, 1)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False))
            if projection
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.downsample(out) if self.downsample is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def space_to_depth_weight(weight: Tensor) -> Tensor:
    """A 7x7 stride-2 kernel `(O, C, 7, 7)` as the 4x4 stride-1 kernel `(O, 4C, 4, 4)` that gives the same
    convolution on `pixel_unshuffle(input, 2)`: tap (a, b) = (2p + r, 2q + s) reads pixel block (p, q), channel
    `4c + 2r + s`; the kernel is zero-padded to 8x8 first (taps a = 7 or b = 7 read nothing)."""
    out_channels, in_channels = weight.shape[:2]
    padded = F.pad(weight, (0, 1, 0, 1)).reshape(out_channels, in_channels, 4, 2, 4, 2)
    return padded.permute(0, 1, 3, 5, 2, 4).reshape(out_channels, in_channels * 4, 4, 4)


def space_to_depth_conv7x7s2(x: Tensor, weight: Tensor, channels_last: bool | None = None) -> Tensor:
    """`F.conv2d(x, weight, stride=2, padding=3)` for a 7x7 `weight`, computed on 2x2 pixel blocks.

    The stem's convolution reads a 1-channel full-resolution image: with one input channel GPU libraries fall
    back to generic kernels (an H200 profile: 1.7 ms for one forward at batch 6, issue 13), while 4 channels at a
    quarter of the positions and 16 taps instead of 49 suit implicit GEMM. Equal up to float rounding, gradients
    included; the weight keeps its (O, C, 7, 7) shape, so checkpoints are unchanged. ``channels_last``: compute in
    that memory format (None: the weight's, the model's).
    """
    height, width = x.shape[-2:]
    blocks = F.pixel_unshuffle(F.pad(x, (3, 3 + width % 2, 3, 3 + height % 2)), 2)
    kernel = space_to_depth_weight(weight)
    if channels_last is None:
        channels_last = weight.stride(1) == 1 and weight.shape[-1] > 1  # a channels-last weight
    if channels_last:
        blocks = blocks.contiguous(memory_format=torch.channels_last)
        kernel = kernel.contiguous(memory_format=torch.channels_last)
    return F.conv2d(blocks, kernel)


class ResNet22(nn.Module):
    """GMIC's global network: (N, in_channels, H, W) -> activations, `final` = h_g (N, width * 16, H/64, W/64).

    First conv 7x7/2 (pad 3) -> max-pool 3/2 (no pad) -> 5 stages x 2 pre-activation blocks (strides 1,2,2,2,2,
    widths `width * 2**s`) -> final BN + ReLU. H and W must be multiples of 64 (see `GLOBAL_STRIDE`). `stem`
    chooses how the first convolution is computed (`StemLayout`; same weights, same result up to rounding; with
    `space_to_depth`, forward hooks on `first_conv` do not fire).
    """

    def __init__(
        self, in_channels: int = 1, width: int = 16, blocks_per_stage: int = 2, stem: StemLayout = "conv"
    ) -> None:
        super().__init__()
        if stem not in STEM_LAYOUTS:
            raise ValueError(f"ResNet22: stem must be one of {STEM_LAYOUTS}, found {stem!r}")
        self.stem = stem
        self.first_conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.first_pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        stages, channels = [], width
        for s, stride in enumerate((1, 2, 2, 2, 2)):
            out_channels = width * 2**s
            blocks = [PreActBlock(channels, out_channels, stride, projection=True)]
            blocks += [
                PreActBlock(out_channels, out_channels, 1, projection=False) for _ in range(blocks_per_stage - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.layer_list = nn.ModuleList(stages)
        self.final_bn = nn.BatchNorm2d(channels)
        self.final_relu = nn.ReLU()  # a module, so hook-based tools (pytorch-grad-cam) can target `final`
        self.out_channels = channels

    def forward(self, x: Tensor, record_from: str | None = None) -> dict[str, Tensor]:
        """Return `{name: activation}` for every name in `ACTIVATION_NAMES` (references, no copies).

        ``record_from`` (an activation name): the layers up to it run without recording an autograd graph and it is
        returned as a leaf that requires grad, so a gradient reaches it and the layers after it only. What saliency
        maps need in evaluation, where nothing is trained: no saved tensors at the high resolutions before it.
        """
        if record_from is not None and record_from not in ACTIVATION_NAMES:
            raise ValueError(f"ResNet22: record_from must be one of {ACTIVATION_NAMES}, found {record_from!r}")
        recording = record_from is None  # the plain forward (the one torch.compile traces) is unchanged by this
        h = self._stem(x) if recording else _without_graph(self._stem, x)
        activations: dict[str, Tensor] = {}
        for name, layer in zip(ACTIVATION_NAMES, [*self.layer_list, self._final], strict=True):
            h = layer(h) if recording else _without_graph(layer, h)
            if name == record_from:
                h, recording = h.requires_grad_(torch.is_grad_enabled()), True
            activations[name] = h
        return activations  # final: (N, 256, H/64, W/64)

    def _stem(self, x: Tensor) -> Tensor:
        if self.stem == "space_to_depth":
            return self.first_pool(space_to_depth_conv7x7s2(x, self.first_conv.weight))
        return self.first_pool(self.first_conv(x))

    def _final(self, h: Tensor) -> Tensor:
        return self.final_relu(self.final_bn(h))


def _without_graph(layer: Callable[[Tensor], Tensor], h: Tensor) -> Tensor:
    with torch.no_grad():
        return layer(h)


class GrayStemConv(nn.Conv2d):
    """The local ResNet-18's first convolution (3 -> 64 channels, 7x7/2, pad 3) that also takes the gray crop itself.

    GMIC feeds the local network each 1-channel patch repeated as 3 channels (NYU's design: an ImageNet-shaped
    network). The convolution of 3 equal channels is that of one channel by the sum of the 3 kernels, and a
    1-channel input is computed so (by 2x2 pixel blocks, ``space_to_depth_conv7x7s2``), with a third of the input to
    read: inputs of few channels send GPU libraries to generic kernels (cuDNN's generic NHWC engine was the
    costliest kernel of an H200 step, issue 13; the 3-channel patches may be its). Same weight (key
    ``conv1.weight``), same gradient for each channel's kernel as the repeated input gives, equal up to float
    rounding; a 3-channel input runs as a plain convolution.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shape = (self.kernel_size, self.stride, self.padding, self.dilation, self.groups, self.bias is None)
        if shape != ((7, 7), (2, 2), (3, 3), (1, 1), 1, True):  # what space_to_depth_conv7x7s2 computes
            raise ValueError(
                "GrayStemConv: expected a 7x7 convolution, stride 2, padding 3, no dilation, groups or bias, found "
                f"kernel {self.kernel_size}, stride {self.stride}, padding {self.padding}, dilation {self.dilation}, "
                f"groups {self.groups}, bias {self.bias is not None}"
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.in_channels:
            return super().forward(x)
        if x.shape[1] != 1:
            raise ValueError(f"GrayStemConv: expected 1 or {self.in_channels} input channels, found {x.shape[1]}")
        channels_last = self.weight.stride(1) == 1  # the model's memory format (the 3-channel weight says it)
        return space_to_depth_conv7x7s2(x, self.weight.sum(dim=1, keepdim=True), channels_last)


def local_resnet18(stem: StemLayout = "conv") -> nn.Module:
    """timm ResNet-18 (3 channels, no classifier, global average pool): (M, 3, h, w) -> (M, 512).

    ``stem="space_to_depth"``: its first convolution also takes the gray patch, (M, 1, h, w), without repeating it
    (``GrayStemConv``; the same parameters). Never downloads weights; its state-dict keys equal NYU's `dn_resnet.*`.
    """
    if stem not in STEM_LAYOUTS:
        raise ValueError(f"local ResNet-18: stem must be one of {STEM_LAYOUTS}, found {stem!r}")
    network = timm.create_model("resnet18", pretrained=False, num_classes=0)
    if stem == "space_to_depth":
        conv = network.conv1
        assert isinstance(conv, nn.Conv2d), "timm's resnet18 starts with a Conv2d"
        gray = GrayStemConv(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            bias=False, device=conv.weight.device, dtype=conv.weight.dtype)  # fmt: skip
        gray.weight = conv.weight  # timm's initialization, kept
        network.conv1 = gray
    return network


# Input pixel (index, both axes) on which the receptive field of saliency-map cell 0 is centred: the 7x7/2 conv
# (pad 3) centres output k on pixel 2k, the 3x3/2 max-pool (no pad) output m on conv output 2m + 1 (pixel 4m + 2),
# and each 3x3/2 conv (pad 1) output n on its input 2n: cell r of the 1/64 map sits on pixel 64 r + 2, near its
# cell's top-left corner rather than the middle (64 r + 31.5) that plain resizing of the map assumes.
MAP_CELL0_CENTER = 2.0


def global_map_size(height: int, width: int) -> tuple[int, int]:
    """The size of `h_g` for an input of `height x width` pixels, after checking the network accepts it."""
    if height < GLOBAL_STRIDE or width < GLOBAL_STRIDE or height % GLOBAL_STRIDE or width % GLOBAL_STRIDE:
        raise ValueError(
            f"GMIC input: expected height and width to be positive multiples of {GLOBAL_STRIDE} "
            f"(e.g. 2944 x 1920), found {height} x {width}"
        )
    return height // GLOBAL_STRIDE, width // GLOBAL_STRIDE


__all__ = [
    "ACTIVATION_NAMES",
    "GLOBAL_STRIDE",
    "GrayStemConv",
    "STEM_LAYOUTS",
    "PreActBlock",
    "ResNet22",
    "StemLayout",
    "global_map_size",
    "local_resnet18",
    "space_to_depth_conv7x7s2",
    "space_to_depth_weight",
]
