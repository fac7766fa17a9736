"""End-to-end `wsod` runs on tiny synthetic data: fit, test, predict, resume, bf16, DDP, W&B, bad input."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import lightning
import numpy as np
import pytest
import torch
import wandb
import yaml
from cli_configs import INPUT_SIZE, checkpoint, sigint_as_from_a_terminal, tiny_config, write_config
from cli_configs import run_wsod as _wsod

import wsod_mammo
from wsod_mammo import cli_checks
from wsod_mammo.cli import PREDICT_DEFAULTS, main, with_predict_defaults
from wsod_mammo.cli_checkpoints import (
    check_checkpoint,
    check_not_rewinding,
    continue_run,
    reconcile_input_frame,
    resolve_checkpoint,
)
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.errors import DataError
from wsod_mammo.data.transforms import AugmentationConfig
from wsod_mammo.inference import Predictor, breast_predictions, nyu_to_checkpoint
from wsod_mammo.models import GMIC, to_nyu_state_dict
from wsod_mammo.saliency import CAM, GradCAM
from wsod_mammo.training.callbacks import DetectionMetrics
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.module_from_checkpoint import module_from_checkpoint
from wsod_mammo.training.provenance import checkpoint_record

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B off unless a test turns it on (and Lightning's offline mode must not leak between tests)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """One short fit shared by the test/predict/DDP tests; returns its working directory."""
    directory = tmp_path_factory.mktemp("trained")
    config = write_config(directory / "config.yaml", tiny_config(directory, data_root))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        main(["fit", "--config", str(config)])
    return directory


def _run_dirs(directory: Path) -> list[Path]:
    return sorted(p.parent for p in (directory / "runs").glob("*/*/config.yaml"))


def test_fit_writes_best_last_and_the_resolved_config(trained: Path) -> None:
    assert (
        checkpoint(trained, "best").parent
        == checkpoint(trained, "last").parent
        == _run_dirs(trained)[0] / "checkpoints"
    )
    saved = torch.load(checkpoint(trained, "last"), map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["_class_path"] == "wsod_mammo.training.module.GMICLitModule"
    assert set(saved["detection_thresholds"]) == {"cam", "gradcam", "gradcampp", "xgradcam", "layercam"}
    assert saved["class_names"] == ["Mass"]  # what predict names the output, whatever data a later config has
    saved = yaml.safe_load(_run_dirs(trained)[0].joinpath("config.yaml").read_text())
    assert saved["model"]["init_args"]["model"]["init_args"]["crop_shape"] == [64, 64]
    # every option, None ones too (a default left out would read back as whatever a later version defaults to)
    assert "ckpt_path" in saved and saved["model"]["init_args"].get("init_from_nyu", "left out") is None


def test_test_writes_both_tables_the_froc_plot_and_overlays(trained: Path) -> None:
    before = set(_run_dirs(trained))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", "best"])
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]  # noise: test has its own folder
    (run,) = set(_run_dirs(trained)) - before  # a new run directory: no clash with the fit run
    for name in ("table1.md", "table1.csv", "table2_row.md", "table2_row.csv", "table2_row_all_images.md",
                 "table2_row_all_images.csv", "froc_mass.png", "froc_all.png", "table1_breast.md",
                 "table1_breast.csv", "table1_breast_ci.csv", "table2_by_density.md",
                 "table2_by_density.csv", "table2_by_birads.md", "table2_by_birads.csv", "table2_by_size.md",
                 "table2_by_size.csv", "table1_by_density.md", "table1_by_density.csv", "pointing_game.md",
                 "pointing_game.csv", "calibration.md", "calibration.csv", "reliability.png", "wafroc.md",
                 "wafroc.csv", "wafroc.png", "wafroc_by_kind.md", "wafroc_by_kind.csv", "pointing_by_kind.md",
                 "pointing_by_kind.csv"):  # fmt: skip
        assert (run / name).stat().st_size > 0, name
    assert len(list((run / "overlays").glob("*.png"))) == 2
    with open(run / "table2_row.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["train_method"] == "cam"
    assert all("@" in row[m] for m in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam"))
    summary = json.loads((run / "detection.json").read_text())
    # each subset's row in its own files: table2_row.* is the mass images' (the study's), not all images'
    for name, subset in (("table2_row.md", "mass"), ("table2_row_all_images.md", "all")):
        assert f"\n{summary[f'{subset}_counts']['images']} distinct images (" in (run / name).read_text(), name
    assert summary["mass"]["gradcampp"]["num_images"] < summary["all"]["gradcampp"]["num_images"]
    # the figures of merit per density, finding BI-RADS and size: each kind's masses add up to the whole set's
    by_kind = summary["wafroc_by_kind"]
    assert list(by_kind) == ["density", "birads", "size"]
    for kind, rows in by_kind.items():
        assert sum(row["masses"] for row in rows.values()) == summary["wafroc"]["masses"], kind
        assert all(set(row["methods"]) == set(summary["wafroc"]["methods"]) for row in rows.values()), kind
    # the pointing game per kind: each density's images add up to the whole game's; an image holds a mass of at least
    # one BI-RADS and one size (more where its masses differ)
    pointing = summary["pointing_by_kind"]["kinds"]
    assert list(pointing) == ["density", "birads", "size"]
    assert sum(row["images"] for row in pointing["density"].values()) == summary["pointing_game"]["images"]
    for kind in ("birads", "size"):
        assert sum(row["images"] for row in pointing[kind].values()) >= summary["pointing_game"]["images"], kind
    # figures are deterministic for one precision and set of versions: the report says which
    versions = {"torch": torch.__version__, "lightning": lightning.__version__, "wsod_mammo": wsod_mammo.__version__}
    assert summary["evaluated_under"] == {"precision": "32-true", **versions}
    # and the frame its boxes were measured in, by config.yaml's names
    assert summary["input_frame"] == {"input_size": list(INPUT_SIZE), "crop_breast": True, "resize": "stretch",
                                      "crop_shape": [64, 64]}  # fmt: skip
    assert summary["coverage"]["images_tested"] == summary["coverage"]["images_in_split"] == 8  # the whole split
    table1 = list(csv.DictReader(open(run / "table1.csv")))
    assert [r["head"] for r in table1] == ["global", "local", "fusion"]
    assert all(0.0 <= float(r["auc"]) <= 1.0 for r in table1)
    # intervals draw whole studies (an exam's views are not independent), and the images' record keeps them
    assert summary["bootstrap"]["resampled"] == "studies" and "over studies" in (run / "table1.md").read_text()
    images = json.loads((run / "detection_images.json").read_text())["subsets"]["all"]["cam"]
    assert len(images["study_keys"]) == len(images["image_keys"]) > len(set(images["study_keys"]))
    # and each image's breast density, which the study's per-density intervals over seeds restrict the records by
    densities = {label: row["images"] for label, row in pointing["density"].items()}
    assert set(images["density"]) == set(densities) and len(images["density"]) == len(images["image_keys"])
    # and each head's probability per distinct image, from which `wsod report --compare A:fusion B:fusion` redraws
    # exactly Table I's AUC interval
    from wsod_mammo.detection.compare_auc import breast_side, load_head, paired_auc

    classified = json.loads((run / "detection_images.json").read_text())["classification"]
    assert classified["class"] == summary["table1_class"] and len(classified["image_keys"]) == 8
    assert {d: classified["density"].count(d) for d in classified["density"]} == {
        d: row["images"] for d, row in summary["table1_by_density"].items()
    }
    for head in ("global", "local", "fusion"):
        label, side, seed = load_head(f"{run}:{head}", run)
        assert paired_auc(side, side, seed)["a"] == summary["table1_intervals"][head]["auc"], head
        breasts = breast_side(side, label)  # and --level breast, table1_breast.md's interval
        assert paired_auc(breasts, breasts, seed)["a"] == summary["table1_breast_intervals"][head]["auc"], head
    # every figure carries a 95% bootstrap interval; the cell is the capped operating point validation selects by
    assert "FPPI <= 1" in summary["operating_point"] and "FPPI <= 1" in (run / "table2_row.md").read_text()
    for method, figures in summary["mass"].items():
        assert figures["fppi"] <= 1.0, method
        for figure in [figures["intervals"]["tpr"], *figures["intervals"]["tpr_at_fppi"].values()]:
            assert figure["low"] <= figure["value"] <= figure["high"], (method, figure)
    ci = list(csv.DictReader(open(run / "table2_row_ci.csv")))
    assert {r["figure"] for r in ci} >= {"tpr", "fppi", "tpr@fppi0.25", "tpr@fppi4"} and len(ci) == 2 * 5 * 7
    t1 = {(r["head"], r["figure"]): r for r in csv.DictReader(open(run / "table1_ci.csv"))}
    assert float(t1[("fusion", "auc")]["low"]) <= float(t1[("fusion", "auc")]["value"]) <= 1.0
    # Table I holds each figure itself: the value its interval is drawn around, not a bound of it
    assert {(r["head"], k): r[k] for r in table1 for k in ("accuracy", "auc", "tpr", "tnr")} == {
        key: figure["value"] for key, figure in t1.items()
    }
    assert summary["all_counts"] == {"images": 8, "samples": 8}
    counts = summary["table1_counts"]
    assert counts["images"] == 8 and 0 < counts["positive"] < 8
    assert f"8 distinct test images: {counts['positive']} positive" in (run / "table1.md").read_text()
    # Table I at breast level too: the test images' breasts (CC + MLO of one side of a study), each rated once
    breasts = summary["table1_breast_counts"]
    assert breasts["images"] == 8 and 2 * breasts["breasts"] - breasts["one_view"] == 8
    assert [r["head"] for r in csv.DictReader(open(run / "table1_breast.csv"))] == ["global", "local", "fusion"]
    assert f"{breasts['breasts']} breasts of the 8 distinct test images" in (run / "table1_breast.md").read_text()
    for head, row in summary["table1_breast_intervals"].items():
        assert all(f["low"] <= f["value"] <= f["high"] for f in row.values() if f["low"] == f["low"]), head
    # Table II by breast density: every image and mass of each subset in one density, the same methods' cells
    for subset in ("mass", "all"):
        rows = summary["by_density"][subset].values()
        assert sum(r["images"] for r in rows) == summary[f"{subset}_counts"]["images"], subset
        assert sum(r["masses"] for r in rows) == summary[subset]["cam"]["num_gt"], subset
        assert all(set(r["cells"]) == set(summary[subset]) for r in rows), subset
    # Table I by breast density: every test image in one density, each with the three heads' figures
    rows = summary["table1_by_density"].values()
    assert sum(r["images"] for r in rows) == 8 and sum(r["positive"] for r in rows) == counts["positive"]
    assert all(list(r["heads"]) == ["global", "local", "fusion"] for r in rows)
    by_density_csv = list(csv.DictReader(open(run / "table1_by_density.csv")))
    assert len(by_density_csv) == 3 * 4 * len(rows)  # a row per head and figure of each density
    assert {r["figure"] for r in by_density_csv} == {"accuracy", "auc", "tpr", "tnr"}
    # Table II by finding BI-RADS: each mass in one row (the synthetic masses are BI-RADS 3 to 5), every method
    for subset in ("mass", "all"):
        rows = summary["by_finding_birads"][subset]
        assert set(rows) <= {"BI-RADS 3", "BI-RADS 4", "BI-RADS 5"} and rows, subset
        assert sum(r["masses"] for r in rows.values()) == summary[subset]["cam"]["num_gt"], subset
        assert all(0 < r["images"] <= r["masses"] and set(r["cells"]) == set(summary[subset]) for r in rows.values())
    birads_csv = list(csv.DictReader(open(run / "table2_by_birads.csv")))
    assert {r["finding_birads"] for r in birads_csv} == set(summary["by_finding_birads"]["mass"])
    assert "no mass owns a false positive" in (run / "table2_by_birads.md").read_text()
    # and per mass size (the synthetic DICOMs' pixel spacing): rows in size order, each mass in one
    for subset in ("mass", "all"):
        rows = summary["by_mass_size"][subset]
        assert list(rows) == [s for s in ("< 10 mm", "10-20 mm", ">= 20 mm") if s in rows] and rows, subset
        assert sum(r["masses"] for r in rows.values()) == summary[subset]["cam"]["num_gt"], subset
    assert "Size: the box's longer side" in (run / "table2_by_size.md").read_text()
    # each method is measured at the threshold its validation chose, which the checkpoint carries
    saved = torch.load(resolve_checkpoint("best", yaml.safe_load((trained / "config.yaml").read_text())),
                       weights_only=True)  # fmt: skip
    validated, tied = saved["detection_thresholds"], set(saved["detection_thresholds_tied"])
    assert {m: f["threshold"] for m, f in summary["mass"].items()} == validated and len(validated) == 5
    assert all(f["threshold_from"].startswith("validation") for f in summary["mass"].values())
    # a tiny fit's maps may find no mass at any threshold: such a threshold is marked a tie, and only such
    marked = {m: "from a tie" in f["threshold_from"] for m, f in summary["mass"].items()}
    assert marked == {m: m in tied for m in validated}
    # the report names what it evaluated: `best`, resolved to the fit's file, and that file's own digest
    best = checkpoint(trained, "best")
    evaluated = {"path": str(best.resolve()), "sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    # and which epoch that is, with what best.ckpt's monitor scored it (a fit of one epoch: epoch 0)
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("BestCheckpoint")]
    evaluated |= {"epoch": 0, "global_step": saved["global_step"],
                  "monitored": {"val/fusion/auroc": pytest.approx(float(state["current_score"]))}}  # fmt: skip
    assert summary["weights"] == "checkpoint" and summary["checkpoint"] == evaluated


def test_a_test_of_a_few_batches_says_its_report_is_not_the_splits(
    trained: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--trainer.limit_test_batches 1`` for a quick look: the report's figures are over one batch, which nothing
    said; a user could quote them as the test split's."""
    before = set(_run_dirs(trained))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", "best",
              "--trainer.limit_test_batches", "1"])  # fmt: skip
    (run,) = set(_run_dirs(trained)) - before
    coverage = json.loads((run / "detection.json").read_text())["coverage"]
    assert coverage == {"images_tested": 4, "images_in_split": 8}  # one batch of tiny_config's 4
    assert ("the report covers 4 of the test split's 8 images (--trainer.limit_test_batches 1): its figures are not "
            "the test split's") in caplog.text  # fmt: skip


def test_predict_reports_unreadable_files_and_still_predicts_the_rest(trained: Path, data_root: Path) -> None:
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:3]
    not_dicom = trained / "notes.dicom"
    not_dicom.write_text("not a DICOM file")
    paths = "[" + ", ".join(str(p) for p in [*dicoms, not_dicom]) + "]"
    runs_before = sorted((trained / "runs").glob("*/*/"))
    main(["predict", "--config", str(trained / "config.yaml"), "--ckpt_path", "best"] + ["--data.predict_paths", paths])
    (run,) = sorted((trained / "predictions").glob("*/predictions.json"))  # this run's own folder
    assert sorted((trained / "runs").glob("*/*/")) == runs_before  # `best` found through the logger's save_dir
    records = json.loads(run.read_text())
    assert len(records) == 4
    saved = yaml.safe_load((run.parent / "config.yaml").read_text())  # which weights and options made them
    weights = Path(saved["ckpt_path"])  # `best`, resolved to the fit's own file
    assert weights.is_file() and weights.name == "best.ckpt" and weights.is_relative_to(trained / "runs")
    assert saved["data"]["init_args"]["predict_paths"] == [str(p) for p in [*dicoms, not_dicom]]
    # the writer saves each batch as it comes; Lightning kept every batch's outputs until the end, unused
    assert saved["return_predictions"] is False
    failed = [r for r in records if r.get("error")]
    assert len(failed) == 1 and "notes.dicom" in failed[0]["error"]
    for record in records:
        if record.get("error"):
            continue
        assert 0.0 <= record["probability"] <= 1.0
        assert (run.parent / record["overlay"]).is_file()
        for box in record["boxes"]:  # DICOM frame: the synthetic images are 256 x 160
            assert 0 <= box["xmin"] < box["xmax"] <= 160 and 0 <= box["ymin"] < box["ymax"] <= 256


