"""Overlays in the original image's frame: the breast on the source file's side, boxes on the CSV's mass, fallback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from wsod_mammo.data.datamodule import VinDrMammoDataModule, collate_samples
from wsod_mammo.data.geometry import Geometry, boxes_to_input
from wsod_mammo.data.images import read_any
from wsod_mammo.data.vindr import load_records
from wsod_mammo.detection.overlay import MIN_LONG_SIDE
from wsod_mammo.detection.overlay_frame import INPUT_FRAME_NOTE, in_original_frame, overlay_frame
from wsod_mammo.training.callbacks import SaliencyOverlays
from wsod_mammo.training.predict import PredictionWriter


def _right_breast_with_one_mass(root: Path) -> tuple[dict, np.ndarray]:
    """A right (flipped) sample whose one mass lies inside the image, and its mass box from the CSV (original px)."""
    data = VinDrMammoDataModule(str(root), selection="all", input_size=(256, 192), num_workers=0)
    data.setup("test")
    dataset, truth = data.datasets["test"], {r.image_id: r for r in load_records(root)}
    for index in range(len(dataset)):
        record = truth[dataset.records[index].image_id]
        boxes, _ = record.boxes(["Mass"])
        inside = len(boxes) == 1 and boxes[0, 0] >= 0 and boxes[0, 2] <= record.width
        if record.laterality == "R" and inside:
            return dataset[index], np.asarray(boxes[0], np.float64)
    raise AssertionError("the synthetic set has no right breast with one mass inside the image")


def _method_panel(picture: np.ndarray) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the heatmap panel: the largest coloured area (the jet tint covers all of it)."""
    b, g, r = (picture[..., c].astype(int) for c in range(3))
    coloured = ((np.abs(b - r) > 10) | (np.abs(g - r) > 10)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(coloured, connectivity=8)
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return int(x), int(y), int(w), int(h)


def _rectangle(mask: np.ndarray) -> np.ndarray:
    """xyxy of a drawn rectangle's outline: the rows and columns its edges fill (a score label above it fills few)."""
    rows, cols = mask.sum(1), mask.sum(0)
    ys, xs = np.nonzero(rows >= 0.5 * rows.max())[0], np.nonzero(cols >= 0.5 * cols.max())[0]
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _in_source_pixels(picture: np.ndarray, colour: str, width: int, height: int) -> np.ndarray:
    """The ``colour`` (``gt`` green or ``pred`` orange) rectangle of the heatmap panel, in the source's pixels."""
    x, y, w, h = _method_panel(picture)
    b, g, r = (picture[y : y + h, x : x + w, c].astype(int) for c in range(3))
    green, orange = (g > 180) & (r < 80) & (b < 80), (r > 200) & (g > 100) & (g < 180) & (b < 60)
    found = _rectangle(green if colour == "gt" else orange)
    return found / np.array([w / width, h / height, w / width, h / height])


def _bright_side(picture_or_image: np.ndarray) -> str:
    gray = picture_or_image.astype(np.float64).reshape(*picture_or_image.shape[:2], -1).sum(2)
    half = gray.shape[1] // 2
    return "left" if gray[:, :half].mean() > gray[:, half:].mean() else "right"


def _oracle_map(sample: dict) -> torch.Tensor:
    """``(H, W)``: 1 inside the sample's (input-frame) mass box, 0 elsewhere."""
    _, height, width = sample["image"].shape
    out = torch.zeros(height, width)
    x0, y0, x1, y1 = sample["boxes"][0].round().int().tolist()
    out[y0:y1, x0:x1] = 1.0
    return out


def test_predict_overlay_of_a_right_breast_is_drawn_as_the_source_with_the_box_on_the_mass(
    synthetic_root: Path, tmp_path: Path
) -> None:
    sample, mass = _right_breast_with_one_mass(synthetic_root)
    source, _ = read_any(sample["meta"]["path"])
    assert _bright_side(source) == "right" and _bright_side(sample["image"][0].numpy()) == "left"  # flipped input
    writer = PredictionWriter(output_dir=str(tmp_path))
    writer.on_predict_start(None, None)
    prediction = {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((1, 1), 0.9)}
    prediction["maps"] = _oracle_map(sample)[None, None]
    writer.write_on_batch_end(None, None, prediction, None, collate_samples([sample]), 0, 0)
    picture = cv2.imread(str(writer.run_dir / writer._records[0]["overlay"]))
    x, y, w, h = _method_panel(picture)
    assert max(w, h) >= MIN_LONG_SIDE and abs(w / h - source.shape[1] / source.shape[0]) < 0.01  # original's aspect
    assert _bright_side(picture[y : y + h, x : x + w]) == "right"  # the breast on the source file's side
    found = _in_source_pixels(picture, "pred", source.shape[1], source.shape[0])
    np.testing.assert_allclose(found, mass, atol=2.0)  # the predicted box on the CSV's mass, in the source's pixels


def test_test_overlay_draws_the_ground_truth_on_the_csv_box_of_a_right_breast(
    synthetic_root: Path, tmp_path: Path
) -> None:
    sample, mass = _right_breast_with_one_mass(synthetic_root)
    height, width = sample["meta"]["geometry"]["orig_height"], sample["meta"]["geometry"]["orig_width"]
    batch = collate_samples([sample])
    module = SimpleNamespace(test_saliency=["gradcampp"], detection_thresholds={"gradcampp": 0.5})
    outputs = {"maps": {"gradcampp": torch.zeros(1, 1, 32, 24)}, "y_fusion": torch.tensor([[0.8]])}  # no boxes
    callback = SaliencyOverlays(num_images=2)
    callback._written, callback._drawn, callback._directory = [], {True: 0, False: 0}, tmp_path
    callback.on_test_batch_end(SimpleNamespace(is_global_zero=True, callbacks=[]), module, outputs, batch, 0)
    picture = cv2.imread(str(callback._written[0]))
    x, y, w, h = _method_panel(picture)
    assert _bright_side(picture[y : y + h, x : x + w]) == "right"
    np.testing.assert_allclose(_in_source_pixels(picture, "gt", width, height), mass, atol=1.5)


def test_the_test_overlay_names_each_masss_birads_and_size_under_its_box(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missed mass was a green box and nothing more; the overlay now says what kind it was (its finding BI-RADS and
    its size from the DICOM's pixel spacing), as Table II per kind of mass counts it."""
    from matplotlib.axes import Axes

    texts, text = [], Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: texts.append(s) or text(self, x, y, s, *a, **k))
    sample, _ = _right_breast_with_one_mass(synthetic_root)
    (mass,) = [j for j, label in enumerate(sample["box_labels"].tolist()) if label == 0]
    birads, size = sample["meta"]["box_birads"][mass], sample["meta"]["box_size_mm"][mass]
    assert birads in (3, 4, 5) and size > 0  # the synthetic DICOMs carry a finding BI-RADS and a pixel spacing
    module = SimpleNamespace(test_saliency=["gradcampp"], detection_thresholds={"gradcampp": 0.5})
    outputs = {"maps": {"gradcampp": torch.zeros(1, 1, 32, 24)}, "y_fusion": torch.tensor([[0.8]])}  # no boxes
    callback = SaliencyOverlays(num_images=2)
    callback._written, callback._drawn, callback._directory = [], {True: 0, False: 0}, tmp_path
    batch = collate_samples([sample])
    callback.on_test_batch_end(SimpleNamespace(is_global_zero=True, callbacks=[]), module, outputs, batch, 0)
    assert texts == [f"BI-RADS {birads}, {size:.0f} mm"] and len(callback._written) == 1


def test_an_unreadable_source_falls_back_to_the_input_frame_and_says_so(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sample, _ = _right_breast_with_one_mass(synthetic_root)
    moved = tmp_path / "moved.dicom"
    shutil.copy(sample["meta"]["path"], moved)
    image, gt = sample["image"][0], sample["boxes"]
    maps, boxes = {"m": _oracle_map(sample)}, {"m": (gt, torch.tensor([0.9]))}
    kept = overlay_frame(sample["meta"] | {"path": str(moved)}, image, gt, maps, boxes)
    assert kept.note == "" and kept.image.shape == (256, 160) and kept.title("t") == "t"
    moved.unlink()
    with caplog.at_level(logging.WARNING):
        fallback = overlay_frame(sample["meta"] | {"path": str(moved)}, image, gt, maps, boxes)
        no_path = overlay_frame(sample["meta"] | {"path": ""}, image, gt, maps, boxes)
        changed = sample["meta"] | {"geometry": sample["meta"]["geometry"] | {"orig_height": 300}}
        resized = overlay_frame(changed, image, gt, maps, boxes)  # the file is no longer the size recorded
    assert fallback.image is image and fallback.maps["m"] is maps["m"] and fallback.gt_boxes is gt
    assert fallback.title("t") == f"t\n{INPUT_FRAME_NOTE}" and no_path.note == resized.note == INPUT_FRAME_NOTE
    assert "expected a 300 x 160 image" in caplog.text
    assert str(moved) in caplog.text and "file not found" in caplog.text and "without a path" in caplog.text


def test_large_originals_are_drawn_downscaled_to_the_minimum_long_side() -> None:
    original = np.zeros((2100, 1400), np.float32)
    original[300:1800, 700:] = 0.5  # a right breast
    geo = Geometry(2100, 1400, True, (0, 300, 700, 1800), 300, 200)  # the crop, in the flipped frame
    box = np.array([[1000.0, 600.0, 1200.0, 900.0]])  # original pixels
    input_box = torch.as_tensor(boxes_to_input(box, geo), dtype=torch.float32)
    saliency = torch.zeros(300, 200)
    x0, y0, x1, y1 = input_box[0].round().int().tolist()
    saliency[y0:y1, x0:x1] = 1.0
    frame = in_original_frame(original, geo, input_box, {"m": saliency}, {"m": (input_box, torch.tensor([0.7]))})
    drawn = (MIN_LONG_SIDE, round(1400 * MIN_LONG_SIDE / 2100))  # 1024 x 683: boxes scale with each axis
    assert frame.image.shape == frame.maps["m"].shape == drawn
    scale = np.array([drawn[1] / 1400, drawn[0] / 2100] * 2)
    np.testing.assert_allclose(frame.gt_boxes.numpy(), box * scale, atol=1e-3)
    np.testing.assert_allclose(frame.boxes["m"][0].numpy(), box * scale, atol=1e-3)
    ys, xs = np.nonzero(frame.maps["m"].numpy() >= 0.5)  # the map on the same place, within a pixel
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box[0] * scale, atol=1.5)
    with pytest.raises(ValueError, match="expected a 2100 x 1400 image"):
        in_original_frame(original[:, :1000], geo, input_box, {}, {})


def test_scores_stay_with_their_boxes_in_the_original_frame() -> None:
    geometry = Geometry(64, 64, False, (0, 0, 64, 64), 64, 64)
    boxes = torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 40, 40]])
    frame = in_original_frame(
        np.zeros((64, 64), np.float32), geometry, torch.zeros(0, 4), {}, {"m": (boxes, torch.tensor([0.9, 0.2]))}
    )
    assert frame.boxes["m"][1].tolist() == pytest.approx([0.9, 0.2])
