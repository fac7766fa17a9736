"""Benchmark: what honouring DICOM padding costs, side by side with the same image without padding.

At full size (a 3518 x 2800 12-bit DICOM, a 2944 x 1920 input) with a padded band over a third of the width,
times on one thread (as a dataloader worker): ``read_dicom`` (decode + the bool mask), the worker's training
transform (albumentations, the mask warped too) with standardization, ``standardize`` alone, and
``standardize_batch`` of a batch of 6 on ``--device`` (half the images with padding, as a mixed batch). Every
figure is a median over ``--rounds`` and quoted as the ratio padded / plain.

    python tests/benchmarks/bench_padding.py [--rounds 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

INPUT_SIZE = (2944, 1920)
DICOM_SIZE = (3518, 2800)


def _median_ms(run: Callable[[], object], rounds: int, sync: Callable[[], None] = lambda: None) -> float:
    run()
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _dicoms(folder: Path) -> tuple[Path, Path]:
    """The same 12-bit mammogram twice: plain, and with its far third stored as padding (Pixel Padding Value 0)."""
    from wsod_mammo.data.synthetic_image import render_image, write_dicom

    image = render_image(np.random.default_rng(0), *DICOM_SIZE, "CC", 1)[0]
    ids = {"image_id": "1.2.3.4", "study_id": "1.2.3", "series_id": "1.2.3.5"}
    plain, padded = folder / "plain.dcm", folder / "padded.dcm"
    write_dicom(plain, image, ids, "L", "CC", style=1)  # MONOCHROME1, stored values >= 100
    import pydicom

    ds = pydicom.dcmread(plain)
    pixels = ds.pixel_array.copy()
    pixels[:, 2 * DICOM_SIZE[1] // 3 :] = 0
    ds.add_new(0x00280120, "US", 0)
    ds.PixelData = pixels.tobytes()
    ds.save_as(padded, enforce_file_format=True)
    return plain, padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from timing import require_device

    require_device(args)
    import cv2
    import torch

    from wsod_mammo.data.images import load_input_image
    from wsod_mammo.data.transforms import AugmentationConfig, BoxTransform, standardize, standardize_batch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows: list[tuple[str, float, float]] = []  # step, plain ms, padded ms
    with tempfile.TemporaryDirectory() as tmp:
        plain, padded = _dicoms(Path(tmp))
        decode_plain, decode_padded = (
            _median_ms(functools.partial(load_input_image, p, "L", INPUT_SIZE, crop_breast=False), args.rounds)
            for p in (plain, padded))  # fmt: skip
        rows.append(("decode + input frame (load_input_image)", decode_plain, decode_padded))
        image, _, _, mask = load_input_image(padded, "L", INPUT_SIZE, crop_breast=False)
    assert mask is not None  # the padded DICOM's far third is padding
    pixels = np.rint(image * 65535).astype(np.uint16)
    print(f"input frame {INPUT_SIZE}: {mask.mean():.0%} padding")
    transform = BoxTransform(INPUT_SIZE, AugmentationConfig(seed=0, crop_p=1, affine_p=1), train=True)
    box, label = np.array([[100, 100, 400, 400]], np.float32), np.array([0])
    rows.append(("worker training transform + standardize",
                 _median_ms(lambda: transform.apply(pixels, box, label), args.rounds),
                 _median_ms(lambda: transform.apply(pixels, box, label, mask), args.rounds)))  # fmt: skip
    rows.append(("standardize", _median_ms(lambda: standardize(pixels), args.rounds),
                 _median_ms(lambda: standardize(pixels, mask), args.rounds)))  # fmt: skip
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = torch.from_numpy(pixels.astype(np.int32)).to(torch.uint16)[None, None].repeat(6, 1, 1, 1).to(device)
    masks = torch.from_numpy(mask)[None, None].repeat(6, 1, 1, 1)
    masks[3:] = False
    masks = masks.to(device)
    plain_ms = _median_ms(lambda: standardize_batch(batch), args.rounds, sync)
    padded_ms = _median_ms(lambda: standardize_batch(batch, masks), args.rounds, sync)
    rows.append((f"standardize_batch, 6 images on {args.device}", plain_ms, padded_ms))
    print(f"{'step (median ms)':<46}{'plain':>9}{'padded':>9}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<46}{a:>9.1f}{b:>9.1f}{b / a:>7.2f}x")


if __name__ == "__main__":
    main()