def test_a_folder_named_like_a_number_stays_a_string_in_config_yaml_and_runs_again(
    tmp_path: Path, trained: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder named ``1e3`` (jsonargparse reads YAML 1.2's floats; PyYAML wrote it unquoted): the predictions'
    config.yaml said ``predict_paths: 1000.0``, and that config run again was refused (a run's ``data_root: 1e3``
    the same: "Expected a <class 'str'>. Got value: 1000.0")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "1e3").mkdir()
    shutil.copy(sorted((data_root / "images").glob("*/*.dicom"))[0], tmp_path / "1e3" / "a.dicom")
    main(["predict", "--config", str(trained / "config.yaml"), "--ckpt_path", "best", "--data.predict_paths", "1e3",
          "--trainer.callbacks.init_args.output_dir", "first"])  # fmt: skip
    (config,) = (tmp_path / "first").glob("*/config.yaml")
    assert yaml.safe_load(config.read_text())["data"]["init_args"]["predict_paths"] == "1e3"
    main(["predict", "--config", str(config), "--trainer.callbacks.init_args.output_dir", "again"])
    (again,) = (tmp_path / "again").glob("*/predictions.json")
    assert [record["path"] for record in json.loads(again.read_text())] == ["1e3/a.dicom"]


def test_predict_paths_null_beside_a_folder_named_null_says_how_to_name_it(
    tmp_path: Path, trained: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``--data.predict_paths null`` with a folder ``null`` here: YAML's no value, so predict went for the data's test
    split and was refused with "data_root ... predict reads it only without --data.predict_paths", given it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "null").mkdir()
    config = write_config(tmp_path / "c.yaml", {**yaml.safe_load((trained / "config.yaml").read_text()),
                                                 "data": {"init_args": {"data_root": str(tmp_path)}}})  # fmt: skip
    for given in (["--data.predict_paths", "null"], ["--data.predict_paths=null"]):
        _refused(["predict", "--config", str(config), "--ckpt_path", str(checkpoint(trained, "best")), *given],
                 r"^wsod predict: --data.predict_paths null: YAML reads 'null' as no value \(predict the data's test "
                 r"split\), not as the name of the folder here: give it as ./null$", caplog)  # fmt: skip


def test_predict_reads_files_whose_names_are_not_utf8_or_too_long_and_writes_every_row(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """Names from a Latin-1 archive (`m\\xfcller.png`): OpenCV crashed the process on the PNG (SIGSEGV: no row
    written), the overlay's title refused the DICOM's id, and the CSV stopped at the first such row. An overlay that
    could not be written (a name too long, a full disk) stopped the run there."""
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    folder = tmp_path / "inputs"
    folder.mkdir()
    _png_of(dicom, folder / "a_first.png")
    latin = [os.fsdecode(folder.as_posix().encode() + b"/m\xfcller.png"),
             os.fsdecode(folder.as_posix().encode() + b"/d\xe9cembre.dcm")]  # fmt: skip
    shutil.copy(folder / "a_first.png", latin[0])
    shutil.copy(dicom, latin[1])
    shutil.copy(folder / "a_first.png", folder / ("b" + "x" * 251))  # its overlay's name: 256 characters, too long
    command = [sys.executable, "-m", "wsod_mammo", "predict", "--config", str(trained / "config.yaml"),
               "--ckpt_path", "best", "--data.predict_paths", str(folder), "--data.num_workers", "2",
               "--trainer.callbacks.init_args.output_dir", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    (folder_out,) = (tmp_path / "out").glob("*/")
    records = json.loads((folder_out / "predictions.json").read_text())
    assert sorted(r["image_id"] for r in records) == ["a_first", "b" + "x" * 251, "d\\xe9cembre", "m\\xfcller"]
    assert not any(r.get("error") for r in records) and sorted(r["path"] for r in records)[2:] == sorted(latin)
    too_long = [r for r in records if r["image_id"].startswith("bxx")]
    assert "overlay" not in too_long[0] and "could not write the PNG" in too_long[0]["overlay_error"]
    assert all((folder_out / r["overlay"]).is_file() for r in records if r not in too_long)
    rows = list(csv.DictReader(open(folder_out / "predictions.csv", encoding="utf-8")))
    assert sorted(r["image_id"] for r in rows) == sorted(r["image_id"] for r in records)
    # the path spelt as the image_id is (it read `m\udcfcller.png` beside the image_id `m\xfcller`)
    assert all(Path(r["path"]).stem == r["image_id"] for r in rows if not r["image_id"].startswith("bxx"))


def _png_of(dicom: Path, path: Path) -> Path:
    """The DICOM's pixels as a 16-bit PNG (12-bit values, as NYU's), so a PNG and a DICOM hold one mammogram."""
    cv2.imwrite(str(path), np.round(read_dicom(dicom)[0] * 4095).astype(np.uint16))
    return path


def _nyu_legacy_file(path: Path) -> Path:
    """An NYU-layout file as nyukat/GMIC ships them: legacy (non-zip) format with the unused extra key."""
    torch.manual_seed(0)
    state = to_nyu_state_dict(GMIC(num_classes=2)) | {"shared_rep_filter.weight": torch.zeros(1024, 1024)}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def test_predict_from_nyu_weights_without_a_checkpoint_on_png_and_dicom(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """`--model.init_from_nyu` alone (no --ckpt_path): NYU's two heads predict; an all-unreadable input fails."""
    nyu = _nyu_legacy_file(tmp_path / "sample_model_1.p")
    config = tiny_config(tmp_path, data_root)
    config["model"]["init_args"]["model"]["init_args"]["num_classes"] = 2
    path = write_config(tmp_path / "config.yaml", config)
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    png = _png_of(dicom, tmp_path / "scan.png")
    args = ["predict", "--config", str(path), "--model.init_from_nyu", str(nyu)]
    main([*args, "--data.predict_paths", f"[{dicom}, {png}]"])
    (run,) = (tmp_path / "predictions").glob("*/predictions.json")
    records = json.loads(run.read_text())
    assert [r.get("error") for r in records] == [None, None]
    # which weights made them, wherever the folder goes (config.yaml keeps paths as typed, relative, no hash)
    weights = json.loads((run.parent / "weights.json").read_text())
    assert weights["weights"] == "NYU weights" and weights["checkpoint"] == checkpoint_record(nyu)
    assert weights["evaluated_under"]["torch"] == torch.__version__ and weights["predict_saliency"] == "gradcampp"
    assert records[0]["laterality_source"] == "dicom" and records[1]["laterality_source"] == "inferred"
    assert abs(records[0]["probability"] - records[1]["probability"]) < 2e-3
    # NYU's heads by name: the first (the PredictionWriter's default class_index 0) is benign, not a "mass" head
    assert [(r["class"], list(r["probabilities"])) for r in records] == [("benign", ["benign", "malignant"])] * 2
    assert records[0]["probability"] == records[0]["probabilities"]["benign"]
    with open(run.with_suffix(".csv")) as handle:
        assert {row["class"] for row in csv.DictReader(handle)} == {"benign"}
    # the same weights as a checkpoint (nyu_to_checkpoint) keep NYU's names, whatever the config's data.classes
    model = config["model"]["init_args"]["model"]["init_args"]
    options = {key: model[key] for key in ("num_patches", "crop_shape", "percent_t")}
    ckpt = nyu_to_checkpoint(nyu, tmp_path / "nyu.ckpt", **options)
    size = str(config["data"]["init_args"]["input_size"])
    main(["predict", "--config", str(path), "--ckpt_path", str(ckpt), "--data.input_size", size,
          "--data.predict_paths", f"[{dicom}]"])  # fmt: skip
    converted_run = max((tmp_path / "predictions").glob("*/predictions.json"))
    (converted,) = json.loads(converted_run.read_text())
    assert converted["class"] == "benign" and list(converted["probabilities"]) == ["benign", "malignant"]
    recorded = json.loads((converted_run.parent / "weights.json").read_text())
    assert recorded["weights"] == "checkpoint" and recorded["checkpoint"]["path"] == str(ckpt.resolve())
    assert recorded["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert abs(converted["probability"] - records[0]["probability"]) < 1e-5
    # --ckpt_path untrained beside the config's NYU weights: the baseline, not NYU's weights under its name
    main([*args, "--ckpt_path", "untrained", "--data.predict_paths", f"[{png}]"])
    baseline = max((tmp_path / "predictions").glob("*/predictions.json"))
    assert yaml.safe_load((baseline.parent / "config.yaml").read_text())["model"]["init_args"]["init_from_nyu"] is None
    (untrained,) = json.loads(baseline.read_text())
    assert untrained["class"] != "benign" and abs(untrained["probability"] - records[1]["probability"]) > 1e-4
    # --trainer.callbacks.init_args.* sets the last callback's options: the PredictionWriter in the configs
    # (the same two inputs as the first run: one batch of one image may differ from a batch of two in the last bit)
    main([*args, "--data.predict_paths", f"[{dicom}, {png}]", "--trainer.callbacks.init_args.class_index", "1"])
    malignant, _ = json.loads(max((tmp_path / "predictions").glob("*/predictions.json")).read_text())
    assert malignant["class"] == "malignant" and malignant["probability"] == records[0]["probabilities"]["malignant"]
    for index in ("2", "-1"):  # refused before the model and inputs load: one line, exit 2, no traceback
        _refused([*args, "--data.predict_paths", f"[{dicom}]", "--trainer.callbacks.init_args.class_index", index],
                 rf"^wsod predict: trainer.callbacks PredictionWriter class_index: {index}, but model.model.init_args."
                 r"num_classes has 2 output class\(es\): expected 0..1$", caplog)  # fmt: skip
    (tmp_path / "notes.txt").write_text("not an image")
    try:
        with pytest.raises(SystemExit) as failed:  # the reason on one line, no traceback
            main([*args, "--data.predict_paths", f"[{tmp_path / 'notes.txt'}]"])
        said = f"predict: none of the 1 input(s) could be read (the first: {tmp_path / 'notes.txt'}: "
        assert failed.value.code == 1 and said in capsys.readouterr().err
        with pytest.raises(SystemExit) as refused:  # before the inputs load: one line, exit 2
            main([*args[:-1], str(tmp_path / "notes.txt"), "--data.predict_paths", f"[{png}]"])
        assert refused.value.code == 2
        assert re.search("model.init_from_nyu: .*notes.txt: not a weights-only", capsys.readouterr().err)
    finally:  # a run that failed in this process leaves its W&B run open; later tests must start their own
        wandb.finish()


def test_predict_without_a_config_or_inputs_says_predict_paths_is_what_it_lacks(
    tmp_path: Path, trained: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod predict --ckpt_path FILE` with no inputs read the predict defaults' data_root `.` and said only that `.`
    is no VinDr-Mammo folder: an option the user never gave, and not the one that was missing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(checkpoint(trained, "best"))])
    assert exit_info.value.code == 1
    assert "data_root: . has no finding_annotations.csv" in caplog.text
    assert "predict reads it only without --data.predict_paths, the images to predict" in caplog.text


def test_predict_without_a_config_needs_only_the_checkpoint_or_nyus_weights_and_the_inputs(
    tmp_path: Path, trained: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A wheel carries no configs/: `wsod predict --ckpt_path FILE --data.predict_paths ...` alone reads the package's
    predict defaults, takes the model, its input frame and its class names from the checkpoint without a warning (no
    config of the user's differs from it) and writes ./predictions/<date-time>/ as Predictor.from_checkpoint
    predicts; NYU's weights alone too."""
    best = checkpoint(trained, "best")
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:2]
    monkeypatch.chdir(tmp_path)  # no configs/ here
    caplog.set_level(logging.INFO, logger="wsod_mammo")
    main(["predict", "--ckpt_path", str(best), "--data.predict_paths", f"{[str(f) for f in dicoms]}"])
    (run,) = (tmp_path / "predictions").glob("*/predictions.json")
    records = {r["path"]: r for r in json.loads(run.read_text())}
    results = Predictor.from_checkpoint(best)(dicoms)
    assert len(records) == len(results) == 2
    for result in results:
        record = records[result.source]
        assert record["class"] == result.class_name == "Mass"
        assert record["probability"] == pytest.approx(result.probability, abs=1e-5)
        boxes = [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in record["boxes"]]
        np.testing.assert_allclose(np.array(boxes).reshape(-1, 4), result.boxes, atol=1e-3, rtol=0)
    assert "no --config given: the package's predict defaults" in caplog.text
    assert "input frame" not in caplog.text and "not used" not in caplog.text  # the checkpoint's, unannounced
    saved = yaml.safe_load((run.parent / "config.yaml").read_text())
    assert saved["data"]["init_args"]["input_size"] == list(INPUT_SIZE)  # the checkpoint's frame, on record
    assert saved["trainer"]["logger"] is False and not (tmp_path / "wandb").exists()
    # NYU's weights alone (its heads by name; NYU's 256 x 256 patches), at a frame the command line sets
    nyu = _nyu_legacy_file(tmp_path / "sample_model_1.p")
    main(["predict", "--model.init_from_nyu", str(nyu), "--model.model.init_args.num_classes", "2",
          "--data.input_size", "[512, 320]", "--data.predict_paths", f"[{dicoms[0]}]"])  # fmt: skip
    newest = max((tmp_path / "predictions").glob("*/predictions.json"))
    (record,) = json.loads(newest.read_text())
    assert record["class"] == "benign" and record.get("error") is None
    assert json.loads((newest.parent / "weights.json").read_text())["weights"] == "NYU weights"


@pytest.mark.parametrize(
    ("args", "defaults"),
    [
        (["predict", "--ckpt_path", "a.ckpt"], True),
        (["predict", "--config", "c.yaml"], False),
        (["predict", "--config=c.yaml"], False),
        (["predict", "-c", "c.yaml"], False),
        (["predict", "-cc.yaml"], False),
        (["predict", "--data", "d.yaml", "--ckpt_path", "a.ckpt"], True),  # a group's file overrides the defaults
        (["test", "--ckpt_path", "a.ckpt"], False),
    ],
)
def test_the_predict_defaults_come_first_only_for_predict_without_a_config_file(
    args: list[str], defaults: bool
) -> None:
    expected = [args[0], "--config", str(PREDICT_DEFAULTS), *args[1:]] if defaults else args
    assert with_predict_defaults(args) == expected


def test_predict_takes_a_bare_folder_and_a_folder_with_a_comma(tmp_path: Path, data_root: Path) -> None:
    """`--data.predict_paths scans/` (a path, not a list) as users type it; a comma in a folder's name (`Doe, John`)
    stays in the name when the path is quoted inside the list."""
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    folder = tmp_path / "Doe, John"
    folder.mkdir()
    _png_of(dicom, folder / "scan.png")
    config = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root)))
    for paths in (str(folder), f"['{folder}']"):
        main(["predict", "--config", config, "--ckpt_path", "untrained", "--data.predict_paths", paths])
    runs = sorted((tmp_path / "predictions").glob("*/predictions.json"))
    assert [[r["path"] for r in json.loads(run.read_text())] for run in runs] == [[str(folder / "scan.png")]] * 2


def test_a_predict_cut_short_goes_on_in_its_folder_with_the_option_its_line_names(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod predict` of 6 DICOMs that predicted 2: `--trainer.callbacks.init_args.resume_dir RUN` with another
    min_score is refused in one line naming the folder and the option (exit 2); as it was, it predicts the 4 others
    into RUN, whose files then hold all 6 in input order; run again it says RUN is whole and exits 0. Its config.yaml
    saved again names no change of `trainer.callbacks` for resume_dir alone (a real change is still named)."""
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:6]
    config = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root)))
    args = ["predict", "--config", config, "--ckpt_path", "untrained", "--data.eval_batch_size", "2",
            "--data.predict_paths", f"[{', '.join(map(str, dicoms))}]"]  # fmt: skip
    main([*args, "--trainer.limit_predict_batches", "1"])
    (run,) = (tmp_path / "predictions").iterdir()
    assert len(json.loads((run / "predictions.json").read_text())) == 2
    resume = ["--trainer.callbacks.init_args.resume_dir", str(run)]
    refused = rf"^wsod predict: resume_dir {run}: .*another min_score 0.0 \(this run: 0.5\)"
    _refused([*args, *resume, "--trainer.callbacks.init_args.min_score", "0.5"], refused, caplog)
    assert len(json.loads((run / "predictions.json").read_text())) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        main([*args, *resume, "--trainer.limit_predict_batches", "1"])
    assert len(json.loads((run / "predictions.json").read_text())) == 4 and (run / "config.1.yaml").is_file()
    assert "this command changes" not in caplog.text
    with caplog.at_level(logging.WARNING):
        main([*args, *resume])
    assert f"{run}: this command changes trainer.limit_predict_batches; the run's earlier config" in caplog.text
    assert [r["path"] for r in json.loads((run / "predictions.json").read_text())] == list(map(str, dicoms))
    assert (run / "breasts.csv").is_file() and len(list((run / "overlays").glob("*.png"))) == 6
    assert list((tmp_path / "predictions").iterdir()) == [run]
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as exit_info:
        main([*args, *resume])
    assert exit_info.value.code == 0 and f"{run} already holds the rows of all its 6 inputs" in caplog.text


def _full_disk(monkeypatch: pytest.MonkeyPatch, full: Any) -> None:
    """Every file whose path ``full(path)`` is true is written as on a full disk: created empty, then ENOSPC."""
    import builtins
    import errno

    real_open = builtins.open

    def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax+") and full(Path(file)):
            real_open(file, mode, *args, **kwargs).close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opened)
    monkeypatch.setattr(io, "open", opened)  # pathlib's write_text and write_bytes


@pytest.mark.parametrize("full_from", ["the start", "the rows"])
def test_a_predict_on_a_full_disk_ends_in_one_line_naming_the_file_and_keeps_the_rows(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, full_from: str
) -> None:
    """`wsod predict` on a full disk ended in a traceback of the OSError on_exception raised writing the rows, which
    named no file, after a line that the rows were in the run folder (an empty weights.json there, which its
    resume_dir could not read). Now: one line naming the file and the cause, exit 1; a disk that fills up when the
    rows are written whole keeps the finished batches' rows (the partial files that resume_dir continues from)."""
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:2]
    config = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root)))
    folder = tmp_path / "predictions"
    if full_from == "the start":
        _full_disk(monkeypatch, lambda path: folder in path.parents)
    else:  # the whole files, or their temporary names
        _full_disk(monkeypatch, lambda path: path.name.lstrip(".").startswith(("predictions.json", "predictions.csv")))
    args = ["predict", "--config", config, "--ckpt_path", "untrained", "--data.eval_batch_size", "1",
            "--data.predict_paths", f"[{', '.join(map(str, dicoms))}]"]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="wsod_mammo"), pytest.raises(SystemExit) as exit_info:
        main(args)
    (run,) = folder.iterdir()
    name = "weights.json" if full_from == "the start" else "predictions.json"
    assert exit_info.value.code == 1
    assert caplog.records[-1].getMessage() == f"wsod predict: {run / name}: not written (No space left on device)"
    if full_from == "the rows":
        monkeypatch.undo()
        assert len((run / "predictions.partial.csv").read_text().splitlines()) == 3  # header, a row per image
        with pytest.raises(SystemExit) as exit_info:  # every input has its row: written whole, nothing to predict
            main([*args, "--trainer.callbacks.init_args.resume_dir", str(run)])
        assert exit_info.value.code == 0 and not (run / "predictions.partial.csv").exists()
        assert [r["path"] for r in json.loads((run / "predictions.json").read_text())] == list(map(str, dicoms))


def test_predict_reads_only_its_inputs_and_writes_only_its_predictions_folder(tmp_path: Path, data_root: Path) -> None:
    """A reader's run: no demo dataset synthesized into `data_root` (predict reads none), no W&B run and no run
    folder holding a copy of the config; the predictions folder holds the config, which says so."""
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    demo_root = tmp_path / "demo_data"  # as configs/demo.yaml: synthesized on first use, by fit
    config = tiny_config(tmp_path, demo_root, synthesize_if_missing=str(demo_root))
    path = str(write_config(tmp_path / "c.yaml", config))
    main(["predict", "--config", path, "--ckpt_path", "untrained", "--data.predict_paths", f"[{dicom}]"])
    (run,) = (tmp_path / "predictions").glob("*/predictions.json")
    assert [r["path"] for r in json.loads(run.read_text())] == [str(dicom)]
    assert not demo_root.exists() and not (tmp_path / "runs").exists()
    assert yaml.safe_load((run.parent / "config.yaml").read_text())["trainer"]["logger"] is False


def test_predict_cli_and_python_api_agree_on_dicom_and_png(tmp_path: Path, trained: Path, data_root: Path) -> None:
    """`wsod predict --ckpt_path` and `Predictor.from_checkpoint` of that checkpoint give the same probabilities and
    boxes (one code path from outputs to Predictions; they differ only in where the image is standardized)."""
    best = checkpoint(trained, "best")
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))
    files = [dicoms[0], _png_of(dicoms[1], tmp_path / "scan.png"), dicoms[2]]
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    main(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            str(best),
            "--data.predict_paths",
            f"{[str(f) for f in files]}",
        ]
    )
    (run,) = (tmp_path / "predictions").glob("*/predictions.json")
    records = {r["path"]: r for r in json.loads(run.read_text())}
    results = Predictor.from_checkpoint(best)(files, batch_size=2)
    assert len(records) == len(results) == 3 and sum(len(r.boxes) for r in results) > 0
    for result in results:
        record = records[result.source]
        assert (record["laterality"], record["laterality_source"]) == (result.laterality, result.laterality_source)
        assert record["threshold"] == result.threshold and record["method"] == result.method == "gradcampp"
        assert record["class"] == result.class_name == "Mass" and record["probabilities"] == {
            "Mass": record["probability"]
        }
        assert record["probability"] == pytest.approx(result.probability, abs=1e-5)
        boxes = [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in record["boxes"]]
        np.testing.assert_allclose(np.array(boxes).reshape(-1, 4), result.boxes, atol=1e-3, rtol=0)
        np.testing.assert_allclose([b["score"] for b in record["boxes"]], result.scores, atol=1e-5, rtol=0)
        sizes = [np.nan if b["size_mm"] is None else b["size_mm"] for b in record["boxes"]]  # null: the PNG's
        np.testing.assert_allclose(sizes, result.box_sizes_mm, atol=1e-3, rtol=0)
    # per breast too: predict's breasts.json and breast_predictions of the API's results (ids: names vs paths)
    written = json.loads((run.parent / "breasts.json").read_text())
    api = breast_predictions(results)
    assert [(b["study"], b["laterality"], b["views"]) for b in written] == [
        (b["study"], b["laterality"], b["views"]) for b in api
    ] and len(written) == 2  # the two DICOMs (two exams); the PNG names none
    assert [b["probability"] for b in written] == pytest.approx([b["probability"] for b in api], abs=1e-5)


