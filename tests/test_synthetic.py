"""The synthetic VinDr dataset: exact layout and CSV format, DICOM encodings, visible masses, determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest

from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.synthetic import main, make_synthetic_dataset
from wsod_mammo.data.vindr import BREAST_COLUMNS, BREAST_CSV, FINDING_COLUMNS, FINDING_CSV, load_records


def test_layout_and_csv_format(synthetic_root: Path) -> None:
    finding_text = (synthetic_root / FINDING_CSV).read_text()
    assert finding_text.splitlines()[0] == ",".join(FINDING_COLUMNS)
    assert (synthetic_root / BREAST_CSV).read_text().splitlines()[0] == ",".join(BREAST_COLUMNS)
    assert "\"['Suspicious Calcification', 'Mass']\"" in finding_text
    rows = list(csv.DictReader(finding_text.splitlines()))
    has_box = [bool(r["xmin"]) for r in rows]
    assert has_box == sorted(has_box, reverse=True)  # box rows first
    normal = [r for r in rows if r["finding_categories"] == "['No Finding']"]
    assert normal and all(r["finding_birads"] == r["xmin"] == r["ymax"] == "" for r in normal)
    assert any(float(r["xmin"]) < 0 or float(r["xmax"]) > 160 for r in rows if r["xmin"])
    breast = list(csv.DictReader((synthetic_root / BREAST_CSV).read_text().splitlines()))
    assert len(breast) == 24 and {r["split"] for r in breast} == {"training", "test"}
    for r in breast:
        assert (synthetic_root / "images" / r["study_id"] / f"{r['image_id']}.dicom").is_file()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_dicom_encodings(synthetic_root: Path) -> None:
    files = sorted((synthetic_root / "images").rglob("*.dicom"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert {h.PhotometricInterpretation for h in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert any(isinstance(h.WindowCenter, pydicom.multival.MultiValue) for h in headers)
    assert {h.BitsAllocated for h in headers} == {16} and {h.BitsStored for h in headers} == {12}
    assert {h.ImageLaterality for h in headers} == {"L", "R"} and {h.ViewPosition for h in headers} == {"CC", "MLO"}
    assert all(len(h.StudyInstanceUID) == 32 and "RescaleIntercept" in h for h in headers)


def test_masses_are_visible_and_breast_on_its_side(synthetic_root: Path) -> None:
    records = load_records(synthetic_root)
    positives = [r for r in records if r.has_class(["Mass"])]
    assert 0.3 <= len(positives) / len(records) <= 0.7
    for record in records:
        image, _ = read_dicom(record.path)
        assert 0 <= image.min() and image.max() <= 1
        left, right = image[:, :40].mean(), image[:, -40:].mean()
        assert (left > right) == (record.laterality == "L")
        boxes, _ = record.boxes(["Mass"])
        for x0, y0, x1, y1 in boxes.astype(int):
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            core = image[cy - 2 : cy + 3, cx - 2 : cx + 3].mean()
            pad = 6
            ring = np.concatenate([image[max(0, y0 - pad) : y0, x0:x1].ravel(), image[y1 : y1 + pad, x0:x1].ravel()])
            assert core > np.median(ring) + 0.1  # clearly brighter than the tissue around it


def test_deterministic_and_cli(tmp_path: Path) -> None:
    make_synthetic_dataset(tmp_path / "a", n_studies=2, height=64, width=48, seed=3)
    main(["--root", str(tmp_path / "b"), "--n_studies", "2", "--height", "64", "--width", "48", "--seed", "3"])
    assert (tmp_path / "a" / FINDING_CSV).read_text() == (tmp_path / "b" / FINDING_CSV).read_text()
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dicom"))
    assert len(files) == 8
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_test_fraction_zero_writes_a_training_only_set(tmp_path: Path) -> None:
    """Benchmarks write shards with test_fraction=0 and count every image as training (it used to put one study of
    each shard in the test split: 64 of 160 images on a 16-process GPU check)."""
    root = make_synthetic_dataset(tmp_path / "train_only", 3, 64, 48, seed=1, test_fraction=0.0)
    breast = list(csv.DictReader((root / BREAST_CSV).read_text().splitlines()))
    assert len(breast) == 12 and {r["split"] for r in breast} == {"training"}
    assert any(r.has_class(["Mass"]) for r in load_records(root))
