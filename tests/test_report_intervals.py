"""The test report's FPPI interval, --compare's seed, and what its Table II row says the weights were."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import pytest
import torch
from full_disk import contents, room_for

from wsod_mammo.detection.bootstrap import detection_intervals
from wsod_mammo.detection.compare import load_side, paired_bootstrap
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.training.table1_report import Table1Figures
from wsod_mammo.training.test_report import write_test_report

NO_TABLE1 = Table1Figures({}, {}, {}, None)  # a report of detection alone

SIZE = (20, 20)


def _result(positives_only: bool = True, missed: tuple[int, ...] = ()):
    """8 mass images, each with its mass found (0.6) below a brighter false positive (1.0): the operating point at
    FPPI <= 1 is TPR 1 at FPPI 1 in every resample, while FPPI <= 0.25 keeps no box."""
    maps = torch.zeros(8, *SIZE)
    maps[:, 2:8, 2:8] = 0.6
    maps[list(missed), 2:8, 2:8] = 0.0
    maps[:, 12:16, 12:16] = 1.0
    gt = [torch.tensor([[2.0, 2.0, 8.0, 8.0]]) for _ in range(8)]
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=1.0, positives_only=positives_only)
    metric.update(maps, torch.full((8,), 0.9), gt, torch.ones(8, dtype=torch.long), SIZE, [f"m{i}" for i in range(8)])
    return metric.compute()


def _cam_run() -> tuple[SimpleNamespace, SimpleNamespace]:
    """The trainer and module of a test run trained with CAM, its threshold validated (no checkpoint file)."""
    module = SimpleNamespace(
        train_saliency=SimpleNamespace(name="cam"),
        detection_thresholds={"cam": 0.5},
        nyu_weights_as_is=None,
        trained_in_process=True,
    )
    return SimpleNamespace(ckpt_path=None, loggers=[]), module


def test_the_fppi_interval_is_that_of_the_operating_point() -> None:
    result = _result()
    assert (result.per_threshold[0].tpr, result.per_threshold[0].fppi) == (1.0, 1.0)
    assert detection_intervals(result, 1.0, seed=0)["fppi"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_compare_redraws_a_reports_interval_with_the_reports_own_seed(tmp_path) -> None:
    missed = (0, 3, 5)  # TPR 5/8: the resamples vary, so the seed shows in the interval
    results = {("cam", "mass"): _result(True, missed), ("cam", "all"): _result(False, missed)}
    trainer, module = _cam_run()
    write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    reported = json.loads((tmp_path / "detection.json").read_text())["mass"]["cam"]["intervals"]["tpr"]
    _, records, budget, seed = load_side("cam", tmp_path, "mass")
    assert seed == 7
    assert paired_bootstrap(records, records, budget, seed)["a"] == pytest.approx(reported, nan_ok=True)


def test_the_report_records_the_input_frame_it_was_measured_in(tmp_path) -> None:
    """detection.json named no input frame: a reader of it alone could not tell at which resolution (input_size,
    resize, crop_shape) its boxes and FPPI were measured; config.yaml's names, the other keys as they were."""
    results = {("cam", "mass"): _result(), ("cam", "all"): _result(False)}
    trainer, module = _cam_run()
    write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    before = json.loads((tmp_path / "detection.json").read_text())
    trainer.datamodule = SimpleNamespace(input_size=(384, 256), crop_breast=True, resize="fit")
    module.model = SimpleNamespace(crop_shape=(64, 32))
    write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    summary = json.loads((tmp_path / "detection.json").read_text())
    frame = {"input_size": [384, 256], "crop_breast": True, "resize": "fit", "crop_shape": [64, 32]}
    assert summary.pop("input_frame") == frame
    assert before.pop("input_frame") == dict.fromkeys(frame)  # no data module, no GMIC: null, the key still there
    assert summary.keys() == before.keys()


