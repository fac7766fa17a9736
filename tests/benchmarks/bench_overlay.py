"""Overlay cost at VinDr size: the input frame (as before issue 14) vs the original frame, side by side in one run.

    python tests/benchmarks/bench_overlay.py [--height 3518] [--width 2800] [--methods 5] [--iters 3]

A synthetic right-breast DICOM of ``height x width`` (12-bit), its geometry for the 2944 x 1920 input frame, and
``methods`` random 46 x 30 maps with one predicted box each. Times (median of ``iters``) and PNG sizes of:
(a) ``render_overlay`` on the input frame; (b) ``overlay_frame`` (decode the DICOM again, maps and boxes back to the
original, downscaled to a 1024-px long side) then ``render_overlay``; and (b)'s ``overlay_frame`` step alone.
Quote the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import timed

from wsod_mammo.data.geometry import apply_to_image, make_geometry
from wsod_mammo.data.synthetic_image import render_image, write_dicom
from wsod_mammo.detection.overlay import method_panels, render_overlay
from wsod_mammo.detection.overlay_frame import overlay_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=3518)
    parser.add_argument("--width", type=int, default=2800)
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    pixels, masses, _ = render_image(rng, args.height, args.width, "CC", 1)
    pixels = np.ascontiguousarray(pixels[:, ::-1])  # a right breast, against the right edge
    ids = {"image_id": "1.2.3.4", "study_id": "1.2.3", "series_id": "1.2.3.5"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "right.dicom"
        write_dicom(path, pixels, ids, "R", "CC", style=0)
        geometry = make_geometry(pixels, "R", (2944, 1920))
        image = torch.from_numpy(apply_to_image(pixels, geometry))
        meta = {"path": str(path), "geometry": geometry.to_dict()}
        maps = method_panels({f"m{k}": torch.rand(46, 30) for k in range(args.methods)}, (2944, 1920))
        boxes = {name: (torch.tensor([[400.0, 900.0, 700.0, 1300.0]]), torch.tensor([0.8])) for name in maps}
        gt = torch.tensor([[380.0, 880.0, 720.0, 1320.0]])

        def input_frame() -> np.ndarray:
            return render_overlay(image, gt, maps, boxes, "input frame")

        def original_frame() -> np.ndarray:
            frame = overlay_frame(meta, image, gt, maps, boxes)
            return render_overlay(frame.image, frame.gt_boxes, frame.maps, frame.boxes, frame.title("original"))

        rows = [
            ("(a) input frame, render", timed(input_frame, "cpu", args.iters), input_frame()),
            ("(b) original frame, map + render", timed(original_frame, "cpu", args.iters), original_frame()),
        ]
        mapping = timed(lambda: overlay_frame(meta, image, gt, maps, boxes), "cpu", args.iters)
    print(f"{args.height} x {args.width} original, {args.methods} methods, median of {args.iters}")
    for name, seconds, picture in rows:
        size = len(cv2.imencode(".png", picture)[1])
        print(f"{name:36s} {seconds:6.2f} s  PNG {picture.shape[1]} x {picture.shape[0]}, {size / 1e6:.2f} MB")
    print(f"{'(b) overlay_frame step alone':36s} {mapping:6.2f} s")
    print(f"ratio (b) / (a): {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
