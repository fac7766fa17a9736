"""GMIC forward and forward + backward time per image, and the share spent in patch selection and cropping.

python tests/benchmarks/bench_gmic.py                      # 2944 x 1920, batch 1 and 2, CPU, 2 threads
python tests/benchmarks/bench_gmic.py --device cuda --bf16 # on a GPU under bf16 autocast
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from timing import model_arguments, start, timed

from wsod_mammo.models import GMIC, roi


def roi_time(model: GMIC, x: torch.Tensor, saliency: torch.Tensor, device: str, iters: int) -> float:
    """Seconds for window selection + pixel mapping + crop gather, on the model's real shapes."""
    image_size, map_size = (x.shape[-2], x.shape[-1]), (saliency.shape[-2], saliency.shape[-1])
    window = roi.window_size(model.crop_shape, map_size, image_size)

    def run() -> torch.Tensor:
        corners = roi.select_windows(saliency, window, model.num_patches)
        corners = roi.corners_to_pixels(corners, map_size, image_size, model.crop_shape)
        return roi.crop_patches(x, corners, model.crop_shape).flatten(0, 1).expand(-1, 3, -1, -1).contiguous()

    return timed(run, device, iters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_arguments(parser, iters=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast")
    args = parser.parse_args()
    start(args)
    model = GMIC().to(args.device)
    print(f"GMIC {args.height}x{args.width} on {args.device}, {args.threads} threads, bf16={args.bf16}")
    for n in args.batch_sizes:
        x = torch.randn(n, 1, args.height, args.width, device=args.device)
        t_fwd, t_train, t_roi = measure(model, x, args.device, args.bf16, args.iters)
        print(
            f"batch {n}: forward {t_fwd / n * 1e3:8.1f} ms/image | forward+backward {t_train / n * 1e3:8.1f} ms/image"
            f" | patch selection + crop {t_roi / n * 1e3:6.2f} ms/image = {100 * t_roi / t_fwd:5.2f}% of forward"
        )


def measure(model: GMIC, x: torch.Tensor, device: str, bf16: bool, iters: int) -> tuple[float, float, float]:
    """Seconds per batch: eval forward, train forward + backward, patch selection + crop."""

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def forward() -> None:
        with torch.no_grad(), autocast():
            model.eval()(x)

    def train_step() -> None:
        model.train().zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
        (out.y_global.sum() + out.y_local.sum() + out.y_fusion.sum() + out.saliency.mean()).backward()

    t_fwd = timed(forward, device, iters)
    t_train = timed(train_step, device, iters)
    with torch.no_grad(), autocast():
        saliency = model.eval()(x).saliency
    return t_fwd, t_train, roi_time(model, x, saliency, device, iters)


if __name__ == "__main__":
    main()
