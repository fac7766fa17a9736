"""Library vs hand-written pieces of detection/boxes.py, side by side in one run (issue 15).

    python tests/benchmarks/bench_boxes.py [--images 64] [--iters 5]

1. Box IoU: the former hand-written formula vs ``torchvision.ops.box_iou`` (the package's ``box_iou``), at the
   sizes matching sees (a few predictions x 1-2 ground truths per image) and a large pair.
2. Connected components of the thresholded full-resolution map: the package's OpenCV contour tree
   (``findContours(RETR_TREE)`` + filled regions minus islands) vs ``cv2.connectedComponentsWithStats`` + a
   masked ``minMaxLoc`` per component for the peaks, on the same frames, 5 thresholds.
3. Bilinear upsampling of a 46 x 30 map to the whole 2944 x 1920 frame: the package's matrix products vs
   ``F.interpolate`` vs ``cv2.resize`` (all three agree to float32 rounding); then map -> boxes, 5 thresholds: the
   package (upsampling only the rows and columns that can reach a threshold) vs upsampling the whole frame with
   ``cv2.resize`` (the fastest library) and labelling it with the same components.
4. A normal image's wAFROC rating at validation's 9 thresholds: ``highest_box_scores`` (one cropped upsample, no
   labelling) vs the highest of ``saliency_to_boxes``' boxes, the same numbers, on the normal maps of the batch.

Maps are those of bench_metrics.py (half mass images with a blob, half smooth normal maps). Quote the ratios.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from bench_metrics import FRAME, make_batch
from timing import timed

from wsod_mammo.detection import boxes as B
from wsod_mammo.saliency.base import min_max_normalize

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def hand_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The package's box IoU before torchvision's."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    wh = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(inter))


def stats_label(crop: np.ndarray, threshold: float) -> list[tuple[tuple[int, ...], float]]:
    """The library alternative: ``connectedComponentsWithStats`` boxes, each peak by ``minMaxLoc`` in its box."""
    mask = (crop >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    found: list[tuple[tuple[int, ...], float]] = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        inside = (labels[y : y + h, x : x + w] == k).astype(np.uint8)
        found.append(((x, y, x + w, y + h), float(cv2.minMaxLoc(crop[y : y + h, x : x + w], inside)[1])))
    return found


def crops(maps: torch.Tensor) -> list[np.ndarray]:
    """Each map normalized and upsampled over the whole frame (plain resizing), as float32 numpy."""
    normalized, _ = min_max_normalize(maps)
    full = F.interpolate(normalized[:, None], FRAME, mode="bilinear", align_corners=False)[:, 0]
    return [np.ascontiguousarray(f.numpy()) for f in full]


def full_frame_boxes(maps: torch.Tensor) -> list[list[B.Detections]]:
    """The library path: ``cv2.resize`` the whole frame, then the package's components per threshold."""
    normalized, _ = min_max_normalize(maps)
    out = []
    for image in normalized:
        full = cv2.resize(image.numpy(), (FRAME[1], FRAME[0]), interpolation=cv2.INTER_LINEAR)
        out.append([B._label(full, t, (0, 0), 1.0) for t in THRESHOLDS])
    return out


def _repeated(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor,
              calls: int) -> list[torch.Tensor]:  # fmt: skip
    return [fn(a, b) for _ in range(calls)]


