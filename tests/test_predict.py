"""PredictionWriter: boxes found in the model's input frame come back in the original DICOM pixel frame."""

from __future__ import annotations

import csv
import errno
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
import torch
from dicom_objects import PRESENTATION_STATE, damaged_jpeg, gdcm_transcode, object_without_image
from lightning.pytorch import LightningModule, Trainer
from pydicom.uid import JPEGLosslessSV1

from wsod_mammo.data.datamodule import VinDrMammoDataModule, collate_samples
from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.images import INVERTED_WARNING, read_any
from wsod_mammo.data.predict_data import predict_image_ids
from wsod_mammo.data.vindr import load_records
from wsod_mammo.detection.boxes import box_iou
from wsod_mammo.training import predict
from wsod_mammo.training.predict import NoReadableInputError, PredictionWriter


def _oracle_maps(batch: dict) -> torch.Tensor:
    """A map at input resolution that is 1 inside each ground-truth mass box and 0 elsewhere: (N, 1, H, W)."""
    n, _, height, width = batch["image"].shape
    maps = torch.zeros(n, 1, height, width)
    for i, boxes in enumerate(batch["boxes"]):
        for x0, y0, x1, y1 in boxes.round().int().tolist():
            maps[i, 0, y0:y1, x0:x1] = 1.0
    return maps


@pytest.mark.parametrize("resize", ["stretch", "native"])
def test_predicted_boxes_land_on_the_synthetic_masses_in_dicom_pixels(
    synthetic_root: Path, tmp_path: Path, resize: str
) -> None:
    """Oracle maps on each mass's input-frame box come back on its CSV box, whatever the resize mode (``native``:
    256 x 160 images whose crops lie at scale 1 in the padded 256 x 192 frame)."""
    data = VinDrMammoDataModule(
        str(synthetic_root), selection="all", input_size=(256, 192), num_workers=0, resize=resize
    )
    data.setup("test")
    dataset = data.datasets["test"]
    samples = [s for s in (dataset[i] for i in range(len(dataset))) if len(s["boxes"]) == 1]
    assert {s["meta"]["laterality"] for s in samples} == {"L", "R"}, "need masses in both orientations"
    assert {s["meta"]["geometry"]["resize"] for s in samples} == {resize}
    batch = collate_samples(samples)
    writer = PredictionWriter(output_dir=str(tmp_path))
    writer.on_predict_start(None, None)
    prediction = {
        "method": "oracle",
        "threshold": 0.5,
        "probabilities": torch.full((len(samples), 1), 0.9),
        "maps": _oracle_maps(batch),
    }
    writer.write_on_batch_end(None, None, prediction, None, batch, 0, 0)
    writer.on_predict_end(SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True), None)

    truth = {r.image_id: r for r in load_records(synthetic_root)}
    records = json.loads((writer.run_dir / "predictions.json").read_text())
    assert len(records) == len(samples)
    for record in records:
        (box,) = record["boxes"]
        predicted = torch.tensor([[box["xmin"], box["ymin"], box["xmax"], box["ymax"]]])
        expected, _ = truth[record["image_id"]].boxes(["Mass"])
        height, width = truth[record["image_id"]].height, truth[record["image_id"]].width
        expected = np.clip(expected, 0, [width, height, width, height])  # the CSV may reach past the image edge
        iou = box_iou(predicted, torch.as_tensor(expected, dtype=torch.float32)).max().item()
        assert iou > 0.8, (record["image_id"], record["laterality"], box, expected)
        assert box["score"] == pytest.approx(0.9, abs=1e-6)
        # its size in mm by the synthetic DICOM's pixel spacing: the longer side of the box it wrote
        spacing = read_dicom(truth[record["image_id"]].path)[1].spacing_mm
        assert spacing is not None and box["size_mm"] == pytest.approx(
            max((box["xmax"] - box["xmin"]) * spacing[1], (box["ymax"] - box["ymin"]) * spacing[0])
        )
        assert (writer.run_dir / record["overlay"]).is_file()
    rows = (writer.run_dir / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("image_id,path,class,probability,box,xmin") and len(rows) == len(samples) + 1


def _run_writer(
    writer: PredictionWriter, batch: dict, score: float = 0.9, probabilities: torch.Tensor | None = None
) -> list[dict]:
    """One predict run of ``writer`` on ``batch`` with oracle maps: every image at ``score``, or ``probabilities``
    ``(N, 1)``; returns predictions.json."""
    writer.on_predict_start(None, None)
    prediction = {
        "method": "oracle",
        "threshold": 0.5,
        "probabilities": torch.full((len(batch["image"]), 1), score) if probabilities is None else probabilities,
        "maps": _oracle_maps(batch),
    }
    writer.write_on_batch_end(None, None, prediction, None, batch, 0, 0)
    writer.on_predict_end(SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True), None)
    return json.loads((writer.run_dir / "predictions.json").read_text())


def test_each_run_has_its_own_folder_and_min_score_drops_boxes(synthetic_root: Path, tmp_path: Path) -> None:
    data = VinDrMammoDataModule(str(synthetic_root), selection="all", input_size=(128, 96), num_workers=0)
    data.setup("test")
    samples = [s for s in (data.datasets["test"][i] for i in range(6)) if len(s["boxes"])][:2]
    batch = collate_samples(samples)
    writer = PredictionWriter(output_dir=str(tmp_path), min_score=0.5)
    first = _run_writer(writer, batch)
    first_dir = writer.run_dir
    second = _run_writer(writer, batch, score=0.3)  # every box scores 0.3 < min_score
    assert writer.run_dir != first_dir and writer.run_dir.parent == first_dir.parent == tmp_path
    assert all(len(r["boxes"]) == 1 for r in first) and all(r["boxes"] == [] for r in second)
    assert len(list((first_dir / "overlays").glob("*.png"))) == len(samples)
    assert len(list((writer.run_dir / "overlays").glob("*.png"))) == len(samples)
    with pytest.raises(ValueError, match="min_score"):
        PredictionWriter(min_score=2.0)


def test_all_unreadable_inputs_write_their_rows_then_fail(tmp_path: Path) -> None:
    meta = [{"path": "a.txt", "error": "a.txt: not an image"}, {"path": "b", "error": "b: a folder with no files"}]
    batch = {"image": torch.zeros(2, 1, 64, 32), "image_id": ["a", "b"], "boxes": [torch.zeros(0, 4)] * 2, "meta": meta}
    writer = PredictionWriter(output_dir=str(tmp_path))
    with pytest.raises(
        NoReadableInputError, match=r"none of the 2 input\(s\) could be read \(the first: a.txt: not an image\);"
    ):
        _run_writer(writer, batch)
    rows = (writer.run_dir / "predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and "a.txt: not an image" in rows[1]


def test_a_run_of_unreadable_files_and_cad_reports_names_an_unreadable_one() -> None:
    """The line names the first file that failed, not a CAD report beside it, which is no failure."""
    from wsod_mammo.training.predict import _first_reason

    report = {"path": "sr", "error": "sr: a Mammography CAD SR Storage object, not an image",
              "not_an_image": "Mammography CAD SR Storage"}  # fmt: skip
    records = [report, {"path": "junk", "error": "junk: not a DICOM"}]
    assert _first_reason(records) == "could be read (the first: junk: not a DICOM)"


def test_inputs_sharing_a_name_keep_their_own_rows_and_overlays(synthetic_root: Path, tmp_path: Path) -> None:
    """Scanner exports reuse names across folders and name files by UID without an extension: every input keeps
    an image_id and an overlay of its own (a shared name used to overwrite the other's overlay)."""
    source = load_records(synthetic_root)[0].path
    scans = tmp_path / "scans"
    names = ["studyA/IMG0001.dcm", "studyB/IMG0001.dcm", "1.2.826.0.1.100", "1.2.826.0.1.101", "x.dcm", "y.dicom"]
    for name in names:
        (scans / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, scans / name)
    cv2.imwrite(str(scans / "x.png"), np.full((256, 160), 30000, np.uint16))
    data = VinDrMammoDataModule(
        str(synthetic_root), input_size=(128, 96), num_workers=0, batch_size=16, predict_paths=[str(scans)]
    )
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    ids = dict(
        zip([Path(m["path"]).relative_to(scans).as_posix() for m in batch["meta"]], batch["image_id"], strict=True)
    )
    assert ids == {"studyA/IMG0001.dcm": "studyA/IMG0001", "studyB/IMG0001.dcm": "studyB/IMG0001",
                   "1.2.826.0.1.100": "1.2.826.0.1.100", "1.2.826.0.1.101": "1.2.826.0.1.101",
                   "x.dcm": "x.dcm", "x.png": "x.png", "y.dicom": "y"}  # fmt: skip
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    records = _run_writer(writer, batch)
    overlays = {r["overlay"] for r in records}
    assert len(overlays) == len(records) == 7 and all((writer.run_dir / o).is_file() for o in overlays)
    assert predict_image_ids([scans / "x.dcm", scans / "x.dcm"]) == ["x", "x-2"]  # the same file given twice
    # one file spelled two ways is the same file; a path with `..` gave an id with `..`, whose overlay went outside
    # the run folder (`../../x` as far up as the path climbed)
    other = scans / "studyA" / ".." / "studyB" / "IMG0001.dcm"
    assert predict_image_ids([scans / "studyB/IMG0001.dcm", other]) == ["IMG0001", "IMG0001-2"]
    assert predict_image_ids([scans / "studyA/IMG0001.dcm", other]) == ["studyA/IMG0001", "studyB/IMG0001"]


class _StoppingModule(LightningModule):
    """Predicts oracle maps (no boxes: the predict inputs have none) and raises ``error`` at batch ``stop_at``."""

    def __init__(self, stop_at: int, error: BaseException) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.stop_at, self.error = stop_at, error

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if batch_idx == self.stop_at:
            raise self.error
        n, _, height, width = batch["image"].shape
        maps = torch.zeros(n, 1, height, width)
        maps[:, :, height // 4 : height // 2, width // 4 : width // 2] = 1.0
        return {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((n, 1), 0.7), "maps": maps}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("out of memory in batch 3")])
