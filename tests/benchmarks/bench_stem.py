"""The global network's stem (7x7/2 convolution of the 1-channel full-resolution image, then the 3x3/2 max-pool),
forward + backward, in the layouts a GPU may prefer, side by side with the same weights and input.

In an H200 profile of one eager bf16 training step (batch 6, 2944 x 1920, `bench_profile.py`, 26.6 ms of GPU time)
the largest single kernels look like the stem's: cuDNN's generic `convolve_common_engine_float_NHWC` (1.7 ms, one
call), an implicit-GEMM kernel (2.4 ms, one call; the weight gradient?), two `nchwToNhwc` conversions (1.8 ms) and
the max-pool's backward (2.5 ms): up to a third of the step, if they are all the stem's. This measures it alone. A
convolution with one input channel gives tensor cores nothing to work with; the variants:
- `as_is`: channels-last bf16, as training runs it;
- `nchw`: contiguous (for one channel the same memory, but cuDNN picks by the declared format);
- `pad4` / `pad8`: the input zero-padded to 4 / 8 channels and the weight to match (the same result: the extra
  channels are zeros), which tensor-core kernels take;
- `space_to_depth`: GMIC's `global_stem: space_to_depth` (`models.resnet.space_to_depth_conv7x7s2`): the same
  convolution as a 4x4 stride-1 convolution of the 2x2 pixel blocks (4 channels at a quarter of the positions, 16
  taps instead of 49), channels-last as the model runs it; `space_to_depth8`: the blocks zero-padded to 8 channels;
- `compiled` / `compiled_space_to_depth`: the stem / the space-to-depth stem under `torch.compile`.
Each variant's output must equal `as_is`'s (bf16 tolerance); the figure is the median ms per call.
Then the local network's stem (its 3-channel 7x7/2 convolution, BN + ReLU, 3x3/2 max-pool) on the step's patches
(batch x 6, 256 x 256, channels-last), the weight's gradient only (a patch needs none), as GMIC's `local_stem`
computes it: `local_repeated`, the gray patch repeated as 3 channels (NYU's way, the default), vs `local_gray`, the
patch itself with the 3 kernels summed, by 2x2 pixel blocks (`models.resnet.GrayStemConv`).

    python tests/benchmarks/bench_stem.py --device cuda --batch 6
    python tests/benchmarks/bench_stem.py --height 384 --width 256 --batch 2 --iters 3   # CPU dry run
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timing import model_arguments, start, timed
from torch import Tensor

from wsod_mammo.models.resnet import local_resnet18, space_to_depth_conv7x7s2, space_to_depth_weight

Stem = Callable[[Tensor, Tensor], Tensor]  # (input, weight) -> output


def _stem(x: Tensor, weight: Tensor) -> Tensor:
    return F.max_pool2d(F.conv2d(x, weight, stride=2, padding=3), kernel_size=3, stride=2)


def _padded(channels: int) -> Stem:
    def stem(x: Tensor, weight: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, 0, 0, 0, channels - 1)).contiguous(memory_format=torch.channels_last)
        return _stem(x, F.pad(weight, (0, 0, 0, 0, 0, channels - 1)))

    return stem


def _space_to_depth(x: Tensor, weight: Tensor) -> Tensor:
    """As the channels-last model computes it (its weight is channels-last)."""
    out = space_to_depth_conv7x7s2(x, weight.contiguous(memory_format=torch.channels_last))
    return F.max_pool2d(out, kernel_size=3, stride=2)


def _space_to_depth8(x: Tensor, weight: Tensor) -> Tensor:
    """The 4-channel blocks and kernel zero-padded to 8 channels (even sizes only, as the benchmark's)."""
    blocks = F.pad(F.pixel_unshuffle(F.pad(x, (3, 3, 3, 3)), 2), (0, 0, 0, 0, 0, 4))
    kernel = F.pad(space_to_depth_weight(weight), (0, 0, 0, 0, 0, 4))
    out = F.conv2d(blocks.contiguous(memory_format=torch.channels_last),
                   kernel.contiguous(memory_format=torch.channels_last))  # fmt: skip
    return F.max_pool2d(out, kernel_size=3, stride=2)


def compare(variants: dict[str, tuple[Stem, torch.memory_format]], image: Tensor, weight: Tensor, baseline: str,
            results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:  # fmt: skip
    """Time each variant's forward + backward into ``weight``; check its output and gradient against the first's."""
    reference = None
    for name, (stem, memory_format) in variants.items():
        x = image.contiguous(memory_format=memory_format)

        def step(stem: Stem = stem, x: Tensor = x) -> Tensor:
            weight.grad = None
            out = stem(x, weight)
            out.float().square().mean().backward()  # a gradient through the pool and into the weight
            return out

        try:
            out = step()
        except Exception as err:  # noqa: BLE001 (a variant a backend refuses is a finding, not a crash)
            results[name] = {"error": f"{type(err).__name__}: {err}"[:300]}
            print(f"{name:>23}: failed: {results[name]['error']}")
            continue
        assert weight.grad is not None  # step's backward set it
        grad = weight.grad.clone()
        if reference is None:
            reference = (out.detach().float(), grad.float())
        same = torch.allclose(out.detach().float(), reference[0], rtol=2e-2, atol=2e-2) and torch.allclose(
            grad.float(), reference[1], rtol=5e-2, atol=5e-2 * reference[1].abs().max().item()
        )
        ms = 1000 * timed(step, args.device, args.iters)
        results[name] = {"ms": ms, f"same_as_{baseline}": same}
        ratio = f"{ms / results[baseline]['ms']:.2f}x {baseline}" if "ms" in results.get(baseline, {}) else "-"
        print(f"{name:>23}: {ms:8.2f} ms forward + backward ({ratio})  same: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_arguments(parser, iters=20)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    start(args)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    image = torch.randn(args.batch, 1, args.height, args.width, device=device, dtype=dtype)
    weight = (0.1 * torch.randn(16, 1, 7, 7, device=device, dtype=dtype)).requires_grad_()
    variants = {
        "as_is": (lambda x, w: _stem(x.contiguous(memory_format=torch.channels_last), w), torch.channels_last),
        "nchw": (_stem, torch.contiguous_format),
        "pad4": (_padded(4), torch.channels_last),
        "pad8": (_padded(8), torch.channels_last),
        "space_to_depth": (_space_to_depth, torch.channels_last),
        "space_to_depth8": (_space_to_depth8, torch.channels_last),
        "compiled": (torch.compile(_stem), torch.channels_last),
        "compiled_space_to_depth": (torch.compile(_space_to_depth), torch.channels_last),
    }
    results: dict[str, dict[str, Any]] = {}
    compare(variants, image, weight, "as_is", results, args)
    # the local network's stem in the model's own modules: conv1 (GrayStemConv: 1 or 3 channels), bn1, act1, maxpool
    local = local_resnet18(stem="space_to_depth").to(device, dtype).to(memory_format=torch.channels_last).train()
    # by name: the timm network's attributes read as Tensor | Module to a type checker
    conv1 = local.get_submodule("conv1")
    layers = torch.nn.Sequential(*(local.get_submodule(name) for name in ("bn1", "act1", "maxpool")))
    patches = torch.randn(args.batch * 6, 1, 256, 256, device=device, dtype=dtype)
    local_variants = {
        "local_repeated": (lambda x, w: layers(conv1(x.expand(-1, 3, -1, -1))), torch.channels_last),
        "local_gray": (lambda x, w: layers(conv1(x)), torch.channels_last),
    }
    compare(local_variants, patches, local.get_parameter("conv1.weight"), "local_repeated", results, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
