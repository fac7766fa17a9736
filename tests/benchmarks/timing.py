"""Shared helpers of the benchmark scripts (run them as `python tests/benchmarks/bench_*.py`): timing, and the
options that build GMIC."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import torch

if TYPE_CHECKING:
    from wsod_mammo.models.gmic import CompileMode
    from wsod_mammo.models.resnet import StemLayout


def timed(fn: Callable[[], object], device: str, iters: int) -> float:
    """Median seconds of `iters` calls after one warm-up (CUDA work is synchronized around each call)."""
    fn()
    times = [_seconds(fn, device) for _ in range(iters)]
    return sorted(times)[len(times) // 2]


def timed_side_by_side(fns: dict[str, Callable[[], object]], device: str, iters: int) -> dict[str, float]:
    """Median seconds of each variant over `iters` rounds that call every variant once, in an order that rotates
    each round (after one warm-up each): a drift of the machine's speed falls on all variants alike."""
    names = list(fns)
    for name in names:
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(iters):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            times[name].append(_seconds(fns[name], device))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _seconds(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def model_arguments(parser: argparse.ArgumentParser, iters: int) -> None:
    """The input size, repetitions, CPU threads and device options the model benchmarks share."""
    parser.add_argument("--height", type=int, default=2944)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--iters", type=int, default=iters)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")


def gmic_arguments(parser: argparse.ArgumentParser) -> None:
    """``--compile``, ``--compile_training_forward``, ``--global_stem``, ``--local_stem`` and ``--crop``: how GMIC
    computes, as its own options (``gmic_options``) take them."""
    from wsod_mammo.models.gmic import COMPILE_MODES
    from wsod_mammo.models.resnet import STEM_LAYOUTS

    parser.add_argument("--compile", default="none", choices=["none", *COMPILE_MODES])
    parser.add_argument("--compile_training_forward", action="store_true",
                        help="GMIC's option: the whole training forward as one graph, in --compile's mode")  # fmt: skip
    parser.add_argument("--global_stem", default="conv", choices=STEM_LAYOUTS, help="GMIC's option")
    parser.add_argument("--local_stem", default="conv", choices=STEM_LAYOUTS, help="GMIC's option")
    parser.add_argument("--crop", default="256,256", help="GMIC's crop_shape as H,W: smaller for inputs under 256")


class GMICOptions(TypedDict):
    """``gmic_options``' keyword arguments of ``GMIC``, typed as GMIC takes them."""

    compile_networks: bool | CompileMode
    compile_training_forward: bool
    global_stem: StemLayout
    local_stem: StemLayout
    crop_shape: tuple[int, int]


def gmic_options(args: argparse.Namespace) -> GMICOptions:
    """GMIC's ``compile_networks``, ``compile_training_forward``, ``global_stem``, ``local_stem`` and ``crop_shape``
    from ``gmic_arguments``.
    Compiling through GMIC's option (not ``.compile()`` on its networks) lets GMIC run a LayerCAM pass eagerly."""
    return {
        "compile_networks": False if args.compile == "none" else args.compile,
        "compile_training_forward": args.compile_training_forward,
        "global_stem": args.global_stem,
        "local_stem": args.local_stem,
        # H,W (GMIC refuses another length)
        "crop_shape": cast("tuple[int, int]", tuple(int(side) for side in args.crop.split(","))),
    }


def require_device(args: argparse.Namespace) -> None:
    """A CUDA ``--device`` on a machine without CUDA: one line naming the option, before any work (the scripts
    crashed at the first tensor moved there, some after minutes of CPU rows)."""
    device = str(getattr(args, "device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{Path(sys.argv[0]).name}: --device {device} needs a CUDA GPU; torch {torch.__version__} "
                         "finds none here (give --device cpu, or run it on a GPU machine)")  # fmt: skip


def start(args: argparse.Namespace) -> None:
    """Check ``--device``, apply ``--threads`` and seed torch, so every run times the same random model and input."""
    require_device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