def test_a_run_cut_short_keeps_the_rows_of_the_finished_batches(
    synthetic_root: Path, tmp_path: Path, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C (Lightning's graceful shutdown: ``on_exception``, then ``sys.exit(1)``) or an error in batch 3 of a
    real ``Trainer.predict``: the rows of the 4 images of batches 1-2 are on disk beside their overlays."""
    files = [str(r.path) for r in load_records(synthetic_root)[:8]]
    data = VinDrMammoDataModule(
        str(synthetic_root), input_size=(128, 96), num_workers=0, batch_size=2, predict_paths=files
    )
    writer = PredictionWriter(output_dir=str(tmp_path))
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C once it has seen one
    try:
        with (
            caplog.at_level(logging.WARNING),
            pytest.raises(SystemExit if isinstance(error, KeyboardInterrupt) else RuntimeError),
        ):
            trainer.predict(_StoppingModule(stop_at=2, error=error), datamodule=data)
    finally:
        signal.signal(signal.SIGINT, sigint)
    records = json.loads((writer.run_dir / "predictions.json").read_text())
    assert [r["path"] for r in records] == files[:4]
    assert all((writer.run_dir / r["overlay"]).is_file() for r in records)
    assert len(list((writer.run_dir / "overlays").glob("*.png"))) == 4
    rows = list(csv.DictReader(open(writer.run_dir / "predictions.csv")))
    assert [row["path"] for row in rows] == files[:4] and all(row["probability"] == "0.700000" for row in rows)
    how = "interrupted" if isinstance(error, KeyboardInterrupt) else "stopped by RuntimeError"
    assert f"predict {how} after 4 images (of the 8 inputs; 4 not predicted)" in caplog.text


_KILLED_IN_BATCH_3 = """
import os, signal, sys
import torch
from lightning.pytorch import LightningModule, Trainer
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.training.predict import PredictionWriter

class KilledInBatch3(LightningModule):
    def predict_step(self, batch, batch_idx):
        if batch_idx == 2:  # as Lightning SIGKILLs a DDP process still in a batch after another one's Ctrl-C
            os.kill(os.getpid(), signal.SIGKILL)
        n, _, height, width = batch["image"].shape
        return {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((n, 1), 0.7),
                "maps": torch.ones(n, 1, height, width)}

root, out, *files = sys.argv[1:]
data = VinDrMammoDataModule(root, input_size=(128, 96), num_workers=0, batch_size=2, predict_paths=files)
Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[PredictionWriter(output_dir=out, overlays=False)],
        enable_progress_bar=False, enable_model_summary=False).predict(KilledInBatch3(), datamodule=data)
"""


def test_a_process_killed_outright_leaves_the_rows_of_its_finished_batches(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Lightning SIGKILLs the other DDP processes right after a Ctrl-C, and every process when one exits on a
    scheduler's SIGTERM: a process killed inside a batch never reaches ``on_exception``, and the rows of the batches
    it had finished were lost. They are appended, batch by batch, to ``predictions.partial.csv``."""
    files = [str(r.path) for r in load_records(synthetic_root)[:8]]
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", _KILLED_IN_BATCH_3, str(synthetic_root), str(out), *files],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    (partial,) = out.glob("*/predictions.partial.csv")
    rows = list(csv.DictReader(open(partial)))
    assert [row["path"] for row in rows] == files[:4] and all(row["probability"] == "0.700000" for row in rows)
    assert not list(out.glob("*/predictions.csv"))


def test_overlay_titles_name_the_whole_image_id_and_fit_the_panel(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Titles used to keep 8 characters (``studyA/IMG0001`` and ``studyA/IMG0002`` both read ``studyA/I``): the
    whole id now, a very long one (a UID) cut in the middle; a title wider than a narrow panel is shrunk to it."""
    import wsod_mammo.training.predict as predict_module
    from wsod_mammo.detection.overlay import render_overlay, short_id

    titles = []

    def recording(*args, **kwargs):
        titles.append(args[4])
        return render_overlay(*args, **kwargs)

    monkeypatch.setattr(predict_module, "render_overlay", recording)
    data = VinDrMammoDataModule(str(synthetic_root), selection="all", input_size=(128, 96), num_workers=0)
    data.setup("test")
    batch = collate_samples([data.datasets["test"][i] for i in range(2)])
    batch["image_id"] = ["studyA/IMG0001", "studyA/IMG0002"]
    _run_writer(PredictionWriter(output_dir=str(tmp_path)), batch)
    assert [t.splitlines()[0] for t in titles] == ["studyA/IMG0001", "studyA/IMG0002"]

    uids = [f"1.2.840.113619.2.55.3.604688119.969.1268071029.320.{k}" for k in (1, 2)]
    short = [short_id(u) for u in uids]
    assert short[0] != short[1] and all(s.startswith("1.2.840.") and len(s) == 40 for s in short)
    assert short[0].endswith(".320.1") and short_id("studyA/IMG0001") == "studyA/IMG0001"

    # uniform panels, all dark, so that their edges are found exactly (random pixels made them flaky)
    flat = torch.zeros(4096, 1024)
    picture = render_overlay(flat, torch.zeros(0, 4), {"cam": flat}, {}, f"{short[0]}\np(Mass) = 0.73")
    dark = picture.min(axis=2) < 128  # title text, and the panels' pixels
    middle = picture.shape[0] // 2
    left = int(np.argmax(dark[middle]))  # the first panel's left edge, on the middle row
    column = dark[: middle + 1, left + 5][::-1]
    top = middle + 1 - int(np.argmin(column))  # its top edge: the first light pixel going up from the middle
    assert left > 5 and top > 10 and dark[:top, left + 5 :].any(), (left, top)  # a title above the panel
    assert dark[:top, :left].sum() == 0, "the title runs past the panel's left edge"


def test_view_comes_from_the_dicom_and_is_empty_for_png(synthetic_root: Path, tmp_path: Path) -> None:
    """``view`` in predictions.json was always empty: it is each DICOM's ViewPosition (as its laterality is the
    DICOM's), empty for a PNG."""
    records = load_records(synthetic_root)
    cc = next(r for r in records if pydicom.dcmread(r.path, stop_before_pixels=True).ViewPosition == "CC")
    mlo = next(r for r in records if pydicom.dcmread(r.path, stop_before_pixels=True).ViewPosition == "MLO")
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.full((256, 160), 30000, np.uint16))
    paths = [str(cc.path), str(mlo.path), str(png)]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    written = _run_writer(PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False), batch)
    assert [(r["view"], r["laterality_source"]) for r in written] == [
        ("CC", "dicom"),
        ("MLO", "dicom"),
        ("", "inferred"),
    ]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_an_exams_dicoms_give_one_row_per_breast_with_the_mean_of_its_views(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """A reader points predict at an exam and decides per breast: breasts.csv|json group the DICOMs by their
    StudyInstanceUID and laterality, each breast at the mean of its views' probabilities; a PNG names no exam and
    is left out (its row stays in predictions.csv)."""
    records = load_records(synthetic_root)
    views = {}
    for r in records:
        views.setdefault(r.study_id, []).append(r.laterality + r.view)
    study = next(s for s, v in views.items() if sorted(v) == ["LCC", "LMLO", "RCC", "RMLO"])  # one whole exam
    dicoms = [r.path for r in records if r.study_id == study]
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.full((256, 160), 30000, np.uint16))
    paths = [*map(str, dicoms), str(png)]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    images = _run_writer(writer, batch, probabilities=torch.tensor([[0.1], [0.3], [0.6], [0.9], [0.5]]))
    breasts = json.loads((writer.run_dir / "breasts.json").read_text())
    uid = str(pydicom.dcmread(dicoms[0], stop_before_pixels=True).StudyInstanceUID)
    assert [r["study"] for r in images] == [uid] * 4 + [""]
    assert [(b["study"], b["laterality"], len(b["image_ids"])) for b in breasts] == [(uid, "L", 2), (uid, "R", 2)]
    for breast in breasts:
        views = [r for r in images[:4] if r["laterality"] == breast["laterality"]]
        assert breast["image_ids"] == [r["image_id"] for r in views]
        assert sorted(breast["views"]) == ["CC", "MLO"] and breast["laterality_from"] == ["dicom"]
        assert breast["probability"] == pytest.approx(sum(r["probability"] for r in views) / 2)
    with open(writer.run_dir / "breasts.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["laterality"], r["images"]) for r in rows] == [("L", "2"), ("R", "2")]
    assert float(rows[0]["probability"]) == pytest.approx(breasts[0]["probability"], abs=1e-6)


def _left_views_of_a_whole_exam(root: Path) -> list[Any]:
    """The left CC and MLO records (in that order) of a synthetic study that holds all four views."""
    records = load_records(root)
    views: dict[str, list[str]] = {}
    for r in records:
        views.setdefault(r.study_id, []).append(r.laterality + r.view)
    study = next(s for s, v in views.items() if sorted(v) == ["LCC", "LMLO", "RCC", "RMLO"])
    return sorted((r for r in records if r.study_id == study and r.laterality == "L"), key=lambda r: r.view)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_one_image_given_twice_is_one_view_of_its_breast(synthetic_root: Path, tmp_path: Path) -> None:
    """A clinic's folder holds an image twice (a link to it, a copy in another export): each input keeps its row,
    but its breast counts the image once (one SOPInstanceUID), or its mean weighted that view double and ``images``
    said 3 views of a breast that has 2."""
    left = _left_views_of_a_whole_exam(synthetic_root)
    (tmp_path / "copy").mkdir()
    copied = Path(shutil.copy(left[0].path, tmp_path / "copy" / "IM-0001.dcm"))
    linked = tmp_path / "latest.dcm"
    linked.symlink_to(left[0].path)
    paths = [str(left[0].path), str(left[1].path), str(copied), str(linked)]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    images = _run_writer(writer, batch, probabilities=torch.tensor([[0.2], [0.8], [0.2], [0.2]]))
    (breast,) = json.loads((writer.run_dir / "breasts.json").read_text())
    assert breast["views"] == ["CC", "MLO"] and breast["probability"] == pytest.approx(0.5)
    assert breast["image_ids"] == [images[0]["image_id"], images[1]["image_id"]]
    (row,) = csv.DictReader(open(writer.run_dir / "breasts.csv"))
    assert row["images"] == "2" and float(row["probability"]) == pytest.approx(0.5)
    assert len(images) == 4 and len({r["instance"] for r in images}) == 2  # every input keeps its row
    from wsod_mammo.training.predict_breasts import breast_rows

    one_uid = [r | {"instance": "1.2.3"} for r in images[:2]]  # an export that gave every image one made-up UID
    assert [row["views"] for row in breast_rows(one_uid)] == [["CC", "MLO"]]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_breast_says_which_of_its_views_carry_a_warning(synthetic_root: Path, tmp_path: Path) -> None:
    """A PACS export holds a secondary capture (a screenshot, Modality OT, no laterality tag) in the exam's study:
    it joins a breast by its inferred side and its probability is in the breast's mean, which its own row alone
    warned of; breasts.csv|json name each such view and its warning."""
    left = _left_views_of_a_whole_exam(synthetic_root)
    capture = pydicom.dcmread(left[0].path)
    capture.Modality, capture.SOPInstanceUID = "OT", "1.2.826.0.1.3680043.8.498.1"
    capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    del capture.ImageLaterality, capture.ViewPosition
    capture.save_as(tmp_path / "SC.dcm")
    paths = [str(left[0].path), str(left[1].path), str(tmp_path / "SC.dcm")]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    images = _run_writer(writer, batch)
    assert images[2]["laterality"] == "L" and images[2]["warnings"][0].startswith("Modality OT, not MG")
    (breast,) = json.loads((writer.run_dir / "breasts.json").read_text())
    assert breast["views"] == ["CC", "MLO", ""]
    assert breast["warnings"] == [f"{images[2]['image_id']}: {images[2]['warnings'][0]}"]
    (row,) = csv.DictReader(open(writer.run_dir / "breasts.csv"))
    assert json.loads(row["warning"]) == breast["warnings"]


def test_the_data_splits_images_give_their_breasts_by_the_annotations(synthetic_root: Path, tmp_path: Path) -> None:
    """predict without predict_paths reads the data's test split: its samples name their study as ``study_id`` and
    their laterality from the CSV, so breasts.csv|json were left empty and ``laterality_source`` was null."""
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, batch_size=64)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    images = _run_writer(writer, batch)
    breasts = json.loads((writer.run_dir / "breasts.json").read_text())
    expected = {(m["study_id"], m["laterality"]) for m in batch["meta"]}
    assert {(b["study"], b["laterality"]) for b in breasts} == expected and len(breasts) > 1
    assert {r["laterality_source"] for r in images} == {"annotations"}
    assert all(b["laterality_from"] == ["annotations"] for b in breasts)


