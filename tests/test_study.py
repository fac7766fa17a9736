"""``wsod study`` end to end on tiny synthetic data: 2 train methods x 1 seed, two runs at a time on the CPU."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from cli_configs import sigint_as_from_a_terminal, tiny_config, write_config

from wsod_mammo.commands import main
from wsod_mammo.data.synthetic import make_synthetic_dataset
from wsod_mammo.study_runs import finished_report
from wsod_mammo.training.classification import HEADS
from wsod_mammo.yaml_text import dump_yaml


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    """``wsod study`` refuses ``argv`` in one ``[wsod] wsod study:`` line matching ``message``, exit status 1 (its
    option checks once printed the bare message, without the prefix its other errors have)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.match(r"\[wsod\] wsod study: " + message, lines[0]), lines


@pytest.mark.timeout(1200)  # two runs of fit + test as subprocesses: about 2 min on 2 idle cores
def test_study_runs_the_matrix_assembles_table2_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_root = make_synthetic_dataset(tmp_path / "data", 8, 256, 160, seed=3, calc_fraction=0.0)
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", data_root))
    study = tmp_path / "my_study"
    args = ["study", "--config", str(config), "--output", str(study), "--train_methods", "cam,gradcam",
            "--select_by", "wafroc"]  # fmt: skip
    main([*args, "--seeds", "7", "--parallel", "2"])

    summary = (study / "summary.md").read_text()
    assert summary == capsys.readouterr().out  # printed at the end as well
    assert "| cam |" in summary and "| gradcam |" in summary
    assert "Checkpoints tested: best.ckpt, kept by each run's validation wAFROC of its own train-side method's maps" \
        in summary  # fmt: skip
    verdict = r"Best pair: train \w+, test \w+: TPR|Best pairs, tied at TPR [\d.]+ and [\d.]+ FPPI: train "
    assert re.search(verdict, summary)
    with open(study / "table2.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["train_method"], r["test_method"]) for r in rows} == {
        (train, test)
        for train in ("cam", "gradcam")
        for test in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam")
    }
    assert all(0.0 <= float(r["tpr"]) <= 1.0 for r in rows if r["tpr"] != "nan")
    assert (study / "froc_cam.png").stat().st_size > 0 and (study / "froc_gradcam.png").stat().st_size > 0
    # the extensions: Table I per breast beside Table I, and Table II per breast density, finding BI-RADS, mass size
    assert "Table I, breast level" in summary and (study / "table1_breast.md").stat().st_size > 0
    paired = (study / "table1_paired.md").read_text()  # and the AUC differences against cam, paired on the images
    assert "Table I paired (each train method's AUC and Brier score minus the first's): table1_paired.md" in summary
    image_level, rest = paired.split("## Breast level")  # per image, then per breast (the DICOMs name both)
    breast_level, brier = rest.split("## Brier score")  # then the Brier scores' differences, per image
    for section in (image_level, breast_level, brier):
        assert [line.split(" | ")[1] for line in section.splitlines() if line.startswith("| gradcam |")] == list(HEADS)
    assert "Calibration (Brier score, ECE, recalibration slope and intercept of Table I's probabilities): " \
        "calibration.md" in summary  # fmt: skip
    assert (study / "calibration.md").read_text().count("\n| gradcam | ") == 3  # a row per head
    pointing = (study / "pointing_game.md").read_text()  # and each map's peak and energy against the masses
    assert "Pointing game (each map's peak and energy against the masses): pointing_game.md" in summary
    assert pointing.count("\n| gradcam | ") == 2 and "| layercam |" in pointing.splitlines()[4]
    assert "Pointing game per breast density, finding BI-RADS and mass size: pointing_by_kind.md" in summary
    pointing_kinds = (study / "pointing_by_kind.md").read_text()
    assert "## finding BI-RADS: BI-RADS 4\n\n### Pointing game" in pointing_kinds and "## mass size: " in pointing_kinds
    assert "wAFROC and AFROC figures of merit (every test image): wafroc.md" in summary  # and the JAFROC figures
    assert (study / "wafroc.md").read_text().count("\n| gradcam | ") == 2  # a row in each figure's table
    assert "wAFROC per breast density, finding BI-RADS and mass size: wafroc_by_kind.md" in summary  # and per kind
    by_kind = (study / "wafroc_by_kind.md").read_text()
    assert (
        "## finding BI-RADS: BI-RADS 4" in by_kind
        and "## mass size: 10-20 mm" in by_kind
        and "## breast density" in by_kind
    )
    paired_fom = (study / "wafroc_paired.md").read_text()  # and the best pair against every other, on the same images
    assert "wAFROC paired (the best pair's minus every other's): wafroc_paired.md" in summary
    assert sum(line.startswith(("| cam | ", "| gradcam | ")) for line in paired_fom.splitlines()) == 9  # 10 pairs
    by_density_table1 = (study / "table1_by_density.md").read_text()  # and Table I per breast density
    assert "Table I per breast density: table1_by_density.md" in summary
    assert by_density_table1.count("\n| gradcam | fusion |") == by_density_table1.count("## DENSITY ") > 0
    by_density = (study / "table2_by_density.md").read_text()
    assert "## DENSITY " in by_density and by_density.count("\n| gradcam |") == by_density.count("## DENSITY ")
    by_birads = (study / "table2_by_birads.md").read_text()  # and per finding BI-RADS (synthetic masses: 3 to 5)
    assert "Table II per finding BI-RADS: table2_by_birads.md" in summary
    assert "## BI-RADS " in by_birads and by_birads.count("\n| gradcam |") == by_birads.count("## BI-RADS ")
    by_size = (study / "table2_by_size.md").read_text()  # and per mass size (the DICOMs' pixel spacing)
    assert "Table II per mass size: table2_by_size.md" in summary and " mm (" in by_size

    for name, method in (("cam_seed7", "cam"), ("gradcam_seed7", "gradcam")):
        run = study / "runs" / name
        config = yaml.safe_load((run / "run.yaml").read_text())
        assert config["seed_everything"] == 7 and config["model"]["init_args"]["train_saliency"] == method
        assert config["data"]["init_args"]["augmentation"]["seed"] == 7  # a seed redraws the augmentation too
        assert config["trainer"]["logger"]["init_args"]["group"] == "my_study"  # one W&B group per study
        report = json.loads(finished_report(run).read_text())
        assert report["train_saliency"] == method
        best = run / "checkpoints" / "best.ckpt"
        assert {k: report["checkpoint"][k] for k in ("path", "sha256")} == {"path": str(best.resolve()),
                                                                          "sha256": _sha256(best)}  # fmt: skip
        saved = torch.load(best, weights_only=True)
        (kept,) = [v for v in saved["callbacks"].values() if v.get("monitor")]
        assert kept["monitor"] == f"val/wafroc/{method}"  # --select_by wafroc: the run's own maps' wAFROC
        # the report says which epoch it evaluated and what best.ckpt's monitor scored it
        assert report["checkpoint"]["epoch"] == saved["epoch"] and f" {name} {saved['epoch']}" in summary
        assert report["checkpoint"]["monitored"] == {kept["monitor"]: pytest.approx(float(kept["best_model_score"]))}
        fit_log, test_log = (run / "fit.log").read_text(), (run / "test.log").read_text()
        assert "[wsod] fit: run folder" in fit_log and "💡" not in fit_log
        assert "[wsod] data " in fit_log and " images (" in fit_log
        assert "Table I (classification" in test_log and "Table II row, mass images" in test_log
        assert "wAFROC figures of merit (all images)" in test_log and len(report["wafroc"]["methods"]) == 5
        assert "Pointing game (mass images)" in test_log and set(report["pointing_game"]["methods"]) == {
            "cam", "gradcam", "gradcampp", "xgradcam", "layercam"
        }  # fmt: skip
        assert "Test metric" not in test_log  # no Lightning metrics dump
        assert "💡 Tip" not in fit_log + test_log and "anonymous" not in fit_log + test_log

    # Resumable: a second call redoes nothing (the logs are untouched) and gives the same tables.
    stamps = {p: p.stat().st_mtime_ns for p in study.glob("runs/*/*.log")}
    table2 = (study / "table2.csv").read_text()
    time.sleep(0.01)
    main([*args, "--seeds", "7"])
    assert {p: p.stat().st_mtime_ns for p in study.glob("runs/*/*.log")} == stamps
    assert (study / "table2.csv").read_text() == table2

    # Rerun with another config: the finished runs are kept, run.yaml included (the record of what was fitted)
    kept = (study / "runs" / "cam_seed7" / "run.yaml").read_text()
    changed = yaml.safe_load((tmp_path / "base.yaml").read_text())
    changed["trainer"]["max_epochs"] = 5
    other = write_config(tmp_path / "other.yaml", changed)
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        main(["study", "--config", str(other), *args[3:], "--seeds", "7"])
    assert "run cam_seed7 was fitted with another config" in caplog.text
    assert (study / "runs" / "cam_seed7" / "run.yaml").read_text() == kept
    assert {p: p.stat().st_mtime_ns for p in study.glob("runs/*/*.log")} == stamps
    _refused(
        capsys, [*args, "--seeds", "", "--aggregate_only"], "--seeds: expected comma-separated integers, found ''$"
    )  # would have written empty tables over these
    assert (study / "table2.csv").read_text() == table2

    # Moved, and aggregated from elsewhere: its own reports, wherever it lies and whatever the working directory
    moved = study.rename(tmp_path / "moved_study")
    monkeypatch.chdir(tmp_path / "data")
    main([*args[:3], "--output", str(moved), *args[5:], "--seeds", "7", "--aggregate_only"])
    assert (moved / "table2.csv").read_text() == table2


