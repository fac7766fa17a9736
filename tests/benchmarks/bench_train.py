"""Training-step throughput and peak memory of GMICLitModule, baseline vs channels-last vs bf16, side by side.

Each configuration runs in its own process (clean peak memory), on identical random data, one after the other
in the same invocation, so the printed ratios compare like with like on a noisy machine.

python tests/benchmarks/bench_train.py                           # CPU, 2944 x 1920, batch 1
python tests/benchmarks/bench_train.py --device cuda --batch 6   # on a GPU (adds fp32 vs bf16 on CUDA)
python tests/benchmarks/bench_train.py --size 1024 640 --steps 5 # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import TypedDict


class _Config(TypedDict):
    """``_step_runner``'s keyword arguments."""

    precision: str
    channels_last: bool


CONFIGS: dict[str, _Config] = {
    "fp32": {"precision": "32", "channels_last": False},
    "fp32+channels_last": {"precision": "32", "channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
}


def _step_runner(args: argparse.Namespace, precision: str, channels_last: bool) -> dict[str, float]:
    """Time ``steps`` optimizer steps of the real loss on one fixed batch; returns seconds and peak memory."""
    import torch

    from wsod_mammo.models import GMIC
    from wsod_mammo.training.loss import gmic_loss

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = GMIC(num_classes=1).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    images = torch.randn(args.batch, 1, *args.size, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 2, (args.batch, 1), device=device).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            output = model(images, patch_saliency=args.saliency)
        gmic_loss(output, labels, beta=3.26).total.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocator, kernels, oneDNN primitives)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {"step_s": seconds, "images_per_s": args.batch / seconds, "peak_gib": peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, nargs=2, default=(2944, 1920), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--saliency", default="cam", help="train_saliency (patch-selection method)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from timing import require_device

    require_device(args)

    if args.only:  # child process: one configuration
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(_step_runner(args, **CONFIGS[args.only])))
        return

    print(
        f"GMIC training step, {args.size[0]} x {args.size[1]}, batch {args.batch}, {args.device}, "
        f"train_saliency={args.saliency}, {args.steps} timed steps after 1 warm-up, {args.threads} threads"
    )
    results = {}
    for name in CONFIGS:
        command = [sys.executable, __file__, "--only", name] + sys.argv[1:]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # its own error, not a CalledProcessError that hides it
            sys.stderr.write(done.stderr)
            raise SystemExit(f"bench_train.py: the {name} configuration failed (exit status {done.returncode})")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:>20}: {r['step_s']:7.3f} s/step  {r['images_per_s']:7.3f} img/s  peak {r['peak_gib']:6.2f} GiB")
    base = results["fp32"]["step_s"]
    for name, r in results.items():
        print(f"{name:>20}: {base / r['step_s']:.2f}x the fp32 NCHW baseline's speed")


if __name__ == "__main__":
    main()