def test_a_negative_png_is_predicted_with_a_warning_in_its_rows(synthetic_root: Path, tmp_path: Path) -> None:
    """A 16-bit PNG saved as a MONOCHROME1 image stores it (air bright, tissue dark) is predicted as it is, and its
    rows say it looks like a negative; the same image the right way round has no warning."""
    image, _ = read_any(load_records(synthetic_root)[0].path)
    stored = np.round(image * 4095).astype(np.uint16)
    paths = [str(tmp_path / "negative.png"), str(tmp_path / "positive.png")]
    cv2.imwrite(paths[0], 4095 - stored)
    cv2.imwrite(paths[1], stored)
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    written = _run_writer(writer, next(iter(data.predict_dataloader())))
    assert [r["warnings"] for r in written] == [[INVERTED_WARNING], []]
    rows = list(csv.DictReader(open(writer.run_dir / "predictions.csv")))
    assert {r["path"]: r["warning"] for r in rows} == {paths[0]: INVERTED_WARNING, paths[1]: ""}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_warning_about_an_input_reaches_its_rows_and_the_log(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw (FOR PROCESSING) DICOM of another modality is predicted, and every row of it says why it may not be
    trusted; an ordinary input's rows have no warning."""
    record = load_records(synthetic_root)[0]
    ds = pydicom.dcmread(record.path)
    ds.Modality, ds.PresentationIntentType = "CR", "FOR PROCESSING"
    raw = tmp_path / "raw.dcm"
    ds.save_as(raw)
    paths = [str(raw), str(record.path)]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.images"):
        batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    written = _run_writer(writer, batch)
    (raw_warnings, ordinary_warnings) = [r["warnings"] for r in written]
    assert raw_warnings[0].startswith("Modality CR, not MG") and raw_warnings[1].startswith("a FOR PROCESSING image")
    assert len(raw_warnings) == 2 and ordinary_warnings == []
    rows = list(csv.DictReader(open(writer.run_dir / "predictions.csv")))
    assert {r["path"]: r["warning"].count(";") + 1 if r["warning"] else 0 for r in rows} == {str(raw): 2, paths[1]: 0}
    # the inputs' warnings (the stub model gives both images one probability, which predict says apart)
    warned = [m.getMessage().split(": ")[0] for m in caplog.records
              if m.levelno >= logging.WARNING and m.name.startswith("wsod_mammo.data")]  # fmt: skip
    assert warned == [str(raw)] * 2


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_breasts_csv_gives_back_image_ids_that_hold_the_separator(synthetic_root: Path, tmp_path: Path) -> None:
    """breasts.csv joined a breast's image_ids by ``; ``: the files ``a; b.dcm`` and ``c.dcm`` read as the three
    views ``a``, ``b`` and ``c``. Its lists are JSON arrays, which a CSV reader's cell splits back exactly, as
    breasts.json's lists."""
    left = _left_views_of_a_whole_exam(synthetic_root)
    paths = [shutil.copy(left[0].path, tmp_path / "a; b.dcm"), shutil.copy(left[1].path, tmp_path / "é.dcm")]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    _run_writer(writer, next(iter(data.predict_dataloader())))
    (breast,) = json.loads((writer.run_dir / "breasts.json").read_text())
    assert breast["image_ids"] == ["a; b", "é"]
    with open(writer.run_dir / "breasts.csv", newline="", encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    assert json.loads(row["image_ids"]) == breast["image_ids"] and row["images"] == "2"
    assert json.loads(row["views"]) == ["CC", "MLO"] and json.loads(row["laterality_from"]) == ["dicom"]
    assert json.loads(row["warning"]) == [] and '"é"' in row["image_ids"]  # the letter, not \u00e9


def test_a_breast_with_a_view_the_model_gave_no_finite_output_has_no_probability() -> None:
    """Averaging the other view alone would pass one view's answer off as the breast's: None, and an empty CSV cell;
    unreadable inputs and files naming no exam are left out."""
    from wsod_mammo.training.predict_breasts import breast_csv_rows, breast_rows

    def record(image_id: str, side: str, probability: float | None, study: str = "1.2.3") -> dict:
        return {"image_id": image_id, "study": study, "laterality": side, "view": "CC", "class": "Mass",
                "probability": probability, "probabilities": {"Mass": probability},
                "laterality_source": "dicom"}  # fmt: skip

    unreadable = {"image_id": "f", "path": "f.dcm", "error": "f.dcm: unreadable"}
    records = [record("a", "L", 0.2), record("b", "L", None), record("c", "R", 0.4), record("d", "R", 0.8),
               record("e", "R", 0.9, study=""), unreadable]  # fmt: skip
    rows = breast_rows(records)
    assert [(r["laterality"], r["image_ids"], r["probability"]) for r in rows] == [
        ("L", ["a", "b"], None),
        ("R", ["c", "d"], pytest.approx(0.6)),
    ]
    assert [r["probability"] for r in breast_csv_rows(rows)] == ["", "0.600000"]


def test_csv_rows_carry_each_boxs_own_coordinates_and_score() -> None:
    """predictions.csv is what most users open; its coordinates were never read back by a test."""
    from wsod_mammo.training.predict import _csv_rows

    boxes = [{"xmin": 10.0, "ymin": 20.0, "xmax": 30.0, "ymax": 60.0, "score": 0.5, "size_mm": 3.4},
             {"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 6.0, "score": 0.25, "size_mm": None}]  # fmt: skip
    record = {"image_id": "a", "path": "p", "class": "Mass", "probability": 0.9, "warnings": [], "boxes": boxes}
    first, second = list(_csv_rows([record]))
    assert [first[k] for k in ("xmin", "ymin", "xmax", "ymax", "score", "size_mm")] == [
        "10.00",
        "20.00",
        "30.00",
        "60.00",
        "0.500000",
        "3.4",
    ]
    assert second["size_mm"] == ""  # a PNG's box: no pixel spacing, no size


def test_a_ddp_run_cut_short_writes_each_process_rows_to_its_own_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under DDP a run cut short writes ``predictions.rankN`` files: the processes must not write over one
    another's rows (the others may be gone, so nothing is gathered). Each process's line names its process, its
    files and what of its share was not predicted: two lines alike, `after 4 images: their rows are in <folder>`,
    read as one run's 4 rows of unknown inputs."""
    meta = [{"path": "a.txt", "error": "a.txt: not an image"}]
    batch = {"image": torch.zeros(1, 1, 64, 32), "image_id": ["a"], "boxes": [torch.zeros(0, 4)], "meta": meta}
    writer = PredictionWriter(output_dir=str(tmp_path), overlays=False)
    writer.on_predict_start(None, None)
    prediction = {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((1, 1), 0.9),
                  "maps": _oracle_maps(batch)}  # fmt: skip
    five_inputs = SimpleNamespace(dataset=list(range(5)))  # process 1 of 2 is dealt inputs 1 and 3
    trainer = SimpleNamespace(world_size=2, global_rank=1, predict_dataloaders=five_inputs)
    writer.write_on_batch_end(trainer, None, prediction, None, batch, 0, 0)
    assert (writer.run_dir / "predictions.rank1.partial.csv").is_file()  # until the rows are written whole
    with caplog.at_level(logging.WARNING):
        writer.on_exception(trainer, None, KeyboardInterrupt())
    assert sorted(p.name for p in writer.run_dir.iterdir()) == ["predictions.rank1.csv", "predictions.rank1.json"]
    assert [r["path"] for r in json.loads((writer.run_dir / "predictions.rank1.json").read_text())] == ["a.txt"]
    assert (
        "predict interrupted on process 1 of 2 after 1 images (of its 2 inputs; 1 not predicted): their rows are "
        f"in {writer.run_dir / 'predictions.rank1'}.csv and .json, apart from the other processes'" in caplog.text
    )


def test_a_run_cut_short_counts_the_inputs_holding_no_image_apart_from_its_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A CAD report among the inputs finished before a Ctrl-C was counted as an image: `after 2 images` for one
    image (unreadable here) and one report."""
    report = {"path": "sr", "error": "sr: a Mammography CAD SR Storage object, not an image",
              "not_an_image": "Mammography CAD SR Storage"}  # fmt: skip
    meta = [report, {"path": "b.txt", "error": "b.txt: not an image"}]
    batch = {"image": torch.zeros(2, 1, 64, 32), "image_id": ["a", "b"], "boxes": [torch.zeros(0, 4)] * 2,
             "meta": meta}  # fmt: skip
    writer = PredictionWriter(output_dir=str(tmp_path), overlays=False)
    writer.on_predict_start(None, None)
    prediction = {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((2, 1), 0.9),
                  "maps": _oracle_maps(batch)}  # fmt: skip
    trainer = SimpleNamespace(world_size=1, global_rank=0, predict_dataloaders=SimpleNamespace(dataset=list(range(5))))
    writer.write_on_batch_end(trainer, None, prediction, None, batch, 0, 0)
    with caplog.at_level(logging.WARNING):
        writer.on_exception(trainer, None, KeyboardInterrupt())
    assert "predict interrupted after 1 images and 1 input(s) that hold no image (of the 5 inputs; 3 not " \
        "predicted)" in caplog.text  # fmt: skip


def test_one_unreadable_input_among_readable_ones_does_not_fail_the_run(synthetic_root: Path, tmp_path: Path) -> None:
    """Only a run none of whose inputs could be read ends with NoReadableInputError; one bad file among good ones
    gets its error row beside the others' results."""
    paths = [str(load_records(synthetic_root)[0].path), str(tmp_path / "junk.dcm")]
    (tmp_path / "junk.dcm").write_text("hello")
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    written = _run_writer(PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False), next(iter(
        data.predict_dataloader())))  # fmt: skip
    assert [bool(r.get("error")) for r in written] == [False, True]


def test_ddp_rows_of_an_input_every_process_predicted_are_written_once(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``--trainer.use_distributed_sampler false`` Lightning leaves predict's loader alone and each of the 2
    processes predicts all 3 inputs: predictions.csv/.json held every row twice and the summary counted 4 images
    (2 unreadable). The gathered rows are each input's once, in input order."""
    paths = [str(r.path) for r in load_records(synthetic_root)[:2]] + [str(tmp_path / "junk.dcm")]
    (tmp_path / "junk.dcm").write_text("hello")
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    writer = PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False)
    writer.on_predict_start(None, None)
    prediction = {"method": "oracle", "threshold": 0.5, "probabilities": torch.full((3, 1), 0.9),
                  "maps": _oracle_maps(batch)}  # fmt: skip
    writer.write_on_batch_end(None, None, prediction, [0, 1, 2], batch, 0, 0)

    def both_processes_rows(parts: list, mine: list) -> None:  # the other process predicted the same inputs
        parts[:] = [mine, list(mine)]

    monkeypatch.setattr(torch.distributed, "all_gather_object", both_processes_rows)
    with caplog.at_level(logging.INFO):
        trainer = SimpleNamespace(world_size=2, global_rank=0, is_global_zero=True, strategy=SimpleNamespace(
            barrier=lambda: None))  # fmt: skip
        writer.on_predict_end(trainer, None)
    records = json.loads((writer.run_dir / "predictions.json").read_text())
    assert [r["path"] for r in records] == paths
    assert [row["path"] for row in csv.DictReader(open(writer.run_dir / "predictions.csv"))] == paths
    assert "predictions for 3 images (1 unreadable)" in caplog.text


def test_dicom_objects_without_an_image_are_counted_apart_from_unreadable_files(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PACS export holds CAD reports beside its images: their rows say what they are and the summary counts them
    on their own (it said "(2 unreadable)" for one CAD report and one broken file), logged as information, not
    as errors. Read by 2 workers, as `wsod predict` reads."""
    image = load_records(synthetic_root)[0].path
    report = object_without_image(image, tmp_path / "report")  # no extension, as exports name files
    (tmp_path / "junk.dcm").write_text("hello")
    paths = [str(image), str(report), str(tmp_path / "junk.dcm")]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=2, batch_size=3,
                                predict_paths=paths)  # fmt: skip
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    with caplog.at_level(logging.INFO):
        written = _run_writer(PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False), batch)
    assert [r.get("not_an_image") for r in written] == [None, "Mammography CAD SR Storage", None]
    rows = list(csv.DictReader(open(next((tmp_path / "out").glob("*/predictions.csv")))))
    assert [r["not_an_image"] for r in rows if r["path"] in paths[1:]] == ["Mammography CAD SR Storage", ""]
    assert "a Mammography CAD SR Storage object, not an image" in written[1]["error"] and written[2]["error"]
    assert "predictions for 2 images (1 unreadable), and 1 input(s) that hold no image (1 Mammography CAD SR " \
        "Storage object) in" in caplog.text  # fmt: skip
    levels = {path: r.levelname for r in caplog.records for path in paths[1:] if f"predict: {path}:" in r.getMessage()}
    assert levels == {str(report): "INFO", str(tmp_path / "junk.dcm"): "ERROR"}


def test_a_damaged_compressed_file_gets_its_row_and_the_run_goes_on(synthetic_root: Path, tmp_path: Path) -> None:
    """A file GDCM dies on (abort, segfault) killed the DataLoader worker decoding it and the run with it: no row
    for any image, the file not named. Read by 2 workers, as `wsod predict` reads: each damaged file's row says
    how the decoder died, and the others are predicted, a JPEG Lossless copy alike the original."""
    image = load_records(synthetic_root)[0].path
    paths = [str(image), str(damaged_jpeg(image, tmp_path / "aborts.dcm", "SIGABRT")),
             str(damaged_jpeg(image, tmp_path / "segfaults", "SIGSEGV")),
             str(gdcm_transcode(image, tmp_path / "lossless.dcm", JPEGLosslessSV1))]  # fmt: skip
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=2, batch_size=4,
                                predict_paths=paths)  # fmt: skip
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    written = _run_writer(PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False), batch)
    assert [r["path"] for r in written] == paths
    errors = [r.get("error") for r in written]
    assert errors[0] is None and errors[3] is None
    assert errors[1] == f"{paths[1]}: pixel data cannot be decoded (the decoder crashed on them, SIGABRT: the " \
        "compressed stream is damaged)"  # fmt: skip
    assert "(the decoder crashed on them, SIGSEGV" in errors[2]
    torch.testing.assert_close(batch["image"][3], batch["image"][0], rtol=0, atol=0)


def test_a_run_of_dicom_objects_without_an_image_says_none_is_an_image(synthetic_root: Path, tmp_path: Path) -> None:
    """Only CAD reports and presentation states given (the wrong series of an export): the run fails saying that
    none of them is an image, and what they are, not that none could be read."""
    image = load_records(synthetic_root)[0].path
    paths = [
        str(object_without_image(image, tmp_path / "sr.dcm")),
        str(object_without_image(image, tmp_path / "pr.dcm", PRESENTATION_STATE)),
    ]
    data = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=0, predict_paths=paths)
    data.setup("predict")
    expected = (r"none of the 2 input\(s\) is an image \(1 Mammography CAD SR Storage object, 1 Grayscale Softcopy "
                r"Presentation State Storage object\); the reasons are in")  # fmt: skip
    with pytest.raises(NoReadableInputError, match=expected):
        _run_writer(PredictionWriter(output_dir=str(tmp_path / "out"), overlays=False), next(iter(
            data.predict_dataloader())))  # fmt: skip


def _seven_inputs(root: Path, out: Path, writer: PredictionWriter | None = None, **options: Any) -> tuple:
    """7 predict inputs in batches of 2 read by 2 workers, a writer without overlays, and a Trainer with ``options``:
    (files, data, writer, trainer)."""
    files = [str(r.path) for r in load_records(root)[:7]]
    data = VinDrMammoDataModule(str(root), input_size=(128, 96), num_workers=2, batch_size=2, predict_paths=files)
    writer = writer or PredictionWriter(output_dir=str(out), overlays=False)
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False,
        enable_model_summary=False, **options,
    )  # fmt: skip
    return files, data, writer, trainer


def test_a_batch_limit_that_leaves_inputs_out_says_how_many(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--trainer.limit_predict_batches 2`` on 7 inputs (2 workers, batches of 2) predicts 4 of them: the rows of
    those 4 are written and the log says that 3 inputs were left out, and by which option (it said nothing)."""
    files, data, writer, trainer = _seven_inputs(synthetic_root, tmp_path, limit_predict_batches=2)
    with caplog.at_level(logging.WARNING):
        trainer.predict(_StoppingModule(stop_at=-1, error=RuntimeError()), datamodule=data, return_predictions=False)
    records = json.loads((writer.run_dir / "predictions.json").read_text())
    assert [r["path"] for r in records] == files[:4]
    assert "3 of the 7 inputs were not predicted: --trainer.limit_predict_batches 2" in caplog.text
    caplog.clear()
    *_, whole = _seven_inputs(synthetic_root, tmp_path, writer)
    with caplog.at_level(logging.WARNING):  # every input predicted: no word of it
        whole.predict(_StoppingModule(stop_at=-1, error=RuntimeError()), datamodule=data, return_predictions=False)
    assert len(json.loads((writer.run_dir / "predictions.json").read_text())) == 7
    assert "not predicted" not in caplog.text


class _SigtermAt(_StoppingModule):
    """Receives SIGTERM (as Lightning's handler records it) while predicting batch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__(stop_at=-1, error=RuntimeError())
        self.at = at

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if batch_idx == self.at:
            self.trainer._signal_connector.received_sigterm = True
        return super().predict_step(batch, batch_idx)


@pytest.mark.parametrize(("at", "rows"), [(1, 4), (3, 7)])
def test_a_sigterm_stops_predict_after_its_batch_unless_it_was_the_last(
    synthetic_root: Path, tmp_path: Path, at: int, rows: int
) -> None:
    """A SIGTERM during batch 2 of 4 stops the run after that batch (Lightning's predict loop never looks); one
    during the last batch stopped it too, and a run that had predicted every input said it was cut short (143)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    _, data, writer, trainer = _seven_inputs(synthetic_root, tmp_path)
    if at < 3:
        with pytest.raises(SIGTERMException):
            trainer.predict(_SigtermAt(at), datamodule=data, return_predictions=False)
    else:
        trainer.predict(_SigtermAt(at), datamodule=data, return_predictions=False)
    assert len(json.loads((writer.run_dir / "predictions.json").read_text())) == rows


class _ByImage(_StoppingModule):
    """Each image's probability from its pixels (rows that differ, so that their order shows); counts the images."""

    def __init__(self, stop_at: int = -1, error: BaseException | None = None) -> None:
        super().__init__(stop_at, error or RuntimeError())
        self.seen = 0

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        out = super().predict_step(batch, batch_idx)
        self.seen += len(batch["image"])
        return out | {"probabilities": torch.sigmoid(batch["image"].amax(dim=(1, 2, 3)))[:, None]}


def _run_files(folder: Path) -> dict[str, str]:
    """The text of every file in a predict run's folder (its overlays' names only), the folder's name left out."""
    texts = {p.name: p.read_text().replace(str(folder), "<run>") for p in folder.iterdir() if p.is_file()}
    return texts | {f"overlays/{p.name}": "" for p in (folder / "overlays").glob("*")}


def _continued(root: Path, tmp_path: Path, run_dir: Path, **options: Any) -> tuple[_ByImage, PredictionWriter]:
    """``run_dir`` continued on ``_seven_inputs`` (2 workers): the module (what it saw) and the writer."""
    writer = PredictionWriter(output_dir=str(tmp_path / "other"), resume_dir=str(run_dir), **options)
    _, data, writer, trainer = _seven_inputs(root, tmp_path, writer)
    module = _ByImage()
    trainer.predict(module, datamodule=data, return_predictions=False)
    return module, writer


def _continue_without_overlays_as_a_whole_run(root: Path, tmp_path: Path, folder: Path, left: int = 3) -> None:
    """``folder`` (a run of ``_seven_inputs`` without overlays, cut after 4 inputs) continued: the ``left`` inputs
    without a row (or unreadable) are predicted, and its files are those of one whole run."""
    whole = PredictionWriter(output_dir=str(tmp_path / "whole"), overlays=False)
    _, data, whole, trainer = _seven_inputs(root, tmp_path, whole)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    module, _ = _continued(root, tmp_path, folder, overlays=False)
    assert module.seen == left
    assert _run_files(folder) == _run_files(whole.run_dir)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("out of memory in batch 3")])
def test_a_run_cut_short_goes_on_in_its_folder_into_the_files_of_one_whole_run(
    synthetic_root: Path, tmp_path: Path, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """A clinic's folder takes hours: a run stopped after 2 of 4 batches kept its rows but wrote no breasts.csv, and
    a rerun predicted every input again into a new folder. The cut run writes the breasts of the views it finished
    and says how to go on; ``resume_dir`` predicts the 3 inputs left into its folder, leaving its overlays as they
    are, and the folder ends as one whole run's (2 workers)."""
    whole = PredictionWriter(output_dir=str(tmp_path / "whole"))
    files, data, whole, trainer = _seven_inputs(synthetic_root, tmp_path, whole)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    _, data, cut, trainer = _seven_inputs(synthetic_root, tmp_path, PredictionWriter(output_dir=str(tmp_path / "cut")))
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C once it has seen one
    try:
        with (
            caplog.at_level(logging.WARNING),
            pytest.raises(SystemExit if isinstance(error, KeyboardInterrupt) else RuntimeError),
        ):
            trainer.predict(_ByImage(stop_at=2, error=error), datamodule=data, return_predictions=False)
    finally:
        signal.signal(signal.SIGINT, sigint)
    run = cut.run_dir
    assert f"(of the 7 inputs; 3 not predicted): their rows are in {run}" in caplog.text
    assert f"the same command with --trainer.callbacks.init_args.resume_dir {run} predicts the others" in caplog.text
    finished = [r["image_id"] for r in json.loads((run / "predictions.json").read_text())]
    breasts = json.loads((run / "breasts.json").read_text())
    assert len(finished) == 4 and sorted(i for b in breasts for i in b["image_ids"]) == sorted(finished)
    drawn = {p.name: p.stat().st_mtime_ns for p in (run / "overlays").glob("*.png")}
    module, writer = _continued(synthetic_root, tmp_path, run)
    assert module.seen == 3 and writer.run_dir == run and not (tmp_path / "other").exists()
    assert _run_files(run) == _run_files(whole.run_dir)  # rows, breasts, weights.json and overlays alike
    assert all((run / "overlays" / name).stat().st_mtime_ns == when for name, when in drawn.items())


_KILLED_IN_BATCH_3_BY_IMAGE = """
import os, signal, sys
import torch
from lightning.pytorch import LightningModule, Trainer
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.training.predict import PredictionWriter

class KilledInBatch3(LightningModule):  # as _ByImage, killed outright in batch 3
    def predict_step(self, batch, batch_idx):
        if batch_idx == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        n, _, height, width = batch["image"].shape
        maps = torch.zeros(n, 1, height, width)
        maps[:, :, height // 4 : height // 2, width // 4 : width // 2] = 1.0
        return {"method": "oracle", "threshold": 0.5, "maps": maps,
                "probabilities": torch.sigmoid(batch["image"].amax(dim=(1, 2, 3)))[:, None]}

root, out, *files = sys.argv[1:]
data = VinDrMammoDataModule(root, input_size=(128, 96), num_workers=0, batch_size=2, predict_paths=files)
Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[PredictionWriter(output_dir=out, overlays=False)],
        enable_progress_bar=False, enable_model_summary=False).predict(KilledInBatch3(), datamodule=data)
"""


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_process_killed_outright_goes_on_from_its_partial_rows(synthetic_root: Path, tmp_path: Path) -> None:
    """A process killed in batch 3 leaves only the partial rows of batches 1-2 (a DDP process SIGKILLed after
    another's Ctrl-C): they are taken as they are, the 3 other inputs are predicted, and the files are one run's."""
    files = [str(r.path) for r in load_records(synthetic_root)[:7]]
    out = tmp_path / "killed"
    run = subprocess.run([sys.executable, "-c", _KILLED_IN_BATCH_3_BY_IMAGE, str(synthetic_root), str(out), *files],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    (folder,) = out.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "predictions.partial.csv", "predictions.partial.jsonl", "weights.json"
    ]  # fmt: skip
    _continue_without_overlays_as_a_whole_run(synthetic_root, tmp_path, folder)


@pytest.mark.parametrize("overlays", [False, True])
def test_an_input_named_in_unicode_is_predicted_under_a_locale_that_is_not_utf8(
    synthetic_root: Path, tmp_path: Path, overlays: bool
) -> None:
    """Text files were opened in the locale's encoding: under LC_ALL=C (ASCII) the partial rows of an input named
    ``sein_é_日本.dcm`` could not be written (UnicodeEncodeError) and the run failed. They are UTF-8 in any locale.
    Its overlay's name could not be spelt in that locale either (UnicodeEncodeError): it is the name a UTF-8 locale
    gives it. (The script is the one killed in batch 3: one input, one batch, it runs to its end.)"""
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    asked = [sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"]
    if "utf" in subprocess.run(asked, env=env, capture_output=True, text=True).stdout.lower():
        pytest.skip("the C locale is UTF-8 here")
    named = tmp_path / "sein_é_日本.dcm"
    shutil.copy(load_records(synthetic_root)[0].path, named)
    out = tmp_path / "out"
    script = _KILLED_IN_BATCH_3_BY_IMAGE.replace("overlays=False", f"overlays={overlays}")
    run = subprocess.run([sys.executable, "-c", script, str(synthetic_root), str(out), str(named)],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (folder,) = out.iterdir()
    with (folder / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        assert {(row["image_id"], row["path"]) for row in csv.DictReader(handle)} == {("sein_é_日本", str(named))}
    assert not list(folder.glob("*.partial.*"))
    assert [p.name for p in (folder / "overlays").glob("*")] == (["sein_é_日本.png"] if overlays else [])


def test_the_overlays_are_named_relative_to_the_run_folder_wherever_it_is_moved(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predictions.json named each overlay relative to the directory the command ran in (``cut/<date-time>/...``):
    read from another directory, or after the folder was moved, the paths named no file. They are relative to the
    run folder, predictions.json's own directory."""
    monkeypatch.chdir(tmp_path)
    writer = PredictionWriter(output_dir="cut")
    _, data, writer, trainer = _seven_inputs(synthetic_root, tmp_path, writer, limit_predict_batches=1)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    writer.run_dir.rename(moved)
    monkeypatch.chdir(moved.parent)
    records = json.loads((moved / "predictions.json").read_text())
    assert [r["overlay"] for r in records] == [f"overlays/{r['image_id']}.png" for r in records] and len(records) == 2
    assert all((moved / r["overlay"]).is_file() for r in records)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
@pytest.mark.parametrize("relative", [True, False])
def test_a_folder_of_an_earlier_version_continued_names_every_overlay_relative_to_it(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    """A run cut short by an earlier wsod-mammo named its overlays relative to the working directory or absolute:
    continued (its folder typed in the other form), its rows and the new ones all name theirs relative to the
    folder, in one form."""
    monkeypatch.chdir(tmp_path)
    cut = PredictionWriter(output_dir="cut")
    _, data, cut, trainer = _seven_inputs(synthetic_root, tmp_path, cut, limit_predict_batches=2)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    run = cut.run_dir
    rows = json.loads((run / "predictions.json").read_text())
    for row in rows:  # as the earlier version wrote them
        row["overlay"] = str((run if relative else run.absolute()) / row["overlay"])
    (run / "predictions.json").write_text(json.dumps(rows))
    _continued(synthetic_root, tmp_path, run.absolute() if relative else run)
    records = json.loads((run / "predictions.json").read_text())
    assert [r["overlay"] for r in records] == [f"overlays/{r['image_id']}.png" for r in records] and len(records) == 7
    assert all((run / r["overlay"]).is_file() for r in records)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_an_input_unreadable_in_the_run_cut_short_is_read_again_when_it_goes_on(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file damaged (or on a network share gone) when the run cut short read it got a row with its error, which
    counted as done: fixed, it was never read again and the error stayed. The continuation reads it again with the
    inputs left, keeps the rows read, and the files are one whole run's over the inputs as they now are."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    damaged = load_records(root)[1].path
    content = damaged.read_bytes()
    damaged.write_bytes(content[:300])
    _, data, cut, trainer = _seven_inputs(root, tmp_path / "cut", limit_predict_batches=2)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    rows = json.loads((cut.run_dir / "predictions.json").read_text())
    assert [bool(r.get("error")) for r in rows] == [False, True, False, False]
    damaged.write_bytes(content)  # the file fixed
    with caplog.at_level(logging.INFO):
        _continue_without_overlays_as_a_whole_run(root, tmp_path, cut.run_dir, left=4)
    assert "3 of its 7 inputs have their rows there; predicting the other 4 (1 of them unreadable there" in caplog.text
    assert not any(r.get("error") for r in json.loads((cut.run_dir / "predictions.json").read_text()))


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_an_overlay_not_written_in_the_run_cut_short_is_drawn_when_it_goes_on(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose overlay could not be written (a full disk at the time: its ``overlay_error`` set) counted as
    done, so the continuation never drew it. It is predicted again with the inputs left, and the files are one whole
    run's, every overlay drawn."""
    whole = PredictionWriter(output_dir=str(tmp_path / "whole"))
    _, data, whole, trainer = _seven_inputs(synthetic_root, tmp_path, whole)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    write_png, drawn = predict.write_png, []

    def second_on_a_full_disk(path: Path, picture: np.ndarray) -> None:
        drawn.append(path)
        if len(drawn) == 2:
            raise OSError(errno.ENOSPC, f"{path}: not written (No space left on device)")
        write_png(path, picture)

    monkeypatch.setattr(predict, "write_png", second_on_a_full_disk)
    cut = PredictionWriter(output_dir=str(tmp_path / "cut"))
    _, data, cut, trainer = _seven_inputs(synthetic_root, tmp_path, cut, limit_predict_batches=2)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    monkeypatch.setattr(predict, "write_png", write_png)
    rows = json.loads((cut.run_dir / "predictions.json").read_text())
    assert [bool(r.get("overlay_error")) for r in rows] == [False, True, False, False]
    with caplog.at_level(logging.INFO):
        module, _ = _continued(synthetic_root, tmp_path, cut.run_dir)
    assert module.seen == 4
    assert "predicting the other 4 (1 of them without their overlay there: drawn again)" in caplog.text
    assert _run_files(cut.run_dir) == _run_files(whole.run_dir)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_folder_of_other_options_inputs_or_no_run_is_refused_and_a_whole_one_left_as_it_is(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """``resume_dir`` refuses a folder that holds no predict run, one whose rows were made with other options or
    saliency (naming what differs), or that holds rows of inputs this run is not given; a folder whose every input
    has its rows is said to be whole and nothing is predicted (``wsod predict`` exits 0)."""
    from wsod_mammo.training.predict_resume import ContinueRefusedError, NothingLeftToPredict

    with pytest.raises(ValueError, match=f"resume_dir: {tmp_path} holds no predict run \\(no weights.json\\)"):
        PredictionWriter(resume_dir=str(tmp_path))
    with pytest.raises(ValueError, match="resume_dir: .*nowhere is no folder"):
        PredictionWriter(resume_dir=str(tmp_path / "nowhere"))
    files, data, cut, trainer = _seven_inputs(synthetic_root, tmp_path / "cut", limit_predict_batches=2)
    trainer.predict(_ByImage(), datamodule=data, return_predictions=False)
    before = _run_files(cut.run_dir)
    expected = rf"resume_dir {cut.run_dir}: its predictions were made with another min_score 0.0 \(this run: 0.5\)"
    with pytest.raises(ContinueRefusedError, match=expected):
        _continued(synthetic_root, tmp_path, cut.run_dir, overlays=False, min_score=0.5)
    other = PredictionWriter(output_dir=str(tmp_path), overlays=False, resume_dir=str(cut.run_dir))
    _, data, other, trainer = _seven_inputs(synthetic_root, tmp_path, other)
    module = _ByImage()
    module.predict_saliency = "gradcam"
    with pytest.raises(ContinueRefusedError, match=r"another predict_saliency None \(this run: gradcam\)"):
        trainer.predict(module, datamodule=data, return_predictions=False)
    weights = json.loads((cut.run_dir / "weights.json").read_text())
    (cut.run_dir / "weights.json").write_text(json.dumps({k: v for k, v in weights.items() if k != "options"}))
    with pytest.raises(ContinueRefusedError, match="records no options \\(an earlier wsod-mammo made it\\)"):
        _continued(synthetic_root, tmp_path, cut.run_dir, overlays=False)
    (cut.run_dir / "weights.json").write_text(json.dumps(weights, indent=2))
    fewer = VinDrMammoDataModule(str(synthetic_root), input_size=(128, 96), num_workers=2, batch_size=2,
                                 predict_paths=files[2:])  # fmt: skip
    *_, trainer = _seven_inputs(synthetic_root, tmp_path, other)
    with pytest.raises(ContinueRefusedError, match=f"holds rows of 2 input\\(s\\) this run is not given \\(the first: "
                       f"{files[0]}\\)"):  # fmt: skip
        trainer.predict(_ByImage(), datamodule=fewer, return_predictions=False)
    assert _run_files(cut.run_dir) == before  # nothing written, nothing removed
    _continued(synthetic_root, tmp_path, cut.run_dir, overlays=False)
    whole = _run_files(cut.run_dir)
    with pytest.raises(NothingLeftToPredict, match=f"{cut.run_dir} already holds the rows of all its 7 inputs"):
        _continued(synthetic_root, tmp_path, cut.run_dir, overlays=False)
    assert _run_files(cut.run_dir) == whole


def test_a_folder_predicted_with_other_settings_of_its_saliency_method_is_refused(tmp_path: Path) -> None:
    """``weights.json`` recorded the predict method by name: a run made with ``LayerCAM(layers=["stage5"])`` was
    continued with the default LayerCAM (stages 3-5), also ``layercam``, and one predictions.csv held the boxes of
    two maps at two thresholds. The record holds the method's settings; a folder of before them is compared by name."""
    from wsod_mammo.models import GMIC
    from wsod_mammo.saliency import LayerCAM
    from wsod_mammo.training.module import GMICLitModule
    from wsod_mammo.training.predict_resume import ContinueRefusedError, made_alike

    def record(module: GMICLitModule) -> dict[str, Any]:
        trainer = SimpleNamespace(ckpt_path=None, precision="32-true", datamodule=None)
        return PredictionWriter(output_dir=str(tmp_path))._weights_record(trainer, module)  # type: ignore[arg-type]

    gmic = GMIC(num_classes=1, crop_shape=(64, 64), num_patches=2)
    stage5 = record(GMICLitModule(gmic, predict_saliency=LayerCAM(layers=["stage5"])))
    (tmp_path / "weights.json").write_text(json.dumps(stage5))
    made_alike(tmp_path, record(GMICLitModule(gmic, predict_saliency=LayerCAM(layers=["stage5"]))))
    default = record(GMICLitModule(gmic, predict_saliency="layercam"))
    expected = (
        r"another predict_saliency_method wsod_mammo.saliency.methods.LayerCAM \(_layers=\('stage5',\)\) "
        r"\(this run: wsod_mammo.saliency.methods.LayerCAM \(_layers=\('stage3', 'stage4', 'stage5'\)\)\)"
    )
    with pytest.raises(ContinueRefusedError, match=expected):
        made_alike(tmp_path, default)
    older = {key: value for key, value in stage5.items() if key != "predict_saliency_method"}
    (tmp_path / "weights.json").write_text(json.dumps(older))
    made_alike(tmp_path, default)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_predict_of_the_test_split_cut_short_goes_on_into_the_files_of_one_whole_run(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """predict without predict_paths reads the data's test split (its breasts by the annotations): a run stopped
    after its first batch goes on in its folder, predicts the split's other images alone, and its files end as one
    uninterrupted run's. Continued on other data (a copy elsewhere: other paths), the refusal said to give the
    --data.predict_paths the run was given: it had none."""
    from wsod_mammo.training.predict_resume import ContinueRefusedError

    def run(writer: PredictionWriter, module: _ByImage, root: Path = synthetic_root) -> None:
        data = VinDrMammoDataModule(str(root), input_size=(128, 96), num_workers=0, batch_size=2)
        trainer = Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False,
                          enable_model_summary=False)  # fmt: skip
        trainer.predict(module, datamodule=data, return_predictions=False)

    run(whole := PredictionWriter(output_dir=str(tmp_path / "whole")), _ByImage())
    inputs = len(json.loads((whole.run_dir / "predictions.json").read_text()))
    with pytest.raises(RuntimeError, match="out of memory"):
        run(cut := PredictionWriter(output_dir=str(tmp_path / "cut")), _ByImage(1, RuntimeError("out of memory")))
    assert len(json.loads((cut.run_dir / "predictions.json").read_text())) == 2 < inputs
    shutil.copytree(synthetic_root, tmp_path / "copy")
    expected = "this run is not given .*: it predicted the test split of its data: give the --data.data_root and"
    with pytest.raises(ContinueRefusedError, match=expected):
        run(PredictionWriter(resume_dir=str(cut.run_dir)), _ByImage(), tmp_path / "copy")
    run(PredictionWriter(output_dir=str(tmp_path / "other"), resume_dir=str(cut.run_dir)), module := _ByImage())
    assert module.seen == inputs - 2 and not (tmp_path / "other").exists()
    assert _run_files(cut.run_dir) == _run_files(whole.run_dir)


def test_weights_json_is_strict_json_when_the_checkpoints_monitor_scored_no_number(tmp_path: Path) -> None:
    """A best.ckpt kept while validation's AUROC was undefined (a split of one class) records its score as NaN:
    weights.json held the token NaN, which jq, JavaScript and R's jsonlite refuse; it is null."""
    from wsod_mammo.models import GMIC
    from wsod_mammo.training.module import GMICLitModule

    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    module = GMICLitModule(GMIC(num_classes=1, crop_shape=(64, 64), num_patches=2))
    module.loaded_from = {"epoch": 3, "global_step": 12, "monitored": {"val/fusion/auroc": math.nan}}
    trainer = SimpleNamespace(ckpt_path=str(checkpoint), precision="32-true", datamodule=None)
    PredictionWriter(output_dir=str(tmp_path))._write_weights_record(trainer, module)  # type: ignore[arg-type]

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    weights = json.loads((tmp_path / "weights.json").read_text(), parse_constant=refuse)
    assert weights["checkpoint"]["monitored"] == {"val/fusion/auroc": None}
    assert weights["checkpoint"]["epoch"] == 3


_DDP_CUT_IN_BATCH_2 = """
import sys
import torch
from lightning.pytorch import LightningModule, Trainer
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.training.predict import PredictionWriter

class StoppedInBatch2(LightningModule):
    def predict_step(self, batch, batch_idx):
        if batch_idx == 1:  # each process, after its first batch
            raise RuntimeError("out of memory")
        n, _, height, width = batch["image"].shape
        maps = torch.zeros(n, 1, height, width)
        maps[:, :, height // 4 : height // 2, width // 4 : width // 2] = 1.0
        return {"method": "oracle", "threshold": 0.5, "maps": maps,
                "probabilities": torch.sigmoid(batch["image"].amax(dim=(1, 2, 3)))[:, None]}

if __name__ == "__main__":
    root, out, *files = sys.argv[1:]
    data = VinDrMammoDataModule(root, input_size=(128, 96), num_workers=0, batch_size=2, predict_paths=files)
    Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[PredictionWriter(output_dir=out, overlays=False)],
            ).predict(StoppedInBatch2(), datamodule=data, return_predictions=False)
"""


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_ddp_run_cut_short_goes_on_from_its_processes_files(synthetic_root: Path, tmp_path: Path) -> None:
    """2 gloo processes each stopped after their first batch leave their rows in ``predictions.rank<N>`` files (or,
    killed by the other, in partial ones), in the order the sampler dealt the inputs: continued on one process,
    the 3 inputs left are predicted and the folder's files are one whole run's, in input order. No process writes
    breasts.csv|json (each holds a share of the views), and the line that said how to go on did not say so."""
    files = [str(r.path) for r in load_records(synthetic_root)[:7]]
    script, out = tmp_path / "ddp_cut.py", tmp_path / "ddp"
    script.write_text(_DDP_CUT_IN_BATCH_2)
    run = subprocess.run([sys.executable, str(script), str(synthetic_root), str(out), *files], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode != 0 and "out of memory" in run.stderr, run.stderr[-3000:]
    (folder,) = out.iterdir()
    assert not (folder / "predictions.json").exists() and list(folder.glob("predictions.rank*")), run.stderr[-3000:]
    assert not list(folder.glob("breasts.*"))
    said = f"resume_dir {folder} predicts the others into that folder and writes breasts.csv|json (none now: each"
    assert said in run.stderr, run.stderr[-3000:]
    _continue_without_overlays_as_a_whole_run(synthetic_root, tmp_path, folder)
    assert (folder / "breasts.csv").is_file()
