"""torch.profiler tables of the top kernels (ops) of one GMIC training step and one evaluation step.

Training step: bf16 autocast (``--bf16``), channels-last, forward with CAM patch saliency, BCE on the three
heads, backward and an Adam update. Evaluation step: ``GMIC.evaluate`` (classification + the five saliency maps
in one pass). Warm-up steps first (cudnn autotuning, allocator, compilation with ``--compile``), then one
profiled step each; the table is sorted by device time on CUDA, by CPU time otherwise.

    python tests/benchmarks/bench_profile.py --height 512 --width 320 --batch 1
    python tests/benchmarks/bench_profile.py --device cuda --batch 6 --bf16 --out profile.txt
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
from timing import gmic_arguments, gmic_options, require_device
from torch.profiler import ProfilerActivity, profile

METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam"]


def _steps(args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], None]]:
    from wsod_mammo.models import GMIC

    model = GMIC(num_classes=1, **gmic_options(args))
    model = model.to(args.device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    images = torch.randn(args.batch, 1, args.height, args.width, device=args.device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (args.batch, 1), device=args.device).float()

    def autocast() -> contextlib.AbstractContextManager:
        if args.bf16:
            return torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train() -> None:
        model.train()
        with autocast():
            out = model(images, patch_saliency="cam")
        # the loss in float32 outside autocast, as the LightningModule does (BCE refuses to autocast)
        losses = (torch.nn.functional.binary_cross_entropy(v.float().clamp(1e-6, 1 - 1e-6), labels)
                  for v in (out.y_global, out.y_local, out.y_fusion))  # fmt: skip
        loss = cast("torch.Tensor", sum(losses))  # a sum of tensors (never the empty sum's 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def evaluate() -> None:
        model.eval()
        if args.evaluate_methods:  # one pass: the maps need gradients of the global network
            with autocast():
                model.evaluate(images, "cam", METHODS)
        else:
            with torch.no_grad(), autocast():
                model(images)

    return train, evaluate


def _table(name: str, fn: Callable[[], None], args: argparse.Namespace) -> str:
    for _ in range(args.warmup):
        fn()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    head = f"== {name} step: batch {args.batch}, {args.height} x {args.width}, {args.device}, bf16={args.bf16}, "
    head += f"compile={args.compile}, compile_training_forward={args.compile_training_forward}, "
    head += f"global_stem={args.global_stem}, local_stem={args.local_stem} (top {args.top} by {sort})"
    return head + "\n" + prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--height", type=int, default=2944)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    gmic_arguments(parser)
    parser.add_argument("--warmup", type=int, default=2, help="3 or more with reduce-overhead (CUDA graphs record)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evaluate_methods", type=int, default=1, choices=[0, 1],
                        help="1: evaluation step = GMIC.evaluate with the five maps; 0: a plain forward")  # fmt: skip
    parser.add_argument("--out", help="also write the tables to this file")
    args = parser.parse_args()
    require_device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    train, evaluate = _steps(args)
    text = "\n\n".join(_table(name, fn, args) for name, fn in (("training", train), ("evaluation", evaluate)))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
