"""Host-side op dispatches per GMIC training step, by part: what stays eager around compiled networks.

With ``compile_networks: reduce-overhead`` the two ResNets replay as CUDA graphs, and the eager step was measured
launch-bound on an H200 (40 ms of CPU time for 27 ms of GPU work): what is left on the host is every op outside
the networks, each one a Python dispatch and, on a GPU, usually a kernel launch. This counts them on any machine
(torch's dispatcher, ``TorchDispatchMode``; views included, the count does not depend on the image size): the
networks' forward, the rest of the forward (saliency head, greedy patch selection, crops, attention, fusion,
loss), the backward, and the Adam update with ``foreach`` (CUDA's default) vs ``fused``, side by side.

    python tests/benchmarks/bench_launches.py
    python tests/benchmarks/bench_launches.py --saliency gradcam --json launches.json
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _Counter(TorchDispatchMode):
    """Counts every op reaching the dispatcher, under the current part's name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.part, self.in_network = "", 0

    def __torch_dispatch__(self, func: Callable[..., Any], types: Sequence[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:  # fmt: skip
        part = "forward, networks" if self.part == "forward" and self.in_network else self.part
        self.counts[part] += 1
        return func(*args, **(kwargs or {}))


def count_step(args: argparse.Namespace, optimizer_kwargs: dict) -> dict[str, int]:
    """Dispatches of one training step (after one untimed step, so optimizer state exists)."""
    from wsod_mammo.models import GMIC
    from wsod_mammo.training.loss import gmic_loss

    torch.manual_seed(0)
    model = GMIC(num_classes=1).to(memory_format=torch.channels_last)
    counter = _Counter()
    for network in (model.global_network, model.local_network):
        network.register_forward_pre_hook(lambda *_: setattr(counter, "in_network", counter.in_network + 1))
        network.register_forward_hook(lambda *_: setattr(counter, "in_network", counter.in_network - 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-5, **optimizer_kwargs)
    images = torch.randn(args.batch, 1, args.height, args.width).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([[1.0], [0.0]] * (args.batch // 2) + [[1.0]] * (args.batch % 2))
    for counted in (False, True):
        counter.counts.clear()
        with counter if counted else torch.enable_grad():
            counter.part = "forward"
            loss = gmic_loss(model(images, args.saliency), labels, 3.26e-5).total
            counter.part = "backward"
            loss.backward()
            counter.part = "optimizer"
            optimizer.step()
            optimizer.zero_grad()
    return dict(counter.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--saliency", default="cam", help="train_saliency (a gradient method adds its backward)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = {name: count_step(args, kwargs) for name, kwargs in (("foreach", {"foreach": True}),
                                                                   ("fused", {"fused": True}))}  # fmt: skip
    print(f"op dispatches per training step (train_saliency={args.saliency}, batch {args.batch}, torch "
          f"{torch.__version__}):")  # fmt: skip
    labels = {"forward, networks": "forward, in the networks", "forward": "forward, outside the networks",
              "backward": "backward (networks and the rest)", "optimizer": "Adam update"}  # fmt: skip
    for part, label in labels.items():
        foreach, fused = figures["foreach"].get(part, 0), figures["fused"].get(part, 0)
        print(f"  {label:>33}: {foreach:5d}" + (f" (foreach Adam) vs {fused} (fused Adam)" if foreach != fused else ""))
    eager = {name: counts.get("forward", 0) + counts.get("optimizer", 0) for name, counts in figures.items()}
    print(f"  {'eager around compiled networks':>33}: {eager['foreach']} (foreach Adam) vs {eager['fused']} (fused "
          f"Adam) forward-outside + update dispatches, plus the backward of the forward-outside part")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "dispatches": figures}, indent=1))


if __name__ == "__main__":
    main()