def test_test_from_nyu_weights_without_a_checkpoint_reports_the_nyu_file(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod test --model.init_from_nyu` alone evaluates NYU's weights as they are: Table I, the Table II row, and a
    report that names the NYU file (path and sha256) as what was evaluated."""
    nyu = _nyu_legacy_file(tmp_path / "sample_model_1.p")
    config = tiny_config(tmp_path, data_root, classes=["Mass", "Suspicious Calcification"])
    config["model"]["init_args"]["model"]["init_args"]["num_classes"] = 2
    with caplog.at_level("INFO"):
        main(["test", "--config", str(write_config(tmp_path / "c.yaml", config)), "--model.init_from_nyu", str(nyu)])
    assert f"Initialized GMIC from {nyu}" in caplog.text
    (report,) = list((tmp_path / "runs").glob("**/detection.json"))
    run = report.parent
    for name in ("table1.md", "table1.csv", "table2_row.md", "table2_row.csv"):
        assert (run / name).stat().st_size > 0, name
    with open(run / "table2_row.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert all("@" in row[m] for m in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam"))
    summary = json.loads(report.read_text())
    assert summary["weights"] == "NYU weights"
    assert summary["checkpoint"] == checkpoint_record(nyu) and summary["checkpoint"]["path"] == str(nyu.resolve())
    assert len(summary["checkpoint"]["sha256"]) == 64
    assert [r["head"] for r in csv.DictReader(open(run / "table1.csv"))] == ["global", "local", "fusion"]


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_nyu_weights_evaluated_as_they_are_with_heads_they_cannot_fill_are_refused(
    subcommand: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The study config (one class, ``init_from_nyu``) without ``--ckpt_path`` ran NYU's two-class file with the
    saliency head, classifier and fusion freshly initialized (random), and reported the tables as "NYU weights";
    nothing is run, the error says what to give instead. A fit starts those layers fresh on purpose."""
    nyu = _nyu_legacy_file(tmp_path / "sample_model_1.p")
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    message = (r"model.init_from_nyu: .*sample_model_1.p: evaluated as they are \(no --ckpt_path\), NYU's weights "
               r"would run with \['classifier', 'fusion', 'saliency_head'\] freshly initialized \(random\): the file "
               r"has 2 classes, the model 1; give --ckpt_path .* or --model.model.init_args.num_classes 2")  # fmt: skip
    _refused([subcommand, "--config", str(config), "--model.init_from_nyu", str(nyu)], f"^wsod {subcommand}: {message}",
             caplog)  # fmt: skip
    assert not (tmp_path / "runs").exists() and not (tmp_path / "predictions").exists()


def test_sync_batchnorm_with_gradient_patch_selection_is_refused_before_it_trains(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """configs/trainer/ddp_multinode.yaml turned SyncBatchNorm on; with a gradient method selecting the patches
    (configs/table2/gradcam.yaml) every GPU's first step failed: the per-image gradients are batched over images, and
    SyncBatchNorm's backward all-reduces, which torch cannot batch. Refused before anything runs; CAM is not."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    message = (r"^wsod fit: trainer.sync_batchnorm: true, with model.train_saliency gradcam \(a gradient method\) and "
               r"batches of 2: .* use trainer.sync_batchnorm false")  # fmt: skip
    _refused(["fit", "--config", str(config), "--trainer.sync_batchnorm", "true", "--model.train_saliency", "gradcam",
              "--data.batch_size", "2"], message, caplog)  # fmt: skip
    assert not (tmp_path / "runs").exists()
    section = {"trainer": {"sync_batchnorm": True}}
    cam, gradcam = SimpleNamespace(train_saliency=CAM()), SimpleNamespace(train_saliency=GradCAM())
    cli_checks.check_sync_batchnorm(cam, SimpleNamespace(batch_size=6), section)
    cli_checks.check_sync_batchnorm(gradcam, SimpleNamespace(batch_size=1), section)  # one image: nothing to batch over
    cli_checks.check_sync_batchnorm(gradcam, SimpleNamespace(batch_size=6), {"trainer": {"sync_batchnorm": False}})
    for config_file in sorted((REPO / "configs" / "trainer").glob("*.yaml")):  # the shipped ones never ask for it
        assert not yaml.safe_load(config_file.read_text())["trainer"].get("sync_batchnorm"), config_file


def test_print_config_for_every_yaml_under_configs(capsys: pytest.CaptureFixture[str]) -> None:
    base = REPO / "configs" / "gmic_vindr.yaml"
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        configs = [path] if path.name in ("gmic_vindr.yaml", "demo.yaml") else [base, path]
        args = ["fit"] + [a for c in configs for a in ("--config", str(c))] + ["--print_config"]
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code in (0, None), path
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["model"]["class_path"] == "wsod_mammo.training.module.GMICLitModule", path
        assert printed["data"]["class_path"] == "wsod_mammo.data.datamodule.VinDrMammoDataModule", path


@pytest.mark.parametrize(("given", "parsed"), [("1", 1), ("1.0", 1.0), ("0.25", 0.25), ("3", 3)])
def test_limit_batches_on_the_command_line_is_a_count_when_an_int(
    capsys: pytest.CaptureFixture[str], given: str, parsed: float
) -> None:
    """`--trainer.limit_test_batches 1` is one batch: read as 1.0, it evaluated the whole test set."""
    args = ["test", "--config", str(REPO / "configs" / "demo.yaml"), "--trainer.limit_test_batches", given]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--trainer.limit_val_batches", given, "--print_config"])
    assert exit_info.value.code in (0, None)
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    for key in ("limit_test_batches", "limit_val_batches"):
        assert trainer[key] == parsed and type(trainer[key]) is type(parsed), (key, trainer[key])


def test_a_fast_dev_run_test_writes_no_report_into_the_working_directory(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod test --trainer.fast_dev_run true` wrote its whole report (detection.json, tables, FROC plots, overlays)
    into the working directory (Lightning's DummyLogger there names no run folder), its note naming
    --trainer.limit_test_batches. Lightning writes no checkpoint and no log under fast_dev_run: nor does the test
    its report and overlays; its figures are printed, and one line says so."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with caplog.at_level(logging.INFO):
        main(["test", "--config", str(config), "--ckpt_path", "untrained", "--trainer.fast_dev_run", "true"])
    assert list(work.iterdir()) == [] and list(tmp_path.rglob("*.png")) == [] and list(tmp_path.rglob("*.json")) == []
    assert caplog.text.count("fast_dev_run writes no test report and no overlays") == 1
    assert "Table II" in caplog.text and "written to" not in caplog.text  # printed, not written
    assert "(--trainer.fast_dev_run true)" in caplog.text and "limit_test_batches" not in caplog.text


def test_a_fast_dev_run_predict_writes_no_predictions_folder(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod predict --trainer.fast_dev_run true` wrote a dated predictions folder (weights.json, the rows of its one
    batch, overlays, breasts) and warned that --trainer.limit_predict_batches, never given, left inputs out. As the
    test's report: made in a scratch folder and dropped, one line saying so; a run continued (resume_dir) is left as
    it is."""
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:4]
    config = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root)))
    args = ["predict", "--config", config, "--ckpt_path", "untrained", "--data.eval_batch_size", "2",
            "--data.predict_paths", f"[{', '.join(map(str, dicoms))}]"]  # fmt: skip
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with caplog.at_level(logging.INFO):
        main([*args, "--trainer.fast_dev_run", "true"])
    assert not (tmp_path / "predictions").exists() and list(scratch.iterdir()) == []
    assert caplog.text.count("fast_dev_run writes no predictions folder (as no checkpoint or log)") == 1
    assert "predictions for 2 images (0 unreadable), not written (--trainer.fast_dev_run" in caplog.text
    assert "limit_predict_batches" not in caplog.text
    main([*args, "--trainer.limit_predict_batches", "1"])
    (run,) = (tmp_path / "predictions").iterdir()
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    main([*args, "--trainer.fast_dev_run", "1", "--trainer.callbacks.init_args.resume_dir", str(run)])
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    assert list((tmp_path / "predictions").iterdir()) == [run] and list(scratch.iterdir()) == []


@pytest.mark.parametrize(("given", "parsed"), [("false", False), ("true", True)])
def test_crop_boxless_is_set_on_the_command_line(capsys: pytest.CaptureFixture[str], given: str, parsed: bool) -> None:
    """`--data.augmentation.crop_boxless true` reaches the augmentation (off by default: the study's recipe)."""
    args = ["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.augmentation.crop_boxless", given]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["augmentation"]["crop_boxless"] is parsed
    assert AugmentationConfig().crop_boxless is False


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_a_fit_resumed_from_a_checkpoint_older_than_its_last_is_refused_and_last_kept(
    trained: Path, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``wsod fit --ckpt_path best`` where best.ckpt is an earlier epoch than last.ckpt trained the later epochs again
    into the same folder, replacing last.ckpt and logging their steps a second time into the run's W&B history,
    without a word. Refused, last.ckpt untouched; with last.ckpt moved aside (on purpose) it is no longer refused."""
    state = torch.load(checkpoint(trained), map_location="cpu", weights_only=True) | {"wandb_run_id": "run1"}
    assert state["global_step"] > 1
    folder = tmp_path / "runs" / "wsod-test" / "run1" / "checkpoints"  # the run folder of tiny_config's logger
    folder.mkdir(parents=True)
    last, older = folder / "last.ckpt", folder / "best.ckpt"
    torch.save(state, last)
    torch.save(state | {"global_step": state["global_step"] - 1}, older)
    before = hashlib.sha256(Path(last).read_bytes()).hexdigest()
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    step = state["global_step"]
    message = (rf"^wsod fit: --ckpt_path .*best.ckpt \(epoch \d+, step {step - 1}\) is older than its run's "
               rf".*last.ckpt \(epoch \d+, step {step}\): .* resume with --ckpt_path last")  # fmt: skip
    _refused(["fit", "--config", str(config), "--ckpt_path", str(older)], message, caplog)
    assert hashlib.sha256(Path(last).read_bytes()).hexdigest() == before
    section = {"trainer": {"logger": {"class_path": "wsod_mammo.training.wandb_logger.OfflineWandbLogger",
                                      "init_args": {"project": "wsod-test", "save_dir": str(tmp_path / "runs"),
                                                    "id": "run1"}}}}  # fmt: skip
    with pytest.raises(ValueError, match="is older than its run's"):
        check_not_rewinding(state | {"global_step": 1}, older, section)
    check_not_rewinding(state, Path(last), section)  # last itself
    other = {"trainer": {"callbacks": [{"class_path": "x.WholeCheckpoint", "init_args": {"dirpath": str(tmp_path)}}]}}
    check_not_rewinding(state | {"global_step": 1}, older, other)  # a fit writing elsewhere loses nothing
    Path(last).rename(folder / "last.epoch-later.ckpt")
    check_not_rewinding(state | {"global_step": 1}, older, section)  # last.ckpt moved aside on purpose


def test_resume_from_last_ends_with_the_same_weights(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 workers (Lightning creates the iterator before ``set_epoch``), resumed == uninterrupted bit for bit,
    and the resumed fit continues the same run: one run folder, one W&B id (offline: a second W&B folder of that
    id, which the terminal names with how to upload both)."""
    monkeypatch.setenv("WANDB_MODE", "offline")

    def config(name: str, epochs: int) -> Path:
        settings = tiny_config(tmp_path / name, data_root, num_workers=2)
        settings["trainer"]["max_epochs"] = epochs
        return write_config(tmp_path / f"{name}.yaml", settings)

    main(["fit", "--config", str(config("straight", 2))])
    main(["fit", "--config", str(config("resumed", 1))])
    after_one_epoch = _state(checkpoint(tmp_path / "resumed"))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["fit", "--config", str(config("resumed", 2)), "--ckpt_path", "last"])
    (run,) = _run_dirs(tmp_path / "resumed")
    assert f"resuming W&B run {run.name} offline writes a second offline-run-*-{run.name} folder" in caplog.text
    # the config the run started with stays beside the resumed one's, and the changed option is named
    assert yaml.safe_load((run / "config.1.yaml").read_text())["trainer"]["max_epochs"] == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_epochs"] == 2
    assert "this command changes trainer.max_epochs; the run's earlier config is kept as config.1.yaml" in caplog.text
    assert len(list((tmp_path / "resumed" / "runs" / "wandb").glob(f"offline-run-*-{run.name}"))) == 2
    ends = [torch.load(checkpoint(tmp_path / n), weights_only=True) for n in ("straight", "resumed")]
    assert [c["epoch"] for c in ends] == [1, 1] and ends[0]["global_step"] == ends[1]["global_step"] > 0
    straight, resumed = (c["state_dict"] for c in ends)
    assert not torch.equal(resumed["model.fusion.weight"], after_one_epoch["model.fusion.weight"])  # it trained on
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    assert len(_run_dirs(tmp_path / "resumed")) == 1  # checkpoint() above also found exactly one last.ckpt


def test_a_resumed_fit_does_not_warn_that_its_own_checkpoint_folder_holds_files(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's `wsod fit ... --ckpt_path last` resumes in the run's own folder, which holds the checkpoint it
    resumes from: Lightning warned "Checkpoint directory ... exists and is not empty" on every resume, as if a fit
    were about to write over another's checkpoints."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    settings = tiny_config(tmp_path, data_root)
    main(["fit", "--config", str(write_config(tmp_path / "one.yaml", settings))])
    settings["trainer"]["max_epochs"] = 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(write_config(tmp_path / "two.yaml", settings)), "--ckpt_path", "last"])
    assert torch.load(checkpoint(tmp_path), weights_only=True)["epoch"] == 1  # it resumed and trained on
    assert [str(w.message) for w in caught if "exists and is not empty" in str(w.message)] == []


def _stopped_in_an_epoch_and_resumed_as_straight(
    tmp_path: Path, config: Callable[..., Path], epochs: int
) -> list[warnings.WarningMessage]:
    """Fit ``config("straight")`` (``epochs`` epochs, its batches recorded by ``cli_configs.BatchSums``); fit
    ``config("resumed")`` stopped by ``max_steps`` after its 2nd epoch's 1st batch, then resumed with ``--ckpt_path
    last``: every batch once, in the same order, and the same weights bit for bit. Returns the resume's warnings."""
    main(["fit", "--config", str(config("straight"))])
    per_epoch = len(torch.load(tmp_path / "straight.pt")["train"]) // epochs
    assert per_epoch >= 3
    main(["fit", "--config", str(config("resumed", max_steps=per_epoch + 1))])  # stops after the 2nd epoch's 1st batch
    first = torch.load(tmp_path / "resumed.pt")["train"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(config("resumed")), "--ckpt_path", "last"])
    rest = torch.load(tmp_path / "resumed.pt")["train"]
    assert first + rest == torch.load(tmp_path / "straight.pt")["train"]  # every batch once, in the same order
    straight, resumed = (_state(checkpoint(tmp_path / name)) for name in ("straight", "resumed"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    return caught


def test_a_fit_resumed_within_an_epoch_trains_the_rest_of_it_not_its_start_again(
    tmp_path: Path, data_root: Path
) -> None:
    """`last.ckpt` saved every step (`every_n_train_steps`, for long epochs): a fit stopped within its second epoch
    and resumed trained that epoch's first batches again and never its last ones (Lightning warned, buried in the
    log), so it ended with other weights than the uninterrupted fit. The resumed epoch now goes on where it
    stopped: the same batches, in the same order, and the same weights bit for bit. 2 workers, as users run."""

    def config(name: str, **trainer: Any) -> Path:
        settings = tiny_config(tmp_path / name, data_root, num_workers=2, batch_size=2)
        settings["trainer"] |= {"max_epochs": 2, "limit_val_batches": 0, **trainer}
        settings["trainer"]["callbacks"] = [
            settings["trainer"]["callbacks"][1] | {"init_args": {"filename": "last", "save_top_k": 1,
                                                                  "enable_version_counter": False,
                                                                  "every_n_train_steps": 1}},
            {"class_path": "cli_configs.BatchSums", "init_args": {"path": str(tmp_path / f"{name}.pt")}},
        ]  # fmt: skip
        return write_config(tmp_path / f"{name}.yaml", settings)

    caught = _stopped_in_an_epoch_and_resumed_as_straight(tmp_path, config, epochs=2)
    # Lightning's advice for a sampler that keeps no position ("unreliable results") is not this one's
    assert not [w for w in caught if "dataloader is not resumable" in str(w.message)]


def test_a_fit_that_max_steps_stopped_within_an_epoch_resumes_after_the_batches_it_trained(
    tmp_path: Path, data_root: Path
) -> None:
    """`--trainer.max_steps` stopping a fit within an epoch: its every-epoch last.ckpt is saved in that epoch's end
    hooks, and Lightning records the epoch processed. Resumed, the fit trained the epoch's remaining batches drawn
    from the next epoch's order (images the epoch had trained, again, and never its last ones), and shuffled every
    later epoch as the one after it. It now goes on as from a checkpoint saved within the epoch: bit for bit."""

    def config(name: str, **trainer: Any) -> Path:
        settings = tiny_config(tmp_path / name, data_root, batch_size=2)
        settings["trainer"] |= {"max_epochs": 3, "limit_val_batches": 0, **trainer}
        settings["trainer"]["callbacks"] = [
            settings["trainer"]["callbacks"][1],  # last.ckpt, every epoch
            {"class_path": "cli_configs.BatchSums", "init_args": {"path": str(tmp_path / f"{name}.pt")}},
        ]
        return write_config(tmp_path / f"{name}.yaml", settings)

    _stopped_in_an_epoch_and_resumed_as_straight(tmp_path, config, epochs=3)


def test_best_and_last_find_a_run_folder_moved_to_another_disk_with_a_link_in_its_place(tmp_path: Path) -> None:
    """``Path.glob("**")`` follows no link: the newest run, moved to a bigger disk and linked back, was passed over
    and ``--ckpt_path best`` named the older run's checkpoint without a word. A link back up the tree is walked once."""
    root, disk = tmp_path / "runs", tmp_path / "disk"
    for folder, age in ((root / "wsod-mammo" / "older", 3600), (disk / "newest", 0)):
        (folder / "checkpoints").mkdir(parents=True)
        for name in ("best.ckpt", "last.ckpt"):
            (folder / "checkpoints" / name).write_bytes(b"")
            os.utime(folder / "checkpoints" / name, (time.time() - age,) * 2)
    (root / "wsod-mammo" / "newest").symlink_to(disk / "newest")
    (root / "wsod-mammo" / "loop").symlink_to(root)
    section = {"trainer": {"logger": {"class_path": "wsod_mammo.training.wandb_logger.OfflineWandbLogger",
                                      "init_args": {"save_dir": str(root)}}}}  # fmt: skip
    moved = root / "wsod-mammo" / "newest" / "checkpoints"
    assert resolve_checkpoint("best", section) == moved / "best.ckpt"
    assert resolve_checkpoint("last", section) == moved / "last.ckpt"
    assert resolve_checkpoint("older:last", section) == root / "wsod-mammo" / "older" / "checkpoints" / "last.ckpt"


def test_best_not_found_under_a_relative_save_dir_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit with `save_dir: runs/demo` in one working directory, its test from another: "no best.ckpt in any run
    under runs/demo (run `wsod fit` first)" named no place, and the run exists."""
    monkeypatch.chdir(tmp_path)
    section = {"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                      "init_args": {"save_dir": "runs/demo"}}}}  # fmt: skip
    with pytest.raises(FileNotFoundError, match=f"under runs/demo \\({re.escape(str(tmp_path / 'runs' / 'demo'))}: a "):
        resolve_checkpoint("best", section)


def test_a_second_fit_writes_its_own_run_folder_and_best_resolves_to_the_newest(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"limit_train_batches": 1, "limit_val_batches": 1}
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    config = write_config(tmp_path / "c.yaml", settings)
    with caplog.at_level(logging.INFO, logger="wsod_mammo.cli"):
        main(["fit", "--config", str(config)])
    (first,) = _run_dirs(tmp_path)
    # the terminal says where the checkpoints go (they are resolved after that line used to look for them)
    assert f"fit: checkpoints (best.ckpt, last.ckpt) in {first / 'checkpoints'}" in caplog.text
    first_best = (first / "checkpoints" / "best.ckpt").read_bytes()
    # `limit_train_batches: 1` is one batch (Lightning's int), not 1.0 (every batch) as jsonargparse read it
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    main(["fit", "--config", str(config)])
    (second,) = set(_run_dirs(tmp_path)) - {first}
    assert (first / "checkpoints" / "best.ckpt").read_bytes() == first_best  # nothing of the first run overwritten
    section = yaml.safe_load(config.read_text())
    assert resolve_checkpoint("best", section) == second / "checkpoints" / "best.ckpt"
    assert resolve_checkpoint(f"{first.name}:best", section) == first / "checkpoints" / "best.ckpt"
    assert resolve_checkpoint(f"{first}:last", section) == first / "checkpoints" / "last.ckpt"
    # the folder `wsod fit` prints, as the hint for a folder given as a path says: `<it>:best`
    with pytest.raises(FileNotFoundError, match=f"is a folder; .*--ckpt_path {first / 'checkpoints'}:best"):
        resolve_checkpoint(str(first / "checkpoints"), section)
    assert resolve_checkpoint(f"{first / 'checkpoints'}:best", section) == first / "checkpoints" / "best.ckpt"
    with pytest.raises(FileNotFoundError, match="nosuchrun"):
        resolve_checkpoint("nosuchrun:best", section)
    with pytest.raises(FileNotFoundError, match=f"{first} is a folder; .*--ckpt_path {first}:best"):
        resolve_checkpoint(str(first), section)
    twin = first.parent.parent / "other-project" / first.name  # the same id under another project
    shutil.copytree(first, twin)
    with pytest.raises(FileNotFoundError, match=f"the run id '{first.name}' names several runs"):
        resolve_checkpoint(f"{first.name}:best", section)  # was the newest of the two, in silence


def test_last_is_saved_every_epoch_when_validation_runs_every_second_epoch(tmp_path: Path, data_root: Path) -> None:
    """With `check_val_every_n_epoch: 2` Lightning saved last.ckpt after validations only: a 3-epoch fit ended with
    epoch 2's, and `--ckpt_path last` tested (or resumed) a model an epoch old. A ReduceLROnPlateau on the
    validation AUROC stopped the fit after the first epoch (no figure to step on)."""
    settings = tiny_config(tmp_path, data_root)
    settings["model"]["init_args"]["scheduler"] = {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                                                   "init_args": {"mode": "max", "patience": 0}}  # fmt: skip
    # the whole validation split (masses and normals): a batch of one kind has no AUROC, and a NaN is not stepped on
    settings["trainer"] |= {"limit_train_batches": 1, "limit_val_batches": 1.0, "max_epochs": 3,
                            "check_val_every_n_epoch": 2}  # fmt: skip
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    (run,) = _run_dirs(tmp_path)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3)
    assert torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 1  # the one validated
    (schedule,) = last["lr_schedulers"]
    assert schedule["last_epoch"] == 1  # stepped once: after epoch 1's validation, not after epochs 0 and 2


def test_a_model_checkpoint_keeping_every_epoch_beside_best_and_last_saves_and_resumes(
    tmp_path: Path, data_root: Path
) -> None:
    """Lightning's ModelCheckpoint added to keep every epoch (no monitor) had the state key that WholeCheckpoint
    (last.ckpt) takes from ModelCheckpoint: the Trainer refused the config before anything ran, "Found more than one
    stateful callback of type `ModelCheckpoint`", of a config holding one."""
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"limit_train_batches": 1, "limit_val_batches": 1, "max_epochs": 1}
    every = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"filename": "{epoch}", "save_top_k": -1}}  # fmt: skip
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], every]
    config = write_config(tmp_path / "c.yaml", settings)
    main(["fit", "--config", str(config)])
    (run,) = _run_dirs(tmp_path)
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == [
        "best.ckpt", "epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"]  # fmt: skip
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    (whole,) = [state for key, state in last["callbacks"].items() if key.startswith("WholeCheckpoint{")]
    assert Path(whole["best_model_path"]).name == "last.ckpt"  # its own state, apart from the ModelCheckpoint's
    assert any(key.startswith("ModelCheckpoint{") for key in last["callbacks"])


def test_best_is_the_newest_runs_and_a_newest_run_without_one_is_named_not_skipped(tmp_path: Path) -> None:
    """A fit with `--trainer.limit_val_batches 0` writes last.ckpt alone: `--ckpt_path best` then evaluated an
    older run's best.ckpt without a word."""
    section = {"trainer": {"logger": {"class_path": "x.WandbLogger", "init_args": {"save_dir": str(tmp_path)}}}}
    for age, (run, names) in enumerate([("older", ["best", "last"]), ("newer", ["last"])]):
        (tmp_path / "wsod-mammo" / run / "checkpoints").mkdir(parents=True)
        for name in names:
            (tmp_path / "wsod-mammo" / run / "checkpoints" / f"{name}.ckpt").write_bytes(b"")
            os.utime(tmp_path / "wsod-mammo" / run / "checkpoints" / f"{name}.ckpt", (1e9 + age, 1e9 + age))
    newer, older = (tmp_path / "wsod-mammo" / run / "checkpoints" for run in ("newer", "older"))
    assert resolve_checkpoint("last", section) == newer / "last.ckpt"
    refusal = rf"newest run's checkpoints \({newer}\) hold no best.ckpt .*--ckpt_path {newer}:last; {older}:best names"
    with pytest.raises(FileNotFoundError, match=refusal):
        resolve_checkpoint("best", section)
    assert resolve_checkpoint("older:best", section) == older / "best.ckpt"
    (newer / "best.ckpt").write_bytes(b"")
    assert resolve_checkpoint("best", section) == newer / "best.ckpt"


def test_a_run_id_whose_config_keeps_checkpoints_elsewhere_says_where(tmp_path: Path) -> None:
    """`wsod study` runs put checkpoints in a configured dirpath, not the run folder: `<run id>:best` says so."""
    (tmp_path / "wsod-mammo" / "abc123").mkdir(parents=True)
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "best.ckpt").write_bytes(b"")
    callback = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(tmp_path / "ckpts")}}  # fmt: skip
    section = {"trainer": {"logger": {"class_path": "x.WandbLogger", "init_args": {"save_dir": str(tmp_path)}},
                           "callbacks": [callback]}}  # fmt: skip
    assert resolve_checkpoint("best", section) == tmp_path / "ckpts" / "best.ckpt"
    with pytest.raises(FileNotFoundError, match=r"abc123.*writes its checkpoints to .*ckpts: --ckpt_path best"):
        resolve_checkpoint("abc123:best", section)


def test_a_file_named_like_a_run_alias_is_that_file(tmp_path: Path) -> None:
    """`--ckpt_path dir/model:best` naming a file that exists was read as run `dir/model`'s best.ckpt ("no best.ckpt
    in run 'dir/model'"); the file wins, and with no such file the alias still names the run's checkpoint."""
    section = {"trainer": {"logger": {"class_path": "x.WandbLogger", "init_args": {"save_dir": str(tmp_path)}}}}
    (tmp_path / "dir" / "model" / "checkpoints").mkdir(parents=True)
    (tmp_path / "dir" / "model" / "checkpoints" / "best.ckpt").write_bytes(b"")
    run = tmp_path / "dir" / "model"
    for alias in ("best", "last"):  # best: was run's best.ckpt in silence; last: "no last.ckpt in run"
        Path(f"{run}:{alias}").write_bytes(b"")
        assert resolve_checkpoint(f"{run}:{alias}", section) == Path(f"{run}:{alias}")
    Path(f"{run}:best").unlink()
    assert resolve_checkpoint(f"{run}:best", section) == run / "checkpoints" / "best.ckpt"


def test_a_resumed_fit_continues_the_run_folders_id_only(tmp_path: Path) -> None:
    """`--ckpt_path last` of a run folder continues that W&B run; an id the config gives, or a checkpoint outside a
    run folder of the config's logger, is left alone."""
    wandb_logger = "wsod_mammo.training.wandb_logger.OfflineWandbLogger"

    def logger_id(path: Path, init_args: dict[str, Any], logger: str = wandb_logger) -> Any:
        section = {"trainer": {"logger": {"class_path": logger, "init_args": init_args}}}
        continue_run(path, section)
        return section["trainer"]["logger"]["init_args"].get("id")

    in_run = tmp_path / "runs" / "wsod-mammo" / "abc123" / "checkpoints" / "last.ckpt"
    assert logger_id(in_run, {"save_dir": str(tmp_path / "runs")}) == "abc123"
    assert logger_id(in_run, {"save_dir": str(tmp_path / "runs"), "id": "mine"}) == "mine"
    assert logger_id(tmp_path / "exported" / "model.ckpt", {"save_dir": str(tmp_path / "runs")}) is None
    # the layout of before 2026-11-26, <save_dir>/checkpoints: "demo" was taken for the W&B run's id
    old_layout = tmp_path / "runs" / "demo" / "checkpoints" / "last.ckpt"
    assert logger_id(old_layout, {"save_dir": str(tmp_path / "runs" / "demo")}) is None
    csv_logger = "lightning.pytorch.loggers.CSVLogger"  # no run id to continue (CSVLogger takes no `id`)
    assert logger_id(in_run, {"save_dir": str(tmp_path / "runs")}, csv_logger) is None


def test_a_fit_logging_to_a_csv_logger_resumes_in_its_own_run_folder(tmp_path: Path, data_root: Path) -> None:
    """With a CSVLogger (or TensorBoard's) as the logger, `--ckpt_path last` went on in a new `version_1` folder:
    its checkpoints' folder had changed, so Lightning dropped the best score, the resumed fit's first validation
    replaced best.ckpt whatever it scored, and `--ckpt_path best` then named that newest run's. Going on in its
    folder, Lightning's CSV writer deleted the run's metrics.csv ("Previous log files ... will be deleted"): the
    epochs before the resume were lost."""
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"limit_train_batches": 1}
    settings["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(tmp_path / "runs")}}  # fmt: skip
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    config = write_config(tmp_path / "c.yaml", settings)
    main(["fit", "--config", str(config)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert not [w for w in caught if "will be deleted" in str(w.message)]
    runs = sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir())
    assert runs == ["version_0"]
    folder = tmp_path / "runs" / "lightning_logs" / "version_0"
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("BestCheckpoint")]
    assert Path(state["best_model_path"]).parent == folder / "checkpoints"
    assert yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["logger"]["init_args"]["version"] == (
        "version_0"
    )
    with (folder / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows if row["val/loss"]] == ["0", "1"]  # each epoch's validation, once


def test_a_fit_resumed_from_an_earlier_epoch_drops_the_csv_rows_it_logs_again(tmp_path: Path, data_root: Path) -> None:
    """A 3-epoch fit resumed from its epoch-1 checkpoint (a fit cut short in epoch 2 resumes from last.ckpt so) kept
    every row of its metrics.csv, epoch 2's too, then logged epoch 2 again: its steps appeared twice in the file, and
    a plot drew them twice. The rows from the checkpoint's step on are dropped; the earlier ones are kept."""
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"limit_train_batches": 1, "max_epochs": 3}
    settings["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(tmp_path / "runs")}}  # fmt: skip
    every_epoch = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"filename": "e{epoch}", "auto_insert_metric_name": False, "save_top_k": -1},
    }
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], every_epoch]
    config = write_config(tmp_path / "c.yaml", settings)
    main(["fit", "--config", str(config)])
    folder = tmp_path / "runs" / "lightning_logs" / "version_0"

    def rows() -> list[dict[str, str]]:
        with (folder / "metrics.csv").open(newline="") as file:
            return list(csv.DictReader(file))

    before = rows()
    assert [row["epoch"] for row in before if row["val/loss"]] == ["0", "1", "2"]
    (folder / "checkpoints" / "last.ckpt").rename(tmp_path / "last.ckpt")  # as if the fit stopped in epoch 2
    step = torch.load(folder / "checkpoints" / "e1.ckpt", weights_only=True)["global_step"]
    main(["fit", "--config", str(config), "--ckpt_path", str(folder / "checkpoints" / "e1.ckpt")])
    after = rows()
    assert [row["epoch"] for row in after if row["val/loss"]] == ["0", "1", "2"]  # each epoch's validation, once
    train_steps = [row["step"] for row in after if row["train/loss"]]
    assert len(train_steps) == len(set(train_steps)) == 3
    assert after[: len([r for r in before if int(r["step"]) < step])] == [r for r in before if int(r["step"]) < step]


def test_every_csv_logger_of_a_list_resumes_in_its_own_run_folder(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two CSV loggers (in two save_dirs), `--ckpt_path last`: the first went on in its run folder (the checkpoints'),
    the second started `version_1`, its metrics.csv cut in two folders; and the config's warning said the command
    changed `trainer.logger` (the versions the resume set)."""
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"limit_train_batches": 1}
    settings["trainer"]["logger"] = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "runs")}},
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "more")}},
    ]
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    config = write_config(tmp_path / "c.yaml", settings)
    main(["fit", "--config", str(config)])
    with caplog.at_level(logging.INFO, logger="wsod_mammo"):
        main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    for save_dir in ("runs", "more"):
        assert sorted(p.name for p in (tmp_path / save_dir / "lightning_logs").iterdir()) == ["version_0"], save_dir
    folder = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert f"{folder}: this command changes trainer.max_epochs; the run's earlier config is kept" in caplog.text


def test_a_fit_resumed_from_a_renamed_run_folder_says_it_goes_on_in_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's W&B id names the folder a resumed fit writes into: resumed from a folder renamed after the fit, it
    trained on in a new folder of the old name, whose best.ckpt was the first epoch it validated, without a word."""
    runs = tmp_path / "runs"

    def resume_from(run: str) -> dict[str, Any]:
        section = {"trainer": {"logger": {"class_path": "wsod_mammo.training.wandb_logger.OfflineWandbLogger",
                                          "init_args": {"save_dir": str(runs)}}}}  # fmt: skip
        continue_run(runs / "wsod-mammo" / run / "checkpoints" / "last.ckpt", section, "abc123")
        return section["trainer"]["logger"]["init_args"]

    with caplog.at_level(logging.WARNING, logger="wsod_mammo.cli_checkpoints"):
        assert resume_from("abc123")["id"] == "abc123"
        assert "is not in the folder of its run" not in caplog.text
        assert resume_from("baseline")["id"] == "abc123"
    assert f"its run abc123, {runs / 'wsod-mammo' / 'abc123' / 'checkpoints'}, where training goes on" in caplog.text
    assert "rename the folder back to abc123" in caplog.text


def test_a_checkpoint_recording_another_lightning_module_is_refused_despite_gmic_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.global_network.conv.weight": torch.zeros(1)},
                "hyper_parameters": {"_class_path": "other.models.Detector"},
                "pytorch-lightning_version": "2.5.0"}, path)  # fmt: skip
    with pytest.raises(ValueError, match=r"a checkpoint of other.models.Detector, not of wsod_mammo.training.module"):
        check_checkpoint(path)


@pytest.mark.parametrize(
    ("entry", "value"),
    [("test_saliency", [{"class_path": "{module}.Method"}]),
     ("train_saliency", {"class_path": "{module}.Method"}),
     ("model", {"class_path": "{module}.Network", "init_args": {}}),
     ("optimizer", {"class_path": "{module}.Optimizer", "init_args": {"lr": 0.1}}),
     ("optimizer", "{module}.Optimizer"),
     ("scheduler", "{module}.Scheduler")],
)  # fmt: skip
def test_a_module_a_checkpoint_names_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, value: Any
) -> None:
    """LightningCLI parses a checkpoint's hyperparameters into the model config, and jsonargparse imported every
    module a class_path (or an optimizer given as an import path) named before checking its type: a module on the
    path ran its code from a downloaded checkpoint (`wsod test --ckpt_path`). Refused in one line naming the entry;
    a module the command's config imported (a user's own saliency method) is taken."""
    module = f"wsod_marker_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    named = json.loads(json.dumps(value).replace("{module}", module))
    path = tmp_path / "crafted.ckpt"
    hparams = {"_class_path": "wsod_mammo.training.module.GMICLitModule", entry: named}
    weights = {"model.global_network.conv.weight": torch.zeros(1)}
    torch.save({"state_dict": weights, "pytorch-lightning_version": "2.6.0", "hyper_parameters": hparams}, path)
    with pytest.raises(ValueError, match=rf"crafted.ckpt: its hyper_parameters' {re.escape(entry)}.* names {module}"):
        check_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--ckpt_path", str(path)])
    assert exit_info.value.code == 2 and not marker.exists()
    importlib.import_module(module)  # as the user's config naming it imports it
    try:
        check_checkpoint(path)
    finally:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), 5.0, -1.0, "0.5", None])
def test_a_checkpoints_threshold_that_is_no_number_in_0_1_is_refused(tmp_path: Path, threshold: Any) -> None:
    """A threshold cuts min-max normalized maps: NaN or one above 1 gave no box, one below 0 a box of the whole
    image, and Table II reported those cells as validated without a word; a string failed in a traceback as the
    test began. `wsod --ckpt_path`, Predictor.from_checkpoint and load_from_checkpoint refuse it naming the entry."""
    path = tmp_path / "edited.ckpt"
    weights = {"model.global_network.conv.weight": torch.zeros(1)}
    thresholds = {"cam": 0.4, "gradcam": threshold}
    checkpoint = {"state_dict": weights, "pytorch-lightning_version": "2.6.0", "detection_thresholds": thresholds}
    torch.save(checkpoint, path)
    match = rf"edited.ckpt: its detection_thresholds\['gradcam'\] is {re.escape(repr(threshold))}, not a threshold in"
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*{match}"):
        check_checkpoint(path)
    with pytest.raises(ValueError, match=rf"^checkpoint: .*{match}"):
        module_from_checkpoint(checkpoint, path)
    with pytest.raises(ValueError, match=r"^checkpoint: its detection_thresholds\['gradcam'\]"):
        GMICLitModule(GMIC(num_classes=1)).on_load_checkpoint(checkpoint)


@pytest.mark.parametrize("key", ["state_dict", "hyper_parameters"])
def test_a_checkpoint_whose_state_dict_or_hyperparameters_are_no_dict_is_one_line(tmp_path: Path, key: str) -> None:
    """An edited checkpoint whose state_dict or hyper_parameters were a list ended `wsod predict` in an
    AttributeError traceback (``'list' object has no attribute 'keys'``)."""
    checkpoint: dict[str, Any] = {"state_dict": {"model.global_network.conv.weight": torch.zeros(1)},
                                  "pytorch-lightning_version": "2.6.0", "hyper_parameters": {}}  # fmt: skip
    checkpoint[key] = ["x"]
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*edited.ckpt: its {key} is a list, not a dict"):
        check_checkpoint(tmp_path / "edited.ckpt")
    with pytest.raises(ValueError, match=rf"^checkpoint: .*edited.ckpt: its {key} is a list, not a dict"):
        Predictor.from_checkpoint(tmp_path / "edited.ckpt")


@pytest.mark.parametrize("size", [["a", "b"], [256], 256, [256, 192, 3]])
def test_a_checkpoints_input_size_that_is_no_pair_of_numbers_is_one_line_naming_it(tmp_path: Path, size: Any) -> None:
    """A damaged or edited checkpoint's input frame ended `wsod predict` in "invalid literal for int() with base 10:
    'a'", naming neither the file nor the entry (a single number: "'int' object is not iterable")."""
    checkpoint = {"input_frame": {"input_size": size}, "state_dict": {}}
    section = {"data": {"init_args": {"input_size": [192, 128], "crop_breast": True, "resize": "stretch"}}}
    message = rf"its input frame's input_size is {re.escape(repr(size))}, not \[height, width\] in pixels"
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*x.ckpt: {message}"):
        reconcile_input_frame(section, checkpoint, "predict", [], tmp_path / "x.ckpt")
    torch.save(checkpoint, tmp_path / "y.ckpt")
    with pytest.raises(ValueError, match=rf"^checkpoint: .*y.ckpt: {message}"):
        Predictor.from_checkpoint(tmp_path / "y.ckpt")


@pytest.mark.parametrize(
    ("size", "match"),
    [([40000, 40000], r"1,600,000,000 pixels, over the 134,217,728 an image may have"),
     ([250, 192], r"which GMIC cannot take \(each side a positive multiple of 64"),
     ([0, 64], r"which GMIC cannot take")],
)  # fmt: skip
def test_a_checkpoints_input_frame_gmic_cannot_take_or_too_large_is_refused_before_any_image_is_read(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture, size: list[int], match: str
) -> None:
    """`wsod predict` and `Predictor.from_checkpoint` adopt a checkpoint's input frame: a damaged or crafted one of
    65536 x 65536 took tens of GB an image, and one that is no multiple of 64 failed at the first batch in a traceback
    (predict named the config's data.input_size). Refused as the checkpoint is read, naming the file and the entry."""
    checkpoint = {"state_dict": {"model.global_network.conv.weight": torch.zeros(1)}, "hyper_parameters": {},
                  "pytorch-lightning_version": "2.6.0", "input_frame": {"input_size": size}}  # fmt: skip
    message = rf"its input frame's input_size is {re.escape(repr(size))}, {match}"
    section = {"data": {"init_args": {"input_size": [192, 128], "crop_breast": True, "resize": "stretch"}}}
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*x.ckpt: {message}"):
        reconcile_input_frame(section, checkpoint, "predict", [], tmp_path / "x.ckpt")
    assert section["data"]["init_args"]["input_size"] == [192, 128]
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    for given in (None, (192, 128)):  # a frame given does not pass over a damaged one
        with pytest.raises(ValueError, match=rf"^checkpoint: .*crafted.ckpt: {message}"):
            Predictor.from_checkpoint(tmp_path / "crafted.ckpt", given)
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*crafted.ckpt: {message}"):
        check_checkpoint(tmp_path / "crafted.ckpt")  # a resumed fit's too: its module read it in a traceback
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    dicoms = str([str(f) for f in sorted((data_root / "images").glob("*/*.dicom"))[:1]])
    _refused(["predict", "--config", str(config), "--ckpt_path", str(tmp_path / "crafted.ckpt"),
              "--data.predict_paths", dicoms],
             rf"^wsod predict: --ckpt_path .*crafted.ckpt: {message}", caplog)  # fmt: skip
    _refused(["fit", "--config", str(config), "--ckpt_path", str(tmp_path / "crafted.ckpt")],
             rf"^wsod fit: --ckpt_path .*crafted.ckpt: {message}", caplog)  # fmt: skip
    assert not (tmp_path / "predictions").exists() and not (tmp_path / "runs").exists()


def test_test_keeps_the_configs_input_frame_and_init_args_spelling_counts_as_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """test/validate keep the config's frame (their cache is prepared at it); predict keeps an option the command line
    sets in either spelling (`--data.input_size` or `--data.init_args.input_size`)."""
    checkpoint = {"input_frame": {"input_size": [256, 192], "crop_breast": True, "resize": "stretch"}}

    def section() -> dict[str, Any]:
        return {"data": {"init_args": {"input_size": [192, 128], "crop_breast": True, "resize": "stretch"}}}

    for subcommand in ("test", "validate"):
        kept = section()
        with caplog.at_level(logging.WARNING):
            reconcile_input_frame(kept, checkpoint, subcommand, [], tmp_path / "x.ckpt")
        assert kept["data"]["init_args"]["input_size"] == [192, 128]
        back = "--data.input_size '[256, 192]' for the checkpoint's"
        assert f"{subcommand} at the config's frame ({back})" in caplog.text
    given = section()
    words = ["--data.init_args.input_size", "[192, 128]"]
    reconcile_input_frame(given, checkpoint, "predict", words, tmp_path / "x.ckpt")
    assert given["data"]["init_args"]["input_size"] == [192, 128]
    adopted = section()
    reconcile_input_frame(adopted, checkpoint, "predict", [], tmp_path / "x.ckpt")
    assert adopted["data"]["init_args"]["input_size"] == [256, 192]
    # part of the frame given: the line said "predicting at the checkpoint's frame" (stretch) and suggested the very
    # option given; it says what runs, the checkpoint's size with the command line's resize mode
    partly = section()
    partly["data"]["init_args"]["resize"] = "native"  # as the parser set it from the command line
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reconcile_input_frame(partly, checkpoint, "predict", ["--data.resize", "native"], tmp_path / "x.ckpt")
    assert partly["data"]["init_args"]["input_size"] == [256, 192] and partly["data"]["init_args"]["resize"] == "native"
    assert caplog.messages == [
        f"--ckpt_path {tmp_path / 'x.ckpt'}: made for input frame 256x192 (stretch, breast crop), the config says "
        "192x128 (native, breast crop): predicting at 256x192 (native, breast crop), the checkpoint's input_size with "
        "the command line's resize (--data.input_size '[192, 128]' keeps the config's)"
    ]


def test_bf16_mixed_fit_on_cpu_with_a_gradient_patch_method(tmp_path: Path, data_root: Path) -> None:
    settings = tiny_config(tmp_path, data_root, train_saliency="gradcampp")
    settings["trainer"]["precision"] = "bf16-mixed"
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    state = _state(checkpoint(tmp_path))
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_compiled_networks_test_with_layercam(tmp_path: Path, trained: Path, compile_without_inductor: None) -> None:
    """`wsod test` with `model.model.compile_networks` (on in gpu.yaml), the space-to-depth stems and the compiled
    training forward (which evaluation does not use): LayerCAM, one of the five test-time methods, used to fail (a
    compiled network gives its intermediate layers no gradient). Training with train_saliency layercam went the same
    way: `test_gmic.py` checks it against eager mode. Compiled without inductor's code generation (its numerics:
    test_gmic.py; with CUDA: test_cuda.py)."""
    config = str(trained / "config.yaml")
    main(["test", "--config", config, "--model.init_args.model.init_args.compile_networks", "true",
          "--model.init_args.model.init_args.global_stem", "space_to_depth",
          "--model.init_args.model.init_args.local_stem", "space_to_depth",
          "--model.init_args.model.init_args.compile_training_forward", "true",
          "--trainer.logger.init_args.save_dir", str(tmp_path), "--ckpt_path", str(checkpoint(trained))])  # fmt: skip
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("**/detection.json")]
    (resolved,) = [yaml.safe_load(p.read_text()) for p in tmp_path.glob("**/config.yaml")]
    # the command's runtime options stand although Lightning puts the checkpoint's hyperparameters over the model
    assert resolved["model"]["init_args"]["model"]["init_args"]["compile_networks"] is True
    assert resolved["model"]["init_args"]["model"]["init_args"]["global_stem"] == "space_to_depth"
    assert resolved["model"]["init_args"]["model"]["init_args"]["local_stem"] == "space_to_depth"
    assert resolved["model"]["init_args"]["model"]["init_args"]["compile_training_forward"] is True
    assert report["weights"] == "checkpoint"
    assert set(report["mass"]) == {"cam", "gradcam", "gradcampp", "xgradcam", "layercam"}
    assert all(cell["threshold_from"].startswith("validation") for cell in report["mass"].values())  # or a tie


def test_a_trained_checkpoint_tests_on_another_dataset_given_only_the_finding_csvs_required_fields(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """External validation (INbreast, an in-house set): a dataset of one's own laid out as VinDr, every row in the
    test split, no breast-level CSV, no series, BI-RADS, density or image size (read from the files), is tested at
    the thresholds the fit validated (the checkpoint's), every image once."""
    external = tmp_path / "external"
    shutil.copytree(data_root / "images", external / "images")
    with (data_root / "finding_annotations.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    blank = ("series_id", "breast_birads", "breast_density", "finding_birads", "height", "width")
    rows = [row | dict.fromkeys(blank, "") | {"split": "test"} for row in rows]
    with (external / "finding_annotations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint(trained, "best")),
          "--data.init_args.data_root", str(external), "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--model.init_args.test_saliency", "[cam]"])  # fmt: skip
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/**/detection.json")]
    masses = {row["image_id"] for row in rows if "Mass" in row["finding_categories"]}
    assert report["checkpoint"]["path"] == str(checkpoint(trained, "best"))
    assert report["mass"]["cam"]["threshold_from"].startswith("validation")  # the fit's, from the checkpoint
    assert report["all"]["cam"]["num_images"] == len({row["image_id"] for row in rows})  # both former splits
    assert report["mass"]["cam"]["num_images"] == len(masses)
    assert report["by_finding_birads"] is None and report["table1_by_density"] is None  # the data rates neither


def test_evaluation_options_given_with_a_checkpoint_are_the_ones_used(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning puts a checkpoint's hyperparameters over the whole model config: `wsod test --ckpt_path ...
    --model.test_saliency [gradcam]` evaluated all five methods, and `predict --model.predict_saliency cam` drew
    its boxes from gradcampp, each recording the fit's value in its config.yaml. How to evaluate is the command's."""
    config, ckpt = str(trained / "config.yaml"), str(checkpoint(trained))
    main(["test", "--config", config, "--ckpt_path", ckpt, "--model.init_args.test_saliency", "[gradcam]",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])  # fmt: skip
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/**/detection.json")]
    (resolved,) = [yaml.safe_load(p.read_text()) for p in tmp_path.glob("runs/**/config.yaml")]
    assert set(report["mass"]) == {"gradcam"}
    assert resolved["model"]["init_args"]["test_saliency"] == ["gradcam"]
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    output = tmp_path / "predictions"  # --trainer.callbacks.init_args.*: the last callback, the PredictionWriter
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["predict", "--config", config, "--ckpt_path", ckpt, "--model.predict_saliency", "cam",
              "--data.predict_paths", f"[{dicom}]", "--trainer.callbacks.init_args.output_dir", str(output),
              "--model.model.crop_shape=[32, 32]"])  # fmt: skip
    (records,) = [json.loads(p.read_text()) for p in output.glob("*/predictions.json")]
    assert [r["method"] for r in records] == ["cam"]
    # what the weights are is the checkpoint's: an option saying otherwise is named, not silently replaced
    warned = [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]
    assert warned == [
        "predict: --model.init_args.model.init_args.crop_shape (32, 32) is not used: the checkpoint's (64, 64) is (its "
        "weights were made with it)"
    ]  # predict_saliency, the command's own and used, is not among them
    caplog.clear()  # the README's spelling, one init_args of two, went unheard (the checkpoint's value, no word)
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["predict", "--config", config, "--ckpt_path", ckpt, "--data.predict_paths", f"[{dicom}]",
              "--trainer.callbacks.init_args.output_dir", str(tmp_path / "p2"),
              "--model.model.init_args.percent_t", "0.5"])  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]
    assert [w.split(" is not used")[0] for w in warned] == ["predict: --model.init_args.model.init_args.percent_t 0.5"]
    # a command that leaves them at their defaults gets the fit's: here a fit that tested two methods only
    fitted = torch.load(ckpt, map_location="cpu", weights_only=True)
    fitted["hyper_parameters"]["test_saliency"] = ["layercam", "cam"]
    torch.save(fitted, tmp_path / "two_methods.ckpt")
    save_dir = ["--trainer.logger.init_args.save_dir", str(tmp_path / "b")]
    main(["test", "--config", config, "--ckpt_path", str(tmp_path / "two_methods.ckpt"), *save_dir])
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("b/**/detection.json")]
    assert set(report["mass"]) == {"cam", "layercam"}


def test_predict_names_a_method_given_by_class_path_by_its_name_and_settings(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The line saying which method a predict uses over the fit's printed jsonargparse's ``Namespace(class_path=
    'wsod_mammo.saliency.GradCAM', init_args=Namespace(layer='stage4'))``; now its name and settings."""
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    stage4 = '{"class_path": "wsod_mammo.saliency.GradCAM", "init_args": {"layer": "stage4"}}'
    with caplog.at_level(logging.INFO, logger="wsod_mammo"):
        main(["predict", "--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint(trained)),
              "--model.predict_saliency", stage4, "--data.predict_paths", f"[{dicom}]",
              "--trainer.callbacks.init_args.output_dir", str(tmp_path / "predictions")])  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "where the checkpoint's fit had" in r.getMessage()]
    assert said == [
        "predict: --model.init_args.predict_saliency gradcam (layer='stage4'), where the checkpoint's fit had gradcampp"
    ]


def test_predict_of_a_name_the_checkpoints_test_methods_hold_otherwise_names_the_options_to_change(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint whose fit tested LayerCAM(layers=["stage5"]) refused `predict --model.predict_saliency layercam`
    with "model.test_saliency and model.predict_saliency: two saliency methods named 'layercam'": test_saliency is
    no option the predict was given. The refusal names predict's option, the checkpoint's method and its form."""
    stage5 = {"class_path": "wsod_mammo.saliency.LayerCAM", "init_args": {"layers": ["stage5"]}}
    fitted = torch.load(checkpoint(trained), map_location="cpu", weights_only=True)
    fitted["hyper_parameters"]["test_saliency"] = ["cam", stage5]
    torch.save(fitted, tmp_path / "stage5.ckpt")
    dicom = sorted((data_root / "images").glob("*/*.dicom"))[0]
    output = ["--trainer.callbacks.init_args.output_dir", str(tmp_path / "p")]
    args = ["predict", "--config", str(trained / "config.yaml"), "--ckpt_path", str(tmp_path / "stage5.ckpt"),
            "--data.predict_paths", f"[{dicom}]", *output]  # fmt: skip
    said = _refused([*args, "--model.predict_saliency", "layercam"], "", caplog)
    assert said == (
        "wsod predict: --model.predict_saliency layercam (_layers=('stage3', 'stage4', 'stage5')): the checkpoint's "
        "model.test_saliency holds another of its name, layercam (_layers=('stage5',)), and maps and thresholds go "
        f"by name: give --model.predict_saliency '{json.dumps(stage5)}' (that one), or a method of another name (a "
        "subclass, or register_saliency_method)"
    )
    main([*args, "--model.predict_saliency", json.dumps(stage5)])  # as the line says: predicted
    (records,) = [json.loads(p.read_text()) for p in (tmp_path / "p").glob("*/predictions.json")]
    assert [r["method"] for r in records] == ["layercam"]


def test_overlays_that_cannot_be_written_leave_the_test_reports_whole(
    tmp_path: Path, trained: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that filled up stopped `wsod test` at its first overlay (an OSError traceback) before any table was
    written. Each overlay that cannot be written is now a warning; the tables and detection.json are written."""
    import errno

    import wsod_mammo.training.callbacks as callbacks

    def full_disk(path, picture) -> None:
        raise OSError(errno.ENOSPC, f"{path}: could not write the PNG (No space left on device)")

    monkeypatch.setattr(callbacks, "write_png", full_disk)
    config, ckpt = str(trained / "config.yaml"), str(checkpoint(trained))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["test", "--config", config, "--ckpt_path", ckpt, "--trainer.logger.init_args.save_dir", str(tmp_path)])
    (run,) = [p.parent for p in tmp_path.glob("**/detection.json")]
    assert (run / "table1.md").is_file() and (run / "table2_row.md").is_file() and not list(run.glob("overlays/*"))
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("test: no overlay of ")]
    assert len(warned) == 2 and all("No space left on device" in w for w in warned)


def test_a_test_time_method_of_your_own_is_named_by_class_path(tmp_path: Path, trained: Path) -> None:
    """``test_saliency`` took names only: a user's own method (not registered, its module imported by nothing)
    could not be evaluated at test time, and a built-in one with settings lost them. By ``class_path`` it is
    evaluated under its class's name, said NOT VALIDATED (the fit never chose its threshold)."""
    custom = '[cam, {"class_path": "cli_configs.SquaredCAM"}]'
    config, ckpt = str(trained / "config.yaml"), str(checkpoint(trained))
    main(["test", "--config", config, "--ckpt_path", ckpt, "--model.test_saliency", custom,
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])  # fmt: skip
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/**/detection.json")]
    assert set(report["mass"]) == {"cam", "squaredcam"}
    (row_file,) = tmp_path.glob("runs/**/table2_row.csv")
    (row,) = list(csv.DictReader(row_file.open()))
    # cam's threshold is the checkpoint's, a tie at TPR 0 where a tiny fit's cam maps found no mass
    tied = "cam" in torch.load(ckpt, map_location="cpu", weights_only=True)["detection_thresholds_tied"]
    assert "@" in row["squaredcam"] and row["thresholds"] == "default: squaredcam" + ("; tied: cam" if tied else "")


def test_device_standardization_reaches_the_model_as_worker_standardization(
    tmp_path: Path, data_root: Path, npy_cache: Path
) -> None:
    """Lightning calls the DataModule's on_after_batch_transfer: uint16 batches reach the model standardized; with
    ``pixel_reads: main`` (2 workers, the GPU config's device augmentation) its on_before_batch_transfer reads the
    pixels the workers did not send, and the model sees what it sees when the workers send them."""
    on_device = {"standardize_on": "device", "augment_on": "device"}
    variants = {"worker": {"standardize_on": "worker"}, "device": {"standardize_on": "device"},
                "device_augment": on_device, "main": on_device | {"pixel_reads": "main", "num_workers": 2}}  # fmt: skip
    for where, options in variants.items():
        settings = tiny_config(tmp_path / where, data_root, cache_dir=str(npy_cache), **options)
        recorder = {
            "class_path": "cli_configs.FirstBatchRecorder",
            "init_args": {"path": str(tmp_path / f"{where}.pt")},
        }
        settings["trainer"]["callbacks"].append(recorder)
        settings["trainer"] |= {"limit_train_batches": 1, "limit_val_batches": 1}  # the first batches are compared
        main(["fit", "--config", str(write_config(tmp_path / f"{where}.yaml", settings))])
    worker, device, device_augment, main_reads = (torch.load(tmp_path / f"{w}.pt", weights_only=True) for w in variants)
    assert worker.keys() == device.keys() == main_reads.keys() == {"train", "val"}
    for stage, images in device.items():
        assert images.dtype == torch.float32 and images.shape[1:] == (1, *INPUT_SIZE)
        torch.testing.assert_close(images.mean((1, 2, 3)), torch.zeros(len(images)), atol=1e-4, rtol=0)
        torch.testing.assert_close(images.std((1, 2, 3)), torch.ones(len(images)), atol=1e-4, rtol=0)
        torch.testing.assert_close(images, worker[stage], atol=1e-4, rtol=1e-4, msg=stage)
        assert torch.equal(main_reads[stage], device_augment[stage]), stage
    assert checkpoint(tmp_path / "device").is_file() and checkpoint(tmp_path / "main").is_file()


def read_wandb_log(path: Path) -> list:
    """The protobuf records of an offline run's ``run-*.wandb`` transaction log (a LevelDB-style record log:
    32 KiB blocks of chunks with a 7-byte header, CRC-32 over the chunk's type and data; the format ``wandb sync``
    uploads). wandb 0.31 ships no Python reader (wandb-core reads it in Go). A chunk cut off by the end of the file
    (wandb-core still writing it) ends the list; a corrupt one fails."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, records, pending = path.read_bytes(), 32768, 7, [], b""
    assert data[:4] == b":W&B", path
    while position + 7 <= len(data):
        if block - position % block < 7:  # block trailer too short for a header: zero padding
            position += block - position % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        end = position + 7 + length
        if end > len(data):
            break
        assert kind in (1, 2, 3, 4) and zlib.crc32(data[position + 6 : end]) == crc, f"{path}: bad chunk at {position}"
        chunk, position = data[position + 7 : end], end
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def read_finished_wandb_log(path: Path, timeout: float = 60.0) -> list:
    """The records of a finished run, up to its ``exit`` record. ``run.finish()`` returns before they are on disk:
    it waits for wandb-core to process the exit record, then only tells the service that the run is over
    (``ServiceConnection.inform_finish`` publishes without waiting), and wandb-core's log writer holds the records
    in its 32 KiB block buffer until that closes the run's stream (``leveldb.Writer.Close``). Until then a run this
    small is the file's 7-byte header alone (read at once, the log held no config record), or half written. Waits
    for the exit record, then returns what is there."""
    deadline = time.monotonic() + timeout
    records = read_wandb_log(path)
    while not any(r.HasField("exit") for r in records) and time.monotonic() < deadline:
        time.sleep(0.05)
        records = read_wandb_log(path)
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def logged_metrics(records: list) -> dict:
    """Every logged value, wherever wandb wrote it: ``history`` rows, ``partial_history`` requests (a row the
    service had not yet committed as history when the log was closed: timing-dependent under load, which once lost
    ``val/fusion/auroc``) and the final ``summary``; later records win."""
    values = {}
    for record in records:
        if record.HasField("history"):
            items = record.history.item
        elif record.HasField("request") and record.request.HasField("partial_history"):
            items = record.request.partial_history.item
        elif record.HasField("summary"):
            items = record.summary.update
        else:
            continue
        values |= {_key(i): json.loads(i.value_json) for i in items}
    return values


def test_wandb_offline_run_holds_the_config_and_the_metrics(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's W&B log holds the config and every figure; best.ckpt is kept by validation's wAFROC of a test-time
    method, as a user who selects the model that localizes best configures it."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"]["callbacks"][0]["init_args"]["monitor"] = "val/wafroc/gradcampp"
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    (log,) = list((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    records = read_finished_wandb_log(log)
    assert any(r.HasField("exit") for r in records), f"{log}: no exit record 60 s after the fit"
    assert [r.exit.exit_code for r in records if r.HasField("exit")] == [0]  # a fit that finished, not a failed run
    config = {_key(i): json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
    assert "config" in config, f"{log}: no config record holds the resolved config ({sorted(config)})"
    resolved = yaml.safe_load(config["config"])
    assert resolved["model"]["init_args"]["train_saliency"] == "cam"
    assert resolved["data"]["init_args"]["data_root"] == str(data_root)
    history = logged_metrics(records)
    assert 0.0 <= history["val/fusion/auroc"] <= 1.0
    assert history["train/loss"] > 0 and "val/detection/gradcampp/tpr@fppi1" in history
    assert 0.0 <= history["val/pointing/gradcampp/hit"] <= 1.0  # the threshold-free localization curve, in W&B
    assert 0.0 <= history["val/wafroc/gradcampp"] <= 1.0 and 0.0 <= history["val/afroc/gradcampp"] <= 1.0
    kept = torch.load(checkpoint(tmp_path, "best"), map_location="cpu", weights_only=True)
    (state,) = [v for k, v in kept["callbacks"].items() if k.startswith("BestCheckpoint")]
    assert state["monitor"] == "val/wafroc/gradcampp"
    assert float(state["best_model_score"]) == pytest.approx(history["val/wafroc/gradcampp"])


def test_a_wandb_run_names_its_command_as_its_job_type(
    tmp_path: Path, data_root: Path, trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit's W&B run and the test of its checkpoint share a group (in `wsod study` a name too, `cam_seed42`), and
    nothing but the metrics each held told the training run from the test's: the job type is the command."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    main(["test", "--config", str(config), "--ckpt_path", str(checkpoint(trained))])
    (log,) = list((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [r.run.job_type for r in read_finished_wandb_log(log) if r.HasField("run")] == ["test"]
    (saved,) = list((tmp_path / "runs").glob("*/*/config.yaml"))
    assert yaml.safe_load(saved.read_text())["trainer"]["logger"]["init_args"]["job_type"] == "test"


# ------------------------------------------------------------------------------------------------ bad input
def _refused(args: list[str], match: str, caplog: pytest.LogCaptureFixture, status: int = 2) -> str:
    """`wsod ARGS` refuses: exit ``status`` (2: before running; 1: data it cannot use) and one error line matching
    ``match`` (no traceback)."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="wsod_mammo"), pytest.raises(SystemExit) as exit_info:
        main(args)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert exit_info.value.code == status and len(errors) == 1 and re.search(match, errors[0]), errors
    return errors[0]


@pytest.mark.parametrize(
    ("root", "option", "match"),
    [("nowhere", [], r"^wsod fit: data_root: .*nowhere does not exist"),
     ("data", ["--data.classes", "[mass]"], r"^wsod fit: classes: \['mass'\] match no finding category of the data")],
)  # fmt: skip
def test_data_a_run_cannot_use_is_one_line_naming_it(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture, root: str, option: list[str], match: str
) -> None:
    """A missing data_root or a class the data does not have (a misspelt `mass` trained on negatives only) used to
    end in a traceback."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root if root == "data" else tmp_path / root))
    try:
        _refused(["fit", "--config", str(config), *option], match, caplog, status=1)
    finally:  # the run stopped in this process leaves its W&B run open; later tests must start their own
        wandb.finish()
    assert not list(tmp_path.glob("**/*.ckpt"))


def test_a_pointing_game_in_mm_reads_each_dicoms_spacing(tmp_path: Path, data_root: Path, trained: Path) -> None:
    """``DetectionMetrics(pointing_unit: mm)``: the tolerance is on the breast, from each DICOM's pixel spacing and the
    resize's scale; every synthetic DICOM has a spacing, so every image with a mass in view is scored."""
    settings = tiny_config(tmp_path, data_root)
    entry = settings["trainer"]["callbacks"][2]
    assert entry["class_path"].endswith(".DetectionMetrics")
    entry.setdefault("init_args", {}).update({"pointing_tolerance": 4.0, "pointing_unit": "mm"})
    config = write_config(tmp_path / "c.yaml", settings)
    main(["test", "--config", str(config), "--ckpt_path", str(checkpoint(trained))])
    (report,) = (tmp_path / "runs").glob("*/*/detection.json")
    pointing = json.loads(report.read_text())["pointing_game"]
    assert pointing["tolerance_mm"] == 4.0 and "tolerance_px" not in pointing
    assert pointing["images"] > 0 and pointing["unscored"] == 0  # each image's spacing reached the metric
    assert all(0.0 <= f["hit"]["value"] <= 1.0 for f in pointing["methods"].values())
    assert "within 4 mm of a mass" in (report.parent / "pointing_game.md").read_text()


@pytest.mark.parametrize("callback", [2, 3])  # DetectionMetrics, SaliencyOverlays
def test_a_misspelt_test_method_of_a_callback_is_refused_before_running(
    tmp_path: Path, data_root: Path, trained: Path, caplog: pytest.LogCaptureFixture, callback: int
) -> None:
    """`methods: [cam, gradcamm]` in a callback used to fail after model and data had loaded (40 s with two
    processes), in a traceback printed three times that did not name the option. Names are kept as the registry
    spells them, the keys of the validated thresholds (`GradCAM` is `gradcam`, as it is for the model's options)."""
    settings = tiny_config(tmp_path, data_root)
    entry = settings["trainer"]["callbacks"][callback]
    name = entry["class_path"].rsplit(".", 1)[1]
    entry.setdefault("init_args", {})["methods"] = ["cam", "gradcamm"]
    args = [
        "test",
        "--config",
        str(write_config(tmp_path / "c.yaml", settings)),
        "--ckpt_path",
        str(checkpoint(trained)),
    ]
    _refused(args, rf"^wsod test: {name}.methods: unknown saliency method 'gradcamm'", caplog)
    assert not (tmp_path / "runs").exists()
    assert DetectionMetrics(methods=["GradCAM", "cam"]).methods == ["gradcam", "cam"]


def test_an_image_unreadable_in_a_worker_is_one_line_naming_it(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated DICOM (present at setup, so not left out there) failed in a DataLoader worker, and `wsod fit` ended
    in the worker's traceback rebuilt in the main process; now the one line names the file and the option."""
    root = Path(shutil.copytree(data_root, tmp_path / "data"))
    for path in root.glob("images/*/*.dicom"):  # every image: whichever the first batch holds
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, root, num_workers=2))
    try:
        error = _refused(["fit", "--config", str(config)], r"^wsod fit: .*\.dicom: ", caplog, status=1)
    finally:
        wandb.finish()
    assert "pixel data cannot be decoded" in error and error.endswith("(set data.missing: skip to leave unreadable "
                                                                      "images out)")  # fmt: skip
    assert "Traceback" not in error and "\n" not in error


def test_masses_a_native_window_cuts_away_count_as_missed_in_table_ii(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mass the input frame left out wholly was dropped from Table II's count (its image stayed positive): the TPR
    rose with every mass a `native` window or a crop cut away (methodology audit). Every CSV mass now counts."""
    from wsod_mammo.data.vindr import load_records

    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    with caplog.at_level(logging.WARNING):
        main(["test", "--config", str(config), "--ckpt_path", "untrained", "--data.resize", "native",
              "--data.input_size", "[128, 64]", "--trainer.callbacks.init_args.overlays", "false"])  # fmt: skip
    assert "every Mass box lies outside the input frame" in caplog.text  # the window cut some away here
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/**/detection.json")]
    test_masses = sum(len(r.boxes(["Mass"])[0]) for r in load_records(data_root) if r.split == "test")
    assert report["mass"]["cam"]["num_gt"] == report["all"]["cam"]["num_gt"] == test_masses


def test_a_config_file_that_is_not_a_yaml_mapping_is_one_line_naming_it(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """jsonargparse's message for a YAML syntax error names no file ("in <unicode string>"), and the README's commands
    stack up to four configs; a list at the top gave "Unexpected config: - a"."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    broken, listed = tmp_path / "gpu.yaml", tmp_path / "list.yaml"
    broken.write_text("trainer:\n  max_epochs: [1\n")
    listed.write_text("- a\n")
    syntax = rf"^wsod fit: --config {re.escape(str(broken))}: cannot read it as YAML \(while parsing a flow sequence"
    _refused(["fit", "--config", str(config), "--config", str(broken)], syntax, caplog)
    mapping = rf"^wsod test: --config {re.escape(str(listed))}: expected a mapping at the top, found list$"
    _refused(["test", "-c", str(config), f"--config={listed}", "--ckpt_path", "untrained"], mapping, caplog)
    # a group's own file (`--trainer F`): jsonargparse said 'trainer: in "<unicode string>", line 3, column 1'
    group = rf"^wsod fit: --trainer {re.escape(str(broken))}: cannot read it as YAML \(while parsing a flow sequence"
    _refused(["fit", "--config", str(config), "--trainer", str(broken)], group, caplog)
    empty = tmp_path / "empty.yaml"  # was "Unexpected config:", naming nothing (wsod study took it as no options)
    empty.write_text("# nothing here yet\n")
    nothing = rf"^wsod fit: --config {re.escape(str(empty))}: the file holds no options \(it is empty"
    _refused(["fit", "--config", str(config), "--config", str(empty)], nothing, caplog)
    assert not list(tmp_path.glob("runs/**/config.yaml"))


def test_config_files_are_found_however_given_and_yaml_text_is_left_to_jsonargparse(tmp_path: Path) -> None:
    """`--config "$(cat f.yaml)"` (text longer than a file name may be) raised "File name too long"; a file that is
    not UTF-8 named no file."""
    from wsod_mammo.cli import config_files
    from wsod_mammo.config_files import read_config_file

    path = tmp_path / "c.yaml"
    path.write_text("seed_everything: 1\n")
    text = "seed_everything: 7\n# " + "0" * 300
    words = ["fit", "--config", text, "--config", str(path), f"--config={path}", f"-c={path}", f"-c{path}", "-c", "x"]
    assert config_files(words) == [("--config", str(path))] * 4
    groups = ["fit", "--trainer", str(path), f"--data={path}", "--data", "VinDrMammoDataModule", "--model.lr", "1"]
    assert config_files(groups) == [("--trainer", str(path)), ("--data", str(path))]
    (tmp_path / "latin1.yaml").write_bytes(b"seed_everything: 1 # Gr\xf6\xdfe\n")
    with pytest.raises(ValueError, match=r"--config .*latin1.yaml: cannot read it as YAML \('utf-8' codec"):
        read_config_file(tmp_path / "latin1.yaml")


def test_a_config_whose_aliases_multiply_or_hold_themselves_is_refused_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nine lines of nested aliases ("billion laughs", 9**9 values) made `wsod` hang at full CPU, its memory growing,
    while jsonargparse copied the expanded tree; an alias inside its own anchor ended in a RecursionError traceback.
    A config's own anchors and aliases still read."""
    from wsod_mammo.config_files import read_config_file

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"--config .*bomb.yaml: its aliases \(\*name\) expand to [\d,]+ values"):
        read_config_file(bomb)
    loop = tmp_path / "loop.yaml"
    loop.write_text("seed_everything: 1\nloop: &loop [1, *loop]\n")
    _refused(["fit", "--config", str(loop)], r"loop.yaml: an alias \(\*name\) inside its own anchor", caplog)
    used = tmp_path / "used.yaml"
    used.write_text("trainer: &t {max_epochs: 2}\nseed_everything: 3\nother: *t\n")
    assert read_config_file(used)["other"] == {"max_epochs": 2}


def test_output_folder_checks_read_one_callback_and_leave_evaluation_checkpoint_folders_alone(tmp_path: Path) -> None:
    """A single callback (not a list) is a Namespace, which the check iterated as a list (NSKeyError in every
    command); test and validate save no checkpoint, so a training config's dirpath under a file is no reason to stop
    them (fit still checks it)."""
    from jsonargparse import Namespace

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    writer = Namespace(class_path="wsod_mammo.training.predict.PredictionWriter",
                       init_args=Namespace(output_dir=str(blocker / "predictions")))  # fmt: skip
    with pytest.raises(ValueError, match="PredictionWriter output_dir: .*afile/predictions cannot be written"):
        cli_checks.check_output_folders("predict", {"trainer": {"callbacks": writer}})
    checkpoint = Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                           init_args=Namespace(dirpath=str(blocker / "checkpoints")))  # fmt: skip
    section = {"trainer": {"logger": False, "default_root_dir": str(tmp_path), "callbacks": [checkpoint]}}
    for subcommand in ("test", "validate"):
        cli_checks.check_output_folders(subcommand, section)
    with pytest.raises(ValueError, match="ModelCheckpoint dirpath: .*afile/checkpoints cannot be written"):
        cli_checks.check_output_folders("fit", section)


def test_an_output_folder_that_cannot_be_made_is_refused_before_running(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A save_dir or predictions folder under a file (or on a read-only mount) failed after the model and data were
    loaded, in a NotADirectoryError traceback naming no option."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    config = tiny_config(tmp_path, data_root)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(blocker / "runs")
    config["trainer"]["callbacks"][-1]["init_args"]["output_dir"] = str(blocker / "predictions")
    path = write_config(tmp_path / "c.yaml", config)
    written = f"{re.escape(str(blocker))}/(runs|predictions) cannot be written: {re.escape(str(blocker))} is a file"
    _refused(["fit", "--config", str(path)], rf"^wsod fit: trainer.logger.init_args.save_dir: {written}", caplog)
    image = next(data_root.glob("images/*/*.dicom"))
    predict = ["predict", "--config", str(path), "--ckpt_path", "untrained", "--data.predict_paths", f"[{image}]"]
    _refused(predict, rf"^wsod predict: trainer.callbacks PredictionWriter output_dir: {written}", caplog)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c.yaml"]  # nothing written


def test_unknown_saliency_method_lists_the_registered_ones(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root, train_saliency="scorecam"))
    _refused(["fit", "--config", str(config)], "^wsod fit: model.train_saliency.*scorecam.*gradcampp", caplog)


def test_checkpoint_of_another_model_is_refused(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": {}}, foreign)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    args = ["test", "--config", str(config), "--ckpt_path", str(foreign)]
    _refused(args, "foreign.ckpt.*not of wsod_mammo.training.module.GMICLitModule", caplog)


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--data.batch_sizee", "3"], r"data: Option 'batch_sizee' is not accepted \(--help lists the options\)$"),
     (["--trainer.max_epochs", "x"], r"trainer.max_epochs: Expected a <class 'int'> \(given: x\)$"),
     (["--model.model.init_args.crop_shape", "[1]"], r"model.model.crop_shape: Expected a tuple with 2 elements"),
     (["--model.train_saliency", '{"class_path": "nowhere_mod.X"}'],
      r"model.train_saliency: nowhere_mod.X: No module named 'nowhere_mod'; .* importable \(on PYTHONPATH\)$"),
     # an option beside init_args, not under it: "data: a class path (str)" named neither the key nor the fix
     (["--data", '{"class_path": "wsod_mammo.data.VinDrMammoDataModule", "init_args": {}, "batch_size": 4}'],
      r"data: 'batch_size' beside class_path: a class's options go under init_args$"),
     (["--nonsense", "1"], r"unrecognized arguments: --nonsense 1 \(--help lists the options\)$"),
     # an abbreviation was taken as the option it begins (argparse's allow_abbrev): a misspelling went unsaid
     (["--trainer.max_epoch", "1"], r"unrecognized arguments: --trainer.max_epoch 1 \(did you mean "
      r"--trainer.max_epochs\?\) \(--help lists the options\)$"),
     # a path with ': ' is a YAML mapping: the inner value was not shown ("expected list or str", given a string)
     (["--data.predict_paths", "scans/a: b/x"], r"data.predict_paths: expected <class 'list'> or <class 'str'> "
      r"\(given: \{'scans/a': 'b/x'\}\); YAML reads 'a: b' as a mapping: quote such a path inside a list"),
     # a folder named -scans: "argument --data: expected one argument" named the group, not the option or the value
     (["--data.predict_paths", "-scans"], r"--data.predict_paths: expected a value, found -scans, read as an "
      r"option: give a value that begins with '-' after '=' \(--data.predict_paths=-scans\), or a path as ./-scans$"),
     (["--config", "-d.yaml"], r"--config: expected a value, found -d.yaml, read as an option: .*=-d.yaml\)")],
)  # fmt: skip
def test_an_option_the_parser_refuses_is_one_line_naming_it_without_the_usage(
    option: list[str], message: str, tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """jsonargparse printed `wsod fit`'s usage (about a hundred lines) and a nested report of every type it tried,
    the reason a few lines from the bottom; now the option and the reason, on one line, nothing else."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    _refused(["fit", "--config", str(config), *option], f"^wsod fit: {message}", caplog)
    printed = capsys.readouterr()
    assert "usage:" not in printed.err + printed.out and not list(tmp_path.glob("runs/**/config.yaml"))


@pytest.mark.parametrize("name", ["0755", "1e3", "12:30", "yes"])
def test_a_folder_name_yaml_reads_as_a_number_says_to_quote_it(
    name: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``data_root: 0755`` in a config was refused as "Expected a <class 'str'>. Got value: 493", the name typed
    nowhere in the line (1e3: 1000.0, 12:30: 750, yes: True)."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    (tmp_path / "root.yaml").write_text(f"data:\n  init_args:\n    data_root: {name}\n")
    _refused(["fit", "--config", str(config), "--config", str(tmp_path / "root.yaml")],
             r"^wsod fit: data.data_root: Expected a <class 'str'>\. Got value: .*; YAML reads an unquoted 0755, "
             r"1e3, 12:30, yes or true as a number or true/false: quote the name$", caplog)  # fmt: skip


def test_a_checkpoint_naming_a_class_this_python_cannot_import_is_refused_in_one_line_naming_it(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint fitted with a saliency method of the user's module (README: "Your own saliency method"), used
    where that module is not importable: jsonargparse's usage and Union report (20 lines) without the file's name."""
    path = nyu_to_checkpoint(_nyu_legacy_file(tmp_path / "sample_model_1.p"), tmp_path / "own.ckpt", num_classes=1,
                             num_patches=2, crop_shape=(64, 64))  # fmt: skip
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["train_saliency"] = {"class_path": "my_saliency_nowhere.GradTimesActivation"}
    torch.save(checkpoint, path)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    error = _refused(["test", "--config", str(config), "--ckpt_path", str(path)], r"own\.ckpt", caplog)
    assert "my_saliency_nowhere" in error and "usage:" not in error


def test_a_checkpoint_trained_on_other_classes_is_refused_before_it_is_rated_against_these_labels(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Mass model tested with `--data.classes '[Suspicious Calcification]'` was rated against calcification boxes
    and labels, and Table I named its output Mass: figures of nothing, without a word."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    args = ["test", "--config", str(config), "--ckpt_path", str(checkpoint(trained, "best"))]
    message = (r"^wsod test: --ckpt_path's model was trained on data.classes \[Mass\], this run's data.classes is "
               r"\[Suspicious Calcification\]: .* give --data.classes '\[Mass\]'$")  # fmt: skip
    _refused([*args, "--data.classes", "[Suspicious Calcification]"], message, caplog)
    assert not list(tmp_path.glob("runs/**/config.yaml"))


def test_classes_in_another_order_than_the_checkpoints_are_refused_but_nyus_heads_are_not() -> None:
    section = {"data": {"init_args": {"classes": ["Suspicious Calcification", "Mass"]}},
               "model": {"init_args": {"model": {"init_args": {"num_classes": 2}}}}}  # fmt: skip
    trained = {"class_names": ["Mass", "Suspicious Calcification"]}
    with pytest.raises(ValueError, match=r"trained on data.classes \[Mass, Suspicious Calcification\]"):
        cli_checks.check_heads_match_classes(section, trained)
    cli_checks.check_heads_match_classes(section, {"class_names": ["benign", "malignant"]})  # NYU's, on purpose
    cli_checks.check_heads_match_classes(section, {"class_names": ["Suspicious Calcification", "Mass"]})
    cli_checks.check_heads_match_classes(section, {})  # a checkpoint that records no names


def test_gmic_weights_saved_without_lightnings_record_are_refused_before_any_run_folder(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``torch.save({"state_dict": ...})``, a common export, failed inside Lightning's loading with a KeyError
    traceback, after the test's run folder was made."""
    exported = tmp_path / "exported.ckpt"
    state = torch.load(checkpoint(trained, "best"), map_location="cpu", weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, exported)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    message = r"exported.ckpt: GMIC weights without Lightning's checkpoint record \(no 'pytorch-lightning_version'"
    _refused(["test", "--config", str(config), "--ckpt_path", str(exported)], message, caplog)
    assert not list(tmp_path.glob("runs/**/config.yaml"))


@pytest.mark.parametrize("rank", ["0", "1"])
def test_the_checks_before_a_run_are_said_once_not_by_each_ddp_process(
    tmp_path: Path, data_root: Path, rank: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning starts each further DDP process by running the command line again (LOCAL_RANK set): `wsod test
    --ckpt_path untrained` on 2 processes printed its warning twice, and so every check's before the run."""
    from wsod_mammo.cli import WsodCLI

    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setattr(WsodCLI, "_run_subcommand", lambda self, subcommand: None)  # the checks alone
    level = logging.getLogger("wsod_mammo").level
    try:
        with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
            main(["test", "--config", str(config), "--ckpt_path", "untrained"])
    finally:
        logging.getLogger("wsod_mammo").setLevel(level)
    said = "--ckpt_path untrained: evaluating the freshly initialized network" in caplog.text
    assert said == (rank == "0"), caplog.text


@pytest.mark.parametrize("subcommand", ["test", "predict", "validate"])
def test_evaluating_without_weights_is_refused_and_untrained_must_be_asked_for(
    tmp_path: Path, data_root: Path, subcommand: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without --ckpt_path (or NYU's weights) the freshly initialized network would write random tables, boxes and
    overlays that look like results; `--ckpt_path untrained` runs it on purpose (a baseline)."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    _refused([subcommand, "--config", str(config)], f"^wsod {subcommand}: no weights to evaluate: give", caplog)
    assert not list(tmp_path.glob("runs/**/config.yaml")) and not (tmp_path / "predictions").exists()
    if subcommand == "predict":
        return
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.cli_checks"):
        main([subcommand, "--config", str(config), "--ckpt_path", "untrained"])
    assert "--ckpt_path untrained: evaluating the freshly initialized network" in caplog.text
    assert list(tmp_path.glob("runs/**/config.yaml"))
    if subcommand == "test":  # the report says what it evaluated, and that no threshold was validated
        (report,) = tmp_path.glob("runs/**/detection.json")
        summary = json.loads(report.read_text())
        assert summary["weights"] == "untrained network" and summary["checkpoint"]["path"] is None
        for cell in summary["mass"].values():
            assert cell["threshold_from"].startswith("default") and cell["threshold"] == 0.5
            assert list(cell["tpr_at_fppi"]) == list(cell["intervals"]["tpr_at_fppi"])  # one spelling: "1", not "1.0"
        assert "NOT VALIDATED" in (report.parent / "table2_row.md").read_text()
        # the row file says so too, and `wsod report` keeps the mark: a baseline is never read as a trained result
        (row,) = csv.DictReader(io.StringIO((report.parent / "table2_row.csv").read_text()))
        assert (row["weights"], row["thresholds"]) == ("untrained", "default"), row
        assert "UNTRAINED: the freshly initialized network" in (report.parent / "table2_row.md").read_text()
        from wsod_mammo.detection.report_cli import main as report_main

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wsod_mammo.detection.report"):
            report_main([str(report.parent), "--output", str(tmp_path / "rep")])
        label = f"{summary['train_saliency']} (untrained, NOT VALIDATED)"
        assert f"| {label} | " in (tmp_path / "rep" / "table2.md").read_text()
        (merged,) = csv.DictReader(io.StringIO((tmp_path / "rep" / "table2.csv").read_text()))
        assert merged["train_method"] == label
        assert f"report: {report.parent}: its {summary['train_saliency']} row (weights untrained" in caplog.text


def test_workers_under_a_temporary_folder_too_long_for_a_socket_address_are_refused_naming_tmpdir(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster job's long TMPDIR: the workers' Unix sockets (the fork server's, the resource sharer's) are named
    under it, and the first loader failed with "OSError: AF_UNIX path too long" (with ``fork``: printed by each
    worker, and the run hung), naming neither TMPDIR nor an option. Refused before any run folder, naming both."""
    import multiprocessing
    import tempfile

    long = tmp_path / ("t" * 100)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    # the folder Python made for this process's sockets, made once a process: here, as under that TMPDIR
    monkeypatch.setitem(multiprocessing.current_process()._config, "tempdir", str(long / "pymp-12345678"))
    config = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root, num_workers=2)))
    _refused(["fit", "--config", config], rf"data.num_workers: .* set a shorter TMPDIR \(now {long}\)", caplog)
    assert not (tmp_path / "runs").exists()
    cli_checks.check_worker_sockets({"data": {"init_args": {"num_workers": 0}}})  # loads in this process: no socket


def test_a_gpu_config_on_a_machine_without_cuda_names_the_option_and_the_cpu_config(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cli_checks, "_cuda", lambda: False)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"]["accelerator"] = "gpu"
    config = str(write_config(tmp_path / "c.yaml", settings))
    args = ["predict", "--config", config, "--ckpt_path", "untrained"]
    _refused(args, r"trainer.accelerator: gpu, but this machine has no CUDA GPU; .*cpu.yaml", caplog)
    assert not list(tmp_path.glob("runs/**/config.yaml"))


def test_gpu_yamls_compiled_networks_without_triton_are_refused_naming_the_way_back_to_eager(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """gpu.yaml compiles GMIC; a GPU torch without Triton failed at the first batch, deep in inductor. Refused before
    anything is written, naming the option and the two that run eagerly; on a CPU, a warning, and the run goes on."""
    monkeypatch.setattr(cli_checks, "_cuda", lambda: True)
    monkeypatch.setattr(cli_checks, "_triton", lambda: False)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"]["accelerator"] = "gpu"
    settings["model"]["init_args"]["model"]["init_args"]["compile_networks"] = "reduce-overhead"
    args = ["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))]
    error = _refused(args, r"model.model.compile_networks: reduce-overhead compiles GMIC .* needs Triton", caplog)
    assert cli_checks.EAGER_NETWORKS in error
    assert not list(tmp_path.glob("runs/**/config.yaml")) and not list(tmp_path.glob("**/*.ckpt"))
    monkeypatch.setattr(cli_checks, "_triton", lambda: True)
    cli_checks.check_compile({"trainer": {"accelerator": "gpu"}, "model": settings["model"]})  # Triton: no word
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.cli_checks"):
        cli_checks.check_compile({"trainer": {"accelerator": "cpu"}, "model": settings["model"]})
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith("model.model.compile_networks: reduce-overhead on the CPU") and "false" in warned


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--data.input_size", "[100, 50]", r"data.input_size: expected \[height, width\], each a positive multiple"),
        ("--model.model.init_args.crop_shape", "[256, 256]", r"model.model.crop_shape: \[256, 256\] does not fit"),
        ("--model.model.init_args.crop_shape", "[0, 64]", r"crop_shape \[height, width\] of at least 1 pixel each"),
        ("--model.model.init_args.post_processing_dim", "0", "post_processing_dim to be a positive multiple of 16"),
        ("--data.classes", "[]", r"data.classes: expected at least one finding class \(Mass, the default\)"),
        # predictions.json named both outputs "Mass" and kept the second's probability under it
        ("--data.classes", "[Mass, Mass]", r"data.classes: each class once, found \['Mass'\] more than once in"),
        ("--data.batch_size", "0", "data.batch_size: expected at least 1 image per batch, found 0"),
        # a traceback from the synthetic writer, naming its own n_studies, height and width
        ("--data.synthetic_size", "[32, 20]", r"data.synthetic_size: expected a height and width of at least 32"),
        ("--data.val_fraction", "1.5", r"data.val_fraction: expected a fraction in \(0, 1\) of the training studies"),
        ("--data.val_fraction", "0", r"data.val_fraction: expected a fraction in \(0, 1\) of the training studies"),
        ("--data.num_workers", "-1", "data.num_workers: expected 0 .* or more, found -1"),
        ("--model.beta", "-1", "model.beta: expected a weight >= 0 of the saliency regularizer, found -1"),
        (
            "--data.augmentation.crop_p",
            "1.5",
            r"data.augmentation.crop_p: expected a probability in \[0, 1\], found 1.5",
        ),
        ("--data.augmentation.scale_min", "1.2", "data.augmentation.scale_min, scale_max: expected 0 < scale_min <="),
        # README's recipe before the weights are downloaded: a run folder, then a 40-line traceback with exit 1
        (
            "--model.init_from_nyu",
            "pretrained/sample_model_1.p",
            "model.init_from_nyu: pretrained/sample_model_1.p: no such file .*nothing is downloaded",
        ),
    ],
)
def test_impossible_options_fail_before_any_run_folder_naming_the_option(
    tmp_path: Path, data_root: Path, option: str, value: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    _refused(["fit", "--config", str(config), option, value], message, caplog)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["optimizer", "scheduler"])
def test_an_optimizer_or_scheduler_that_is_no_such_class_is_refused_before_it_is_called(
    option: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """jsonargparse takes any callable for these two: `class_path: os.system` ran its `init_args` as a shell
    command while the model was built, then the fit failed in a raw TypeError."""
    marker = tmp_path / "pwned"
    settings = tiny_config(tmp_path, data_root)
    settings["model"]["init_args"][option] = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}
    _refused(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))],
             rf"^wsod fit: model.{option}: class_path os.system is not a subclass of torch.optim.", caplog)  # fmt: skip
    assert not marker.exists() and not (tmp_path / "runs").exists()


class _ShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - would run a shell command if unpickled without weights_only
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("kind", "message"),
    [("pickle", r"evil.p: not a weights-only torch state dict \(UnpicklingError: .*posix.system"),
     ("resnet", r"evil.p: none of its 2 keys is one of GMIC's NYU keys \(ds_net.first_conv.weight, .*its keys look "
                r"like conv1.weight, fc.weight$")],
)  # fmt: skip
@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_nyu_weights_that_cannot_load_are_refused_before_any_run_folder(
    kind: str, message: str, subcommand: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A legacy-format pickle or another network's weights as `model.init_from_nyu` failed in the model's setup, in
    a 46-line traceback with exit status 1, after the run folder and its config.yaml were made."""
    path, marker = tmp_path / "evil.p", tmp_path / "pwned"
    if kind == "pickle":
        torch.save({"x": _ShellCommand(marker)}, path, _use_new_zipfile_serialization=False)
    else:
        torch.save({"conv1.weight": torch.zeros(2), "fc.weight": torch.zeros(2)}, path)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    _refused([subcommand, "--config", str(config), "--model.init_from_nyu", str(path)],
             f"^wsod {subcommand}: model.init_from_nyu: .*{message}", caplog)  # fmt: skip
    assert not (tmp_path / "runs").exists() and not marker.exists()


@pytest.mark.parametrize(
    ("precision", "message"),
    [("16-mixed", "16-mixed needs a CUDA GPU"),
     # the whole batch cast to bf16: boxes (2200.5 -> 2208) and the device augmentation's matrices
     ("bf16-true", "bf16-true casts every floating tensor of each batch .* use bf16-mixed")],
)  # fmt: skip
def test_precisions_that_cannot_run_are_refused_before_training(
    precision: str, message: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"]["precision"] = precision
    args = ["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))]
    _refused(args, f"trainer.precision: {message}", caplog)
    assert not list(tmp_path.glob("**/*.ckpt"))


@pytest.mark.parametrize(
    ("option", "value"),
    [("seed_everything", "-1"), ("seed_everything", "4294967296"), ("data.seed", "-1"),
     ("data.augmentation.seed", "-5")],
)  # fmt: skip
def test_seeds_outside_seed_everythings_range_are_refused_naming_the_option(
    option: str, value: str, tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning's seed_everything raised a traceback on a negative or too large seed, and a negative data seed
    stopped the fit with numpy's "expected non-negative integer", naming no option."""
    args = ["fit", "--config", str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root)))]
    expected = f"^wsod fit: {option}: expected a seed from 0 to 4294967295, found {value}$"
    _refused([*args, f"--{option}", value], expected, caplog)
    assert not list(tmp_path.glob("**/*.ckpt"))


@pytest.mark.parametrize("kernels", [False, True])
def test_bf16_on_a_cpu_without_bf16_kernels_is_warned_about(
    kernels: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cli_checks, "_cpu_has_bf16_kernels", lambda: kernels)
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.cli_checks"):
        cli_checks.check_precision({"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}})
        cli_checks.check_precision({"trainer": {"precision": "32", "accelerator": "cpu"}})
    warned = [r.getMessage() for r in caplog.records if "bf16 convolution kernels" in r.getMessage()]
    assert len(warned) == (0 if kernels else 1)  # once: precision 32 is never warned about
    assert all(w.startswith("trainer.precision: bf16-mixed on this CPU") for w in warned)


@pytest.mark.parametrize(
    ("trainer", "message"),
    [({"accelerator": "cuda"}, r"^trainer.accelerator: cuda, but this machine has no CUDA GPU; .*cpu.yaml"),
     # `auto` falls back to the CPU here, where Lightning would switch fp16 to bf16 in silence
     ({"accelerator": "auto", "precision": "16-mixed"}, r"^trainer.precision: 16-mixed needs a CUDA GPU, .* is auto"),
     ({"accelerator": "cpu", "precision": "16-true"}, r"^trainer.precision: 16-true casts every .* use 16-mixed"),
     ({"accelerator": "cpu", "precision": "64"}, r"^trainer.precision: 64 makes the networks float64, .*; use 32$")],
)  # fmt: skip
def test_accelerators_and_precisions_a_machine_without_cuda_cannot_run_are_named(
    trainer: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_checks, "_cuda", lambda: False)
    with pytest.raises(ValueError, match=message):
        cli_checks.check_accelerator({"trainer": trainer})
        cli_checks.check_precision({"trainer": trainer})


def test_fp16_on_a_cuda_machine_is_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_checks, "_cuda", lambda: True)
    for accelerator in ("gpu", "cuda", "auto"):
        section = {"trainer": {"accelerator": accelerator, "precision": "16-mixed"}}
        cli_checks.check_accelerator(section)
        cli_checks.check_precision(section)


def test_a_crop_wider_than_the_input_is_refused_naming_both() -> None:
    """The crop must fit in both sides: a crop as high as the input but wider failed at the first batch."""
    section = {"data": {"init_args": {"input_size": [192, 128]}},
               "model": {"init_args": {"model": {"init_args": {"crop_shape": [64, 160]}}}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"^model.model.crop_shape: \[64, 160\] does not fit in the data.input_size "
                                         r"\[192, 128\]"):  # fmt: skip
        cli_checks.check_input_size(section)


def test_more_patches_than_the_map_holds_without_overlap_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    """An audit's K = 8 on a 3 x 2 map: 5 distinct patches, the first window 4 times, each weighing in again."""

    def section(patches: int) -> dict[str, Any]:
        model = {"model": {"init_args": {"crop_shape": [64, 64], "num_patches": patches}}}
        return {"data": {"init_args": {"input_size": [192, 128]}}, "model": {"init_args": model}}

    with caplog.at_level(logging.WARNING, logger="wsod_mammo.cli_checks"):
        cli_checks.check_input_size(section(6))  # six 1 x 1 windows fit in the 3 x 2 map
        assert not caplog.records
        cli_checks.check_input_size(section(8))
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned == (
        "model.model.num_patches: 8 patches, but a 3x2 saliency map (data.input_size [192, 128]) holds at most 6 "
        "windows of crop_shape [64, 64] without overlap: the others overlap or repeat patches"
    )


def test_predict_inputs_are_counted_against_devices_times_nodes(data_root: Path) -> None:
    (dicom,) = sorted((data_root / "images").glob("*/*.dicom"))[:1]
    section = {"trainer": {"devices": 1, "num_nodes": 2}, "data": {"init_args": {"predict_paths": [str(dicom)]}}}
    with pytest.raises(ValueError, match=r"^trainer.devices: 1 predict input\(s\) for 2 processes"):
        cli_checks.check_predict_inputs(section)
    section = {"trainer": {"devices": 2}, "data": {"init_args": {"predict_paths": str(dicom)}}}  # one path, unlisted
    with pytest.raises(ValueError, match=r"^trainer.devices: 1 predict input\(s\) for 2 processes"):
        cli_checks.check_predict_inputs(section)


def test_output_folder_errors_name_the_root_dir_option_and_a_folder_without_write_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    section = {"trainer": {"logger": False, "default_root_dir": str(blocker / "root")}}
    with pytest.raises(ValueError, match=rf"^trainer.default_root_dir: {re.escape(str(blocker))}/root cannot be "):
        cli_checks.check_output_folders("test", section)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only mount (root writes anywhere)
    section = {"trainer": {"logger": False, "default_root_dir": str(tmp_path / "root")}}
    denied = f"root cannot be written: no permission to write in {re.escape(str(tmp_path))}$"
    with pytest.raises(ValueError, match=denied):
        cli_checks.check_output_folders("validate", section)


def test_runs_are_looked_for_under_the_loggers_save_dir_runs_for_wandb_else_the_root_dir() -> None:
    assert cli_checks.runs_root({"trainer": {"logger": {"class_path": "x.WandbLogger"}}}) == Path("runs")
    assert cli_checks.runs_root({"trainer": {"logger": False, "default_root_dir": "out"}}) == Path("out")
    listed = [{"class_path": "x.WandbLogger", "init_args": {"save_dir": "w"}}, {"class_path": "x.CSVLogger"}]
    assert cli_checks.runs_root({"trainer": {"logger": listed}}) == Path("w")  # the first of a list of loggers


def test_a_class_index_the_checkpoint_has_no_output_for_is_refused_naming_the_checkpoint() -> None:
    """The checkpoint's count of outputs wins over the config's, as it does for the weights loaded."""
    writer = {"class_path": "wsod_mammo.training.predict.PredictionWriter", "init_args": {"class_index": 1}}
    section = {"trainer": {"callbacks": [{"class_path": "x.Other"}, writer]},
               "model": {"init_args": {"model": {"init_args": {"num_classes": 2}}}}}  # fmt: skip
    cli_checks.check_class_index(section, None)  # the config's two heads
    recorded = {"hyper_parameters": {"model": {"init_args": {"num_classes": 1}}}}
    with pytest.raises(ValueError, match=r"^trainer.callbacks PredictionWriter class_index: 1, but --ckpt_path's "
                                         r"model has 1 output class\(es\): expected 0..0$"):  # fmt: skip
        cli_checks.check_class_index(section, recorded)


def test_an_early_stop_or_checkpoint_at_mode_min_on_a_rising_figure_is_refused() -> None:
    """Lightning's default mode, min, on a figure of merit: EarlyStopping would stop a fit that improves."""
    stop = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/wafroc/cam"}}
    with pytest.raises(ValueError, match=r"^trainer.callbacks EarlyStopping: mode 'min' on monitor val/wafroc/cam"):
        cli_checks.check_monitor_modes({"trainer": {"callbacks": [stop]}})
    for fine in ({"monitor": "val/wafroc/cam", "mode": "max"}, {"monitor": "val/loss"}, {}):
        cli_checks.check_monitor_modes({"trainer": {"callbacks": [{**stop, "init_args": fine}]}})


@pytest.mark.parametrize(
    ("monitor", "match"),
    [
        ("val/fusion/aurco", r"\(no figure 'aurco' of a head: expected one of accuracy, auroc, tpr, tnr\)$"),
        ("val/fusoin/auroc", r"\(no head 'fusoin': expected one of global, local, fusion\)$"),
        ("test/wafroc/cam", r"\(a test figure: validation's are val/...\)$"),
        ("val/detection/cam/tpr@fppi0.1", r"\(no detection figure 'tpr@fppi0.1': expected one of threshold, "),
    ],
)
def test_a_monitor_no_fit_logs_is_refused_before_the_fit_trains(monitor: str, match: str) -> None:
    """Lightning stopped the fit with `could not find the monitored key` at the end of its first validation, an
    epoch of training later, with no checkpoint saved."""
    from wsod_mammo.training.checkpoints import BestCheckpoint

    for name in ("BestCheckpoint", "EarlyStopping"):
        callback = {"class_path": name, "init_args": {"monitor": monitor, "mode": "max"}}
        refused = rf"^trainer.callbacks {name}: monitor {re.escape(monitor)} is never logged in a fit {match}"
        with pytest.raises(ValueError, match=refused):
            cli_checks.check_monitor_modes({"trainer": {"callbacks": [callback]}})
    with pytest.raises(ValueError, match=rf"^BestCheckpoint: monitor {re.escape(monitor)} is never logged"):
        BestCheckpoint(monitor=monitor, mode="max").setup(None, None, "fit")  # type: ignore[arg-type]
    for logged in ("val/fusion/auroc", "val/wafroc/mycam", "val/detection/cam/tpr@fppi0.25", "val/pointing/cam/hit",
                   "train/loss_fusion", "val/loss", "lr-Adam", "val/my_own/figure"):  # fmt: skip
        stop = {"class_path": "EarlyStopping", "init_args": {"monitor": logged, "mode": "max"}}
        cli_checks.check_monitor_modes({"trainer": {"callbacks": [stop]}})


@pytest.mark.parametrize(
    ("callback", "option", "match"),
    [
        ("DetectionMetrics", "class_index", r"trainer.callbacks DetectionMetrics class_index: 3, but model.model."
                                            r"init_args.num_classes has 1 output class\(es\): expected 0..0$"),
        ("SaliencyOverlays", "class_index", r"trainer.callbacks SaliencyOverlays class_index: 3, but model.model."),
        ("DetectionMetrics", "iou_threshold", r"DetectionMetrics.iou_threshold: expected a number in \[0, 1\), "
                                              r"found -0.5"),
        ("DetectionMetrics", "thresholds", r"DetectionMetrics.thresholds: expected values in \[0, 1\], found "
                                           r"\[1.5, -0.2\]"),
        ("DetectionMetrics", "fppi_budget", r"DetectionMetrics.fppi_budget: expected a finite number >= 0, found -1"),
        ("BestCheckpoint", "mode", r"trainer.callbacks BestCheckpoint: mode 'min' on monitor val/fusion/auroc, a "
                                   r"figure that rises as the model improves: give mode: max in its init_args"),
    ],
)  # fmt: skip
def test_callback_options_that_cannot_work_are_refused_before_the_run(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture, callback: str, option: str, match: str
) -> None:
    """An audit's: iou_threshold -0.5 made a box at (0, 0, 10, 10) a hit on a mass at (100, 100, 120, 120) (a
    Table II cell 0.00 became 0.80); thresholds outside [0, 1] were validated (1.5: no box ever); a class_index the
    model lacks or fppi_budget -1 failed after a whole training epoch, in a traceback. best.ckpt kept by Lightning's
    default mode, min, on an AUROC (or wAFROC) would keep the worst epoch."""
    config = tiny_config(tmp_path, data_root)
    value = {"class_index": 3, "iou_threshold": -0.5, "thresholds": [1.5, -0.2], "fppi_budget": -1, "mode": "min"}
    value = value[option]
    for entry in config["trainer"]["callbacks"]:
        if entry["class_path"].endswith(callback):
            entry["init_args"] = {**entry.get("init_args", {}), option: value}
    _refused(["fit", "--config", str(write_config(tmp_path / "c.yaml", config))], r"^wsod fit: " + match, caplog)
    assert not list(tmp_path.glob("runs/**/checkpoints/*.ckpt"))


def test_a_model_without_num_classes_has_one_head_against_data_classes() -> None:
    """GMIC's default is one head: two classes with no num_classes in the config failed at the first batch."""
    section = {"data": {"init_args": {"classes": ["Mass", "Suspicious Calcification"]}},
               "model": {"init_args": {"model": {"init_args": {}}}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"^model.model.init_args.num_classes has 1 output class\(es\), data.classes "
                                         r"has 2"):  # fmt: skip
        cli_checks.check_heads_match_classes(section, None)


def test_a_refusal_raises_its_configuration_error_when_the_traceback_is_asked_for(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"]["precision"] = "16-mixed"
    args = ["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))]
    monkeypatch.setenv("WSOD_TRACEBACK", "1")
    with pytest.raises(ValueError, match="trainer.precision: 16-mixed needs a CUDA GPU"):
        main(args)
    assert not list(tmp_path.glob("**/*.ckpt"))


# -------------------------------------------------------------------------------------------------- DDP
def _validate_metrics(directory: Path) -> dict[str, float]:
    (path,) = list(directory.glob("**/metrics.csv"))
    rows = list(csv.DictReader(open(path)))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k.startswith("val/")}


def _on_one_or_two_processes(devices: int, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    """``wsod`` with ``args`` on ``devices`` CPU processes (2: gloo DDP, as a user starts it; 1: in this process,
    sparing a start of Python, torch and Lightning); returns what it printed."""
    if devices > 1:
        return _wsod(*args, "--trainer.devices", str(devices), "--trainer.strategy", "ddp", cwd=tmp_path).stdout
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_wsod's processes: sums in another order differ in the 9th digit (-n 0)
    try:
        main([*args, "--trainer.devices", "1"])
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_ddp_validation_on_two_cpu_processes_matches_one_process(
    tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture
) -> None:
    """Validation metrics synced over 2 gloo processes equal those of 1 process on the same (evenly divisible)
    images, the figures of merit (whose normal images are rated apart from the masses) among them."""
    best = str(checkpoint(trained, "best"))
    figures = {}
    for devices in (1, 2):
        out = tmp_path / f"validate{devices}"
        logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out)]
        args = ["validate", "--config", str(trained / "config.yaml"), "--ckpt_path", best, *logger]
        printed = _on_one_or_two_processes(devices, args, tmp_path, capsys)
        figures[devices] = _validate_metrics(out)
        assert "val/fusion/auroc" in printed and "val/detection/cam/threshold" in printed
    assert "val/fusion/auroc" in figures[1] and "val/detection/cam/threshold" in figures[1]
    assert "val/wafroc/cam" in figures[1] and "val/afroc/cam" in figures[1]
    assert figures[1].keys() == figures[2].keys()
    for key, value in figures[1].items():
        assert figures[2][key] == pytest.approx(value, abs=1e-5), key


def test_a_resumed_ddp_fit_ends_with_the_weights_of_the_uninterrupted_one(
    tmp_path: Path, data_root: Path, npy_cache: Path
) -> None:
    """Under DDP Lightning wrapped the training sampler to shard it, and that wrapper was made at epoch 0 when a
    resumed run built the first epoch's iterator: each process trained on other images from there on. The resumed
    fit starts from the uninterrupted one's checkpoint of epoch 0, as a fit pre-empted after it would. Both fits
    are 2-process gloo fits with a gradient patch method and the GPU config's data path (a worker per process,
    augmentation and standardization after the transfer, pixels read by the main process), which runs without the
    per-figure sync_dist advice."""
    data = {"cache_dir": str(npy_cache), "standardize_on": "device", "augment_on": "device", "pixel_reads": "main",
            "num_workers": 1}  # fmt: skip

    def fit(name: str, *extra: str) -> subprocess.CompletedProcess:
        settings = tiny_config(tmp_path / name, data_root, train_saliency="xgradcam", **data)
        settings["trainer"] |= {"devices": 2, "strategy": "ddp", "max_epochs": 2, "limit_train_batches": 2,
                                "limit_val_batches": 1, "logger": False}  # fmt: skip
        # every epoch's checkpoint; it monitors nothing, its mode only tells its state apart from last's
        every_epoch = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                       "init_args": {"filename": "{epoch}", "save_top_k": -1, "mode": "max"}}  # fmt: skip
        settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], every_epoch]
        settings["trainer"]["default_root_dir"] = str(tmp_path / name / "runs")
        config = write_config(tmp_path / f"{name}.yaml", settings)
        return _wsod("fit", "--config", str(config), *extra, cwd=tmp_path)

    uninterrupted = fit("straight")
    assert "val/detection/" not in uninterrupted.stderr, uninterrupted.stderr[-3000:]
    fit("resumed", "--ckpt_path", str(checkpoint(tmp_path / "straight", "epoch=0")))
    assert torch.load(checkpoint(tmp_path / "resumed"), map_location="cpu", weights_only=True)["epoch"] == 1
    straight, resumed = (_state(checkpoint(tmp_path / name)) for name in ("straight", "resumed"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)


def test_a_ddp_fit_resumed_within_an_epoch_ends_with_the_weights_of_the_uninterrupted_one(
    tmp_path: Path, data_root: Path
) -> None:
    """The same within an epoch (a checkpoint every step): each of the 2 gloo processes goes on after its own share
    of the batches trained before the stop. Lightning keeps the sharding sampler that skips them (a
    DistributedSampler); any other would be wrapped again and shard the shards."""

    def fit(name: str, *extra: str) -> None:
        settings = tiny_config(tmp_path / name, data_root, num_workers=1, batch_size=2)
        settings["trainer"] |= {"devices": 2, "strategy": "ddp", "max_epochs": 2, "limit_train_batches": 3,
                                "limit_val_batches": 0, "logger": False}  # fmt: skip
        every_step = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"filename": "{step}", "save_top_k": -1, "mode": "max",
                                    "every_n_train_steps": 1}}  # fmt: skip
        settings["trainer"]["callbacks"] = [settings["trainer"]["callbacks"][1], every_step]
        settings["trainer"]["default_root_dir"] = str(tmp_path / name / "runs")
        _wsod("fit", "--config", str(write_config(tmp_path / f"{name}.yaml", settings)), *extra, cwd=tmp_path)

    fit("straight")
    fit("resumed", "--ckpt_path", str(checkpoint(tmp_path / "straight", "step=4")))  # the 2nd epoch's 1st batch
    straight, resumed = (_state(checkpoint(tmp_path / name)) for name in ("straight", "resumed"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)


def test_a_save_cut_short_keeps_the_previous_last_checkpoint(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning moves a checkpoint from $TMPDIR to its name, a copy into the file itself when the run folder is on
    another file system: a Ctrl-C, kill or full disk then left a cut `last.ckpt` and the earlier epoch's was gone
    (`--ckpt_path last`: EOFError). Here the second epoch's write stops half-way, as that copy does."""
    from wsod_mammo.training.checkpoints import BesideCheckpointIO

    original, calls = BesideCheckpointIO.save_checkpoint, []

    def cut_short(self: BesideCheckpointIO, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        calls.append(Path(path).name)
        if calls.count(calls[-1]) < 2 or not calls[-1].startswith("last"):
            return original(self, checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(BesideCheckpointIO, "save_checkpoint", cut_short)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"max_epochs": 2, "limit_train_batches": 1, "limit_val_batches": 1, "logger": False,
                            "default_root_dir": str(tmp_path / "runs")}  # fmt: skip
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    free = r"\d+ MiB free in the checkpoints folder .+"  # which disk is full: the one the checkpoint is written to
    written = rf"last.ckpt: checkpoint not written \(No space left on device: {free}\); the previous one is kept"
    with pytest.raises(SystemExit) as exit_info:  # one line, exit 1
        main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    assert exit_info.value.code == 1 and re.search(rf"^wsod fit: .*{written}", caplog.records[-1].getMessage())
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0  # the first epoch's, whole
    assert not list((tmp_path / "runs").glob("**/*.partial"))  # the cut file held on to the space that ran out


def test_a_tilde_in_a_configs_paths_is_the_home_folder(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """YAML leaves `~` to the program: `save_dir: ~/runs` made a folder named `~` in the working directory (the log
    said "run folder ~/runs/..."), and `data_root: ~/vindr` "did not exist"."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "vindr").symlink_to(data_root)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1}
    settings["trainer"]["logger"]["init_args"]["save_dir"] = "~/runs"
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    settings["data"]["init_args"]["data_root"] = "~/vindr"
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    assert not (tmp_path / "~").exists()
    assert len(list((tmp_path / "home" / "runs").glob("*/*/checkpoints/last.ckpt"))) == 1


def test_checkpoints_are_written_with_a_full_temporary_folder(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning wrote each checkpoint whole into $TMPDIR and then moved it: with a small TMPDIR (a node's tmpfs) every
    save failed ("checkpoint not written ... 2 MiB free in the temporary folder") while the checkpoints folder had
    gigabytes free. A checkpoint is written beside its name (``.partial``, renamed), nothing in $TMPDIR."""
    import tempfile

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device", tempfile.gettempdir())

    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "logger": False,
                            "default_root_dir": str(tmp_path / "runs")}  # fmt: skip
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    config = write_config(tmp_path / "c.yaml", settings)
    monkeypatch.setattr(tempfile, "mkstemp", full)  # the temporary folder is full
    main(["fit", "--config", str(config)])
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0


def test_a_fit_stopped_by_ctrl_c_exits_130_and_says_how_to_resume(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning ends a Ctrl-C'd run with status 1 and no word on resuming, as it ends a run that failed."""
    import signal

    def interrupted(self: GMICLitModule, batch: dict, batch_idx: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(GMICLitModule, "training_step", interrupted)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"logger": False, "default_root_dir": str(tmp_path / "runs")}
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    handler = signal.getsignal(signal.SIGINT)
    try:  # Lightning ignores SIGINT from then on, for its shutdown
        error = _refused(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))], "interrupted",
                         caplog, status=128 + signal.SIGINT)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, handler)
    # stopped in its first step, it has no checkpoint: `--ckpt_path last` would have resumed another run's
    assert error.endswith("interrupted (Ctrl-C) before it finished (it wrote no checkpoint yet: start it again without "
                          "--ckpt_path)")  # fmt: skip


class _LosesCtrlC:
    """Its ``__del__`` gets the Ctrl-C, as a DataLoader iterator's joining its workers did: Python prints the
    KeyboardInterrupt raised in there as "Exception ignored" and goes on."""

    def __del__(self) -> None:
        import signal

        os.kill(os.getpid(), signal.SIGINT)


class _FileLosingCtrlC(io.IOBase):
    """A file object whose ``closed`` gets the Ctrl-C while ``io.IOBase``'s finalizer reads it, as an fsspec file
    Lightning's checkpoint save dropped did (``bench_ctrl_c.py``, no workers): CPython clears that exception without a
    word, and the fit went on."""

    @property
    def closed(self) -> bool:
        import signal

        os.kill(os.getpid(), signal.SIGINT)
        return False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost KeyboardInterrupt
@pytest.mark.parametrize(
    ("lost_in", "then"),
    [(_LosesCtrlC, "the fit goes on"), (_FileLosingCtrlC, "the fit goes on"), (_LosesCtrlC, "a worker is gone")],
    ids=["del-goes-on", "file-finalizer-goes-on", "del-worker-gone"],
)
def test_a_ctrl_c_python_lost_still_stops_the_fit_at_the_next_batch(
    tmp_path: Path,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
    lost_in: type,
    then: str,
) -> None:
    """A Ctrl-C landing in a ``__del__``, an at-fork hook or a file object's finalizer was lost, and the fit trained on
    to its last epoch; or the DataLoader workers the same Ctrl-C had stopped ended the fit: "DataLoader worker ...
    exited unexpectedly", a traceback and exit 1, as if it had failed (all seen: ``bench_ctrl_c.py``)."""
    import signal

    steps, training_step = [], GMICLitModule.training_step

    def step_losing_ctrl_c(self: GMICLitModule, batch: dict, batch_idx: int) -> Any:
        steps.append(batch_idx)
        if len(steps) == 1:
            lost_in()  # dropped at once: the SIGINT arrives in its finalizer
            if then == "a worker is gone":
                raise RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly")
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(GMICLitModule, "training_step", step_losing_ctrl_c)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "logger": False,
                            "num_sanity_val_steps": 0, "default_root_dir": str(tmp_path / "runs")}  # fmt: skip
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's `wsod` (pytest-xdist's may not)
    try:
        _refused(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))], "interrupted", caplog,
                 status=128 + signal.SIGINT)  # fmt: skip
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not left ignored, as Lightning left it
    finally:
        signal.signal(signal.SIGINT, handler)
    assert steps == [0]  # stopped at the second batch's start, not 4 steps later
    if then == "the fit goes on":  # the line names where the Ctrl-C landed, for a lost one's report
        printed, where = capsys.readouterr().err, "__del__" if lost_in is _LosesCtrlC else "closed"
        assert re.search(rf"\[wsod\] Ctrl-C: it did not stop the run where it landed \(test_cli\.py:\d+ {where} < "
                         r"test_cli\.py:\d+ step_losing_ctrl_c < ", printed), printed[-3000:]  # fmt: skip


def test_a_fit_stopped_by_sigterm_exits_non_zero_and_says_how_to_resume(tmp_path: Path, data_root: Path) -> None:
    """Lightning stops a fit on SIGTERM (a scheduler's pre-emption, `kill`) with a SystemExit of no code: `wsod fit`
    exited 0 as if it had finished, and `wsod fit && wsod test` or `wsod study` took the cut-short run as done."""
    import signal

    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"max_epochs": 100, "logger": False, "default_root_dir": str(tmp_path / "runs")}
    settings["trainer"]["callbacks"] = settings["trainer"]["callbacks"][:2]
    config = write_config(tmp_path / "c.yaml", settings)
    script = Path(sys.executable).with_name("wsod")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fit = subprocess.Popen([str(script), "fit", "--config", str(config)], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "runs").glob("**/last.ckpt")) and time.monotonic() < deadline:
            time.sleep(0.5)  # training has begun: an epoch is done
        fit.send_signal(signal.SIGTERM)
        output, _ = fit.communicate(timeout=120)
    finally:
        fit.kill()
    assert fit.returncode == 128 + signal.SIGTERM, output[-3000:]
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))  # its own, named whole: `last` is the newest run's
    assert f"wsod fit: stopped by SIGTERM before it finished (it resumes from its last.ckpt: --ckpt_path {last})" in (
        output
    )


def test_a_sigterm_to_every_process_of_a_fit_with_workers_still_stops_it_in_one_line(
    tmp_path: Path, data_root: Path
) -> None:
    """A scheduler signals every process of the job. Landing as an epoch's workers start (the fork server and the
    resource tracker die of it at once) it ended the fit with a DataLoader error, exit 1; before Lightning listens
    for SIGTERM (a callback's setup, W&B's start) the process died of it without a word (-15). Both now: 143, the
    one line, and where the fit resumes from, which resumes it."""
    import signal

    settings = tiny_config(tmp_path, data_root, num_workers=2)
    settings["trainer"] |= {"max_epochs": 2, "logger": False, "default_root_dir": str(tmp_path / "runs")}
    killer = {"class_path": "cli_configs.GroupSigterm", "init_args": {"at": "epoch 1"}}
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], killer]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    script = str(Path(sys.executable).with_name("wsod"))

    def run(*args: str, config: dict = settings) -> subprocess.CompletedProcess:
        command = [script, "fit", "--config", str(write_config(tmp_path / "c.yaml", config)), *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                              start_new_session=True)  # fmt: skip

    stopped = run()
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 128 + signal.SIGTERM, output[-3000:]
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert output.rstrip().endswith(
        f"wsod fit: stopped by SIGTERM before it finished (it resumes from its last.ckpt: --ckpt_path {last})"
    ), output[-3000:]
    killer["init_args"]["at"] = "never"
    resumed = run("--ckpt_path", str(last))
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    killer["init_args"]["at"] = "setup"
    early = run()
    output = early.stdout + early.stderr
    assert early.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert output.rstrip().endswith("wsod fit: stopped by SIGTERM before it finished") and "Traceback" not in output


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_sigterm_to_every_process_of_a_ddp_fit_stops_both_ranks_in_one_line(
    tmp_path: Path, data_root: Path, signal_name: str
) -> None:
    """Under DDP Lightning 2.6's SIGTERM handler broadcast from inside the signal handler; rank 1, signalled by the
    scheduler and again by rank 0, broadcast twice, and both ranks hung for good in the backward's all-reduce (a
    scheduler's SIGKILL ended them). Now both stop at the next batch: 143, the line, last.ckpt whole. SLURM's
    time-limit warning (SIGUSR1) to every process: the same (it killed every process without a word). A Ctrl-C (the
    terminal's SIGINT to every process): 130 and its line, whichever rank's end comes first."""
    import signal

    settings = tiny_config(tmp_path, data_root, num_workers=2)
    settings["trainer"] |= {"max_epochs": 3, "logger": False, "default_root_dir": str(tmp_path / "runs"),
                            "devices": 2, "strategy": "ddp", "limit_train_batches": 3}  # fmt: skip
    killer = {"class_path": "cli_configs.GroupSigterm", "init_args": {"at": "epoch 1 backward",
                                                                      "signal_name": signal_name}}  # fmt: skip
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], killer]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    config = write_config(tmp_path / "c.yaml", settings)
    command = [str(Path(sys.executable).with_name("wsod")), "fit", "--config", str(config)]
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True, preexec_fn=sigint_as_from_a_terminal)  # fmt: skip
    try:
        output, _ = run.communicate(timeout=180)  # stopped in ~25 s; hung, it never ends
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # a hung run: every rank
    code, how = (
        (signal.SIGINT, "interrupted (Ctrl-C)") if signal_name == "SIGINT" else (signal.SIGTERM, "stopped by SIGTERM")
    )
    assert run.returncode == 128 + code, output[-3000:]
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert f"wsod fit: {how} before it finished (it resumes from its last.ckpt: --ckpt_path {last})" in output
    assert "Traceback" not in output, output[-3000:]


def test_last_and_best_pass_over_a_run_a_live_fit_is_writing_and_resuming_it_is_refused(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Array jobs in one working folder: `--ckpt_path last` of a task submitted again took another task's run while
    that one was still training, and both then trained into one run folder (its config.yaml replaced, two W&B folders
    under one id); `wsod fit && wsod test --ckpt_path best` tested the other task's checkpoint, mid-training."""
    from wsod_mammo.cli_checkpoints import resolve_checkpoint
    from wsod_mammo.folder_locks import hold

    work = Path(shutil.copytree(trained / "runs", tmp_path / "runs")).parent
    settings = tiny_config(work, data_root)
    (own,) = list((work / "runs").glob("**/checkpoints"))
    live = Path(shutil.copytree(own, own.parent.parent / "otherjob" / "checkpoints"))  # another task's run
    for name in ("last.ckpt", "best.ckpt"):
        os.utime(live / name)  # written after this task's: the newest
    handle = hold(live, "wsod fit")  # as the other task's fit holds it while it runs
    try:
        with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
            assert resolve_checkpoint("last", settings) == own / "last.ckpt"
            assert resolve_checkpoint("best", settings) == own / "best.ckpt"
        assert f"passing over {live / 'last.ckpt'}, which wsod fit, pid {os.getpid()} on " in caplog.text
        config = str(write_config(work / "c.yaml", settings))
        refused = rf"^wsod fit: --ckpt_path {re.escape(str(live / 'last.ckpt'))}: wsod fit, pid {os.getpid()} on .* is "
        _refused(["fit", "--config", config, "--ckpt_path", str(live / "last.ckpt")], refused + "writing that run now",
                 caplog)  # fmt: skip
    finally:
        handle.close()
    assert resolve_checkpoint("last", settings) == live / "last.ckpt"  # that fit ended: the newest run again


def test_a_fit_holds_its_checkpoint_folder_while_it_runs_and_a_second_fit_into_it_is_refused(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study's run started twice (a re-submitted job) ran two fits into one checkpoint folder, its run.yaml and
    checkpoints from different configs; nothing marked a run as in progress."""
    from wsod_mammo.folder_locks import hold, holder

    folder = tmp_path / "checkpoints"
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"logger": False, "default_root_dir": str(tmp_path)}
    settings["trainer"]["callbacks"] = [
        *settings["trainer"]["callbacks"][:2],
        {"class_path": "cli_configs.LockHolder", "init_args": {"path": str(tmp_path / "holder.txt")}},
    ]
    for callback in settings["trainer"]["callbacks"][:2]:
        callback["init_args"]["dirpath"] = str(folder)
    config = str(write_config(tmp_path / "c.yaml", settings))
    handle = hold(folder, "wsod fit")
    try:
        refused = rf"^wsod fit: checkpoints folder {re.escape(str(folder))} is being written by wsod fit, pid "
        _refused(["fit", "--config", config], refused, caplog)
    finally:
        handle.close()
    main(["fit", "--config", config])
    assert (tmp_path / "holder.txt").read_text().startswith(f"wsod fit, pid {os.getpid()} on ")
    assert holder(folder) is None  # released at the end: the next command may resume it


def test_a_fit_refused_for_a_live_fit_leaves_that_runs_config_yaml_as_it_was(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two fits into one run folder (a W&B `id` given twice): the second was refused in on_fit_start, after it had
    moved the live run's config.yaml to config.1.yaml and written its own there: the run then recorded options
    (another learning rate) it was never trained with."""
    from wsod_mammo.folder_locks import hold

    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"logger": False, "default_root_dir": str(tmp_path)}
    config = str(write_config(tmp_path / "c.yaml", settings))
    live = "the live fit's config\n"
    (tmp_path / "config.yaml").write_text(live)
    handle = hold(tmp_path / "checkpoints", "wsod fit")
    try:
        refused = rf"^wsod fit: checkpoints folder {re.escape(str(tmp_path / 'checkpoints'))} is being written by "
        _refused(["fit", "--config", config, "--model.optimizer.init_args.lr", "0.1"], refused, caplog)
    finally:
        handle.close()
    assert (tmp_path / "config.yaml").read_text() == live
    assert not (tmp_path / "config.1.yaml").exists()


def test_a_model_option_an_edited_config_sets_that_a_resume_does_not_use_is_said(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fit resumed with an edited config (a newer version's, with beta fixed) trained on with the checkpoint's
    model options, and only its run's config.yaml said so: options typed on the command line were warned about,
    those in a config file not."""
    work = Path(shutil.copytree(trained / "runs", tmp_path / "runs")).parent
    settings = tiny_config(work, data_root)
    settings["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 2.0e-3
    settings["trainer"] |= {"logger": False, "default_root_dir": str(work)}
    config = str(write_config(work / "c.yaml", settings))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["fit", "--config", config, "--ckpt_path", str(checkpoint(work)), "--trainer.max_epochs", "1"])
    assert ("fit: the config's model.init_args.optimizer.init_args.lr 0.002 (checkpoint: 0.001) not used; the "
            "checkpoint's value is (its weights were made with it)") in caplog.text  # fmt: skip


def test_an_evaluation_does_not_warn_of_training_options_the_checkpoint_replaces(
    tmp_path: Path, trained: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After a fit of another schedule (T_max 30, as the cosine warning advises), every `wsod test --config
    configs/demo.yaml` said the config's T_max 15 was "not used": test, validate and predict step no optimizer or
    schedule. An option they do read (beta, the loss they log) is still said."""
    from wsod_mammo.cli import WsodCLI

    settings = tiny_config(tmp_path, data_root)
    settings["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 2.0e-3
    settings["model"]["init_args"]["beta"] = 1.0e-5
    settings["trainer"] |= {"logger": False, "default_root_dir": str(tmp_path)}
    config = str(write_config(tmp_path / "c.yaml", settings))
    monkeypatch.setattr(WsodCLI, "_run_subcommand", lambda self, subcommand: None)  # the checks alone
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        main(["test", "--config", config, "--ckpt_path", str(checkpoint(trained, "best"))])
    (said,) = [r.getMessage() for r in caplog.records if "not used; the checkpoint's value is" in r.getMessage()]
    assert said.startswith("test: the config's model.init_args.beta 1e-05 (checkpoint: "), said
    assert "optimizer" not in said


def test_the_run_s_config_is_written_without_jsonargparse_s_deprecated_skip_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run's config.yaml was dumped with ``skip_none``, deprecated in jsonargparse 4.49 and gone in 5.0; None
    options are still written."""
    from jsonargparse import ArgumentParser

    from wsod_mammo.cli import RunConfigSaver

    monkeypatch.setenv("JSONARGPARSE_DEPRECATION_WARNINGS", "all")  # else one a type per process, maybe said already
    parser = ArgumentParser()
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    saver = RunConfigSaver(parser, parser.parse_args([]), overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        text = saver._save_into(tmp_path)
    assert yaml.safe_load(text) == {"ckpt_path": None} and (tmp_path / "config.yaml").read_text() == text


def test_slurms_time_limit_warning_sigusr1_to_every_process_of_a_fit_stops_it_as_sigterm_does(
    tmp_path: Path, data_root: Path
) -> None:
    """SLURM's `--signal=USR1@90` (Lightning's docs suggest it) signals every process of the job: SIGUSR1's default
    action ended the fit and its DataLoader workers without a word (exit -10), its last epoch's training lost. Now the
    fit stops as for SIGTERM (the workers ignore it): 143, the line naming the last.ckpt it resumes from."""
    import signal

    settings = tiny_config(tmp_path, data_root, num_workers=2)
    settings["trainer"] |= {"max_epochs": 3, "logger": False, "default_root_dir": str(tmp_path / "runs")}
    killer = {
        "class_path": "cli_configs.GroupSigterm",
        "init_args": {"at": "epoch 1 batch 1", "signal_name": "SIGUSR1"},
    }
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], killer]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    command = [str(Path(sys.executable).with_name("wsod")), "fit", "--config", str(write_config(tmp_path / "c.yaml",
               settings))]  # fmt: skip
    stopped = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                             start_new_session=True)  # fmt: skip
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "SIGUSR1 (a scheduler's warning that the time limit is near): stopping as for SIGTERM" in output
    assert "Traceback" not in output and "exited unexpectedly" not in output, output[-3000:]
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert output.rstrip().endswith(
        f"wsod fit: stopped by SIGTERM before it finished (it resumes from its last.ckpt: --ckpt_path {last})"
    ), output[-3000:]


def test_under_slurm_no_requeue_checkpoint_is_written_nor_loaded_without_a_word(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under SLURM Lightning's auto-requeue saved ``hpc_ckpt_<k>.ckpt`` into the working directory on SIGUSR1, and
    Lightning loaded it into any later run there given no checkpoint: another run's state became a fresh fit's
    start (a study's array tasks share a working directory). The auto-requeue is off; a file left is refused."""
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"logger": False, "default_root_dir": str(tmp_path / "runs")}
    handlers = {"class_path": "cli_configs.SignalHandlers", "init_args": {"path": str(tmp_path / "usr1.txt")}}
    settings["trainer"]["callbacks"] = [*settings["trainer"]["callbacks"][:2], handlers]
    config = str(write_config(tmp_path / "c.yaml", settings))
    main(["fit", "--config", config])
    assert (tmp_path / "usr1.txt").read_text() == "default"  # Lightning's requeue handler: _HandlersCompose
    (last,) = list((tmp_path / "runs").glob("**/last.ckpt"))
    for version in (9, 10):
        shutil.copy(last, tmp_path / "runs" / f"hpc_ckpt_{version}.ckpt")
    stray = tmp_path / "runs" / "hpc_ckpt_10.ckpt"  # the one Lightning takes: 10, not 9 (names sort "10" < "9")
    error = _refused(["fit", "--config", config], "hpc_ckpt_10.ckpt: under SLURM Lightning would load", caplog)
    assert f"--ckpt_path {stray}" in error


#: What SLURM's `srun` sets for a task of one node (``--ntasks`` alone, as `sbatch --ntasks 1`, sets no count per node)
SLURM_TASK = {"SLURM_NNODES": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_NODEID": "0",
              "SLURM_NODELIST": "localhost"}  # fmt: skip
#: What torchrun sets for a process of one node (the rest as SLURM_TASK's: each test gives its own)
TORCHRUN_PROCESS = {"GROUP_RANK": "0", "TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": "29500"}  # fmt: skip


@pytest.mark.parametrize(
    ("launched", "trainer", "match"),
    [({**SLURM_TASK, "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, {"devices": 2, "strategy": "ddp"},
      r"^wsod fit: SLURM started 1 process \(SLURM_NTASKS=1\) but the trainer runs 2 \(trainer.devices 2 x "
      r"trainer.num_nodes 1\): each would take 1/2 of the images, the rest left out; start 2 tasks"),
     ({**SLURM_TASK, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"},
      {"devices": 1},
      r"^wsod fit: SLURM started 2 processes \(SLURM_NTASKS=2\) but the trainer runs one .*each would run the "
      r"whole command on its own"),
     ({**TORCHRUN_PROCESS, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, {"devices": 1},
      r"^wsod fit: torchrun started 2 processes \(WORLD_SIZE=2\) but the trainer runs one"),
     ({**TORCHRUN_PROCESS, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
      {"devices": 3, "strategy": "ddp"},
      r"^wsod fit: torchrun started 2 processes \(WORLD_SIZE=2\) but the trainer runs 3 .*; give torchrun "
      r"--nproc_per_node 3 --nnodes 1")],
    ids=["slurm-one-task-two-devices", "slurm-second-task-one-device", "torchrun-two-one-device",
         "torchrun-two-three-devices"],
)  # fmt: skip
def test_launched_processes_that_are_not_the_trainers_are_refused_in_one_line_before_anything_is_written(
    tmp_path: Path,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    launched: dict[str, str],
    trainer: dict[str, Any],
    match: str,
) -> None:
    """SLURM's `srun` and torchrun start the processes (Lightning starts none): one task (`sbatch --ntasks 1`) with
    `devices 2` ran alone, sharded as one of two, and fitted, validated and tested on half the images, exit 0 (a test
    of 8 images reported 4); with `devices 1` each of two processes ran a whole fit, the second into
    `<project>/None` and `version_None`; torchrun's count not the trainer's was Lightning's traceback."""
    from lightning.pytorch.utilities import rank_zero_only

    for key, value in launched.items():
        monkeypatch.setenv(key, value)
    rank = launched.get("SLURM_PROCID") or launched["RANK"]
    monkeypatch.setattr(rank_zero_only, "rank", int(rank))  # as Lightning reads it from the environment on import
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= trainer
    config = str(write_config(tmp_path / "c.yaml", settings))
    _refused(["fit", "--config", config], match, caplog)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_a_slurm_shell_srun_did_not_start_is_one_line_naming_the_variables_missing(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, subcommand: str
) -> None:
    """In an `salloc` shell (a job name other than bash) SLURM_NTASKS is set but not the task's ranks, which only
    `srun` sets: Lightning takes SLURM for the launcher, and a DDP trainer ended in its `KeyError: 'SLURM_NODEID'`
    traceback as it was built. Now one line naming them and what to do, exit 2, nothing written."""
    shell = {key: value for key, value in SLURM_TASK.items() if key != "SLURM_NODEID"}
    for key, value in {**shell, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2"}.items():
        monkeypatch.setenv(key, value)
    for key in ("SLURM_NODEID", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"devices": 2, "strategy": "ddp"}
    config = str(write_config(tmp_path / "c.yaml", settings))
    weights = ["--ckpt_path", "untrained"] if subcommand == "test" else []
    _refused([subcommand, "--config", config, *weights],
             rf"^wsod {subcommand}: SLURM: this shell is in SLURM job 4242 \(SLURM_NTASKS=2, SLURM_JOB_NAME=train\), "
             r"so Lightning takes SLURM to start the processes, but SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID are not "
             r"set .*run the command under srun .*`unset SLURM_NTASKS` or `export SLURM_JOB_NAME=bash` first$",
             caplog)  # fmt: skip
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("devices", [1, 2])
def test_slurm_tasks_without_a_count_per_node_are_one_line(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, devices: int
) -> None:
    """`salloc -n 2` (or `srun -n 2`) sets SLURM_NTASKS without SLURM_NTASKS_PER_NODE, which Lightning's SLURM
    environment refuses as it is built, whatever the devices: its RuntimeError ended `wsod fit` in a traceback."""
    for key, value in {**SLURM_TASK, "SLURM_NTASKS": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"devices": devices, "strategy": "ddp" if devices > 1 else "auto"}
    config = str(write_config(tmp_path / "c.yaml", settings))
    _refused(["fit", "--config", config],
             r"^wsod fit: SLURM: SLURM_NTASKS=2 without SLURM_NTASKS_PER_NODE \(--ntasks without --ntasks-per-node\), "
             r"which Lightning does not take: ask for --ntasks-per-node .*`export SLURM_JOB_NAME=bash` first$",
             caplog)  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_a_predict_pre_empted_by_sigterm_to_its_process_group_stops_keeps_its_rows_and_exits_143(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """Lightning's predict loop never looks at SIGTERM: a `kill` of the process ran on to the end, exit 0; a SIGTERM
    to the process group (a scheduler's pre-emption) killed the DataLoader workers and ended in an 80-line traceback,
    exit 1. Now: the rows finished so far, one line, exit 143."""
    import signal

    dicoms = sorted((data_root / "images").glob("*/*.dicom"))
    (tmp_path / "inputs").mkdir()
    for copy in range(60):
        for k, dicom in enumerate(dicoms):
            os.link(dicom, tmp_path / "inputs" / f"{copy:02d}_{k}.dcm")
    out = tmp_path / "out"
    command = [str(Path(sys.executable).with_name("wsod")), "predict", "--config", str(trained / "config.yaml"),
               "--ckpt_path", "best", "--data.predict_paths", str(tmp_path / "inputs"), "--data.num_workers", "2",
               "--data.batch_size", "2", "--trainer.callbacks.init_args.output_dir", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("*/overlays/*.png"))) < 4 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        os.killpg(run.pid, signal.SIGTERM)
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "wsod predict: stopped by SIGTERM before it finished" in output and "Traceback" not in output
    (folder,) = out.glob("*/")
    records = json.loads((folder / "predictions.json").read_text())
    assert 4 <= len(records) < len(dicoms) * 60 and not any(r.get("error") for r in records)
    assert len(list(csv.DictReader(open(folder / "predictions.csv")))) == len(records)


def test_wandb_prints_no_end_of_run_dump_and_still_says_where_the_run_is(tmp_path: Path) -> None:
    """Every command used to end with W&B's ~80 rows of history and summary; a run in its own process (in pytest's
    process W&B prints none) shows what a terminal shows. A save_dir that does not exist yet (each table2 config's)
    made W&B warn "git root ... does not exist"."""
    save_dir = tmp_path / "runs" / "table2_cam"
    script = (
        "from wsod_mammo.training.wandb_logger import OfflineWandbLogger\n"
        f"logger = OfflineWandbLogger(save_dir={str(save_dir)!r})\n"
        "logger.log_metrics({'val/fusion/auroc': 0.5, 'train/loss': 1.0}, step=0)\n"
        "logger.finalize('success')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    terminal = result.stdout + result.stderr
    assert "Run history" not in terminal and "Run summary" not in terminal
    assert "saved locally" in terminal and list(save_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert "git root" not in terminal, terminal
    assert "will be ignored" not in terminal, terminal  # W&B's setup was not started before Lightning's WANDB_MODE


def test_wandb_disabled_in_the_settings_files_turns_the_logger_off(tmp_path: Path) -> None:
    """`wandb disabled` (W&B's own switch: ``mode = disabled`` in the working directory's wandb/settings) was
    outranked by the offline mode the logger passes to wandb.init: every command still wrote an offline run."""
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "settings").write_text("[default]\nmode = disabled\n")  # what `wandb disabled` writes
    save_dir = tmp_path / "runs"
    script = (
        "from wsod_mammo.training.wandb_logger import OfflineWandbLogger\n"
        f"logger = OfflineWandbLogger(save_dir={str(save_dir)!r})\n"
        "print('mode', logger.experiment.settings.mode)\n"
        "logger.log_metrics({'val/fusion/auroc': 0.5}, step=0)\n"
        "logger.finalize('success')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path / "home"), "WANDB_CONFIG_DIR": str(tmp_path / "config")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mode disabled" in result.stdout, result.stdout + result.stderr
    assert not list(tmp_path.glob("**/offline-run-*")), result.stdout + result.stderr


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsod_mammo", "fit", "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "--ckpt_path" in result.stdout


def test_plain_commands_do_not_build_a_trainer(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    main(["synth", "--root", str(root), "--n_studies", "2", "--height", "128", "--width", "96"])
    assert (root / "finding_annotations.csv").is_file()
    assert not (tmp_path / "lightning_logs").exists() and not list(tmp_path.glob("**/wandb"))
    shutil.rmtree(root)


def _with_overlays(trained: Path, tmp_path: Path, num_images: int) -> Path:
    """The trained run's config with ``SaliencyOverlays`` asking ``num_images`` overlays, written into ``tmp_path``."""
    settings = yaml.safe_load((trained / "config.yaml").read_text())
    for callback in settings["trainer"]["callbacks"]:
        if callback["class_path"].endswith("SaliencyOverlays"):
            callback["init_args"]["num_images"] = num_images
    return write_config(tmp_path / f"{num_images}_overlays.yaml", settings)


def test_ddp_test_on_an_uneven_count_with_repeats_equals_one_process(
    tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture
) -> None:
    """``selection: paper`` gives 9 test samples of 8 distinct images; 2 processes pad them to 10. Keyed by image_id,
    every Table I and Table II figure (and its interval) and the test loss equal one process's, and both counts are
    reported. The overlays too are the same pictures: the first process alone drew them from every other image (5
    samples for 8 asked)."""
    config = _with_overlays(trained, tmp_path, 8)
    reports, losses, logged_figures, overlays = {}, {}, {}, {}
    for devices in (1, 2):
        out = tmp_path / f"test{devices}"
        logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out)]
        args = ["test", "--config", str(config), "--ckpt_path", str(checkpoint(trained, "best")), *logger]
        _on_one_or_two_processes(devices, [*args, "--data.selection", "paper"], tmp_path, capsys)
        overlays[devices] = {p.name: cv2.imread(str(p)) for p in out.glob("**/overlays/*")}
        (path,) = list(out.glob("**/detection.json"))
        reports[devices] = json.loads(path.read_text())
        (logged,) = list(out.glob("**/metrics.csv"))
        rows = list(csv.DictReader(open(logged)))
        losses[devices] = [float(row["test/loss"]) for row in rows if row.get("test/loss")]
        logged_figures[devices] = {k: float(v) for row in rows for k, v in row.items() if k.startswith("test/") and v}
    assert len(losses[1]) == 1 and losses[2] == pytest.approx(losses[1], abs=1e-6)  # was the mean of 9 vs of 10
    assert len(overlays[1]) >= 6 and sorted(overlays[2]) == sorted(overlays[1])  # every quota's images, named alike
    for name, picture in overlays[1].items():
        assert np.abs(overlays[2][name].astype(int) - picture).max() <= 2, name  # the same picture, drawn elsewhere
    # every figure Lightning logs (the terminal's table, W&B) counts each distinct image once too
    assert logged_figures[1].keys() == logged_figures[2].keys() and "test/fusion/auroc" in logged_figures[1]
    assert "test/breast/fusion/auroc" in logged_figures[1]  # the breast-level AUROC, logged alike
    assert "test/pointing/cam/hit" in logged_figures[1]  # the pointing game too
    assert 0 <= logged_figures[1]["test/wafroc/cam"] <= 1  # and the figures of merit over every test image
    for key, value in logged_figures[1].items():
        assert logged_figures[2][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    one, two = reports[1], reports[2]
    assert one["all_counts"] == {"images": 8, "samples": 9} and two["all_counts"] == {"images": 8, "samples": 10}
    assert one["table1_intervals"] == two["table1_intervals"]
    assert one["table1_counts"] == two["table1_counts"] and one["table1_counts"]["images"] == 8
    assert one["table1_breast_intervals"] == two["table1_breast_intervals"] and one["table1_breast_intervals"]
    assert one["table1_breast_counts"] == two["table1_breast_counts"]
    assert one["by_density"] == two["by_density"] and one["by_density"]["mass"]
    assert one["table1_by_density"] == two["table1_by_density"] and one["table1_by_density"]
    assert one["pointing_game"] == two["pointing_game"] and one["pointing_game"]["images"] > 0  # each image once
    assert one["wafroc"] == two["wafroc"] and one["wafroc"]["normal_images"] + one["wafroc"]["mass_images"] == 8
    assert one["wafroc_by_kind"] == two["wafroc_by_kind"] and set(one["wafroc_by_kind"]) == {
        "density",
        "birads",
        "size",
    }
    assert one["pointing_by_kind"] == two["pointing_by_kind"] and set(one["pointing_by_kind"]["kinds"]) == {
        "density",
        "birads",
        "size",
    }
    assert one["calibration"]["images"] == two["calibration"]["images"] == 8  # calibration over the distinct images
    for head, figures in one["calibration"]["heads"].items():
        for name in ("brier", "ece", "slope", "intercept"):  # a slope NaN in both where the classes separate
            expected = pytest.approx(figures[name], abs=1e-6, nan_ok=True)
            assert two["calibration"]["heads"][head][name] == expected, (head, name)
        drawn = pytest.approx(figures["ece_if_calibrated"], abs=1e-6)  # outcomes drawn per image, not per position
        assert two["calibration"]["heads"][head]["ece_if_calibrated"] == drawn, head
    # the probabilities --compare of two heads redraws: the same per image (each listed once) whatever the ranks
    classified = {}
    for devices in (1, 2):
        (path,) = list((tmp_path / f"test{devices}").glob("**/detection_images.json"))
        record = json.loads(path.read_text())["classification"]
        classified[devices] = {k: (record["target"][i], record["heads"]["fusion"][i], record["study_keys"][i],
                                   record["density"][i]) for i, k in enumerate(record["image_keys"])}  # fmt: skip
        assert len(classified[devices]) == len(record["image_keys"]) == 8
    assert classified[1].keys() == classified[2].keys()
    for key, (target, probability, study, density) in classified[1].items():  # density: the study's per-density
        assert classified[2][key] == (target, pytest.approx(probability, abs=1e-6), study, density), key
    # per kind of mass too: which box found which mass survives the gather (a mass of an image padded onto the
    # other rank counted once)
    for key in ("by_finding_birads", "by_mass_size"):
        assert one[key] == two[key] and one[key]["mass"], key
    for subset in ("mass", "all"):
        for method, figures in one[subset].items():
            other = two[subset][method]
            figures.pop("num_samples"), other.pop("num_samples")
            assert figures == other, (subset, method)


def test_a_ddp_test_logs_every_process_overlays_to_wandb(tmp_path: Path, trained: Path) -> None:
    """2 processes, W&B offline, 8 overlays asked of 8 test images: each process draws its own 4 and the first logs
    all 8 once every process has written them (it logged only the 4 it drew itself, of its own images)."""
    config = _with_overlays(trained, tmp_path, 8)
    args = ["test", "--config", str(config), "--ckpt_path", str(checkpoint(trained, "best")), "--trainer.devices",
            "2", "--trainer.strategy", "ddp", "--trainer.logger.init_args.save_dir", str(tmp_path / "out")]  # fmt: skip
    _wsod(*args, cwd=tmp_path, wandb_mode="offline")
    drawn = list((tmp_path / "out").glob("wsod-test/*/overlays/*.png"))
    logged = list((tmp_path / "out").glob("wandb/offline-run-*/files/media/images/test/overlays_*.png"))
    assert len(drawn) == 8 and len(logged) == 8, (drawn, logged)
    # Table I per breast goes to W&B beside Table I per image, with its intervals
    (report,) = (tmp_path / "out").glob("wsod-test/*/detection.json")
    breasts = json.loads(report.read_text())["table1_breast"]
    tables = tmp_path / "out" / "wandb"
    (table,) = tables.glob("offline-run-*/files/media/table/test/table1_breast_[0-9]*.table.json")
    assert {row[0]: row[1:] for row in json.loads(table.read_text())["data"]} == {
        head: list(figures.values()) for head, figures in breasts.items()
    }
    tables_logged = ("table1_breast_ci", "table1_by_density", "table2_by_density", "table2_by_birads", "table2_by_size",
                     "pointing_game", "calibration", "wafroc", "wafroc_by_kind", "pointing_by_kind")  # fmt: skip
    for name in tables_logged:  # W&B names a table's file <key>_<step>_<hash>
        assert len(list(tables.glob(f"offline-run-*/files/media/table/test/{name}_[0-9]*.table.json"))) == 1, name
    # every test image counted once over both processes, in the report and in W&B's config beside the weights
    assert json.loads(report.read_text())["coverage"] == {"images_tested": 8, "images_in_split": 8}
    (log,) = tables.glob("offline-run-*/run-*.wandb")
    records = read_finished_wandb_log(log)
    config = {_key(i): json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
    assert config["evaluated_images"] == {"images_tested": 8, "images_in_split": 8}


def test_predict_of_the_paper_test_split_writes_each_image_once(tmp_path: Path, trained: Path) -> None:
    """``selection: paper`` lists a test image twice: predict wrote its row twice (and on 2 DDP processes both drew
    its overlay through one temporary file name, and one crashed renaming it: the name now carries the pid)."""
    args = ["predict", "--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint(trained, "best"))]
    main([*args, "--data.selection", "paper", "--trainer.callbacks.init_args.output_dir", str(tmp_path / "out")])
    (run,) = (tmp_path / "out").glob("*/predictions.json")
    records = json.loads(run.read_text())
    assert len(records) == len({r["image_id"] for r in records}) == 8  # the 8 distinct test images, once each
    assert all((run.parent / r["overlay"]).is_file() for r in records) and not list(run.parent.glob("**/*.partial.png"))


def test_ddp_predict_of_only_unreadable_files_writes_every_reason_and_exits_non_zero(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """3 unreadable files (text, empty, truncated DICOM) on 2 processes (2 + 1): every rank decides alike, the one
    predictions.csv holds every file's reason in input order, and the run exits non-zero naming it."""
    text, empty, truncated = tmp_path / "notes.txt", tmp_path / "empty.dcm", tmp_path / "truncated.dcm"
    text.write_text("not an image")
    empty.write_bytes(b"")
    truncated.write_bytes(sorted((data_root / "images").glob("*/*.dicom"))[0].read_bytes()[:400])
    args = [*_ddp_predict_args(tmp_path, trained, data_root), "--data.predict_paths", f"[{text}, {empty}, {truncated}]"]
    result = _wsod(*args, cwd=tmp_path, check=False, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    (run,) = {p.parent for p in (tmp_path / "predictions").glob("*/predictions.csv")}
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert [row["path"] for row in rows] == [str(text), str(empty), str(truncated)]
    assert all(row["error"].startswith(row["path"]) and len(row["error"]) > len(row["path"]) + 2 for row in rows)
    assert (
        "none of the 3 input(s) could be read" in output and f"the reasons are in {run / 'predictions.csv'}" in output
    )
    assert not list(run.glob("predictions.rank*"))


def test_ddp_predict_writes_every_process_rows_once_in_input_order(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """5 inputs on 2 processes (3 + 2) used to give predictions.rank0/1 files in rank order and a log line counting
    rank 0's images only; fewer inputs than processes failed on a bare assertion in Lightning's sampler, in every
    process."""
    dicoms = sorted((data_root / "images").glob("*/*.dicom"))[:4]
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    inputs = [dicoms[0], text, *dicoms[1:]]
    args = _ddp_predict_args(tmp_path, trained, data_root)
    result = _wsod(*args, "--data.predict_paths", f"[{', '.join(map(str, inputs))}]", cwd=tmp_path, timeout=240)
    output = result.stdout + result.stderr
    (run,) = [p.parent for p in (tmp_path / "predictions").glob("*/predictions.json")]
    records = json.loads((run / "predictions.json").read_text())
    assert [r["path"] for r in records] == list(map(str, inputs)), output[-3000:]
    assert [bool(r.get("error")) for r in records] == [False, True, False, False, False]
    # each process draws the overlays of its own images (the second process: every second input)
    assert all((run / r["overlay"]).is_file() for r in records if not r.get("error")), records
    assert len(list((run / "overlays").glob("*.png"))) == 4
    assert {row["path"] for row in csv.DictReader(open(run / "predictions.csv"))} == set(map(str, inputs))
    assert f"predictions for 5 images (1 unreadable) in {run}" in output and not list(run.glob("predictions.rank*"))
    # the breasts gather both processes' views: every DICOM read is in exactly one breast, at the mean of its views
    breasts = json.loads((run / "breasts.json").read_text())
    assert sorted(i for b in breasts for i in b["image_ids"]) == sorted(
        r["image_id"] for r in records[:1] + records[2:]
    )
    for breast in breasts:
        probabilities = [r["probability"] for r in records if r["image_id"] in breast["image_ids"]]
        assert breast["probability"] == pytest.approx(sum(probabilities) / len(probabilities))
    data = VinDrMammoDataModule(str(data_root), input_size=(128, 80), predict_paths=[str(dicoms[0])])
    data.setup("predict")
    data.trainer = SimpleNamespace(world_size=2)  # each process's own check, before Lightning's sampler asserts
    with pytest.raises(DataError, match=r"predict: 1 input\(s\) for 2 processes .* --trainer.devices 1"):
        data.predict_dataloader()


@pytest.mark.parametrize("devices", ["2", "[0, 1]", "0,1"])
def test_ddp_predict_of_fewer_inputs_than_processes_is_refused_before_any_starts(
    tmp_path: Path, trained: Path, data_root: Path, devices: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One input on 2 processes: each process said so once it had started (the line twice, exit status 1)."""
    (dicom,) = sorted((data_root / "images").glob("*/*.dicom"))[:1]
    args = [*_ddp_predict_args(tmp_path, trained, data_root), "--trainer.devices", devices]
    message = r"trainer.devices: 1 predict input\(s\) for 2 processes .* run it with --trainer.devices 1"
    _refused([*args, "--data.predict_paths", f"[{dicom}]"], message, caplog)
    assert not (tmp_path / "predictions").exists()
    folder = {"trainer": {"devices": 2}, "data": {"init_args": {"predict_paths": str(dicom.parent)}}}
    cli_checks.check_predict_inputs(folder)  # a folder counts its files (a study's 4): no error


def test_an_image_unreadable_on_one_ddp_process_is_its_one_line_not_the_others_traceback(
    tmp_path: Path, trained: Path, data_root: Path
) -> None:
    """One truncated test image, read by one of 2 processes: that process said why in one line, and the other's
    collective then failed ("Connection closed by peer") in a traceback printed twice, 100-200 lines after it."""
    root = Path(shutil.copytree(data_root, tmp_path / "data"))
    rows = list(csv.DictReader(open(root / "breast-level_annotations.csv")))
    (broken,) = list(root.glob(f"images/*/{next(r['image_id'] for r in rows if r['split'] == 'test')}.dicom"))
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    settings = tiny_config(tmp_path, root)
    settings["trainer"] |= {"devices": 2, "strategy": "ddp"}
    args = ["test", "--config", str(write_config(tmp_path / "ddp.yaml", settings))]
    result = _wsod(*args, "--ckpt_path", str(checkpoint(trained, "best")), cwd=tmp_path, check=False, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert len(re.findall(rf"wsod test: {broken}: .*data.missing: skip", output)) == 1, output[-3000:]
    assert "Traceback" not in output and "closed by peer" not in output, output[-3000:]


def _ddp_predict_args(tmp_path: Path, trained: Path, data_root: Path) -> list[str]:
    settings = tiny_config(tmp_path, data_root)
    settings["trainer"] |= {"devices": 2, "strategy": "ddp"}
    config = write_config(tmp_path / "ddp.yaml", settings)
    return ["predict", "--config", str(config), "--ckpt_path", str(checkpoint(trained, "best"))]


def test_predict_adopts_the_checkpoints_input_frame_unless_the_command_line_sets_it(
    tmp_path: Path, trained: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint made for another frame (as `nyu_to_checkpoint`'s 2944 x 1920 against demo.yaml's 384 x 256)
    used to run at the config's frame in `wsod predict` and at its own in `Predictor.from_checkpoint`: predict now
    takes the checkpoint's, with a warning naming both frames, and `--data.input_size` on the command line wins."""
    ckpt = torch.load(checkpoint(trained, "best"), weights_only=True, map_location="cpu")
    ckpt["input_frame"] = {"input_size": [256, 192], "crop_breast": True, "resize": "stretch"}
    other = tmp_path / "other_frame.ckpt"
    torch.save(ckpt, other)
    files = sorted((data_root / "images").glob("*/*.dicom"))[:2]
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))  # 192 x 128
    args = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(other),
        "--data.predict_paths",
        str([str(f) for f in files]),
    ]

    def probabilities() -> list[float]:
        run = max((tmp_path / "predictions").glob("*/predictions.json"))
        return [r["probability"] for r in json.loads(run.read_text())]

    with caplog.at_level(logging.WARNING):
        main(args)
    adopted = probabilities()
    expected = [r.probability for r in Predictor.from_checkpoint(other)(files)]
    np.testing.assert_allclose(adopted, expected, atol=1e-5)
    assert "made for input frame 256x192 (stretch, breast crop), the config says 192x128" in caplog.text
    assert "--data.input_size '[192, 128]' keeps the config's" in caplog.text

    main([*args, "--data.input_size", "[192, 128]"])
    kept = probabilities()
    np.testing.assert_allclose(
        kept, [r.probability for r in Predictor.from_checkpoint(other, (192, 128))(files)], atol=1e-5
    )
    assert not np.allclose(kept, adopted, atol=1e-4)
    main([*args, "--data.input_size=[192, 128]"])  # the option in one word sets it as well
    np.testing.assert_allclose(probabilities(), kept, atol=1e-6)


def test_a_checkpoints_crop_shape_is_the_one_checked_against_the_input_size(
    tmp_path: Path, trained: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With --ckpt_path the checkpoint's crop_shape replaces the config's, but the config's was the one checked: the
    predict defaults' 256 x 256 refused a 128 x 128 frame the checkpoint's 64 x 64 crop fits in, and a config's crop
    that fit let a checkpoint's that did not fail at the first batch, in a traceback."""
    ckpt = torch.load(checkpoint(trained, "best"), weights_only=True, map_location="cpu")
    ckpt["hyper_parameters"]["model"]["init_args"]["crop_shape"] = [128, 128]  # no weight depends on it
    larger = tmp_path / "larger_crop.ckpt"
    torch.save(ckpt, larger)
    dicoms = str([str(f) for f in sorted((data_root / "images").glob("*/*.dicom"))[:1]])
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))  # crop_shape [64, 64]
    _refused(["predict", "--config", str(config), "--ckpt_path", str(larger), "--data.predict_paths", dicoms,
              "--data.input_size", "[64, 128]"],
             rf"^wsod predict: --ckpt_path {re.escape(str(larger))}: its model.model.crop_shape \[128, 128\] does not "
             r"fit in the data.input_size \[64, 128\]; give a data.input_size it fits in", caplog)  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the predict defaults (GMIC's 256 x 256 crop) write ./predictions
    main(["predict", "--ckpt_path", str(checkpoint(trained, "best")), "--data.predict_paths", dicoms,
          "--data.input_size", "[128, 128]"])  # fmt: skip
    assert len(json.loads(next((tmp_path / "predictions").glob("*/predictions.json")).read_text())) == 1


def test_the_networks_options_set_as_the_fit_help_says_parse(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """`wsod fit --help` points to `--model.model.help GMIC`, whose list (jsonargparse's) names each option
    `--model.NAME`, which the parser refuses; the help says how they are set, and set so each one parses."""
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    (said,) = re.findall(r"they are set as (--model\.model\.)NAME", " ".join(capsys.readouterr().out.split()))
    with pytest.raises(SystemExit):
        main(["fit", "--model.model.help", "GMIC"])
    listed = sorted(set(re.findall(r"^  --model\.(\w+) ", capsys.readouterr().out, flags=re.M)))
    assert {"percent_t", "crop_shape", "compile_networks"} <= set(listed)
    values = {"crop_shape": "[64, 64]", "gradient_target": "logit", "global_stem": "conv", "local_stem": "conv",
              "post_processing_dim": "256", "patch_ties": "first"}  # fmt: skip
    args = [
        part for name in listed for part in (f"{said}{name}", values.get(name, "false" if "compile" in name else "1"))
    ]
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    with pytest.raises(SystemExit) as printed:
        main(["fit", "--config", str(config), *args, "--print_config"])
    assert printed.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["model"]["init_args"]["percent_t"] == 1


def test_ckpt_path_help_and_errors_point_to_what_works(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """The help lists every form `--ckpt_path` resolves; NYU's .p file points to --model.init_from_nyu; a file
    torch cannot read safely keeps torch's reason but not its advice to load it with weights_only=False."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "<run id>:best" in help_text and "<run folder>:best" in help_text and ":last" in help_text

    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data_root))
    nyu = _nyu_legacy_file(tmp_path / "sample_model_1.p")
    args = ["predict", "--config", str(config), "--ckpt_path"]
    _refused([*args, str(nyu)], f"NYU's GMIC weights.*--model.init_from_nyu {nyu}.*nyu_to_checkpoint", caplog)
    # NYU's two heads against the config's one class: refused naming both counts, not a traceback at the first batch
    heads = "has 2 output class\\(es\\), data.classes has 1 \\(Mass\\): give one class per output"
    nyu_args = ["test", "--config", str(config), "--model.init_from_nyu", str(nyu)]
    _refused([*nyu_args, "--model.model.init_args.num_classes", "2"], f"num_classes {heads}", caplog)
    converted = nyu_to_checkpoint(nyu, tmp_path / "nyu.ckpt", num_patches=2, crop_shape=(64, 64))
    validate = ["validate", "--config", str(config), "--ckpt_path", str(converted)]
    _refused(validate, f"--ckpt_path's model {heads}", caplog)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(bytes(range(256)) * 4)
    refused = _refused([*args, str(garbage)], "garbage.ckpt: not a checkpoint", caplog)
    assert "weights_only` set to `False" not in refused and "arbitrary code" not in refused and len(refused) < 250
    assert refused.endswith(
        "(not a torch file, zip or legacy (it begins with b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07'))"
    )


def test_a_fit_resumed_from_checkpoints_kept_outside_its_run_folder_continues_its_w_and_b_run(
    tmp_path: Path, data_root: Path
) -> None:
    """`wsod study` keeps a run's checkpoints in runs/<method>_seed<seed>/checkpoints: resuming took that folder's
    name as the W&B id, so the resumed fit started a second W&B run and run folder. The checkpoint records its id."""
    settings = tiny_config(tmp_path, data_root)
    for callback in settings["trainer"]["callbacks"][:2]:
        callback["init_args"]["dirpath"] = str(tmp_path / "cam_seed7" / "checkpoints")
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", settings))])
    (first,) = _run_dirs(tmp_path)
    last = tmp_path / "cam_seed7" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["wandb_run_id"] == first.name
    main(["fit", "--config", str(tmp_path / "c.yaml"), "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    # one run id: one run folder (named by it), the first config kept as config.1.yaml beside the resumed one's
    assert _run_dirs(tmp_path) == [first] and (first / "config.1.yaml").is_file()


@pytest.mark.parametrize("cause", ["no API key", "no server"])
def test_an_online_w_and_b_run_that_cannot_start_is_one_line_with_exit_1(
    tmp_path: Path, data_root: Path, cause: str
) -> None:
    """WANDB_MODE=online without an API key (or a reachable server) ended a fit in wandb's 18-frame traceback.
    With a key and no server, wandb retries until its init timeout (90 s by default; 3 s here)."""
    settings = tiny_config(tmp_path, data_root)
    config = write_config(tmp_path / "c.yaml", settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"WANDB_MODE": "online", "HOME": str(tmp_path / "home"), "WANDB_CONFIG_DIR": str(tmp_path / "wb")}
    if cause == "no server":
        with socket.socket() as probe:  # a port nothing listens on once closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env |= {"WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_INIT_TIMEOUT": "3"}
    run = subprocess.run([sys.executable, "-m", "wsod_mammo", "fit", "--config", str(config)], capture_output=True,
                         text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "wsod fit: Weights & Biases could not start the run (" in run.stderr
    assert "it runs offline, and `wandb sync` uploads it later" in run.stderr
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


def test_resuming_a_run_that_trained_all_its_epochs_says_nothing_is_trained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cluster audit's stopped fit had written no checkpoint, and `--ckpt_path last` then resumed the newest run
    that had: a finished one. Lightning stopped at once ('max_epochs reached', exit 0) and nothing said why."""
    from wsod_mammo.cli_checkpoints import warn_if_finished

    path = tmp_path / "last.ckpt"
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        warn_if_finished({"epoch": 3}, path, {"trainer": {"max_epochs": 4}})
    assert f"--ckpt_path {path} is of a run that trained its 4 epoch(s): nothing is trained" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        warn_if_finished({"epoch": 2}, path, {"trainer": {"max_epochs": 4}})  # one epoch left to train
        warn_if_finished({"epoch": 3}, path, {"trainer": {"max_epochs": None}})  # Lightning's own limit
    assert "nothing is trained" not in caplog.text


def _loops(epochs: dict[str, int], batches: dict[str, int], is_last_batch: bool) -> dict[str, Any]:
    """A checkpoint's fit loop record, as Lightning 2.6 writes it (the epoch and batch counts of this fit)."""
    return {"fit_loop": {"epoch_progress": {"total": dict(epochs), "current": dict(epochs)},
                         "epoch_loop.batch_progress": {"total": dict(batches), "current": dict(batches),
                                                       "is_last_batch": is_last_batch}}}  # fmt: skip


def test_resuming_a_checkpoint_saved_within_its_epoch_is_not_said_to_train_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A last.ckpt saved within epoch 1 (`every_n_train_steps`, or a fit that `max_steps` stopped there), resumed
    with `--trainer.max_epochs 2`: the warning said "trained its 2 epoch(s): nothing is trained" (epoch + 1), and
    Lightning then trained the rest of epoch 1 (steps 5 to 8 of the reproduction). Lightning counts the epochs its
    loop processed; an epoch-end checkpoint of epoch 1 has trained both."""
    from wsod_mammo.cli_checkpoints import warn_if_finished

    path = tmp_path / "last.ckpt"
    two = {"ready": 2, "started": 2, "processed": 2, "completed": 1}
    within = {  # the reproduction's last.ckpt of step 5, 1 batch into epoch 1
        "every_n_train_steps": _loops(
            two | {"processed": 1}, {"ready": 1, "started": 1, "processed": 1, "completed": 0}, False
        ),
        "max_steps": _loops(two, {"ready": 1, "started": 1, "processed": 1, "completed": 1}, False),
    }
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        for loops in within.values():
            warn_if_finished({"epoch": 1, "loops": loops}, path, {"trainer": {"max_epochs": 2}})
    assert "nothing is trained" not in caplog.text
    ended = _loops(two, {"ready": 1, "started": 1, "processed": 1, "completed": 1}, True)  # epoch 1's end
    with caplog.at_level(logging.WARNING, logger="wsod_mammo"):
        warn_if_finished({"epoch": 1, "loops": within["every_n_train_steps"]}, path, {"trainer": {"max_epochs": 1}})
        warn_if_finished({"epoch": 1, "loops": ended}, path, {"trainer": {"max_epochs": 2}})
    said = [r.getMessage() for r in caplog.records if "nothing is trained" in r.getMessage()]
    assert [text.split(": nothing")[0].rsplit(" ", 2)[-2] for text in said] == ["1", "2"]  # epochs trained


def test_a_configured_method_that_is_no_saliency_class_is_never_called(tmp_path: Path) -> None:
    """The lines that compare the methods build each configured one; a ``class_path`` naming another callable of a
    module already imported (``builtins.open``, as a checkpoint's hyperparameters may) was called with its
    ``init_args``, writing a file, before the option parser's own refusal."""
    from wsod_mammo.cli_methods import configured_method

    marker = tmp_path / "marker"
    assert configured_method({"class_path": "builtins.open", "init_args": {"file": str(marker), "mode": "w"}}) is None
    assert not marker.exists()
    assert type(configured_method({"class_path": "wsod_mammo.saliency.GradCAM", "init_args": {}})).__name__ == "GradCAM"