def test_study_writes_a_slurm_job_array_instead_of_running(tmp_path: Path) -> None:
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    study = tmp_path / "study"
    main(["study", "--config", str(config), "--output", str(study), "--seeds", "1,2", "--launcher", "slurm"])
    script = (study / "study.sbatch").read_text()
    assert "#SBATCH --array=0-9" in script  # 5 train methods x 2 seeds
    assert '--run_index "$SLURM_ARRAY_TASK_ID"' in script
    assert script.count("--launcher") == 1 and "--launcher local --gpus 0" in script  # not `--launcher slurm` too
    assert f"#SBATCH --chdir={Path.cwd()}" in script  # the command's relative paths mean what they mean here
    assert len(list(study.glob("runs/*/run.yaml"))) == 10 and not list(study.glob("runs/*/fit.log"))


def test_a_tilde_in_the_output_and_configs_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wsod study --config=~/c.yaml --output=~/study`: the shell leaves the ~, and the study went to a folder named ~
    in the working directory (its config "not found")."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    write_config(tmp_path / "home" / "c.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    main(["study", "--config=~/c.yaml", "--output=~/study", "--train_methods", "cam", "--launcher", "slurm"])
    assert not (tmp_path / "~").exists()
    assert (tmp_path / "home" / "study" / "study.sbatch").is_file()
    assert (tmp_path / "home" / "study" / "runs" / "cam_seed42" / "run.yaml").is_file()


def test_a_data_root_named_like_a_number_stays_a_string_in_each_run_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data_root: '1e3'`` (a relative folder named 1e3) was written ``data_root: 1e3`` into each run.yaml, which
    jsonargparse reads as the float 1000.0: every run's fit refused its own config."""
    from jsonargparse import ArgumentParser

    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path / "unused", Path("1e3"))
    config["model"]["init_args"]["optimizer"] = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}}
    # as a user writes it: the folder's name quoted ('1e3': a string), the learning rate not (1e-3: a float)
    (tmp_path / "c.yaml").write_text(dump_yaml(config).replace("lr: 0.001", "lr: 1e-3"))
    main(["study", "--config", "c.yaml", "--output", "study", "--train_methods", "cam", "--launcher", "slurm"])
    run_yaml = tmp_path / "study" / "runs" / "cam_seed42" / "run.yaml"
    parser = ArgumentParser()  # the run.yaml as wsod fit's parser reads a config file
    parser.add_argument("--config", action="config")
    for key in yaml.safe_load(run_yaml.read_text()):
        parser.add_argument(f"--{key}", type=Any)
    read = parser.parse_args(["--config", str(run_yaml)])
    assert read.data["init_args"]["data_root"] == "1e3"
    assert read.model["init_args"]["optimizer"]["init_args"]["lr"] == 0.001  # a float, as wsod fit reads c.yaml


def test_the_slurm_command_again_with_aggregate_only_writes_the_tables_not_another_script(tmp_path: Path) -> None:
    """The README's "`sbatch` it, then run the same command with --aggregate_only": that command, ``--launcher
    slurm`` still in it, wrote study.sbatch again (over the array's, with ``--aggregate_only`` inside) and no table."""
    study = tmp_path / "study"
    for name in ("cam_seed1", "gradcam_seed1"):
        _finished_run(study, name, ["cam", "gradcam"])
    (study / "study.sbatch").write_text("the array's script\n")
    main(["study", "--config", "x.yaml", "--output", str(study), "--train_methods", "cam,gradcam", "--seeds", "1",
          "--launcher", "slurm", "--aggregate_only"])  # fmt: skip
    assert (study / "table2.csv").is_file() and (study / "summary.md").is_file()
    assert (study / "study.sbatch").read_text() == "the array's script\n"


def test_gpus_with_a_config_that_trains_on_the_cpu_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--gpus 2`` with demo.yaml (``accelerator: cpu``) fitted every run on the CPU, two at a time, silently."""
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))  # cpu
    for gpus in (2, 1):
        message = (
            rf"--gpus {gpus}: the config trains on the CPU .* configs/trainer/gpu.yaml .* --parallel {gpus} for "
            rf"{gpus} CPU runs"
        )
        _refused(capsys, ["study", "--config", str(config), "--output", str(tmp_path / "study"), "--gpus", str(gpus)],
                 message)  # fmt: skip
    assert not (tmp_path / "study").exists()


def test_study_help_shows_what_runs_without_each_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    for shown in ("(default: runs/study)", "(default: cam,gradcam,gradcampp,xgradcam,layercam)", "(default: 42)",
                  "(default: 0)", "(default: 1)", "(default: local)"):  # fmt: skip
        assert shown in text, shown


def test_the_study_reads_its_tables_without_importing_torchmetrics() -> None:
    """`wsod study` writes its tables from the runs' reports: its process once imported torchmetrics (2 to 4 s of a
    start-up, in every study and `wsod study --help`) through the pointing game's tolerance text."""
    import subprocess
    import sys

    code = "import sys, wsod_mammo.study; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchmetrics'))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded


def test_study_refuses_unknown_methods(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _refused(capsys, ["study", "--config", "x.yaml", "--train_methods", "cam,gradcamm"],
             "--train_methods: expected a comma-separated list")  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--parallel", "0"], r"--gpus/--parallel: expected --gpus >= 0 and --parallel >= 1, found 0, 0"),
     (["--gpus", "-1", "--launcher", "slurm"], r"--gpus/--parallel: expected --gpus >= 0 .* found -1, 1"),
     (["--output", "{file}"], r"--output .*notes.txt: a file, not a study folder"),
     (["--output", "{missing}", "--aggregate_only"], r"--output .*nowhere: no study runs there \(no runs/ folder\)"),
     # seed_everything refuses them: every run's fit (or SLURM array task) failed in a traceback
     (["--seeds=7,-1", "--launcher", "slurm"], r"--seeds: expected seeds from 0 to 4294967295, found -1$"),
     (["--seeds", "4294967296", "--launcher", "slurm"], r"--seeds: expected seeds from 0 .*, found 4294967296$")],
)  # fmt: skip
def test_study_options_it_cannot_run_with_are_named_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    """--parallel 0 ran one run at a time; a file as --output failed with the OS's words at the first run folder;
    --aggregate_only of a folder that does not exist listed every run as unfinished."""
    (tmp_path / "notes.txt").write_text("a file")
    extra = [e.format(file=tmp_path / "notes.txt", missing=tmp_path / "nowhere") for e in extra]
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    _refused(capsys, ["study", "--config", str(config), "--output", str(tmp_path / "study"), *extra], message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml", "notes.txt"]


def _finished_run(study: Path, name: str, tested_with: list[str], tpr_shift: float = 0.0) -> None:
    """A run folder as `wsod study` leaves it after the test: test.done naming its detection.json (TPRs 0.5, 0.6, ...
    in ``tested_with``'s order, plus ``tpr_shift``)."""
    report = study / "runs" / name / "wsod-mammo" / "abc123" / "detection.json"
    report.parent.mkdir(parents=True)
    cells = {
        m: {"tpr": 0.5 + 0.1 * k + tpr_shift, "fppi": 0.25, "num_images": 4, "num_gt": 5}
        for k, m in enumerate(tested_with)
    }
    report.write_text(json.dumps({"table1": {}, "mass": cells}))
    (study / "runs" / name / "test.done").write_text("wsod-mammo/abc123/detection.json\n")


def test_each_table2_row_averages_its_own_train_methods_runs_over_seeds(tmp_path: Path) -> None:
    """The fits of the demo-sized study test learn nothing (every cell 0), so the runs' reports are told apart here:
    each row of table2.csv must hold the mean of its own train method's seeds."""
    study = tmp_path / "study"
    shifts = {"cam_seed1": 0.0, "cam_seed2": 0.1, "gradcam_seed1": -0.4, "gradcam_seed2": -0.2}
    for name, shift in shifts.items():
        _finished_run(study, name, ["cam", "layercam"], tpr_shift=shift)
    main(["study", "--config", "x.yaml", "--output", str(study), "--train_methods", "cam,gradcam", "--seeds", "1,2",
          "--aggregate_only"])  # fmt: skip
    with open(study / "table2.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(r["runs"] == "2" for r in rows)
    tprs = {(r["train_method"], r["test_method"]): float(r["tpr"]) for r in rows}
    assert tprs == pytest.approx(
        {("cam", "cam"): 0.55, ("cam", "layercam"): 0.65, ("gradcam", "cam"): 0.2, ("gradcam", "layercam"): 0.3}
    )


def test_aggregate_only_keeps_the_test_methods_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    study = tmp_path / "study"
    for name in ("cam_seed1", "gradcam_seed1"):
        _finished_run(study, name, ["cam", "gradcam", "layercam"])
    args = ["study", "--config", "x.yaml", "--output", str(study), "--train_methods", "cam,gradcam", "--seeds", "1"]

    main([*args, "--aggregate_only"])  # no --test_methods: every method the runs were tested with
    with open(study / "table2.csv") as handle:
        assert {r["test_method"] for r in csv.DictReader(handle)} == {"cam", "gradcam", "layercam"}

    main([*args, "--aggregate_only", "--test_methods", "layercam,cam"])
    with open(study / "table2.csv") as handle:
        assert {r["test_method"] for r in csv.DictReader(handle)} == {"cam", "layercam"}
    summary = capsys.readouterr().out.split("Table II")[-1]
    assert "| train \\ test | cam | layercam |" in summary and "| gradcam | 0.50 @ 0.25 | 0.70 @ 0.25 |" in summary
    # both runs give the same cells: two pairs tie, and both are named (naming one would be an arbitrary pick)
    tied = "Best pairs, tied at TPR 0.70 and 0.25 FPPI: train cam, test layercam; train gradcam, test layercam"
    assert tied in summary

    table2 = (study / "table2.csv").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--aggregate_only", "--test_methods", "cam,xgradcam"])
    assert exit_info.value.code == 1
    assert "run cam seed 1: its test report has no xgradcam (it has cam, gradcam, layercam)" in caplog.text
    assert (study / "table2.csv").read_text() == table2  # nothing written over


def test_a_narrower_rerun_names_the_finished_runs_it_leaves_out_and_drops_their_figures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study rerun with fewer train methods or seeds: its tables hold its matrix, but the finished runs of the
    folder outside it are named (log and summary.md) with the options that include them, and the FROC figure of a
    train method no longer in the tables is gone (it would sit beside them looking current)."""
    study = tmp_path / "study"
    for name in ("cam_seed1", "gradcam_seed1", "cam_seed2"):
        _finished_run(study, name, ["cam", "gradcam"])
    args = ["study", "--config", "x.yaml", "--output", str(study), "--aggregate_only"]
    main([*args, "--train_methods", "cam,gradcam", "--seeds", "1"])
    assert (study / "froc_gradcam.png").is_file()

    caplog.clear()
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        main([*args, "--train_methods", "cam", "--seeds", "1"])
    assert "the tables hold this command's 1 run; finished runs of" in caplog.text
    assert (
        ": cam_seed2, gradcam_seed1. To include them: --train_methods cam,gradcam --seeds 1,2 (it also runs "
        "gradcam_seed2, not finished yet)"
    ) in caplog.text
    summary = (study / "summary.md").read_text()
    assert "\n| cam | global |" in summary and "\n| gradcam |" not in summary
    assert summary.startswith("# Study: 1 run (seed 1)\n")
    assert (
        "Finished runs in this folder left out of these tables: cam_seed2, gradcam_seed1. To include them: "
        "--train_methods cam,gradcam --seeds 1,2"
    ) in summary  # the file read later says how to get them in, as the terminal did
    assert (study / "froc_cam.png").is_file() and not (study / "froc_gradcam.png").exists()

    _finished_run(study, "gradcam_seed2", ["cam", "gradcam"])
    caplog.clear()
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        main([*args, "--train_methods", "cam", "--seeds", "1,2"])
    assert "To include them: --train_methods cam,gradcam --seeds 1,2 --aggregate_only" in caplog.text
    main([*args, "--train_methods", "cam,gradcam", "--seeds", "1,2"])
    assert "left out" not in (study / "summary.md").read_text() and (study / "froc_gradcam.png").is_file()


def test_tables_over_runs_fitted_with_two_configs_say_which_settings_differ(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study rerun into its folder with an edited config (more epochs) and another seed: the finished run kept its
    config and the new one was fitted with the edited one, and the tables averaged a 1-epoch and a 2-epoch run over
    "seeds 1, 2" without a word (with --aggregate_only, not even the rerun's warning)."""
    from wsod_mammo.study import RunSpec, build_parser, write_run_configs

    study = tmp_path / "study"
    settings = tiny_config(tmp_path / "unused", tmp_path / "data")
    config = write_config(tmp_path / "base.yaml", settings)
    args = ["--config", str(config), "--output", str(study), "--train_methods", "cam"]
    runs = {RunSpec("cam", seed): study / "runs" / f"cam_seed{seed}" for seed in (1, 2)}
    write_run_configs(build_parser().parse_args([*args, "--seeds", "1"]), {RunSpec("cam", 1): runs[RunSpec("cam", 1)]})
    (runs[RunSpec("cam", 1)] / "fit.done").write_text("ok\n")
    settings["trainer"]["max_epochs"] = 2
    write_config(config, settings)
    write_run_configs(build_parser().parse_args([*args, "--seeds", "1,2"]), runs)
    for run in runs.values():
        _finished_run(study, run.name, ["cam"])

    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        main(["study", *args, "--seeds", "1,2", "--aggregate_only"])
    differ = "trainer.max_epochs: 1 (cam_seed1), 2 (cam_seed2)"
    assert f"fitted with different settings ({differ})" in caplog.text
    summary = (study / "summary.md").read_text()
    assert f"RUNS FITTED WITH DIFFERENT SETTINGS: {differ}; these tables average them together" in summary

    (runs[RunSpec("cam", 2)] / "run.yaml").write_text((runs[RunSpec("cam", 1)] / "run.yaml").read_text()
        .replace("seed_everything: 1", "seed_everything: 2").replace("cam_seed1", "cam_seed2"))  # fmt: skip
    caplog.clear()
    main(["study", *args, "--seeds", "1,2", "--aggregate_only"])  # one setting: the seeds and folders differ only
    assert "different settings" not in caplog.text and "DIFFERENT" not in (study / "summary.md").read_text()


def test_a_failing_run_stops_the_study_naming_the_command_and_its_log(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "unused", tmp_path / "data")
    config["model"]["init_args"]["beta"] = "three"  # the fit's own CLI refuses it
    study = tmp_path / "study"
    args = ["study", "--config", str(write_config(tmp_path / "bad.yaml", config)), "--output", str(study)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--train_methods", "cam", "--seeds", "1"])
    message = str(exit_info.value.code)
    fit_log = study / "runs" / "cam_seed1" / "fit.log"
    assert message.startswith(f"`wsod fit --config {study / 'runs' / 'cam_seed1' / 'run.yaml'}` failed (exit 2); log")
    assert str(fit_log) in message and "beta" in message  # the log's end says why
    assert not (study / "runs" / "cam_seed1" / "fit.done").exists()


@pytest.mark.parametrize("slots", [1, 2])
def test_a_failing_run_leaves_the_others_to_run_and_the_study_names_it_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slots: int
) -> None:
    """A run that fails (a fit diverged, a disk error) cancelled every run not started yet: a study of many runs
    stopped at its first failure, and the runs after it waited for the researcher to come back."""
    import wsod_mammo.study_runs as study_runs

    calls = []

    def wsod(args: list[str], log: Path, env: dict[str, str]) -> None:
        calls.append((Path(args[2]).parent.name, args[0]))
        if Path(args[2]).parent.name == "cam_seed1" and args[0] == "fit":
            raise SystemExit(f"`wsod {' '.join(args)}` failed (exit 1); log {log}:\nloss is NaN")
        if args[0] == "test":
            (Path(args[2]).parent / "p" / "q").mkdir(parents=True)
            (Path(args[2]).parent / "p" / "q" / "detection.json").write_text("{}")

    monkeypatch.setattr(study_runs, "_wsod", wsod)
    runs = [tmp_path / name for name in ("cam_seed1", "cam_seed2", "gradcam_seed1")]
    with pytest.raises(SystemExit) as exit_info:
        study_runs.run_all(runs, [None] * slots)
    assert sorted(calls) == [("cam_seed1", "fit"), ("cam_seed2", "fit"), ("cam_seed2", "test"),
                             ("gradcam_seed1", "fit"), ("gradcam_seed1", "test")]  # fmt: skip
    message = str(exit_info.value.code)
    assert message.startswith("`wsod fit --config ") and "loss is NaN" in message
    assert message.endswith("wsod study: 1 of 3 runs failed (cam_seed1), the others finished; no tables written: "
                            "the same command again runs the failed ones only")  # fmt: skip
    assert [r.name for r in runs if (r / "test.done").is_file()] == ["cam_seed2", "gradcam_seed1"]

    from wsod_mammo.folder_locks import FolderBusyError, hold

    handle = hold(runs[0], "wsod study")  # the same study started twice: the second is refused, not run beside it
    try:
        with pytest.raises(FolderBusyError, match="is being written by wsod study"):
            study_runs.run_all(runs, [None])
    finally:
        handle.close()


