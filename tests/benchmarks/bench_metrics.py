"""Time DetectionMetric update + compute: 500 images x 5 saliency methods at the paper's 2944 x 1920 frame.

Maps are 46 x 30 (the global network's resolution); about half the images carry one blob-shaped mass with its
ground-truth box, the rest are normal images whose maps are a smooth low-frequency field (after min-max
normalization a normal map still spans [0, 1], so it gives large false-positive regions: the costly case).

    .venv/bin/python tests/benchmarks/bench_metrics.py [--images 500] [--methods 5] [--batch 8]

Measured 2026-11-25 on the 2-core development machine shared with other jobs (load average 4-7, so several
times slower than an idle core; the same upsample alone took 12 ms idle and 33-45 ms under that load):
500 images x 5 methods, 1 threshold: 110 s total, 220 ms per image (all methods), 44 ms per map;
5 thresholds: 303 s total, 605 ms per image, 121 ms per map. Normal images dominate: their normalized map
spans [0, 1], so large parts of the frame pass the threshold and are upsampled and traced at full resolution.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from wsod_mammo.detection.metrics import DetectionMetric

FRAME = (2944, 1920)
MAP = (46, 30)


def make_batch(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Maps (n, 46, 30), probabilities (n,), gt boxes per image, labels (n,)."""
    coarse = torch.rand(n, 1, 4, 3, generator=gen)
    maps = F.interpolate(coarse, MAP, mode="bilinear", align_corners=False)[:, 0] * 0.3  # (n, 46, 30)
    labels = (torch.rand(n, generator=gen) < 0.5).long()
    rows, cols = torch.arange(MAP[0])[:, None].float(), torch.arange(MAP[1])[None, :].float()
    gts = []
    for i in range(n):
        if not labels[i]:
            gts.append(torch.zeros(0, 4))
            continue
        cy, cx = float(torch.rand(1, generator=gen)) * 36 + 5, float(torch.rand(1, generator=gen)) * 20 + 5
        radius = 1.5 + float(torch.rand(1, generator=gen)) * 2  # map cells (64 pixels each)
        maps[i] += torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * radius**2))
        sy, sx = FRAME[0] / MAP[0], FRAME[1] / MAP[1]
        gts.append(torch.tensor([[(cx - radius) * sx, (cy - radius) * sy, (cx + radius) * sx, (cy + radius) * sy]]))
    probs = torch.where(labels > 0, 0.9, 0.2) + 0.05 * torch.rand(n, generator=gen)
    return maps, probs, gts, labels


def run(images: int, methods: int, batch: int, thresholds: tuple[float, ...]) -> tuple[float, list[float]]:
    """Seconds for update (all batches, all methods) + compute, and each method's TPR at FPPI 1."""
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(gen, min(batch, images - s)) for s in range(0, images, batch)]
    metrics = [DetectionMetric(thresholds=thresholds) for _ in range(methods)]
    noise = [[0.05 * torch.rand(b[0].shape, generator=gen) for b in batches] for _ in metrics]  # one per method
    start = time.perf_counter()
    for i, (maps, probs, gts, labels) in enumerate(batches):
        for m, metric in enumerate(metrics):
            metric.update(maps + noise[m][i], probs, gts, labels, FRAME)
    results = [metric.compute() for metric in metrics]
    seconds = time.perf_counter() - start
    return seconds, [float(r.per_threshold[0].tpr_at_fppi[2]) for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; frame {FRAME}, maps {MAP}, batch {args.batch}")
    for thresholds in [(0.5,), (0.3, 0.4, 0.5, 0.6, 0.7)]:
        seconds, tpr = run(args.images, args.methods, args.batch, thresholds)
        per_map = seconds / (args.images * args.methods) * 1e3
        print(
            f"{args.images} images x {args.methods} methods, {len(thresholds)} threshold(s): {seconds:.1f} s total, "
            f"{seconds / args.images * 1e3:.1f} ms per image (all methods), {per_map:.2f} ms per map; "
            f"TPR@FPPI1 (first threshold) {', '.join(f'{t:.2f}' for t in tpr)}"
        )


if __name__ == "__main__":
    main()