def test_a_report_the_disk_cannot_hold_keeps_the_earlier_files_whole_and_names_the_file(tmp_path) -> None:
    """A full disk mid-report left a cut file where the earlier run's stood (a cut FROC PNG, a cut detection.json
    that `wsod report` then fails on), under Python's "[Errno 27] File too large" or "[Errno 28] No space left on
    device", which names no file."""
    results = {("cam", "mass"): _result(), ("cam", "all"): _result(False)}
    trainer, module = _cam_run()
    write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    earlier = contents(tmp_path)
    assert len(earlier["detection.json"]) > 1000 and len(earlier["froc_mass.png"]) > 1000
    with room_for(1000), pytest.raises(OSError, match=rf"^\[Errno 27\] {tmp_path}/\S+: not written \(File too large\)"):
        write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    assert contents(tmp_path) == earlier


@pytest.mark.parametrize(
    ("weights", "thresholds", "expected", "label"),
    [("in_memory", {"cam": 0.5}, {"weights": "in_memory", "thresholds": "validated"}, "cam"),
     ("untrained", {}, {"weights": "untrained", "thresholds": "default"}, "cam (untrained, NOT VALIDATED)"),
     ("nyu", {}, {"weights": "nyu", "thresholds": "default"}, "cam (NYU weights, NOT VALIDATED)"),
     ("checkpoint", {"cam": 0.5}, {"weights": "checkpoint", "thresholds": "validated"}, "cam"),
     ("tied", {"cam": 0.5}, {"weights": "checkpoint", "thresholds": "validated; tied: cam"}, "cam (TIED: cam)")],
)  # fmt: skip
def test_the_row_files_record_the_weights_and_whether_the_thresholds_were_validated(
    tmp_path, weights, thresholds, expected, label
) -> None:
    """`--ckpt_path untrained` wrote `cam,<cells>` as a trained run does: the row files end with the weights
    evaluated and whether validation chose the thresholds, and the row's Markdown label says what the row is."""
    results = {("cam", "mass"): _result(True), ("cam", "all"): _result(False)}
    (tmp_path / "weights.bin").write_bytes(b"weights")
    from_file = weights in ("checkpoint", "tied")  # tied: a checkpoint whose cam threshold validation took from a tie
    trainer = SimpleNamespace(ckpt_path=str(tmp_path / "weights.bin") if from_file else None, loggers=[])
    module = SimpleNamespace(
        train_saliency=SimpleNamespace(name="cam"),
        detection_thresholds=thresholds,
        tied_thresholds=["cam"] if weights == "tied" else [],
        nyu_weights_as_is=str(tmp_path / "weights.bin") if weights == "nyu" else None,
        trained_in_process=weights == "in_memory",
    )
    (tmp_path / "run").mkdir()
    write_test_report(tmp_path / "run", trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    for name in ("table2_row", "table2_row_all_images"):
        text = (tmp_path / "run" / f"{name}.csv").read_text()
        assert text.splitlines()[0] == "train_method,cam,weights,thresholds", name
        (row,) = csv.DictReader(text.splitlines())
        assert {k: row[k] for k in expected} == expected and row["train_method"] == "cam", name
        markdown = (tmp_path / "run" / f"{name}.md").read_text()
        assert f"\n| {label} | " in markdown, name
        assert ("UNTRAINED: the freshly initialized network" in markdown) == (weights == "untrained"), name


@pytest.mark.parametrize(("recorded", "named"), [(["Mass", "Suspicious Calcification"], "Mass"), (None, "class 0")])
def test_table1_of_a_two_class_model_names_the_class_it_rates(tmp_path, recorded, named) -> None:
    """Table I rates the first output; with two classes it said so nowhere, while the test/<head>/* scalars Lightning
    logs (W&B) average both classes: two different AUCs for one head, unexplained."""
    results = {("cam", "mass"): _result(True), ("cam", "all"): _result(False)}
    trainer = SimpleNamespace(ckpt_path=None, loggers=[], datamodule=None)
    module = SimpleNamespace(
        train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5}, nyu_weights_as_is=None,
        trained_in_process=True, model=SimpleNamespace(num_classes=2), recorded_class_names=lambda: recorded,
    )  # fmt: skip
    figures = {"value": 0.5, "low": 0.25, "high": 0.75}
    table1_ci = {"fusion": {k: figures for k in ("accuracy", "auc", "tpr", "tnr")}}
    (tmp_path / "run").mkdir()
    counts = {"images": 8, "positive": 4}
    write_test_report(tmp_path / "run", trainer, module, results, Table1Figures(table1_ci, counts, {}, None), 1.0, 7)
    text = (tmp_path / "run" / "table1.md").read_text()
    assert f"Table I rates the {named} output, the first of the model's 2 classes" in text
    assert "are the macro mean over the 2 classes" in text
    assert json.loads((tmp_path / "run" / "detection.json").read_text())["table1_class"] == named
    module.model.num_classes = 1  # one class: nothing to say
    module.recorded_class_names = lambda: ["Mass"]
    write_test_report(tmp_path / "run", trainer, module, results, Table1Figures(table1_ci, counts, {}, None), 1.0, 7)
    assert "Table I rates" not in (tmp_path / "run" / "table1.md").read_text()