def bench_iou(iters: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for a_n, b_n, calls in [(5, 1, 2000), (50, 2, 2000), (2000, 500, 5)]:
        a = torch.rand(a_n, 4, generator=gen).sort(dim=1).values * 1000
        b = torch.rand(b_n, 4, generator=gen).sort(dim=1).values * 1000
        assert torch.allclose(hand_iou(a, b), B.box_iou(a, b), atol=1e-6)
        hand, tv, ours = (
            timed(functools.partial(_repeated, fn, a, b, calls), "cpu", iters) / calls * 1e6
            for fn in (hand_iou, torchvision.ops.box_iou, B.box_iou)
        )
        print(
            f"box IoU {a_n} x {b_n}: hand-written {hand:.1f} us, torchvision {tv:.1f} us, "
            f"package (torchvision + NaN guard) {ours:.1f} us = {hand / ours:.2f}x the hand-written speed"
        )


def bench_components(maps: torch.Tensor, iters: int) -> None:
    frames = crops(maps)
    for frame in frames:  # parity on these maps: same boxes, same peaks
        for t in THRESHOLDS:
            ours = B._label(frame, t, (0, 0), 1.0)
            pairs = sorted(
                zip((tuple(int(v) for v in b) for b in ours.boxes.tolist()), ours.scores.tolist(), strict=True)
            )
            library = sorted(stats_label(frame, t))
            assert [b for b, _ in library] == [b for b, _ in pairs]
            assert np.allclose([s for _, s in library], [s for _, s in pairs])
    tree = timed(lambda: [B._label(f, t, (0, 0), 1.0) for f in frames for t in THRESHOLDS], "cpu", iters)
    stats = timed(lambda: [stats_label(f, t) for f in frames for t in THRESHOLDS], "cpu", iters)
    per = len(frames) * len(THRESHOLDS) / 1e3
    print(
        f"components on {len(frames)} full {FRAME} frames x {len(THRESHOLDS)} thresholds (same boxes and peaks): "
        f"package (contour tree) {tree / per:.2f} ms, connectedComponentsWithStats + minMaxLoc {stats / per:.2f} ms "
        f"per frame and threshold: the package is {stats / tree:.2f}x faster"
    )


def bench_upsample(maps: torch.Tensor, iters: int) -> None:
    normalized, _ = min_max_normalize(maps)
    frames = [m.numpy() for m in normalized]
    size = (FRAME[1], FRAME[0])
    ours = timed(lambda: [B.upsample_map(m, FRAME) for m in normalized], "cpu", iters)
    torch_full = timed(lambda: [F.interpolate(m[None, None], FRAME, mode="bilinear") for m in normalized], "cpu", iters)
    cv2_full = timed(lambda: [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames], "cpu", iters)
    per = maps.shape[0] / 1e3
    print(
        f"upsample {tuple(maps.shape[1:])} -> {FRAME}, whole frame: package matrix products {ours / per:.2f} ms, "
        f"F.interpolate {torch_full / per:.2f} ms, cv2.resize {cv2_full / per:.2f} ms per map"
    )
    package = timed(lambda: B.saliency_to_boxes(maps, FRAME, THRESHOLDS), "cpu", iters)
    full = timed(lambda: full_frame_boxes(maps), "cpu", iters)
    print(
        f"map -> boxes, {len(THRESHOLDS)} thresholds: package (cropped upsample) {package / per:.1f} ms per map, "
        f"whole frame by cv2.resize + the same components {full / per:.1f} ms per map ({full / package:.2f}x)"
    )


def bench_normal_ratings(maps: torch.Tensor, normal: torch.Tensor, iters: int) -> None:
    grid = tuple(t / 10 for t in range(1, 10))  # DetectionMetrics' default validation grid
    normals = maps[normal]
    boxes = B.saliency_to_boxes(normals, FRAME, grid)
    highest = [[float(d.scores.max()) if d.scores.numel() else -np.inf for d in image] for image in boxes]
    assert torch.equal(B.highest_box_scores(normals, FRAME, grid), torch.tensor(highest, dtype=torch.float64))
    rated = timed(lambda: B.highest_box_scores(normals, FRAME, grid), "cpu", iters)
    labelled = timed(lambda: B.saliency_to_boxes(normals, FRAME, grid), "cpu", iters)
    per = normals.shape[0] / 1e3
    print(
        f"normal image's rating, {len(grid)} thresholds ({normals.shape[0]} normal maps, same numbers): "
        f"highest_box_scores {rated / per:.1f} ms, saliency_to_boxes {labelled / per:.1f} ms per map "
        f"({labelled / rated:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = make_batch(torch.Generator().manual_seed(0), args.images)
    maps = batch[0]  # (N, 46, 30)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, OpenCV {cv2.__version__}, "
        f"{args.threads} threads, median of {args.iters}"
    )
    bench_iou(args.iters)
    bench_components(maps, args.iters)
    bench_upsample(maps, args.iters)
    bench_normal_ratings(maps, batch[3] == 0, args.iters)


if __name__ == "__main__":
    main()
