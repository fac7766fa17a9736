"""Time the test report's bootstrap: 1,000 class-stratified resamples of 500 images x 5 methods on the CPU.

Per method: the operating point and TPR at the 5 FROC points (``detection_intervals``), about 6 boxes per image,
and the wAFROC and AFROC figures of merit (``afroc_summary``); plus Table I (3 heads x 4 figures) and calibration (3
heads: Brier score and ECE, then the slope and intercept of logistic recalibration, fitted per resample). Compared
side by side with one plain ``froc_curve`` over the full sample. ``--images 4000``: a VinDr-sized test set.

    python tests/benchmarks/bench_bootstrap.py [--images 500] [--methods 5] [--boxes 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from wsod_mammo.detection.afroc_report import afroc_summary
from wsod_mammo.detection.bootstrap import classification_figures, detection_intervals, resample_weights
from wsod_mammo.detection.calibration import calibration_figures
from wsod_mammo.detection.detection_result import DetectionResult, ThresholdResult
from wsod_mammo.detection.froc import froc_curve
from wsod_mammo.detection.recalibration import recalibration


def fake_result(gen: torch.Generator, images: int, boxes_per_image: int) -> DetectionResult:
    """A DetectionResult with random boxes: half the images have one ground-truth box."""
    image_gt = (torch.arange(images) % 2 == 0).long()
    num_boxes = images * boxes_per_image
    box_image = torch.randint(0, images, (num_boxes,), generator=gen)
    scores = torch.rand(num_boxes, generator=gen)
    tp = (torch.rand(num_boxes, generator=gen) < 0.2) & (image_gt[box_image] > 0)
    fppi, tpr, thresholds = froc_curve(scores, tp, int(image_gt.sum()), images)
    gt_image = torch.nonzero(image_gt).flatten()  # one mass per mass image, row i on image gt_image[i]
    row_of_image = torch.full((images,), -1, dtype=torch.long)
    row_of_image[gt_image] = torch.arange(gt_image.numel())
    box_gt = torch.where(tp, row_of_image[box_image], -1)
    first = ThresholdResult(0.5, fppi, tpr, thresholds, torch.zeros(5), 0.5, 1.0, scores, tp, box_image, box_gt)
    return DetectionResult((first,), (0.25, 0.5, 1.0, 2.0, 4.0), torch.arange(images), image_gt, images,
                           gt_image=gt_image)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--boxes", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    results = [fake_result(gen, args.images, args.boxes) for _ in range(args.methods)]
    start = time.perf_counter()
    for result in results:
        r = result.per_threshold[0]
        froc_curve(r.box_scores, r.box_tp, result.num_gt, result.num_images)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    for result in results:
        detection_intervals(result, 1.0, seed=0)
    detection = time.perf_counter() - start
    start = time.perf_counter()
    probs, target = torch.rand(args.images, generator=gen), (torch.arange(args.images) % 2).long()
    weights = resample_weights(target)
    for _ in range(3):
        classification_figures(weights, probs, target)
    table1 = time.perf_counter() - start
    start = time.perf_counter()
    afroc_summary({f"m{i}": r for i, r in enumerate(results)}, seed=0)
    figures_of_merit = time.perf_counter() - start
    probs = torch.sigmoid(torch.randn(args.images, generator=gen) + 2 * target - 1)  # overlapping classes
    start = time.perf_counter()
    for _ in range(3):
        calibration_figures(weights, probs, target)
    brier_ece = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(3):
        recalibration(weights, probs, target)
    slope = time.perf_counter() - start
    print(f"{args.images} images x {args.methods} methods, {args.boxes} boxes/image, 1000 resamples:")
    print(
        f"  plain FROC (no bootstrap): {plain * 1e3:.1f} ms; bootstrap detection: {detection:.2f} s "
        f"({detection / max(plain, 1e-9):.0f}x); bootstrap Table I (3 heads): {table1:.2f} s"
    )
    print(
        f"  bootstrap wAFROC + AFROC ({args.methods} methods): {figures_of_merit:.2f} s; calibration (3 heads): Brier "
        f"+ ECE {brier_ece:.2f} s, slope + intercept {slope:.2f} s"
    )


if __name__ == "__main__":
    main()