def test_table1_by_density_gives_each_densitys_counts_and_heads_and_n_a_where_a_density_has_no_negatives() -> None:
    from wsod_mammo.training.table1_report import _figures_with_intervals, table1_by_density_text

    preds, target = torch.tensor([0.9, 0.2, 0.7, 0.6, 0.8]), torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0])
    keys = torch.arange(5)
    rows = {
        "DENSITY A": {"studies": 2, "images": 2, "positive": 1,
                      "heads": {"fusion": _figures_with_intervals(preds[:2], target[:2], keys[:2], 0, None)}},
        "DENSITY D": {"studies": None, "images": 3, "positive": 3,
                      "heads": {"fusion": _figures_with_intervals(preds[2:], target[2:], keys[2:], 0, None)}},
    }  # fmt: skip
    markdown, csv_text = table1_by_density_text(rows, "images", "Mass")
    lines = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| DENSITY")}
    assert lines["DENSITY A"].startswith("| DENSITY A | 2 | 2 | 1 | fusion | 1.00 [")  # both ranked right: AUC 1
    only_positives = lines["DENSITY D"]  # no studies named, no AUC or TNR without a negative
    assert only_positives.startswith("| DENSITY D | n/a | 3 | 3 | fusion |") and only_positives.count("n/a") == 3
    parsed = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(parsed) == 8 and {r["figure"] for r in parsed} == {"accuracy", "auc", "tpr", "tnr"}
    assert [r["value"] for r in parsed if r["density"] == "DENSITY D" and r["figure"] == "auc"] == ["nan"]


def test_the_table2_row_files_are_the_reports_last(tmp_path, monkeypatch) -> None:
    """`wsod report` finds a test run by its table2_row.csv: written before the bootstraps and detection.json (tens of
    seconds at real scale), a report run meanwhile read the row without the detection.json that marks a test of
    part of the split, and printed it unmarked."""
    import wsod_mammo.training.table2_report as table2_report

    written = table2_report.write_table2_row
    beside: dict[str, list[str]] = {}

    def row_written(path, *args, **kwargs) -> None:
        beside[path.name] = sorted(p.name for p in path.parent.iterdir())
        written(path, *args, **kwargs)

    monkeypatch.setattr(table2_report, "write_table2_row", row_written)
    results = {("cam", "mass"): _result(True), ("cam", "all"): _result(False)}
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    write_test_report(tmp_path, trainer, module, results, NO_TABLE1, fppi_budget=1.0, seed=7)
    assert set(beside) == {"table2_row.csv", "table2_row_all_images.csv"}
    for files in beside.values():
        assert {"detection.json", "detection_images.json", "table2_row.md", "froc_mass.png"} <= set(files)
    assert "table2_row_all_images.csv" not in beside["table2_row.csv"]  # the first written
    assert (tmp_path / "table2_row.csv").read_text().startswith("train_method,cam")
