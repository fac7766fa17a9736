"""The synthetic VinDr dataset: exact layout and CSV format, DICOM encodings, visible masses, determinism."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import numpy as np
import pydicom
import pytest

from wsod_mammo.data import synthetic
from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.errors import DataError
from wsod_mammo.data.synthetic import main, make_synthetic_dataset, synthesize_once
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


def test_a_tilde_in_the_root_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wsod synth --root=~/demo` (or a config's `root: ~/demo`): the shell leaves the ~, and the dataset went to a
    folder named ~ in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    main(["--root=~/demo", "--n_studies", "1", "--height", "64", "--width", "48"])
    assert not (tmp_path / "~").exists() and (tmp_path / "home" / "demo" / FINDING_CSV).is_file()


def test_writing_synthetic_data_is_said_in_a_wsod_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wsod synth` and a DataModule writing its demo data printed their line to stdout, the one line of the
    package there: every other goes to stderr as ``[wsod] ...``, and stdout is for what a command prints as data."""
    from wsod_mammo.commands import main as wsod
    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    wsod(["synth", "--root", str(tmp_path / "a"), "--n_studies", "1", "--height", "64", "--width", "48"])
    root = str(tmp_path / "b")
    VinDrMammoDataModule(root, synthesize_if_missing=root, synthetic_studies=1, synthetic_size=(64, 48)).prepare_data()
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"[wsod] synthetic VinDr-Mammo dataset written to {tmp_path / 'a'}\n" in printed.err
    assert f"[wsod] data_root {root} has no {FINDING_CSV}: writing a SYNTHETIC demo dataset there\n" in printed.err


def test_test_fraction_zero_writes_a_training_only_set(tmp_path: Path) -> None:
    """Benchmarks write shards with test_fraction=0 and count every image as training (it used to put one study of
    each shard in the test split: 64 of 160 images on a 16-process GPU check)."""
    root = make_synthetic_dataset(tmp_path / "train_only", 3, 64, 48, seed=1, test_fraction=0.0)
    breast = list(csv.DictReader((root / BREAST_CSV).read_text().splitlines()))
    assert len(breast) == 12 and {r["split"] for r in breast} == {"training"}
    assert any(r.has_class(["Mass"]) for r in load_records(root))


SMALL = {"n_studies": 2, "height": 64, "width": 48, "seed": 5}


def _files(root: Path) -> dict[str, int]:
    """Every file below ``root`` and its modification time (ns): a rewrite changes it."""
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("option", ["--mass_fraction=-1", "--mass_fraction=1.5", "--calc_fraction=3",
                                    "--test_fraction=2"])  # fmt: skip
def test_a_fraction_out_of_range_is_refused_before_anything_is_written(tmp_path: Path, option: str) -> None:
    """``--mass_fraction -1`` wrote a set with no mass image, 1.5 one with no negative, and exited 0."""
    with pytest.raises(ValueError, match=rf"{option[2:].split('=')[0]}: expected a fraction in \[0, 1\], got"):
        main(["--root", str(tmp_path / "data"), "--n_studies", "4", option])
    assert not (tmp_path / "data").exists()


