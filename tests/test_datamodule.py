"""VinDrMammoDataModule: batches match the sample contract in every stage, cache and DICOM agree, bad input."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args, get_type_hints

import cv2
import numpy as np
import pydicom
import pytest
import torch
from lightning.fabric.utilities import move_data_to_device
from processes import all_end_within

from wsod_mammo.data.datamodule import DataError, VinDrMammoDataModule, collate_samples
from wsod_mammo.data.device_augment import warp_padding
from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.geometry import RESIZE_MODES, box_sizes_mm, boxes_to_original
from wsod_mammo.data.images import load_input_image
from wsod_mammo.data.lifetime import is_running
from wsod_mammo.data.predict_data import expand_predict_paths
from wsod_mammo.data.prepare import prepare, read_cached, read_padding
from wsod_mammo.data.synthetic import make_synthetic_dataset
from wsod_mammo.data.transforms import AugmentationConfig, standardize
from wsod_mammo.data.vindr import load_records

SIZE = (128, 80)


def _dm(root: Path, **kw) -> VinDrMammoDataModule:
    args = {"input_size": SIZE, "batch_size": 3, "num_workers": 0, "val_fraction": 0.25} | kw
    return VinDrMammoDataModule(str(root), **args)


def _check_batch(batch: dict, n: int) -> None:
    assert batch["image"].shape == (n, 1, *SIZE) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (n, 1) and batch["label"].dtype == torch.float32
    assert len(batch["boxes"]) == len(batch["box_labels"]) == len(batch["image_id"]) == len(batch["meta"]) == n
    for image, label, boxes, labels, meta in zip(batch["image"], batch["label"], batch["boxes"], batch["box_labels"],
                                                 batch["meta"], strict=True):  # fmt: skip
        if not meta.get("error"):  # an unreadable predict file gives a zero image
            assert abs(float(image.mean())) < 1e-4 and abs(float(image.std()) - 1) < 1e-3
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4 and labels.dtype == torch.int64
        assert len(boxes) == len(labels) and (len(boxes) > 0) == bool(label[0])
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= SIZE[1]).all() and (boxes[:, [1, 3]] <= SIZE[0]).all()
        assert meta["laterality"] in ("L", "R") and {"study_id", "view", "path", "geometry"} <= set(meta)


@pytest.mark.parametrize("workers", [0, 2])
def test_one_batch_per_stage(synthetic_root: Path, workers: int) -> None:
    dm = _dm(synthetic_root, num_workers=workers, eval_batch_size=2)
    assert dm.num_classes == 1 and dm.class_names == ["Mass"]
    dm.setup("fit")
    train, val, test = (dm.datasets[k] for k in ("train", "val", "test"))
    assert len(train) and len(val) and len(test)
    assert not {r.study_id for r in train.records} & {r.study_id for r in val.records}
    _check_batch(next(iter(dm.train_dataloader())), 3)
    _check_batch(next(iter(dm.val_dataloader())), 2)
    dm.setup("test")
    _check_batch(next(iter(dm.test_dataloader())), 2)
    dm.setup("predict")
    _check_batch(next(iter(dm.predict_dataloader())), 2)


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads parent pids from /proc")
@pytest.mark.parametrize("start", ["forkserver", "fork"])
def test_workers_start_outside_the_training_process_unless_told_to_fork(synthetic_root: Path, start: str) -> None:
    """A worker forked from the training process inherits every lock its other threads (W&B's, Lightning's DDP
    observer) held at that instant, and can hang before its first sample, as a DDP rank's worker once did in CI.
    By default the workers come from a fork server instead; ``worker_start: fork`` still forks, when asked."""
    options = {} if start == "forkserver" else {"worker_start": start}  # forkserver: the default
    dm = _dm(synthetic_root, num_workers=2, **options)
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    _check_batch(next(batches), 3)
    parents = {_parent_pid(worker.pid) for worker in batches._workers}
    assert (parents == {os.getpid()}) == (start == "fork"), parents
    _check_batch(next(iter(dm.val_dataloader())), 3)


@pytest.mark.parametrize("start", ["forkserver", "fork"])
def test_a_ctrl_c_to_every_process_leaves_the_workers_to_the_training_process(synthetic_root: Path, start: str) -> None:
    """A terminal's Ctrl-C reaches the workers too. One it killed while it checked its loader's shared "done" event
    left that event's lock held, and the training process hung for good stopping its workers for the same Ctrl-C
    (``bench_ctrl_c.py``). Workers ignore it: the epoch reads on to its end with the same workers, as the training
    process would stop them."""
    dm = _dm(synthetic_root, num_workers=2, worker_start=start, eval_batch_size=1)
    dm.setup("test")
    batches = iter(dm.test_dataloader())
    for _ in range(2):  # batches go to the workers in turn: both have started, a SIGINT finds them at work
        _check_batch(next(batches), 1)
    workers = list(batches._workers)
    for worker in workers:
        os.kill(worker.pid, signal.SIGINT)
    time.sleep(1)
    assert [worker.is_alive() for worker in workers] == [True, True]
    rest = list(batches)  # a dead worker: "DataLoader worker (pid ...) exited unexpectedly"
    assert len(rest) == len(dm.datasets["test"]) - 2 > 0


def test_an_unknown_worker_start_names_the_option(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match=r"data.worker_start: expected one of .*forkserver.*found 'threads'"):
        _dm(synthetic_root, worker_start="threads")


def test_eval_boxes_map_back_to_csv_and_cache_agrees(synthetic_root: Path, tmp_path: Path) -> None:
    prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    direct, cached = _dm(synthetic_root), _dm(synthetic_root, cache_dir=str(tmp_path))
    direct.setup("test")
    cached.setup("test")
    records = {r.image_id: r for r in load_records(synthetic_root)}
    for index in range(len(direct.datasets["test"])):
        a, b = direct.datasets["test"][index], cached.datasets["test"][index]
        assert a["image_id"] == b["image_id"] and a["meta"]["geometry"] == b["meta"]["geometry"]
        # the cache keeps the DICOM's pixel spacing: masses measure the same in mm from either
        assert a["meta"]["geometry"]["spacing_mm"] and a["meta"]["box_size_mm"] == b["meta"]["box_size_mm"]
        torch.testing.assert_close(a["image"], b["image"], atol=1e-3, rtol=0)
        expected, _ = records[a["image_id"]].boxes(["Mass"])
        np.testing.assert_allclose(boxes_to_original(a["boxes"].numpy(), a["meta"]["geometry"]), expected, atol=1e-3)


def test_a_cache_of_another_copy_of_the_data_is_refused_and_a_missing_one_is_said(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same image ids at twice the size (another copy of the data) read the cache's pixels with this copy's
    boxes, silently (a mass box was dropped); a cache_dir that holds no cache (misspelt) decoded every DICOM,
    saying nothing."""
    prepare(str(synthetic_root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
    larger = make_synthetic_dataset(tmp_path / "larger", 6, 512, 320)  # the session's set: 6, 256, 160, seed 0
    message = rf"cache_dir: {tmp_path / 'cache'} was prepared from other images than {larger}'s: \w+ is 256x160 there"
    with pytest.raises(DataError, match=rf"{message}, 512x320 in the CSV \(\d+ image\(s\) differ\)"):
        _dm(larger, cache_dir=str(tmp_path / "cache")).setup("test")
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        _dm(synthetic_root, cache_dir=str(tmp_path / "cahce")).setup("test")
    assert f"cache_dir {tmp_path / 'cahce'} holds no `wsod prepare` cache (no manifest.json)" in caplog.text


def test_a_cache_prepared_before_the_csvs_laterality_was_corrected_is_refused(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """The cache keeps each image as its CSV laterality oriented it when prepared: a laterality corrected in the CSV
    since (an external set's, after its laterality warnings) was read as the cache's, the breast seen mirrored as
    before, unsaid; a rerun of `wsod prepare` keeps the images it cached."""
    prepare(str(synthetic_root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    with (root / "finding_annotations.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    image = next(r["image_id"] for r in rows if r["split"] == "test" and r["laterality"] == "L")
    for row in rows:
        row["laterality"] = "R" if row["image_id"] == image else row["laterality"]
    with (root / "finding_annotations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    message = rf"cache_dir: {tmp_path / 'cache'} was prepared with other lateralities than {root}'s CSV gives: "
    with pytest.raises(DataError, match=rf"{message}{image} was cached as L, the CSV says R \(1 image\(s\) differ\)"):
        _dm(root, cache_dir=str(tmp_path / "cache")).setup("test")
    _dm(synthetic_root, cache_dir=str(tmp_path / "cache")).setup("test")  # the CSV it was prepared from


def test_train_shuffle_is_seeded(synthetic_root: Path) -> None:
    ids = []
    for _ in range(2):
        dm = _dm(synthetic_root, augmentation=AugmentationConfig(enabled=False))
        dm.setup("fit")
        ids.append([i for b in dm.train_dataloader() for i in b["image_id"]])
    assert ids[0] == ids[1] and len(ids[0]) == len(set(ids[0]))
    sampler = dm.train_dataloader().sampler
    first = list(sampler)
    sampler.set_epoch(1)  # Lightning's call at each epoch: another order and other draws, the same again if redone
    second = list(sampler)
    assert sorted(i for i, _ in second) == sorted(i for i, _ in first) and second != first
    assert [i for i, _ in second] != [i for i, _ in first] and list(sampler) == second


def test_augmentation_seed_changes_the_draws_not_the_order(synthetic_root: Path) -> None:
    """``augmentation.seed`` was overridden by the sampler's per-sample seeds (from ``data.seed``): seeds 1, 2 and
    None gave the same epochs. It now draws the augmentation; the order stays ``data.seed``'s."""
    epochs = {}
    for seed in (None, 1, 1, 2):
        dm = _dm(synthetic_root, num_workers=2, augmentation=AugmentationConfig(seed=seed))
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        epochs.setdefault(seed, []).append(
            ([i for b in batches for i in b["image_id"]], torch.cat([b["image"] for b in batches]))
        )
    order = epochs[None][0][0]
    assert all(run[0] == order for runs in epochs.values() for run in runs)
    assert torch.equal(epochs[1][0][1], epochs[1][1][1])  # reproducible
    assert not torch.equal(epochs[1][0][1], epochs[2][0][1]) and not torch.equal(epochs[1][0][1], epochs[None][0][1])
    dm = _dm(synthetic_root, num_workers=0, augmentation=AugmentationConfig(seed=dm.seed))  # data.seed's own draws
    dm.setup("fit")
    assert torch.equal(torch.cat([b["image"] for b in dm.train_dataloader()]), epochs[None][0][1])


def test_a_class_given_twice_is_refused_in_python_too(synthetic_root: Path) -> None:
    """``wsod predict`` and Python runs build the DataModule without the CLI's check of heads against classes."""
    with pytest.raises(ValueError, match=r"^data.classes: each class once, found \['Mass'\] more than once in"):
        _dm(synthetic_root, classes=["Mass", "Suspicious Calcification", "Mass"])


def test_missing_data_root_names_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_root: .*nowhere does not exist"):
        _dm(tmp_path / "nowhere").setup("fit")


def test_synthesize_if_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    demo = str(tmp_path / "demo")
    dm = _dm(tmp_path / "demo", synthesize_if_missing=demo, synthetic_studies=2, synthetic_size=(64, 48))
    with caplog.at_level(logging.INFO, logger="wsod_mammo"):
        dm.prepare_data()
    dm.setup("fit")
    assert len(load_records(tmp_path / "demo")) == 8 and len(dm.datasets["train"]) > 0
    assert "SYNTHETIC" in caplog.text


def test_a_mistyped_data_root_is_not_synthesized(tmp_path: Path) -> None:
    dm = _dm(tmp_path / "dmeo", synthesize_if_missing=str(tmp_path / "demo"), synthetic_studies=2)
    dm.prepare_data()
    with pytest.raises(DataError, match=r"data_root: .*dmeo does not exist.*demo"):
        dm.setup("fit")
    assert not (tmp_path / "dmeo").exists() and not (tmp_path / "demo").exists()
    with pytest.raises(ValueError, match="synthesize_if_missing.*mistyped"):
        _dm(tmp_path / "demo", synthesize_if_missing=True)


def test_missing_error_and_skip(synthetic_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dm = _dm(root, selection="all")
    dm.setup("fit")
    total = sum(len(dm.datasets[k]) for k in ("train", "val", "test"))
    victim = next(r for r in load_records(root) if r.is_normal)
    victim.path.unlink()
    with pytest.raises(DataError, match=f"{victim.path}: file not found"):
        _dm(root, selection="all").setup("fit")
    skip = _dm(root, selection="all", missing="skip")
    skip.setup("fit")
    assert sum(len(skip.datasets[k]) for k in ("train", "val", "test")) == total - 1


def test_under_ddp_the_first_process_alone_says_which_images_are_left_out(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every DDP process sets the data up: `missing=skip: leaving out 1 unreadable image(s)` (and a cache_dir that
    holds no cache) was said once per process, as if twice as many images were lost. The other data warnings
    were said by the first process alone already; so are these."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    next(r for r in load_records(root) if r.is_normal).path.unlink()
    said = ("missing=skip: leaving out 1 unreadable image(s)", "holds no `wsod prepare` cache")
    _assert_said_by_the_first_process_alone(caplog, said, root, missing="skip", cache_dir=str(tmp_path / "no_cache"))


def _assert_said_by_the_first_process_alone(
    caplog: pytest.LogCaptureFixture, said: tuple[str, ...], root: Path, **options: Any
) -> None:
    """Set the data of ``root`` up as DDP's first and second processes do: each of ``said`` is in the first's
    warnings and not in the second's."""
    for rank in (0, 1):
        dm = _dm(root, selection="all", **options)
        dm.trainer = SimpleNamespace(is_global_zero=rank == 0, world_size=2)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
            dm.setup("test")
        assert [line in caplog.text for line in said] == [rank == 0] * len(said), rank


def test_under_ddp_the_first_process_alone_says_the_csvs_repeated_rows_and_unused_findings_without_a_box(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every DDP process reads the CSV: its warnings of rows repeating an earlier row and of findings outside the
    run's classes without a box were said once per process; the first alone says them, as the other data warnings."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    csv_path = root / "finding_annotations.csv"
    lines = csv_path.read_text().splitlines()
    fields = next(csv.reader([lines[1]]))
    fields[9], fields[11:15] = "['Suspicious Calcification']", ["40", "20", "40", "20"]  # a point ROI: no area
    with csv_path.open("a", newline="") as handle:
        handle.write(lines[1] + "\n")
        csv.writer(handle).writerow(fields)
    said = ("1 row(s) repeat an earlier row field for field", "1 row(s) of findings outside the classes ['Mass']")
    _assert_said_by_the_first_process_alone(caplog, said, root)


def test_images_named_dcm_without_an_extension_or_as_16_bit_pngs_are_read_where_the_dicom_would_be(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Datasets are shared as ``.dcm`` (``.DCM``) files, extensionless scanner exports, 16-bit PNGs (12-bit values) or
    8-bit JPEGs in VinDr's layout: each is read under its own name, with workers; a PNG of another size than its CSV
    row is refused naming the file and both sizes."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    expected = {}
    for i, dicom in enumerate(sorted(root.glob("images/*/*.dicom"))):
        if i % 3 == 0:
            stored = pydicom.dcmread(dicom).pixel_array.astype(np.uint16)  # 12-bit values, as NYU's sample PNGs
            converted = dicom.with_suffix(".png" if i % 2 else ".jpg")  # or a lossy 8-bit JPEG
            assert cv2.imwrite(str(converted), stored if i % 2 else (stored >> 4).astype(np.uint8))
            dicom.unlink()
            expected[dicom.stem] = converted
        else:
            expected[dicom.stem] = dicom.rename(dicom.with_suffix((".dcm", ".DCM")[i % 2] if i % 3 == 1 else ""))
    reference = _dm(synthetic_root, selection="all")
    reference.setup("fit")
    reference.setup("test")
    data = _dm(root, selection="all", num_workers=2)
    data.setup("fit")
    data.setup("test")
    for split in ("train", "val", "test"):
        assert len(data.datasets[split]) == len(reference.datasets[split]) > 0
    seen = {}
    for loader in (data.train_dataloader(), data.test_dataloader()):
        for batch in loader:
            _check_batch(batch, len(batch["image_id"]))
            seen |= {image_id: meta["path"] for image_id, meta in zip(batch["image_id"], batch["meta"], strict=True)}
    assert seen and all(Path(path) == expected[image_id] for image_id, path in seen.items())
    assert {Path(path).suffix for path in seen.values()} == {".png", ".jpg", ".dcm", ".DCM", ""}
    png = next(path for path in expected.values() if path.suffix == ".png")
    height, width = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).shape
    cv2.imwrite(str(png), np.zeros((height, width - 8), np.uint16))
    record = next(r for r in load_records(root) if r.image_id == png.stem)
    with pytest.raises(ValueError, match=rf"{png}: the PNG/TIFF image is {height}x{width - 8} .* CSV says {height}x"):
        load_input_image(png, record.laterality, SIZE, expected_size=(record.height, record.width))


def test_corrupt_dicom_at_load(synthetic_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dm = _dm(root)
    dm.setup("test")
    record = dm.datasets["test"].records[0]
    record.path.write_bytes(b"not a dicom")
    with pytest.raises(ValueError, match=f"{record.path}: not a DICOM file"):
        dm.datasets["test"][0]
    dm.datasets["test"].missing = "skip"
    assert dm.datasets["test"][0]["image_id"] == dm.datasets["test"].records[1].image_id
    for other in dm.datasets["test"].records:
        other.path.write_bytes(b"not a dicom")
    count = len(dm.datasets["test"])
    with pytest.raises(DataError, match=f"none of the {count} images of this split could be read \\(the first: "):
        dm.datasets["test"][0]


def test_a_workers_warning_reads_like_the_training_process(synthetic_root: Path, tmp_path: Path) -> None:
    """Workers from the fork server do not inherit the ``[wsod]`` terminal handler that ``wsod`` sets up, so a
    skipped image's warning came out bare (Python's last-resort handler); they now set it up themselves. Run in a
    fresh process, as ``wsod``: its workers write to the stderr the fork server was started with."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dm = _dm(root)
    dm.setup("test")
    record = dm.datasets["test"].records[0]
    record.path.write_bytes(b"not a dicom")
    script = (
        "from wsod_mammo.logging_setup import configure_logging\n"
        "from wsod_mammo.data.datamodule import VinDrMammoDataModule\n"
        "configure_logging()\n"
        f"dm = VinDrMammoDataModule({str(root)!r}, input_size={SIZE}, batch_size=2, num_workers=1, missing='skip')\n"
        "dm.setup('test')\n"
        "next(iter(dm.test_dataloader()))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"[wsod] missing=skip: skipping unreadable image {record.image_id}" in run.stderr, run.stderr


def test_normal_max_birads_keeps_views_of_suspicious_breasts_out_of_the_negatives(
    synthetic_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Finding images of breasts assessed BI-RADS 3-5 (the other view of a boxed mass) are counted on the
    terminal and, with normal_max_birads 2, are no negative of any split."""
    with caplog.at_level("INFO", logger="wsod_mammo.data.datamodule"):
        every = _dm(synthetic_root, selection="all")
        every.setup("fit")
    assert re.search(r"train \d+ images \(\d+ with Mass, \d+ normal, [1-9]\d* of them views of a BI-RADS 3-5 breast",
                     caplog.text)  # fmt: skip
    strict = _dm(synthetic_root, selection="all", normal_max_birads=2)
    strict.setup("fit")
    for name in ("train", "val", "test"):
        kept, all_of = strict.datasets[name].records, every.datasets[name].records
        assert all(r.breast_birads <= 2 for r in kept if r.is_normal)
        assert [r for r in kept if not r.is_normal] == [r for r in all_of if not r.is_normal]
    dropped = {r.image_id for n in ("train", "val", "test") for r in every.datasets[n].records} - {
        r.image_id for n in ("train", "val", "test") for r in strict.datasets[n].records}  # fmt: skip
    assert dropped, "the fixture needs No Finding views of suspicious breasts"
    with pytest.raises(ValueError, match="normal_max_birads: expected an integer from 1 to 5, got 0"):
        _dm(synthetic_root, normal_max_birads=0)


def test_normal_max_birads_says_it_leaves_out_no_finding_images_without_an_assessment(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An external test set has no BI-RADS (the README lets the cell be empty): tested with the fit's
    normal_max_birads 2, every one of its No Finding images was left out without a word, and Table I said n/a."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    finding_csv = root / "finding_annotations.csv"
    with open(finding_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["split"] == "test":
            row["breast_birads"] = ""
    with open(finding_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    normals = {r.image_id for r in load_records(root) if r.split == "test" and r.is_normal}
    with caplog.at_level("WARNING", logger="wsod_mammo.data.datamodule"):
        _dm(root, selection="all", normal_max_birads=2).setup("test")
    assert (
        f"normal_max_birads=2 leaves out the No Finding images whose breast_birads is empty (their assessment "
        f"unknown): {len(normals)} of the test split's {len(normals)} (0 kept); normal_max_birads: 5 keeps every No "
        "Finding image as a negative"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wsod_mammo.data.datamodule"):
        kept = _dm(root, selection="all")
        kept.setup("test")
    assert "leaves out" not in caplog.text
    assert normals <= {r.image_id for r in kept.datasets["test"].records}


def test_predict_paths_survive_bad_files(synthetic_root: Path, tmp_path: Path) -> None:
    records = load_records(synthetic_root)
    right = next(r for r in records if r.laterality == "R")
    (tmp_path / "junk.dcm").write_text("not a dicom")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(records[0].path, folder / "a.dicom")
    dm = _dm(synthetic_root, predict_paths=[str(right.path), str(tmp_path / "junk.dcm"), str(folder)])
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    _check_batch(batch, 3)
    ok, bad, extra = batch["meta"]
    assert ok["laterality"] == "R" and ok["error"] is None and ok["geometry"]["flip"]
    assert bad["error"].startswith(f"{tmp_path / 'junk.dcm'}: ") and float(batch["image"][1].abs().max()) == 0
    assert batch["image_id"] == [right.image_id, "junk", "a"] and extra["error"] is None


def test_a_loader_starts_no_worker_without_a_batch_to_load(synthetic_root: Path) -> None:
    """`wsod predict` of two images started the default four workers, two with nothing to load, and on a 2-core
    machine torch warned of too many workers at every run; a loader now starts at most one worker per batch, and
    every image still comes, once, in order."""
    paths = [str(r.path) for r in load_records(synthetic_root)[:3]]
    dm = _dm(synthetic_root, predict_paths=paths, batch_size=2, num_workers=4)
    dm.setup("predict")
    loader = dm.predict_dataloader()
    assert loader.num_workers == 2  # three images in batches of two
    assert [image for batch in loader for image in batch["image_id"]] == [Path(p).stem for p in paths]
    dm.setup("test")
    images = len(dm.datasets["test"])
    assert images >= 4 * 2 and dm.test_dataloader().num_workers == 4  # as many batches as workers: all of them
    one = _dm(synthetic_root, batch_size=images, num_workers=4)  # the whole test split in one batch
    one.setup("test")
    assert one.test_dataloader().num_workers == 1


@pytest.mark.parametrize(("num_workers", "advised"), [(4, False), (0, True)])
def test_lightning_s_advice_for_more_workers_is_dropped_where_one_batch_has_one(
    synthetic_root: Path, num_workers: int, advised: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wsod predict` of a few images on a 16-core machine started one worker (one batch to load) and Lightning
    advised "Consider increasing the value of the `num_workers` argument` to `num_workers=15`": more would idle.
    Asked for none (0), the advice stays."""
    import lightning.fabric.utilities.data as fabric_data
    from lightning.pytorch.trainer.connectors.data_connector import _worker_check

    monkeypatch.setattr(fabric_data, "_num_cpus_available", lambda: 16)
    paths = [str(r.path) for r in load_records(synthetic_root)[:2]]
    dm = _dm(synthetic_root, predict_paths=paths, batch_size=2, num_workers=num_workers)
    dm.setup("predict")
    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        loader = dm.predict_dataloader()
        _worker_check(SimpleNamespace(num_devices=1, reload_dataloaders_every_n_epochs=0), loader, "predict_dataloader")
    assert loader.num_workers == min(num_workers, 1)
    assert any("does not have many workers" in str(w.message) for w in caught) == advised


def test_predict_folders_follow_links_to_folders_once_and_keep_broken_links(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """A folder holding a link to another folder (data trees on clusters) lost that folder's images, and a broken
    link was dropped, both without a word; a link back up must not loop."""
    source = load_records(synthetic_root)[0].path
    elsewhere, scans = tmp_path / "elsewhere", tmp_path / "scans"
    elsewhere.mkdir()
    (scans / "sub").mkdir(parents=True)
    shutil.copy(source, elsewhere / "linked.dicom")
    shutil.copy(source, scans / "sub" / "own.dicom")
    (scans / "sub" / "other_disk").symlink_to(elsewhere, target_is_directory=True)
    (scans / "sub" / "up").symlink_to(scans, target_is_directory=True)  # a loop
    (scans / "gone.dcm").symlink_to(tmp_path / "deleted.dcm")
    names = [p.relative_to(scans).as_posix() for p in expand_predict_paths([str(scans)])]
    assert names == ["gone.dcm", "sub/other_disk/linked.dicom", "sub/own.dicom"]
    dm = _dm(synthetic_root, predict_paths=[str(scans)], batch_size=3)
    dm.setup("predict")
    errors = {Path(m["path"]).name: m["error"] for m in next(iter(dm.predict_dataloader()))["meta"]}
    assert errors["linked.dicom"] is None and "gone.dcm: file not found" in errors["gone.dcm"]


def test_a_folder_predict_cannot_read_gets_a_row_saying_so(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subfolder it may not list (another group's, a failing disk) was skipped by the folder walk without a word:
    its images were missing from the run's outputs as if there were none; given itself it was "a folder with no
    files in it". Denied here as it is to a user without the permission (the tests may run as root)."""
    source = load_records(synthetic_root)[0].path
    scans = tmp_path / "scans"
    (scans / "locked").mkdir(parents=True)
    shutil.copy(source, scans / "own.dicom")
    shutil.copy(source, scans / "locked" / "hidden.dicom")
    listing = os.scandir

    def denied(path: Any = ".") -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", denied)
    names = [p.relative_to(scans).as_posix() for p in expand_predict_paths([str(scans)])]
    assert names == ["locked", "own.dicom"]
    dm = _dm(synthetic_root, predict_paths=[str(scans), str(scans / "locked")], batch_size=3)
    dm.setup("predict")
    errors = [(Path(m["path"]).name, m["error"]) for m in next(iter(dm.predict_dataloader()))["meta"]]
    said = f"{scans / 'locked'}: a folder that cannot be read (Permission denied): its files are left out"
    assert errors == [("locked", said), ("own.dicom", None), ("locked", said)]


def test_predict_rows_of_a_pipe_a_socket_a_device_and_a_link_loop_say_what_each_is(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Each was "file not found" in its row, though the folder lists it (and a pipe or a device must never be read:
    it would block or never end)."""
    import socket

    scans = tmp_path / "scans"
    scans.mkdir()
    os.mkfifo(scans / "pipe.dcm")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(scans / "sock"))
        (scans / "zero.dcm").symlink_to("/dev/zero")
        (scans / "loop_a").symlink_to(scans / "loop_b")
        (scans / "loop_b").symlink_to(scans / "loop_a")
        dm = _dm(synthetic_root, predict_paths=[str(scans)], batch_size=5)
        dm.setup("predict")
        errors = {Path(m["path"]).name: m["error"] for m in next(iter(dm.predict_dataloader()))["meta"]}
    assert errors["pipe.dcm"].endswith("pipe.dcm: a named pipe (FIFO), not an image file")
    assert errors["sock"].endswith("sock: a socket, not an image file")
    assert errors["zero.dcm"].endswith("zero.dcm: a character device, not an image file")
    for name in ("loop_a", "loop_b"):
        assert errors[name].endswith(f"{name}: a symbolic link that loops (too many levels of symbolic links), no file")


def test_predict_folder_mixing_dicoms_without_extension_images_text_and_empty_folders(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """DICOMs by content (no extension too), PNG 8/16-bit (12-bit values), TIFF, PNG and TIFF without an extension (by
    signature); the rest get a row with a reason."""
    records = load_records(synthetic_root)
    left = next(r for r in records if r.laterality == "L")
    folder = tmp_path / "scans"
    (tmp_path / "empty").mkdir()
    folder.mkdir()
    shutil.copy(left.path, folder / "1.2.840.113619.2")  # scanner export: no extension
    shutil.copy(left.path, folder / "b.dcm")
    image, _ = read_dicom(left.path)
    flipped = np.ascontiguousarray(image[:, ::-1])  # a right breast: lies against the right edge
    cv2.imwrite(str(folder / "c.png"), np.round(flipped * 4095).astype(np.uint16))  # 12-bit values, 16-bit file
    cv2.imwrite(str(folder / "d.png"), np.round(image * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "e.tiff"), np.round(image * 65535).astype(np.uint16))
    shutil.copy(folder / "d.png", folder / "f")  # an export that dropped the extension
    shutil.copy(folder / "e.tiff", folder / "g")
    (folder / "notes.txt").write_text("not an image")
    dm = _dm(synthetic_root, predict_paths=[str(folder), str(tmp_path / "empty")], batch_size=10)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    meta = {Path(m["path"]).name: m for m in batch["meta"]}
    assert sorted(meta) == ["1.2.840.113619.2", "b.dcm", "c.png", "d.png", "e.tiff", "empty", "f", "g", "notes.txt"]
    assert "a folder with no files" in meta["empty"]["error"] and "neither a DICOM" in meta["notes.txt"]["error"]
    assert meta["1.2.840.113619.2"]["laterality_source"] == "dicom" and meta["b.dcm"]["error"] is None
    assert (meta["c.png"]["laterality"], meta["c.png"]["laterality_source"]) == ("R", "inferred")
    assert [meta[n]["laterality"] for n in ("d.png", "e.tiff")] == ["L", "L"]
    images = dict(zip([Path(m["path"]).name for m in batch["meta"]], batch["image"], strict=True))
    assert [meta[n]["error"] for n in ("f", "g")] == [None, None]
    for name in ("b.dcm", "d.png", "e.tiff", "c.png", "f", "g"):  # the same picture, whatever the file type
        assert torch.allclose(images[name], images["1.2.840.113619.2"], atol=0.05), name
    # the same frame; a PNG has no pixel spacing, a DICOM's predictions carry its own (mm sizes of their boxes)
    assert meta["c.png"]["geometry"] == meta["b.dcm"]["geometry"] | {"flip": True, "spacing_mm": None}
    assert meta["b.dcm"]["geometry"]["spacing_mm"] is not None
    given = _dm(synthetic_root, predict_paths=[str(folder / "c.png")], predict_laterality="L")
    given.setup("predict")
    assert given.datasets["predict"][0]["meta"]["laterality_source"] == "given"


def test_predict_leaves_the_operating_systems_folder_metadata_out_of_a_folder_and_says_so(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder copied to a USB disk from a Mac holds a ._<name> AppleDouble file beside every image, and Windows and
    macOS leave Thumbs.db, desktop.ini and .DS_Store: `wsod predict` of it gave each a row of an unreadable image
    ("predictions for 4 images (2 unreadable)"). They are left out of folders now, counted in one line; a ._ file
    that is an image, and a metadata file named itself, are still read."""
    source = load_records(synthetic_root)[0].path
    folder = tmp_path / "usb"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(source, folder / "scan.dcm")
    ramp = np.arange(64 * 40, dtype=np.uint16).reshape(64, 40) * 20
    cv2.imwrite(str(folder / "sub" / "._kept.png"), ramp)  # an image, whatever its name
    (folder / "._scan.dcm").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "sub" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64))
    (folder / "sub" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (tmp_path / "nothing" / "else").mkdir(parents=True)  # a folder of metadata alone is a row saying so
    (tmp_path / "nothing" / "else" / "THUMBS.DB").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64))
    with caplog.at_level(logging.INFO, logger="wsod_mammo.data.datamodule"):
        dm = _dm(synthetic_root, predict_paths=[str(folder), str(folder / ".DS_Store"), str(tmp_path / "nothing")])
        dm.setup("predict")
    samples = [dm.datasets["predict"][i] for i in range(len(dm.datasets["predict"]))]
    assert [(s["image_id"], s["meta"]["error"] is None) for s in samples] == [
        ("scan", True), ("._kept", True), (".DS_Store", False), ("nothing", False)
    ]  # fmt: skip
    assert samples[-1]["meta"]["error"] == (f"{tmp_path / 'nothing'}: a folder with no files in it but folder "
                                            "metadata (.DS_Store, DICOMDIR, ...)")  # fmt: skip
    assert "left out 5 file(s) of folder metadata found in the input folders, never images" in caplog.text
    assert f"the first {folder / '.DS_Store'}" in caplog.text


def test_predict_leaves_the_operating_systems_trash_and_index_folders_out_of_a_folder(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A USB disk used on a Mac holds .Trashes (a view deleted from the exam), .Spotlight-V100 and .fseventsd; on
    Windows $RECYCLE.BIN and System Volume Information: the deleted view was predicted (and joined its breast) and
    each index file was a row of an unreadable image. Their files are folder metadata now; such a folder given
    itself is read."""
    source = load_records(synthetic_root)[0].path
    usb = tmp_path / "usb"
    for folder in ("exam", ".Trashes/501", "$RECYCLE.BIN/S-1-5-21", ".Trash-1000/files", ".Spotlight-V100/Store-V2",
                   ".fseventsd", "System Volume Information"):  # fmt: skip
        (usb / folder).mkdir(parents=True)
    shutil.copy(source, usb / "exam" / "IM-0001.dcm")
    shutil.copy(source, usb / ".Trashes" / "501" / "IM-0002.dcm")
    shutil.copy(source, usb / "$RECYCLE.BIN" / "S-1-5-21" / "$RAB12CD.dcm")
    shutil.copy(source, usb / ".Trash-1000" / "files" / "IM-0003.dcm")
    (usb / ".Spotlight-V100" / "Store-V2" / "store.db").write_bytes(b"8tsd" + bytes(64))
    (usb / ".fseventsd" / "fseventsd-uuid").write_text("5B1A\n")
    (usb / "System Volume Information" / "IndexerVolumeGuid").write_bytes(bytes(76))
    with caplog.at_level(logging.INFO, logger="wsod_mammo.data.datamodule"):
        dm = _dm(synthetic_root, predict_paths=[str(usb), str(usb / ".Trashes")])
        dm.setup("predict")
    samples = [dm.datasets["predict"][i] for i in range(len(dm.datasets["predict"]))]
    assert [(s["meta"]["path"], s["meta"]["error"]) for s in samples] == [
        (str(usb / "exam" / "IM-0001.dcm"), None), (str(usb / ".Trashes" / "501" / "IM-0002.dcm"), None)
    ]  # fmt: skip
    assert "left out 6 file(s) of folder metadata found in the input folders, never images" in caplog.text


def test_predict_reads_a_cds_dicomdir_as_the_images_it_lists(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study from a hospital comes on a CD: a DICOMDIR and the images it lists, in folders of numbered files without
    extensions. `wsod predict` of the DICOMDIR gave one row, 'no pixel data'; it now predicts the images it lists
    (found in any case, as Linux mounts a CD), and of the CD's folder those images, the DICOMDIR left out with the
    folder metadata."""
    from pydicom.fileset import FileSet

    cd = FileSet()  # written as media tools write a CD: pydicom's FileSet, the synthetic images given proper UIDs
    for record in load_records(synthetic_root)[:2]:
        ds = pydicom.dcmread(record.path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        ds.update({"PatientID": "P1", "PatientName": "P1", "StudyDate": "20200101", "StudyTime": "000000",
                   "StudyID": "1", "AccessionNumber": "", "SeriesNumber": 1, "InstanceNumber": 1})  # fmt: skip
        cd.add(ds)
    cd.write(tmp_path / "cd")
    # the same CD as Linux mounts ISO 9660: every name in lowercase, the DICOMDIR's references still in capitals
    shutil.copytree(tmp_path / "cd", tmp_path / "mounted")
    for entry in sorted((tmp_path / "mounted").rglob("*"), key=lambda e: -len(e.parts)):  # deepest first
        entry.rename(entry.with_name(entry.name.lower()) if entry.name != "DICOMDIR" else entry)

    def images(medium: Path) -> list[str]:
        return sorted(str(p) for p in medium.rglob("*") if p.is_file() and p.name != "DICOMDIR")

    assert len(images(tmp_path / "cd")) == 2 and all("." not in Path(p).name for p in images(tmp_path / "cd"))
    for given in (tmp_path / "cd" / "DICOMDIR", tmp_path / "cd", tmp_path / "mounted" / "DICOMDIR"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wsod_mammo.data.datamodule"):
            dm = _dm(synthetic_root, predict_paths=[str(given)])
            dm.setup("predict")
        samples = [dm.datasets["predict"][i] for i in range(len(dm.datasets["predict"]))]
        assert sorted(s["meta"]["path"] for s in samples) == images(given if given.is_dir() else given.parent), given
        assert all(s["meta"]["error"] is None and s["meta"]["laterality_source"] == "dicom" for s in samples)
        assert ("left out 1 file(s) of folder metadata" in caplog.text) == (given.name == "cd")


def test_collate_keeps_boxes_per_image() -> None:
    samples = [
        {"image": torch.zeros(1, 4, 2), "label": torch.tensor([float(i)]), "boxes": torch.zeros(i, 4),
         "box_labels": torch.zeros(i, dtype=torch.int64), "image_id": str(i), "meta": {}}
        for i in range(3)
    ]  # fmt: skip
    batch = collate_samples(samples)
    assert batch["image"].shape == (3, 1, 4, 2) and [len(b) for b in batch["boxes"]] == [0, 1, 2]


def test_a_workers_small_tensors_cross_the_queue_by_value() -> None:
    """In a worker, labels, theta and boxes travel inside the pickle the DataLoader's queue sends (each tensor in
    shared memory costs the receiving thread a round trip to the worker for its file descriptor: 5-10 ms a batch
    of six, bench_loader.py's hand-over row) and arrive as the tensors the main process would have collated; the image
    still goes through shared memory."""
    samples = [
        {"image": torch.full((1, 4, 2), i, dtype=torch.uint16), "label": torch.tensor([float(i % 2)]),
         "boxes": torch.rand(i, 4), "box_labels": torch.arange(i), "theta": torch.rand(2, 5), "image_id": str(i),
         "meta": {"geometry": {"flip": bool(i)}}}
        for i in range(3)
    ]  # fmt: skip
    expected = collate_samples(samples)  # as in a process without workers: nothing is pickled
    sent = collate_samples(samples, by_value=True)
    received = pickle.loads(ForkingPickler.dumps(sent))  # the worker queue's pickler
    assert sent["image"].is_shared(), "the image goes through shared memory"
    for key in ("label", "theta", "boxes", "box_labels"):
        for a, b in zip(*(v if isinstance(v, list) else [v] for v in (received[key], expected[key])), strict=True):
            assert type(a) is torch.Tensor and a.dtype == b.dtype and torch.equal(a, b), key
    small = [s[k] for s in samples for k in ("label", "boxes", "box_labels", "theta")]
    assert not any(t.is_shared() for t in small), "a small tensor was moved into shared memory"
    assert received["image_id"] == expected["image_id"] and received["meta"] == expected["meta"]


def test_a_tilde_in_the_data_paths_is_the_home_folder(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """YAML (`data_root: ~/vindr`) and `--data.data_root=~/vindr` leave `~` to the program: it was read as a folder
    `~` in the working directory, "data_root: ~/vindr does not exist" of a dataset that does."""
    import shutil

    shutil.copytree(synthetic_root, tmp_path / "vindr")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "vindr")  # no `~` folder here either
    data = VinDrMammoDataModule("~/vindr", cache_dir="~/cache", synthesize_if_missing="~/vindr",
                                predict_paths="~/scans", input_size=(256, 192), num_workers=0)  # fmt: skip
    assert (data.data_root, data.cache_dir) == (str(tmp_path / "vindr"), str(tmp_path / "cache"))
    assert data.predict_paths == [str(tmp_path / "scans")] and data.synthesize_if_missing == str(tmp_path / "vindr")
    data.setup("test")
    assert len(data.test_dataloader().dataset) > 0


def test_an_empty_split_is_refused_with_its_name(synthetic_root, tmp_path) -> None:
    import shutil

    root = tmp_path / "no_test"
    shutil.copytree(synthetic_root, root)
    for name in ("finding_annotations.csv", "breast-level_annotations.csv"):
        path = root / name
        path.write_text(path.read_text().replace(",test\n", ",training\n"))
    data = VinDrMammoDataModule(str(root), selection="all", input_size=(256, 192), num_workers=0)
    data.setup("test")
    with pytest.raises(ValueError, match="the test split is empty: data_root .*no_test"):
        data.test_dataloader()


def test_a_box_without_area_of_another_category_leaves_the_data_usable(synthetic_root, tmp_path) -> None:
    """The DataModule reads the CSV for its classes: a point ROI of a calcification (xmin == xmax) stopped a Mass
    run; it still stops a run of the calcifications."""
    import shutil

    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    path = root / "finding_annotations.csv"
    lines = path.read_text().splitlines()
    row = next(line.split(",") for line in lines[1:] if "No Finding" not in line and ",test" in line)
    header = lines[0].split(",")
    row = row[: header.index("finding_categories")] + ["\"['Suspicious Calcification']\"", "BI-RADS 4"]
    row += ["40", "20", "40", "20", "test"]
    path.write_text("\n".join([*lines, ",".join(row)]) + "\n")
    data = _dm(root, selection="all")
    data.setup("test")
    assert data.test_dataloader() is not None
    with pytest.raises(ValueError, match=rf"line {len(lines) + 1}: empty box: "):
        _dm(root, selection="all", classes=["Suspicious Calcification"]).setup("test")


def test_device_standardization_batches_match_worker_batches(synthetic_root: Path, tmp_path: Path) -> None:
    prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    augmentation = AugmentationConfig(hflip_p=0.5, crop_p=1.0, affine_p=1.0)
    batches = {}
    for where in ("worker", "device"):
        dm = _dm(synthetic_root, cache_dir=str(tmp_path), augmentation=augmentation, standardize_on=where)
        dm.setup("fit")
        batches[where] = [dm.on_after_batch_transfer(b, 0) for b in (next(iter(dm.train_dataloader())),
                                                                    next(iter(dm.val_dataloader())))]  # fmt: skip
        raw = next(iter(dm.train_dataloader()))["image"]
        assert raw.dtype == (torch.float32 if where == "worker" else torch.uint16)
    for worker, device in zip(batches["worker"], batches["device"], strict=True):
        _check_batch(device, len(device["image_id"]))
        assert worker["image_id"] == device["image_id"]
        torch.testing.assert_close(device["image"], worker["image"], atol=1e-4, rtol=1e-4)
        for a, b in zip(worker["boxes"], device["boxes"], strict=True):
            assert torch.equal(a, b)


def test_the_transfer_moves_every_tensor_lightning_would_and_leaves_meta_alone(synthetic_root: Path) -> None:
    """The DataModule's transfer skips the walk through meta and image_id (no tensors there); every tensor Lightning's
    own move would move (top level, per-image boxes and box labels, padding-free or not) still reaches the device.
    The "meta" device stands in for a GPU: a tensor left behind stays on the CPU."""
    dm = _dm(synthetic_root, standardize_on="device", augment_on="device", eval_batch_size=2)
    dm.setup("fit")
    meta = torch.device("meta")
    for batch in (next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))):
        moved, expected = dm.transfer_batch_to_device(batch, meta, 0), move_data_to_device(batch, meta)
        assert moved.keys() == expected.keys() == batch.keys()
        tensors = [leaf for key in batch for leaf in (moved[key] if isinstance(moved[key], list) else [moved[key]])
                   if isinstance(leaf, torch.Tensor)]  # fmt: skip
        assert len(tensors) == 2 + 2 * len(batch["image_id"]) + ("theta" in batch)
        assert all(t.device == meta for t in tensors), "a tensor stayed on the CPU"
        for key in ("image", "label"):
            assert moved[key].shape == expected[key].shape and moved[key].dtype == expected[key].dtype
        assert moved["meta"] is batch["meta"] and moved["image_id"] is batch["image_id"]
    assert dm.transfer_batch_to_device([torch.zeros(1)], meta, 0)[0].device == meta  # not a dict: Lightning's walk


def test_unknown_standardize_on_names_the_option(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match=r"standardize_on: expected 'worker' or 'device', got 'gpu'"):
        _dm(synthetic_root, standardize_on="gpu")


def test_size_mismatch_with_csv_is_an_error(synthetic_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dm = _dm(root)
    dm.setup("test")
    record = dm.datasets["test"].records[0]
    ds = pydicom.dcmread(record.path)
    pixels = np.ascontiguousarray(ds.pixel_array[:, :-16])
    ds.Columns, ds.PixelData = pixels.shape[1], pixels.tobytes()
    ds.save_as(record.path)
    expected = f"{record.path}: the DICOM is {record.height}x{record.width - 16} .* CSV says {record.height}x"
    with pytest.raises(ValueError, match=expected):
        dm.datasets["test"][0]


def test_resize_fit_pads_and_boxes_still_map_back(synthetic_root: Path, tmp_path: Path) -> None:
    """`resize: fit` keeps the aspect (one scale), pads with background; cache and DICOM agree; CSV boxes return."""
    prepare(str(synthetic_root), str(tmp_path / "cache"), input_size=(128, 128), workers=0, resize="fit")
    fit = _dm(synthetic_root, input_size=(128, 128), resize="fit")
    fit.setup("test")
    cached = _dm(synthetic_root, input_size=(128, 128), resize="fit", cache_dir=str(tmp_path / "cache"))
    cached.setup("test")
    truth = {r.image_id: r for r in load_records(synthetic_root)}
    for i in range(4):
        sample, from_cache = fit.datasets["test"][i], cached.datasets["test"][i]
        geometry = sample["meta"]["geometry"]
        assert geometry["resize"] == "fit" and geometry["scale_x"] == pytest.approx(geometry["scale_y"], rel=0.02)
        assert torch.allclose(sample["image"], from_cache["image"], atol=1e-3)
        expected, _ = truth[sample["image_id"]].boxes(["Mass"])
        back = boxes_to_original(sample["boxes"].double(), geometry)
        assert np.allclose(back.numpy(), np.clip(expected, 0, [160, 256, 160, 256]), atol=1e-3)
    with pytest.raises(ValueError, match="prepared with resize=fit, the data asks for resize=stretch"):
        _dm(synthetic_root, input_size=(128, 128), cache_dir=str(tmp_path / "cache")).setup("test")
    uncropped = _dm(
        synthetic_root, input_size=(128, 128), resize="fit", crop_breast=False, cache_dir=str(tmp_path / "cache")
    )
    with pytest.raises(ValueError, match="prepared with crop_breast=True, the data asks for crop_breast=False"):
        uncropped.setup("test")


def _frame_in_original(geometry: dict, width: int) -> tuple[float, float, float, float]:
    """The original pixels a ``native`` frame covers (scale 1: its window plus its padding), unflipped."""
    x0, y0, x1, y1 = geometry["crop"]
    top = y0 - (geometry["out_height"] - (y1 - y0)) // 2
    left, right = x0, x0 + geometry["out_width"]
    if geometry["flip"]:
        left, right = width - right, width - left
    return left, top, right, top + geometry["out_height"]


@pytest.mark.parametrize("input_size", [(288, 192), (128, 96)])  # larger than every crop; smaller (cut)
def test_resize_native_keeps_scale_1_cache_and_dicom_agree_boxes_map_back(
    synthetic_root: Path, tmp_path: Path, input_size: tuple[int, int]
) -> None:
    """`resize: native` copies the crop at scale 1 (a window of it where it is larger than the frame); the cache holds
    the frame the DICOM gives; CSV boxes come back in DICOM pixels, cut where the frame cuts them."""
    manifest = prepare(str(synthetic_root), str(tmp_path / "cache"), input_size=input_size, workers=0, resize="native")
    assert manifest["resize"] == "native"
    native = _dm(synthetic_root, input_size=input_size, resize="native")
    native.setup("test")
    cached = _dm(synthetic_root, input_size=input_size, resize="native", cache_dir=str(tmp_path / "cache"))
    cached.setup("test")
    truth = {r.image_id: r for r in load_records(synthetic_root)}
    with_boxes = 0
    for i in range(len(native.datasets["test"])):
        sample, from_cache = native.datasets["test"][i], cached.datasets["test"][i]
        geometry = sample["meta"]["geometry"]
        assert geometry["resize"] == "native" and geometry["scale_x"] == geometry["scale_y"] == 1.0
        assert from_cache["meta"]["geometry"] == geometry
        assert torch.allclose(sample["image"], from_cache["image"], atol=1e-3)
        record = truth[sample["image_id"]]
        expected, _ = record.boxes(["Mass"])
        left, top, right, bottom = _frame_in_original(geometry, record.width)
        expected = np.clip(expected, [left, top, left, top], [right, bottom, right, bottom])
        expected = expected[(expected[:, 2] - expected[:, 0] >= 1) & (expected[:, 3] - expected[:, 1] >= 1)]
        back = boxes_to_original(sample["boxes"].double(), geometry)
        assert back.shape == expected.shape and np.allclose(back.numpy(), expected, atol=1e-9)
        with_boxes += len(back) > 0
    assert with_boxes > 0
    with pytest.raises(ValueError, match="prepared with resize=native, the data asks for resize=fit"):
        _dm(synthetic_root, input_size=input_size, resize="fit", cache_dir=str(tmp_path / "cache")).setup("test")


def test_every_resize_mode_is_an_option_of_the_datamodule_and_of_prepare() -> None:
    """``data.resize`` and ``wsod prepare --resize`` are checked against these types by the CLIs."""
    for function in (VinDrMammoDataModule.__init__, prepare):
        assert get_args(get_type_hints(function)["resize"]) == RESIZE_MODES == ("stretch", "fit", "native")


def _reference(record, mask_expected: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The input-frame image and padding mask of ``record`` decoded on the fly."""
    image, _, _, padding = load_input_image(record.path, record.laterality, SIZE)
    if mask_expected is not None:
        assert (padding is not None) == mask_expected
    return image, padding


def _check_padding_left_out(batch: dict, records: dict, atol: float = 0.0) -> int:
    """Each image with padding: mean 0 / std 1 over its non-padding pixels and equal to ``standardize`` with its
    mask; each image without: equal to ``standardize`` of the image (``atol`` 0: bit for bit). Returns the number
    of images with padding."""
    padded = 0
    for image, image_id in zip(batch["image"], batch["image_id"], strict=True):
        decoded, padding = _reference(records[image_id])
        if padding is None and atol == 0:
            assert torch.equal(image, standardize(decoded)), image_id
        if padding is None:
            torch.testing.assert_close(image, standardize(decoded), atol=atol, rtol=0)
            continue
        padded += 1
        kept = image[0][torch.from_numpy(~padding)]
        assert abs(float(kept.mean())) < 1e-4 and abs(float(kept.std()) - 1) < 1e-3, image_id
        torch.testing.assert_close(image, standardize(decoded, padding), atol=max(atol, 1e-5), rtol=0)
    return padded


def test_padding_is_left_out_of_standardization_on_the_fly_and_from_the_cache(padded_root: Path, tmp_path: Path):
    records = {r.image_id: r for r in load_records(padded_root)}
    manifest = prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    for image_id, entry in manifest["images"].items():  # a mask beside each image with padding in its crop, only
        _, padding = _reference(records[image_id])
        assert ("padding" in entry) == (padding is not None), image_id
        if padding is not None:
            np.testing.assert_array_equal(read_padding(tmp_path / entry["padding"]), padding)
    assert sum("padding" in e for e in manifest["images"].values()) >= 8
    for where in ("worker", "device"):
        for cache in (None, str(tmp_path)):
            dm = _dm(padded_root, cache_dir=cache, standardize_on=where, eval_batch_size=8, num_workers=2)
            dm.setup("test")
            batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
            assert "padding" not in batch
            if cache is None and where == "worker":
                assert _check_padding_left_out(batch, records) >= 3 and len(batch["image_id"]) == 8
            else:  # the cache's 16-bit quantization; a float32 computation on the device
                assert _check_padding_left_out(batch, records, atol=2e-3) >= 3
            if cache is not None and where == "worker":  # without padding, the cache path is unchanged bit for bit
                for image, image_id in zip(batch["image"], batch["image_id"], strict=True):
                    if "padding" not in manifest["images"][image_id]:
                        raw = read_cached(tmp_path / manifest["images"][image_id]["file"], raw=True)
                        assert torch.equal(image, standardize(raw)), image_id


def test_old_cache_without_masks_still_loads(padded_root: Path, tmp_path: Path) -> None:
    manifest = prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0)
    for entry in manifest["images"].values():
        entry.pop("padding", None)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    dm = _dm(padded_root, cache_dir=str(tmp_path), standardize_on="device", eval_batch_size=8)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert "padding" not in batch
    for image, image_id in zip(batch["image"], batch["image_id"], strict=True):
        cached = read_cached(tmp_path / manifest["images"][image_id]["file"], raw=True)
        assert torch.equal(image[0], torch.from_numpy(cached.astype(np.int32)).to(torch.uint16))


@pytest.mark.parametrize("augment_on", ["worker", "device"])
def test_augmented_training_batches_leave_padding_out(padded_root: Path, tmp_path: Path, augment_on: str) -> None:
    """Worker (albumentations) or device (one warp) augmentation: the mask is warped with each image and the
    device standardization uses it; the worker standardization gives the same batches."""
    prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    augmentation = AugmentationConfig(hflip_p=0.5, crop_p=1.0, affine_p=1.0, scale_min=0.8, scale_max=1.2)
    dm = _dm(padded_root, cache_dir=str(tmp_path), augmentation=augmentation, standardize_on="device",
             augment_on=augment_on, batch_size=8)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["padding"].dtype == torch.bool and batch["padding"].shape == batch["image"].shape
    with_padding = batch["padding"].flatten(1).any(1)
    assert 0 < int(with_padding.sum()) < len(with_padding)  # a batch mixing images with and without padding
    mask = warp_padding(batch["padding"], batch["theta"]) if augment_on == "device" else batch["padding"]
    out = dm.on_after_batch_transfer(batch, 0)["image"]
    for image, padding in zip(out, mask, strict=True):
        kept = image[~padding]
        assert abs(float(kept.mean())) < 1e-4 and abs(float(kept.std()) - 1) < 1e-3
    if augment_on == "worker":
        dm = _dm(padded_root, cache_dir=str(tmp_path), augmentation=augmentation, batch_size=8)
        dm.setup("fit")
        torch.testing.assert_close(next(iter(dm.train_dataloader()))["image"], out, atol=1e-4, rtol=1e-4)


def test_predict_paths_leave_padding_out(padded_root: Path) -> None:
    records = {r.path.stem: r for r in load_records(padded_root)}
    paths = [str(r.path) for r in records.values() if r.split == "test"]
    for where in ("worker", "device"):
        dm = _dm(padded_root, predict_paths=paths, standardize_on=where, eval_batch_size=8)
        dm.setup("predict")
        batch = dm.on_after_batch_transfer(next(iter(dm.predict_dataloader())), 0)
        assert _check_padding_left_out(batch, records, atol=0.0 if where == "worker" else 2e-3) >= 3


def test_a_cached_image_of_another_size_is_an_error_naming_its_file(synthetic_root: Path, tmp_path: Path) -> None:
    """A cache whose manifest names the data's size but whose image files are of another (an older `wsod prepare`
    mixed them on a rerun) fed the model images of the wrong size without a word."""
    manifest = prepare(str(synthetic_root), str(tmp_path), input_size=(64, 40), workers=0, cache_format="npy")
    manifest["input_size"] = list(SIZE)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    dm = _dm(synthetic_root, cache_dir=str(tmp_path))
    dm.setup("test")
    with pytest.raises(ValueError, match=r"\.npy: a cached image of 64x40, the data's input_size is 128x80; prepare"):
        dm.datasets["test"][0]


def test_a_cached_file_gone_is_named_at_setup_and_skip_leaves_it_out(synthetic_root: Path, tmp_path: Path) -> None:
    """The manifest lists an image whose cached file was deleted: it failed at its batch as 'expected a 2-D 16-bit
    cached image, found None', not as the missing file it is, and missing: skip did not leave it out at setup."""
    manifest = prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="png")
    image_id, entry = next(iter(manifest["images"].items()))
    (tmp_path / entry["file"]).unlink()
    with pytest.raises(DataError, match=f"{tmp_path / entry['file']}: file not found \\(the cache's manifest lists"):
        _dm(synthetic_root, cache_dir=str(tmp_path), selection="all").setup("fit")
    skip = _dm(synthetic_root, cache_dir=str(tmp_path), selection="all", missing="skip")
    skip.setup("fit")
    kept = {r.image_id for name in ("train", "val", "test") for r in skip.datasets[name].records}
    assert image_id not in kept and len(kept) == len(manifest["images"]) - 1


def test_a_cached_npy_cut_short_is_named_at_setup_with_the_rerun_that_mends_it(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """A power cut soon after `wsod prepare` (renames are not fsynced) can leave an image's .npy empty or cut: the fit
    stopped on it only when its batch came, an epoch in, saying to leave it out rather than to run prepare again."""
    manifest = prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    image_id, entry = next(iter(manifest["images"].items()))
    file = tmp_path / entry["file"]
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(DataError, match=f"{file}: cut short \\(1000 bytes, .*`wsod prepare` into {tmp_path} again"):
        _dm(synthetic_root, cache_dir=str(tmp_path), selection="all").setup("fit")
    skip = _dm(synthetic_root, cache_dir=str(tmp_path), selection="all", missing="skip")
    skip.setup("fit")
    kept = {r.image_id for name in ("train", "val", "test") for r in skip.datasets[name].records}
    assert image_id not in kept and len(kept) == len(manifest["images"]) - 1


def test_a_study_lost_with_missing_skip_moves_no_other_study_between_train_and_val(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """The validation studies are drawn from the listed studies, not from those found on disk: a study whose files
    are all gone (``missing: skip``) must not reshuffle which of the others validate (the checkpoint and the
    detection thresholds are picked there)."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    full = _dm(root, selection="all", val_fraction=0.4)
    full.setup("fit")
    studies = {name: {r.study_id for r in full.datasets[name].records} for name in ("train", "val")}
    lost = sorted(studies["train"])[0]
    for record in load_records(root):
        if record.study_id == lost:
            record.path.unlink(missing_ok=True)
    skip = _dm(root, selection="all", val_fraction=0.4, missing="skip")
    skip.setup("fit")
    assert {r.study_id for r in skip.datasets["val"].records} == studies["val"]
    assert {r.study_id for r in skip.datasets["train"].records} == studies["train"] - {lost}


def test_fork_server_workers_end_when_the_training_process_is_killed(synthetic_root: Path) -> None:
    """A fork-server worker's parent is the server, which its workers keep alive: after a ``kill -9`` of the
    training process (or the OOM killer) its workers and the server stayed, ~380 MB each, for good."""
    script = (
        "from wsod_mammo.data.datamodule import VinDrMammoDataModule\n"
        f"dm = VinDrMammoDataModule({str(synthetic_root)!r}, input_size={SIZE}, batch_size=2, num_workers=2,\n"
        "                           persistent_workers=True)\n"
        "dm.setup('test')\n"
        "batches = iter(dm.test_dataloader())\n"
        "next(batches)\n"
        "print(*[w.pid for w in batches._workers], flush=True)\n"
        "import time; time.sleep(300)\n"
    )
    trainer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in trainer.stdout.readline().split()]
        assert len(workers) == 2 and all(is_running(pid) for pid in workers)
        trainer.kill()
        trainer.wait(30)
        assert all_end_within(workers, 20), "the workers outlived the training process"
    finally:
        trainer.kill()


class _Unreadable(torch.utils.data.Dataset):
    """One sample whose reading fails as an unreadable image does, with a message quoting another DataError."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        raise DataError("a.dicom: cannot be decoded (DataError: inner)\nsecond line")


def test_a_data_error_from_a_worker_keeps_its_own_whole_message() -> None:
    """The DataLoader rebuilds a worker's exception from its whole traceback; the one line wsod prints is the
    original message, even one that quotes "DataError: " itself."""
    loader = torch.utils.data.DataLoader(_Unreadable(), batch_size=None, num_workers=1)
    with pytest.raises(DataError) as raised:
        next(iter(loader))
    assert str(raised.value).startswith("Caught DataError in DataLoader worker process 0")
    assert raised.value.reason == "a.dicom: cannot be decoded (DataError: inner)\nsecond line"
    assert DataError("plain").reason == "plain"


def test_a_box_left_outside_the_crop_takes_its_label_with_it_and_samples_carry_their_view(
    synthetic_root: Path,
) -> None:
    """A finding outside the breast crop is dropped with its class label (a second class's box then read the first
    one's label); a sample's meta carries its view (CC/MLO) for predict's rows."""
    from wsod_mammo.data.dataset import VinDrDataset
    from wsod_mammo.data.transforms import BoxTransform
    from wsod_mammo.data.vindr import Finding

    classes = ["Suspicious Calcification", "Mass"]
    record = next(r for r in load_records(synthetic_root) if r.laterality == "L" and r.has_class(["Mass"]))
    _, labels = record.boxes(classes)
    corner = (record.width - 3.0, 0.0, record.width - 1.0, 2.0)  # far from the breast, which lies on the left
    record.findings.insert(0, Finding(("Suspicious Calcification",), corner))  # first: the others' labels shift
    transform = BoxTransform(SIZE, AugmentationConfig(), train=False, standardize=True)
    sample = VinDrDataset([record], classes, transform)[0]
    assert len(sample["boxes"]) == len(sample["box_labels"]) == len(labels)
    assert sample["box_labels"].tolist() == labels.tolist()  # the findings inside keep their own labels
    assert sample["meta"]["view"] == record.view and record.view in ("CC", "MLO")


def test_predict_paths_with_crop_breast_false_keep_the_whole_image(synthetic_root: Path) -> None:
    """``crop_breast: false`` holds for ``wsod predict``'s files too: the whole image, background included."""
    record = load_records(synthetic_root)[0]
    for crop_breast in (True, False):
        dm = _dm(synthetic_root, predict_paths=[str(record.path)], crop_breast=crop_breast)
        dm.setup("predict")
        crop = tuple(dm.datasets["predict"][0]["meta"]["geometry"]["crop"])
        assert (crop == (0, 0, record.width, record.height)) is not crop_breast, (crop_breast, crop)


def test_a_cache_holding_part_of_the_data_says_how_much_and_who_is_writing_it(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache prepared for another selection (a colleague's, in a shared folder), or one a `wsod prepare` was still
    writing, left the rest of the images to be decoded from DICOM every epoch, many times slower, without a word."""
    from wsod_mammo.folder_locks import hold

    prepare(str(synthetic_root), str(tmp_path), selection="all", input_size=SIZE, workers=0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    total = len(manifest["images"])  # every image of the data: none failed
    for image_id in sorted(manifest["images"])[:3]:  # as a prepare of another selection leaves it
        del manifest["images"][image_id]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        _dm(synthetic_root, cache_dir=str(tmp_path), selection="all").setup("fit")
    said = f"holds {total - 3} of this data's {total} images; the other 3 are decoded from their DICOMs"
    assert said in caplog.text and "`wsod prepare` with this data's classes and selection adds them" in caplog.text
    caplog.clear()
    handle = hold(tmp_path, "wsod prepare")
    try:
        with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
            _dm(synthetic_root, cache_dir=str(tmp_path), selection="all").setup("fit")
    finally:
        handle.close()
    assert said in caplog.text and f"(wsod prepare, pid {os.getpid()} on " in caplog.text


def test_the_prepare_the_partial_cache_warning_names_caches_every_image_of_the_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fit with normal_max_birads 2 (or a seed of its own) draws its paper/balanced negatives among other No
    Finding images than prepare did: the warning said that `wsod prepare` "with this data's classes and selection"
    adds them, but such a prepare (it had no normal_max_birads) added none, and they were decoded every epoch."""
    from wsod_mammo.data.prepare import main as prepare_main

    root = make_synthetic_dataset(tmp_path / "data", 12, 128, 80, mass_fraction=0.2)
    cache = tmp_path / "cache"
    prepare(str(root), str(cache), selection="paper", input_size=SIZE, workers=0)
    said = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
            _dm(root, cache_dir=str(cache), selection="paper", normal_max_birads=2, seed=7).setup("fit")
        said.append(caplog.text)
        if named := re.search(r"with this data's classes and selection adds them: (.*)\)", caplog.text):
            prepare_main(["--data_root", str(root), "--cache_dir", str(cache), "--input_size", "[128, 80]",
                          "--workers", "0", *shlex.split(named.group(1))])  # fmt: skip
    assert "cache_dir" in said[0] and "holds" in said[0]
    assert "holds" not in said[1], said[1]


def test_doubtful_training_images_are_said_once_each_without_a_cache(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only `wsod prepare` looked for blank images and lateralities the image contradicts: a fit straight from the
    DICOMs learnt from them without a word. The workers find them, the main process says each image's once, however
    many epochs and workers."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dm = _dm(root, num_workers=2, persistent_workers=True)
    dm.setup("fit")
    blank, mirrored = dm.datasets["train"].records[:2]
    ds = pydicom.dcmread(blank.path)
    ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
    ds.save_as(blank.path)
    ds = pydicom.dcmread(mirrored.path)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()  # the breast against the other edge
    ds.save_as(mirrored.path)
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.data_warnings"):
        loader = dm.train_dataloader()
        for _ in range(2):  # two epochs
            for batch in loader:
                dm.on_before_batch_transfer(batch, 0)
    said = [r.getMessage() for r in caplog.records if r.name == "wsod_mammo.data.data_warnings"]
    assert len(said) == 2, said
    (blank_line,) = [line for line in said if line.startswith(f"{blank.path} (image {blank.image_id}): ")]
    assert "every pixel has the same value" in blank_line
    (mirrored_line,) = [line for line in said if line.startswith(f"{mirrored.path} ")]
    assert f"the CSV's laterality is {mirrored.laterality} but the breast lies against the" in mirrored_line


def test_a_positive_image_whose_masses_the_frame_cuts_away_is_said(synthetic_root: Path) -> None:
    """``resize: native`` cuts a window of ``input_size`` at scale 1: a breast larger than it loses masses while the
    image stays labelled positive (an audit: 2 of 4 test positives at 64 x 64). Training learnt positives with
    nothing to find, and Table II lost their masses while Table I counted the images positive, without a word."""
    dm = _dm(synthetic_root, input_size=(64, 64), resize="native")
    dm.setup("test")
    samples = [dm.datasets["test"][i] for i in range(len(dm.datasets["test"]))]
    cut = [s for s in samples if s["label"][0] == 1 and len(s["boxes"]) == 0]
    assert cut, "the synthetic masses all fit in a 64 x 64 window: the test shows nothing"
    for sample in samples:
        said = [w for w in sample["meta"]["warnings"] if "outside the input frame" in w]
        assert bool(said) == any(sample is s for s in cut)
        # the masses it cut away, for Table II to count as missed (they were dropped from its count)
        record = next(r for r in dm.datasets["test"].records if r.image_id == sample["image_id"])
        in_csv = len(record.boxes(["Mass"])[0])
        assert len(sample["boxes"]) + len(sample["meta"]["out_of_frame"]) == in_csv
        assert sample["meta"]["out_of_frame"] == [0] * (in_csv - len(sample["boxes"]))
        # each mass's finding BI-RADS beside it, in view and cut away, for Table II per BI-RADS
        birads = record.box_findings(["Mass"])[2].tolist()
        assert len(sample["meta"]["box_birads"]) == len(sample["boxes"]) and set(birads) <= {3, 4, 5}
        assert sorted(sample["meta"]["box_birads"] + sample["meta"]["out_of_frame_birads"]) == sorted(birads)
        # and its size in mm, by the DICOM's pixel spacing (the synthetic DICOMs carry one)
        spacing = read_dicom(record.path)[1].spacing_mm
        expected = box_sizes_mm(record.boxes(["Mass"])[0], spacing).tolist()
        got = sample["meta"]["box_size_mm"] + sample["meta"]["out_of_frame_size_mm"]
        assert spacing is not None and sorted(got) == pytest.approx(sorted(expected)) and len(got) == in_csv
        if said:
            assert said == ["every Mass box lies outside the input frame (resize native, 64x64, crop_breast True): "
                            "the image stays labelled Mass with none in view"]  # fmt: skip


def test_image_warnings_name_the_first_images_then_say_more_without_promising_a_list(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The line after the 20th image sent users to prepare's manifest, which never holds the out-of-frame warnings."""
    from wsod_mammo.data.data_warnings import ImageWarnings

    warned = ImageWarnings(limit=2)
    batch = {"image_id": ["a", "b", "c", "a"], "meta": [{"path": f"{i}.dicom", "warnings": ["w"]} for i in "abca"]}
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.data_warnings"):
        warned.report(batch)
        warned.report(batch)  # a second epoch: nothing again
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["a.dicom (image a): w", "b.dicom (image b): w"] and len(lines) == 3
    assert lines[2].startswith("more images have warnings than the 2 named above; they are not named")