def test_the_csvs_warnings_are_said_once_on_the_studys_terminal_before_its_runs(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each run said the CSV's warning of findings outside the classes without a box in its own fit.log and
    test.log, one pair per run, and the study's terminal never: the study says it once, before the runs."""
    import shutil

    import wsod_mammo.study as study

    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    lines = (root / "finding_annotations.csv").read_text().splitlines()
    fields = next(csv.reader([lines[1]]))
    fields[9], fields[11:15] = "['Suspicious Calcification']", ["", "", "", ""]  # a converter's blank box
    with (root / "finding_annotations.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(fields)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, root))
    launched = []
    monkeypatch.setattr(study, "run_all", lambda runs, slots, first_alone=False: launched.extend(runs))
    monkeypatch.setattr(study, "aggregate", lambda *args: "")
    with caplog.at_level("WARNING", logger="wsod_mammo"):
        main(["study", "--config", str(config), "--output", str(tmp_path / "s"), "--train_methods", "cam,gradcam",
              "--seeds", "1,2"])  # fmt: skip
    assert caplog.text.count("1 row(s) of findings outside the classes ['Mass'] have no box") == 1
    assert len(launched) == 4


def test_an_interrupted_fit_resumes_from_its_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with last.ckpt and no fit.done resumes with --ckpt_path last: hours of training are not redone."""
    import wsod_mammo.study_runs as study_runs

    calls = []
    monkeypatch.setattr(study_runs, "_wsod", lambda args, log, env: calls.append(args))
    run = tmp_path / "cam_seed1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "test.done").write_text("p/q/detection.json\n")
    study_runs.run_one(run, None)
    assert calls == [["fit", "--config", str(run / "run.yaml"), "--ckpt_path", "last"]]


def test_configs_merge_key_by_key_and_each_run_keeps_the_augmentation_options(tmp_path: Path) -> None:
    """As `--config a --config b` merges for wsod fit; a run's seed joins the user's augmentation options rather
    than replacing them."""
    from wsod_mammo.study import RunSpec, compose_configs, run_config

    (tmp_path / "a.yaml").write_text("data:\n  init_args:\n    data_root: x\n    batch_size: 2\n")
    (tmp_path / "b.yaml").write_text("data:\n  init_args:\n    batch_size: 4\n")
    merged = compose_configs([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert merged["data"]["init_args"] == {"data_root": "x", "batch_size": 4}
    (tmp_path / "empty.yaml").write_text("")  # as wsod fit refuses it (it took it as no options)
    with pytest.raises(ValueError, match=r"--config .*empty.yaml: the file holds no options \(it is empty"):
        compose_configs([str(tmp_path / "a.yaml"), str(tmp_path / "empty.yaml")])
    writer = {"class_path": "x.PredictionWriter", "init_args": {"output_dir": "shared"}}
    logger = {"class_path": "my.Logger", "init_args": {"project": "p", "save_dir": "shared"}}
    base = {"data": {"init_args": {"augmentation": {"hflip_p": 0.0}}},
            "trainer": {"callbacks": [{"class_path": "x.BestCheckpoint"}, writer], "logger": logger}}  # fmt: skip
    config = run_config(base, RunSpec("cam", 7), tmp_path, "g", ["cam"])
    assert config["data"]["init_args"]["augmentation"] == {"hflip_p": 0.0, "seed": 7}
    # every output inside the run's folder: a callback's output_dir shared by the runs would mix their files
    checkpoint, writer = config["trainer"]["callbacks"]
    assert checkpoint["init_args"]["dirpath"] == str(tmp_path / "checkpoints")
    assert writer["init_args"]["output_dir"] == str(tmp_path / "predictions")
    # the user's logger and its options stay; the run's folder, group and name are added
    assert config["trainer"]["logger"] == {
        "class_path": "my.Logger",
        "init_args": {"project": "p", "save_dir": str(tmp_path), "group": "g", "name": "cam_seed7"},
    }


def test_a_config_naming_another_yaml_file_for_a_group_composes_as_wsod_fit_reads_it(tmp_path: Path) -> None:
    """``data: data.yaml`` (wsod fit reads the file, relative to the config's folder) crashed the study with
    ``'str' object has no attribute 'setdefault'``; its runs' run.yaml, in another folder, could not have found it."""
    from wsod_mammo.study import RunSpec, compose_configs, run_config

    project = tmp_path / "proj"
    (project / "parts").mkdir(parents=True)
    (project / "my.yaml").write_text("trainer: parts/trainer.yaml\ndata: parts/data.yaml\n")
    (project / "parts" / "trainer.yaml").write_text("accelerator: cpu\ncallbacks:\n  - class_path: x.BestCheckpoint\n")
    (project / "parts" / "data.yaml").write_text("class_path: x.DataModule\ninit_args:\n  data_root: /data\n")
    (tmp_path / "more.yaml").write_text("data:\n  init_args:\n    batch_size: 4\n")
    merged = compose_configs([str(project / "my.yaml"), str(tmp_path / "more.yaml")])
    assert merged["data"] == {"class_path": "x.DataModule", "init_args": {"data_root": "/data", "batch_size": 4}}
    config = run_config(merged, RunSpec("cam", 7), tmp_path / "run", "g", ["cam"])
    assert config["trainer"]["accelerator"] == "cpu" and config["data"]["init_args"]["augmentation"] == {"seed": 7}


def test_select_by_points_best_ckpt_at_the_figure_asked_for() -> None:
    """``config`` leaves the configs' BestCheckpoint as given; ``auroc`` and ``wafroc`` keep the highest epoch of
    the fusion AUROC or of the run's own train-side method's wAFROC, which validation must log."""
    from wsod_mammo.study import RunSpec, run_config

    best = {"class_path": "x.BestCheckpoint", "init_args": {"filename": "best", "monitor": "val/loss", "mode": "min"}}
    last = {"class_path": "x.WholeCheckpoint", "init_args": {"filename": "last"}}
    base = {"trainer": {"callbacks": [best, last, {"class_path": "x.DetectionMetrics"}]}}

    def kept(select_by: str, method: str = "gradcam", tested: tuple[str, ...] = ("cam", "gradcam"), extra: int = 0):
        config = run_config(base, RunSpec(method, 1), Path("run"), "g", list(tested), select_by)
        first, second = config["trainer"]["callbacks"][:2]
        assert len(config["trainer"]["callbacks"]) == 3 + extra
        assert "monitor" not in second["init_args"]  # last.ckpt keeps every epoch's
        return first["init_args"]["monitor"], first["init_args"]["mode"]

    assert kept("config") == ("val/loss", "min")
    assert kept("auroc") == ("val/fusion/auroc", "max")
    assert kept("wafroc") == ("val/wafroc/gradcam", "max")
    with pytest.raises(ValueError, match=r"^--select_by wafroc: run layercam_seed1 would keep best.ckpt by "
                                         r"val/wafroc/layercam, but validation logs the wAFROC of cam, gradcam: add "
                                         r"layercam to --test_methods"):  # fmt: skip
        kept("wafroc", "layercam")
    base["trainer"]["callbacks"][2]["init_args"] = {"methods": ["layercam"]}  # DetectionMetrics' own methods win
    assert kept("wafroc", "layercam") == ("val/wafroc/layercam", "max")
    base["trainer"]["callbacks"][2]["init_args"] = {"methods": ["cam"]}
    base["trainer"]["callbacks"].append({"class_path": "x.DetectionMetrics", "init_args": {"methods": ["layercam"]}})
    assert kept("wafroc", "layercam", extra=1) == ("val/wafroc/layercam", "max")  # any DetectionMetrics' methods
    base["trainer"]["callbacks"] = [last]
    with pytest.raises(ValueError, match="--select_by: the configs' trainer.callbacks hold no checkpoint callback "
                                         "with a monitor"):  # fmt: skip
        kept("auroc")


def test_select_by_a_wafroc_validation_does_not_log_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from wsod_mammo.study import main as study_main

    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    args = ["--config", str(config), "--output", str(tmp_path / "study"), "--train_methods", "cam,gradcam",
            "--test_methods", "cam", "--select_by", "wafroc"]  # fmt: skip
    with pytest.raises(ValueError, match="run gradcam_seed42 would keep best.ckpt by val/wafroc/gradcam"):
        study_main(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml"]  # not even the first run's folder


def test_a_slurm_script_drops_the_launcher_option_in_either_spelling(tmp_path: Path) -> None:
    """``--launcher=slurm`` (one argument) must leave the script line as ``--launcher slurm`` does: the array task's
    own ``--launcher local`` only."""
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    study = tmp_path / "study"
    main(["study", "--config", str(config), "--output", str(study), "--seeds", "1", "--launcher=slurm"])
    script = (study / "study.sbatch").read_text()
    assert script.count("--launcher") == 1 and "--launcher local --gpus 0" in script


def test_a_slurm_script_quotes_paths_with_spaces_and_asks_a_gpu_only_for_a_gpu_config(tmp_path: Path) -> None:
    """The script's command line was the arguments joined by spaces: `--config my data/c.yaml` came back as two
    words (`unrecognized arguments: data/c.yaml`), and every task asked for a GPU, demo.yaml's CPU runs too."""
    folder = tmp_path / "my data"
    folder.mkdir()
    config = write_config(folder / "c.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    study = tmp_path / "slurm study"
    args = ["--config", str(config), "--output", str(study), "--train_methods", "cam", "--seeds", "1"]
    main(["study", *args, "--launcher", "slurm"])
    lines = (study / "study.sbatch").read_text().splitlines()
    assert shlex.split(lines[-1])[3:] == ["study", *args, "--launcher", "local", "--gpus", "0", "--run_index",
                                          "$SLURM_ARRAY_TASK_ID"]  # fmt: skip
    assert f'#SBATCH --output="{study}/slurm-%A_%a.out"' in lines
    assert not [line for line in lines if "--gres" in line]  # tiny_config trains on the CPU
    gpu = write_config(folder / "gpu.yaml", {"trainer": {"accelerator": "gpu"}})
    main(["study", *args, "--config", str(gpu), "--launcher", "slurm"])
    assert "#SBATCH --gres=gpu:1" in (study / "study.sbatch").read_text().splitlines()


def test_a_run_index_past_the_matrix_is_refused_naming_the_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    args = ["study", "--config", str(config), "--output", str(tmp_path / "study"), "--seeds", "1,2"]
    for index in ("10", "-1"):  # 5 train methods x 2 seeds: 0..9
        _refused(capsys, [*args, "--run_index", index], f"--run_index: expected 0..9, found {index}$")
    assert not (tmp_path / "study").exists()


def test_an_unfinished_run_outside_the_matrix_is_not_named_as_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only finished runs (test.done) are left out of the tables: an interrupted run of a wider command has no
    results to include."""
    study = tmp_path / "study"
    _finished_run(study, "cam_seed1", ["cam"])
    (study / "runs" / "gradcam_seed1").mkdir()
    (study / "runs" / "gradcam_seed1" / "fit.log").write_text("interrupted\n")
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        main(["study", "--config", "x.yaml", "--output", str(study), "--train_methods", "cam", "--seeds", "1",
              "--aggregate_only"])  # fmt: skip
    assert "left out" not in caplog.text and "left out" not in (study / "summary.md").read_text()


def test_a_test_done_of_an_older_study_names_the_report_inside_the_run_folder(tmp_path: Path) -> None:
    """Older studies wrote the path as seen from the working directory then (absolute or relative): what lies below
    the run folder is kept, wherever the study folder now lies."""
    run = tmp_path / "moved" / "runs" / "cam_seed1"
    run.mkdir(parents=True)
    for recorded in ("/old/place/study/runs/cam_seed1/wsod-mammo/abc/detection.json",
                     "runs/study/runs/cam_seed1/wsod-mammo/abc/detection.json"):  # fmt: skip
        (run / "test.done").write_text(f"{recorded}\n")
        assert finished_report(run) == run / "wsod-mammo" / "abc" / "detection.json"


def test_aggregating_with_an_unfinished_run_or_no_methods_is_refused_before_any_table(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An empty --train_methods (an unset variable in a script) would write empty tables over a finished study; an
    unfinished run of the matrix is named, and one the folder never held (other methods than the study ran) apart."""
    study = tmp_path / "study"
    _finished_run(study, "cam_seed1", ["cam"])
    args = ["study", "--config", "x.yaml", "--output", str(study), "--seeds", "1", "--aggregate_only"]
    _refused(capsys, [*args, "--train_methods", ""], "--train_methods: expected a comma-separated list .* found ''$")
    _refused(capsys, [*args, "--train_methods", "cam", "--test_methods", ","],
             "--test_methods: expected a comma-separated list .* found ','$")  # fmt: skip
    _refused(capsys, [*args, "--train_methods", "cam,gradcam"],  # the methods the study ran with were cam alone
             r"runs this folder has never held: gradcam_seed1 \(give ")  # fmt: skip
    (study / "runs" / "gradcam_seed1").mkdir()
    _refused(capsys, [*args, "--train_methods", "cam,gradcam"], "runs without a finished test: gradcam_seed1$")
    assert not (study / "table2.csv").exists() and not (study / "summary.md").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm to the study alone"])
def test_a_stopped_study_is_one_line_saying_how_to_resume_and_leaves_no_run_behind(tmp_path: Path, stop: str) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) printed two tracebacks of the runs' threads, exit 130. A
    SIGTERM to the study alone (``kill PID``) ended it without a word (-15) while its fits ran on to their last
    epoch, orphaned. Now its runs stop with it, the study waits for them, and says how to go on."""
    import os
    import signal
    import subprocess
    import sys

    data_root = make_synthetic_dataset(tmp_path / "data", 8, 256, 160, seed=3, calc_fraction=0.0)
    settings = tiny_config(tmp_path / "unused", data_root)
    settings["trainer"]["max_epochs"] = 200  # still training when the signal comes
    config = write_config(tmp_path / "base.yaml", settings)
    study = tmp_path / "study"
    command = [sys.executable, "-m", "wsod_mammo", "study", "--config", str(config), "--output", str(study),
               "--train_methods", "cam,gradcam", "--parallel", "2"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True, preexec_fn=sigint_as_from_a_terminal)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not list(study.glob("runs/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:  # fitting
            assert process.poll() is None, process.communicate()
            time.sleep(0.5)
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        with pytest.raises(ProcessLookupError):  # no process of the study's session is left running
            os.killpg(process.pid, 0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    code, how = (signal.SIGINT, "interrupted (Ctrl-C)") if stop == "ctrl-c" else (signal.SIGTERM, "stopped by SIGTERM")
    assert process.returncode == 128 + code and "Traceback" not in stderr, stderr[-3000:]
    assert f"wsod study: {how} before it finished; the same command again skips finished runs and resumes the " \
        "others" in stderr  # fmt: skip
    assert not list(study.glob("runs/*/fit.done"))
    if stop != "ctrl-c":
        for log in study.glob("runs/*/fit.log"):
            assert "wsod fit: stopped by SIGTERM before it finished" in log.read_text()


def test_an_interrupted_runs_config_stays_the_one_it_started_with(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rerun with an edited config rewrote an interrupted run's run.yaml: the resumed fit kept the checkpoint's
    settings (its hyperparameters), so run.yaml said lr 0.002 of a run trained at 0.001, and no warning said so."""
    from wsod_mammo.study import RunSpec, build_parser, write_run_configs

    settings = tiny_config(tmp_path / "unused", tmp_path / "data")
    config = write_config(tmp_path / "base.yaml", settings)
    args = build_parser().parse_args(["--config", str(config), "--output", str(tmp_path / "s"),
                                      "--train_methods", "cam", "--seeds", "1"])  # fmt: skip
    runs = {RunSpec("cam", 1): tmp_path / "s" / "runs" / "cam_seed1"}
    write_run_configs(args, runs)
    started = (runs[RunSpec("cam", 1)] / "run.yaml").read_text()
    (runs[RunSpec("cam", 1)] / "checkpoints").mkdir()
    (runs[RunSpec("cam", 1)] / "checkpoints" / "last.ckpt").write_bytes(b"")  # interrupted after an epoch
    settings["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 2.0e-3
    write_config(config, settings)
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        write_run_configs(args, runs)
    assert (runs[RunSpec("cam", 1)] / "run.yaml").read_text() == started
    assert "run cam_seed1 was started with another config" in caplog.text and "resumes with it" in caplog.text


@pytest.mark.parametrize("done", ["checkpoints/last.ckpt", "fit.done"])
def test_a_kept_run_yaml_naming_a_class_the_configs_do_not_is_refused(tmp_path: Path, done: str) -> None:
    """A started or fitted run resumes (or is tested) with the run.yaml its folder holds, run as a config: a study
    folder copied from someone else whose run.yaml names a class (a callback of a module on the path) had that
    module imported and the class built, with a warning of another config only. Refused before any run starts;
    the classes the command's configs name, and other settings, go on as before."""
    from wsod_mammo.study import RunSpec, build_parser, write_run_configs

    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    args = build_parser().parse_args(["--config", str(config), "--output", str(tmp_path / "s"),
                                      "--train_methods", "cam", "--seeds", "1"])  # fmt: skip
    run = tmp_path / "s" / "runs" / "cam_seed1"
    write_run_configs(args, {RunSpec("cam", 1): run})
    kept = yaml.safe_load((run / "run.yaml").read_text())
    kept["model"]["init_args"]["beta"] = 0.5  # another setting: kept, with a warning
    kept["trainer"]["callbacks"].append({"class_path": "their_tools.Upload", "init_args": {"url": "x"}})
    (run / "run.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    (run / done).parent.mkdir(exist_ok=True)
    (run / done).write_bytes(b"")
    with pytest.raises(ValueError, match=r"run cam_seed1's .*run.yaml names their_tools.Upload \(trainer.callbacks"):
        write_run_configs(args, {RunSpec("cam", 1): run})
    kept["trainer"]["callbacks"].pop()
    (run / "run.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    write_run_configs(args, {RunSpec("cam", 1): run})
    assert yaml.safe_load((run / "run.yaml").read_text())["model"]["init_args"]["beta"] == 0.5


def test_a_study_folder_moved_and_run_again_resumes_and_tests_in_its_new_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study interrupted, moved (from scratch space) and run again: its run.yaml kept the old folder's
    checkpoint dirpath and save_dir, so the fit resumed from the old folder's last.ckpt and trained and tested into
    it, and test.done then named the report copied along with the folder."""
    import shutil

    from wsod_mammo.study import RunSpec, build_parser, write_run_configs

    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))

    def write(output: Path) -> Path:
        args = build_parser().parse_args(["--config", str(config), "--output", str(output),
                                          "--train_methods", "cam", "--seeds", "1"])  # fmt: skip
        write_run_configs(args, {RunSpec("cam", 1): output / "runs" / "cam_seed1"})
        return output / "runs" / "cam_seed1"

    run = write(tmp_path / "scratch" / "study")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")  # interrupted after an epoch
    shutil.move(tmp_path / "scratch" / "study", tmp_path / "study")
    with caplog.at_level("INFO", logger="wsod_mammo.study"):
        run = write(tmp_path / "study")
    config_text = (run / "run.yaml").read_text()
    assert str(tmp_path / "scratch") not in config_text
    saved = yaml.safe_load(config_text)
    assert saved["trainer"]["logger"]["init_args"]["save_dir"] == str(run.resolve())
    assert {c["init_args"].get("dirpath") for c in saved["trainer"]["callbacks"] if "Checkpoint" in c["class_path"]} \
        == {str(run.resolve() / "checkpoints")}  # fmt: skip
    assert "was moved here" in caplog.text and "another config" not in caplog.text


def test_a_study_folder_renamed_and_run_again_is_not_said_to_have_another_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The W&B group is the study folder's name: a study folder renamed and run again composed its runs with
    another group alone, and each started run was warned about as "started with another config". A real
    difference still is."""
    from wsod_mammo.study import RunSpec, build_parser, write_run_configs

    settings = tiny_config(tmp_path / "unused", tmp_path / "data")
    config = write_config(tmp_path / "base.yaml", settings)

    def write(output: Path) -> Path:
        args = build_parser().parse_args(["--config", str(config), "--output", str(output),
                                          "--train_methods", "cam", "--seeds", "1"])  # fmt: skip
        write_run_configs(args, {RunSpec("cam", 1): output / "runs" / "cam_seed1"})
        return output / "runs" / "cam_seed1"

    run = write(tmp_path / "study_a")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")  # interrupted after an epoch
    (tmp_path / "study_a").rename(tmp_path / "study_b")
    with caplog.at_level("INFO", logger="wsod_mammo.study"):
        run = write(tmp_path / "study_b")
    assert "was moved here" in caplog.text and "another config" not in caplog.text
    settings["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 2.0e-3
    write_config(config, settings)
    with caplog.at_level("WARNING", logger="wsod_mammo.study"):
        write(tmp_path / "study_b")
    assert "run cam_seed1 was started with another config" in caplog.text


def test_a_run_another_study_process_is_running_keeps_its_config_and_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The same study started twice on one --output (a job submitted again while the first ran): the second rewrote
    the run's run.yaml with its own config, then both fitted into one checkpoint folder and the second tested the
    first's half-trained weights under its own config's name."""
    import wsod_mammo.study as study
    import wsod_mammo.study_runs as study_runs
    from wsod_mammo.folder_locks import hold

    calls = []
    monkeypatch.setattr(study_runs, "_wsod", lambda args, log, env: calls.append(args))
    settings = tiny_config(tmp_path / "unused", tmp_path / "data")
    config = write_config(tmp_path / "base.yaml", settings)
    args = study.build_parser().parse_args(["--config", str(config), "--output", str(tmp_path / "s"),
                                            "--train_methods", "cam", "--seeds", "1"])  # fmt: skip
    run = tmp_path / "s" / "runs" / "cam_seed1"
    study.write_run_configs(args, {study.RunSpec("cam", 1): run})
    first = (run / "run.yaml").read_text()
    settings["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 2.0e-3
    write_config(config, settings)
    handle = hold(run, "wsod study")  # the first study, running it
    try:
        with caplog.at_level("WARNING", logger="wsod_mammo.study"):
            study.write_run_configs(args, {study.RunSpec("cam", 1): run})
        assert (run / "run.yaml").read_text() == first
        assert f"run cam_seed1 is being run by wsod study, pid {os.getpid()} on " in caplog.text
        with pytest.raises(ValueError, match=rf"^run {re.escape(str(run))} is being written by wsod study, pid .*; "
                                             "run this study again when it has finished"):  # fmt: skip
            study_runs.run_one(run, None)
        assert calls == []
    finally:
        handle.close()
    (run / "test.done").write_text("p/q/detection.json\n")  # its test, as if done: the fit alone is called
    study_runs.run_one(run, None)  # the first has finished: this one runs it
    assert calls[0] == ["fit", "--config", str(run / "run.yaml")]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_study_refused_for_a_run_another_one_holds_starts_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    """The second of two studies on one --output was refused at the first run the first study held, but its pool
    had already handed the next run to a worker: the refused study fitted and tested it (the first study's to run)
    before it exited. The runs' locks are looked at before any run starts; a run taken by another study while this
    one runs stops it from starting more."""
    import wsod_mammo.study_runs as study_runs
    from wsod_mammo.folder_locks import hold

    calls: list[tuple[str, str]] = []
    held: list = []  # [None] once another study is to take r1 as r0's test ends, then its lock

    def wsod(args: list[str], log: Path, env: dict[str, str]) -> None:
        calls.append((log.parent.name, args[0]))
        if args[0] == "test":
            (log.parent / "w" / "id").mkdir(parents=True, exist_ok=True)
            (log.parent / "w" / "id" / "detection.json").write_text("{}")
            if log.parent.name == "r0" and held == [None]:
                held[0] = hold(log.parent.parent / "r1", "wsod study")

    monkeypatch.setattr(study_runs, "_wsod", wsod)
    runs = [tmp_path / "runs" / f"r{i}" for i in range(4)]
    handle = hold(runs[1], "wsod study")  # the first study, running r1
    try:
        with pytest.raises(ValueError, match=rf"^run {re.escape(str(runs[1]))} is being written by wsod study"):
            study_runs.run_all(runs, [None] * parallel)
        time.sleep(0.2)  # what a worker was handed would be running by now
        assert calls == []
    finally:
        handle.close()
    if parallel == 1:  # one run at a time: r0 ends as r1 is taken, and neither r1 nor the runs after it start
        held.append(None)
        try:
            with pytest.raises(ValueError, match=rf"^run {re.escape(str(runs[1]))} is being written by wsod study"):
                study_runs.run_all(runs, [None])
            time.sleep(0.2)
            assert calls == [("r0", "fit"), ("r0", "test")]
        finally:
            held[0].close()


def test_a_study_folder_whose_name_begins_with_a_dash_gives_its_runs_a_config_path_they_read_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wsod study --output ./-study`: Path shortens it to `-study`, and every run's `wsod fit --config
    -study/runs/cam_seed1/run.yaml` failed with `argument -c/--config: expected one argument`."""
    import wsod_mammo.study_runs as study_runs

    calls = []
    monkeypatch.setattr(study_runs, "_wsod", lambda args, log, env: calls.append(args))
    monkeypatch.chdir(tmp_path)
    run = Path("./-study") / "runs" / "cam_seed1"
    run.mkdir(parents=True)
    (run / "test.done").write_text("p/q/detection.json\n")
    study_runs.run_one(run, None)
    assert calls == [["fit", "--config", "./-study/runs/cam_seed1/run.yaml"]]
    assert study_runs.path_argument(tmp_path / "-study") == str(tmp_path / "-study")  # absolute: as it is


def test_a_test_done_mark_the_disk_cannot_hold_is_not_left_empty_and_the_next_study_tests_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (here a file size limit, as `ulimit -f`) when test.done was written left it empty: the next
    study skipped the run's test and failed reading the run folder as its report ("Is a directory")."""
    import resource
    import signal

    import wsod_mammo.study_runs as study_runs

    calls = []

    def wsod(args: list[str], log: Path, env: dict[str, str]) -> None:
        calls.append(args[0])
        if args[0] == "test":
            (run / "wsod-mammo" / run_id).mkdir(parents=True, exist_ok=True)
            (run / "wsod-mammo" / run_id / "detection.json").write_text("{}")

    monkeypatch.setattr(study_runs, "_wsod", wsod)
    run, run_id = tmp_path / "cam_seed1", "r" * 200  # test.done's text is longer than the folder lock's
    run.mkdir()
    (run / "fit.done").write_text("ok\n")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (120, limits[1]))
    try:
        with pytest.raises(OSError) as error:
            study_runs.run_one(run, None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert not (run / "test.done").exists() and not list(run.glob(".*partial"))
    assert f"{run / 'test.done'}: not written (File too large)" in str(error.value)  # the file, in the one line
    assert study_runs.run_one(run, None) == run / "wsod-mammo" / run_id / "detection.json"
    assert calls == ["test", "test"]  # tested again: the first test's mark was never written


# a run that a Ctrl-C does not stop (as a fit once went on after it): it ignores SIGINT, ends on SIGTERM
_STUBBORN_RUN = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"


@pytest.mark.timeout(120)
def test_after_ctrl_c_the_study_stops_a_run_that_goes_on_and_starts_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit once trained on after the Ctrl-C that reached the study and it (1 time in about 20 under load: the
    SIGINT was lost), and the study waited on it for good. Now a run still going after the grace gets SIGTERM, the
    study ends, and the runs not started yet never start."""
    import signal
    import sys
    import threading

    from wsod_mammo import study_runs

    running: set = set()
    monkeypatch.setattr(study_runs, "_RUNNING", running)
    monkeypatch.setattr(study_runs, "_STOPPING", threading.Event())
    monkeypatch.setattr(study_runs, "CTRL_C_GRACE", 2.0)
    started: list[list[str]] = []

    def stubborn(args: list[str]) -> list[str]:
        started.append(args)
        return [sys.executable, "-c", _STUBBORN_RUN]

    monkeypatch.setattr(study_runs, "wsod_command", stubborn)
    runs = [tmp_path / f"run{i}" for i in range(4)]
    for run in runs:
        run.mkdir()
    processes: list = []

    def ctrl_c_once_both_run() -> None:
        deadline = time.monotonic() + 60
        while len(running) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        processes.extend(running)
        os.kill(os.getpid(), signal.SIGINT)  # the study's Ctrl-C; its runs ignore theirs

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in `wsod study` (pytest-xdist's may not)
    try:
        threading.Thread(target=ctrl_c_once_both_run, daemon=True).start()
        began = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            study_runs.run_all(runs, [None, None])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 2.0 <= time.monotonic() - began < 60  # the grace, then SIGTERM: not forever
    assert len(processes) == 2 and [args[0] for args in started] == ["fit", "fit"]  # runs 2 and 3 never started
    for process in processes:
        assert process.wait(timeout=30) == -signal.SIGTERM
    assert study_runs._STOPPING.is_set()


_STUDY_HELD_BETWEEN_RUNS = """
import sys, time
from pathlib import Path
import wsod_mammo.study as study
import wsod_mammo.study_runs as study_runs
from wsod_mammo.commands import main

gate, between = Path(sys.argv[1]), Path(sys.argv[2])

def wsod(args, log, env):  # a fit or test done at once
    if args[0] == "test":
        (log.parent / "w" / "id").mkdir(parents=True, exist_ok=True)
        (log.parent / "w" / "id" / "detection.json").write_text("{}")

def run_one(run_dir, device, real=study_runs.run_one):  # after each run, wait at the gate: between two runs
    report = real(run_dir, device)
    between.write_text(run_dir.name)
    while not gate.exists():
        time.sleep(0.1)
    return report

study_runs._wsod, study_runs.run_one, study.aggregate = wsod, run_one, lambda *args: ""
main(["study", *sys.argv[3:]])
"""


@pytest.mark.timeout(300)
def test_a_second_study_on_a_folder_a_study_holds_between_two_runs_is_refused_at_once(tmp_path: Path) -> None:
    """Each run's folder was held only while it ran: a study started again on the same --output (a job submitted
    twice) between two of the first one's runs found no run held, and ran the next run beside the first study. The
    study holds its folder for its whole life: the second is refused in one line naming the first, and runs none."""
    import socket
    import subprocess
    import sys

    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    study = tmp_path / "study"
    options = ["--config", str(config), "--output", str(study), "--train_methods", "cam,gradcam", "--seeds", "1"]
    gate, between = tmp_path / "gate", tmp_path / "between"
    command = [sys.executable, "-c", _STUDY_HELD_BETWEEN_RUNS]
    first = subprocess.Popen([*command, str(gate), str(between), *options], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not between.exists() and time.monotonic() < deadline:  # its first run done, the next not started
            assert first.poll() is None, first.communicate()
            time.sleep(0.2)
        assert between.read_text() == "cam_seed1"
        (tmp_path / "open").touch()
        second = subprocess.run([*command, str(tmp_path / "open"), str(tmp_path / "between2"), *options],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 1 and second.stderr.splitlines() == [
            f"[wsod] wsod study: --output {study} is being written by wsod study, pid {first.pid} on "
            f"{socket.gethostname()}; run this study again when it has finished (finished runs are skipped)"
        ], second.stderr[-3000:]
        assert not (study / "runs" / "gradcam_seed1" / "fit.done").exists()  # the first study's to run
        gate.touch()
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (study / "runs" / "gradcam_seed1" / "test.done").is_file()
    from wsod_mammo.folder_locks import holder

    assert holder(study) is None  # released when the study ends


def test_a_slurm_array_task_or_an_aggregate_beside_a_running_study_is_refused_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's own lock: an array task (``--run_index``, whose tasks run side by side) beside a whole study on
    the folder, and ``--aggregate_only`` while it writes, are refused naming it, before they write anything."""
    import wsod_mammo.study_runs as study_runs
    from wsod_mammo.folder_locks import FolderBusyError, hold
    from wsod_mammo.study import main as study_main

    calls: list[list[str]] = []

    def wsod(args: list[str], log: Path, env: dict[str, str]) -> None:
        calls.append(args)
        if args[0] == "test":
            (log.parent / "w" / "id").mkdir(parents=True, exist_ok=True)
            (log.parent / "w" / "id" / "detection.json").write_text("{}")

    monkeypatch.setattr(study_runs, "_wsod", wsod)
    config = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "unused", tmp_path / "data"))
    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    args = ["--config", str(config), "--output", str(study), "--train_methods", "cam", "--seeds", "1"]
    handle = hold(study, "wsod study")  # a whole study, running
    try:
        for extra in (["--run_index", "0"], ["--aggregate_only"], []):
            with pytest.raises(FolderBusyError, match=rf"^--output {re.escape(str(study))} is being written by wsod "
                                                      f"study, pid {os.getpid()} on "):  # fmt: skip
                study_main([*args, *extra])
    finally:
        handle.close()
    assert calls == [] and not list((study / "runs").iterdir())
    study_main([*args, "--run_index", "0"])  # that study has ended
    assert calls[0][0] == "fit" and (study / "runs" / "cam_seed1" / "run.yaml").is_file()