def test_a_dataset_finished_by_another_process_meanwhile_is_not_written_over(tmp_path: Path, monkeypatch) -> None:
    """Two SLURM array tasks of a study synthesize the demo data at once; the first to finish starts training on
    it while the other is still writing: the other must not rewrite the files being read."""
    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    root = tmp_path / "demo"
    options = {"data_root": str(root), "synthesize_if_missing": str(root), "synthetic_studies": 2,
               "synthetic_size": (64, 48), "input_size": (64, 48)}  # fmt: skip
    real, finished = synthetic.make_synthetic_dataset, {}

    def other_task_finishes_first(*args, **kwargs):
        monkeypatch.setattr(synthetic, "make_synthetic_dataset", real)
        VinDrMammoDataModule(**options).prepare_data()  # the other task, from start to end
        finished.update(_files(root))
        return real(*args, **kwargs)  # this task goes on writing its own copy

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", other_task_finishes_first)
    VinDrMammoDataModule(**options).prepare_data()
    assert finished and _files(root) == finished  # the finished dataset untouched
    assert len(load_records(root)) == 8 and [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging left


def _synthesize(root: str, barrier, results) -> None:
    barrier.wait()
    results.put(synthesize_once(root, **SMALL))


def test_processes_synthesizing_at_once_leave_one_complete_dataset(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    tasks = [context.Process(target=_synthesize, args=(str(tmp_path / "data"), barrier, results)) for _ in range(2)]
    for task in tasks:
        task.start()
    wrote = [results.get(timeout=120) for _ in tasks]
    for task in tasks:
        task.join(timeout=60)
    assert sorted(wrote) == [False, True]
    expected = make_synthetic_dataset(tmp_path / "reference", **SMALL)
    for path in expected.rglob("*"):
        if path.is_file():
            assert (tmp_path / "data" / path.relative_to(expected)).read_bytes() == path.read_bytes(), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "reference"]


def test_an_interrupted_synthesis_is_completed(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", **SMALL)
    (root / FINDING_CSV).unlink()
    (root / BREAST_CSV).unlink()
    next(root.rglob("*.dicom")).unlink()
    assert synthesize_once(root, **SMALL) is True
    assert len(load_records(root)) == 8 and len(list(root.rglob("*.dicom"))) == 8
    assert synthesize_once(root, **SMALL) is False  # complete: left alone


def test_a_folder_of_other_files_is_never_synthesized_into(tmp_path: Path) -> None:
    """data_root = synthesize_if_missing on a folder without the finding CSV (real data whose CSV has another name)
    had its breast-level CSV replaced and synthetic studies mixed into its images/."""
    root = tmp_path / "realish"
    (root / "images" / "s1").mkdir(parents=True)
    (root / BREAST_CSV).write_text("MINE\n")
    (root / "images" / "s1" / "x.dicom").write_bytes(b"REAL")
    with pytest.raises(DataError, match=f"synthesize_if_missing: {root} holds files but neither {FINDING_CSV} nor"):
        synthesize_once(root, **SMALL)
    assert (root / BREAST_CSV).read_text() == "MINE\n" and (root / "images" / "s1" / "x.dicom").read_bytes() == b"REAL"
    assert sorted(p.name for p in root.rglob("*")) == sorted(["images", BREAST_CSV, "s1", "x.dicom"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["realish"]  # no staging folder left behind
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / ".gitkeep").write_text("")  # hidden files only: filled, as an empty folder is
    assert synthesize_once(kept, **SMALL) is True and len(load_records(kept)) == 8 and (kept / ".gitkeep").is_file()


def test_synth_refuses_a_folder_with_data_and_overwrites_only_its_own_dataset(tmp_path: Path) -> None:
    """`wsod synth --root EXISTING` replaced the CSVs of whatever lay there (real VinDr annotations included) and
    left the older dataset's DICOMs as orphans: a folder with files is refused unless --overwrite, and --overwrite
    replaces only a dataset wsod synth wrote (its marker file), images and CSVs together."""
    options = ["--n_studies", "1", "--height", "64", "--width", "48"]
    root = tmp_path / "synth"
    main(["--root", str(root), "--n_studies", "2", "--height", "64", "--width", "48"])
    before = _files(root)
    with pytest.raises(ValueError, match=f"--root {root} exists and is not empty.*--overwrite"):
        main(["--root", str(root), *options])
    assert _files(root) == before
    main(["--root", str(root), *options, "--overwrite"])
    assert len(list(root.rglob("*.dicom"))) == 4 and len(load_records(root)) == 4  # no orphans of the 8 before
    assert (root / synthetic.MARKER_FILE).is_file()

    real = tmp_path / "vindr"  # a real dataset: no marker
    (real / "images").mkdir(parents=True)
    (real / FINDING_CSV).write_text("the real annotations\n")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match=f"--root {real} (exists and is not empty|holds no WSOD_SYNTHETIC.txt)"):
            main(["--root", str(real), *options, *extra])
    assert (real / FINDING_CSV).read_text() == "the real annotations\n" and (real / "images").is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    main(["--root", str(empty), *options])  # an empty folder is a new one
    assert len(load_records(empty)) == 4
