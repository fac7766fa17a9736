"""Report formatting: cells, Table I and II (Markdown + CSV round trip), merging runs, the FROC plot, the CLI."""

import csv
import io
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from full_disk import contents, room_for

from wsod_mammo.detection.report import (
    collect_table2,
    format_cell,
    froc_axis,
    plot_froc,
    table1,
    table2,
    write_table2_row,
)
from wsod_mammo.detection.report_cli import main
from wsod_mammo.detection.table2_strata import STRATUM_TABLES
from wsod_mammo.training.test_report_wandb import _log_detection


def _parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_format_cell():
    assert format_cell(0.6912, 1.5549) == "0.69@1.55"
    assert format_cell(1.0, 0.0) == "1.00@0.00"
    assert format_cell(float("nan"), 0.5) == "n/a"


def test_table1_round_trips_through_csv():
    rows = {
        "global": {"accuracy": 0.8125, "auc": 0.9, "tpr": 0.7, "tnr": 1 / 3},
        "local": {"accuracy": 0.5, "auc": float("nan"), "tpr": 0.25, "tnr": 0.75},
    }
    markdown, text = table1(rows)
    assert markdown.splitlines()[0] == "| head | accuracy | AUC | TPR | TNR |"
    assert "| global | 0.812 | 0.900 | 0.700 | 0.333 |" in markdown  # 0.8125 rounds half to even
    assert "| local | 0.500 | n/a | 0.250 | 0.750 |" in markdown
    parsed = _parse(text)
    assert [row["head"] for row in parsed] == ["global", "local"]
    assert float(parsed[0]["tnr"]) == 1 / 3 and math.isnan(float(parsed[1]["auc"]))


def test_table2_orders_methods_and_round_trips():
    rows = {"gradcam": {"layercam": "0.70@1.00", "cam": "0.60@1.55"}, "cam": {"gradcam": "0.50@1.00"}}
    markdown, text = table2(rows)
    lines = markdown.splitlines()
    assert lines[0] == "| train \\ test | cam | gradcam | layercam |"
    assert lines[2] == "| cam | n/a | 0.50@1.00 | n/a |"
    assert lines[3] == "| gradcam | 0.60@1.55 | n/a | 0.70@1.00 |"
    parsed = {row.pop("train_method"): {k: v for k, v in row.items() if v} for row in _parse(text)}
    assert parsed == rows


def test_collect_table2_merges_two_runs(tmp_path):
    write_table2_row(tmp_path / "a" / "table2_row.csv", "cam", {"gradcam": "0.50@1.00", "cam": "0.69@1.55"})
    write_table2_row(tmp_path / "b" / "table2_row.csv", "xgradcam", {"layercam": "0.70@0.90"})
    markdown, text = collect_table2([tmp_path / "a", str(tmp_path / "b")])
    assert _parse(text) == [
        {"train_method": "cam", "cam": "0.69@1.55", "gradcam": "0.50@1.00", "layercam": ""},
        {"train_method": "xgradcam", "cam": "", "gradcam": "", "layercam": "0.70@0.90"},
    ]
    assert "| xgradcam | n/a | n/a | 0.70@0.90 |" in markdown


def test_a_run_whose_test_covered_part_of_its_split_is_named_under_the_table(tmp_path, caplog):
    """`wsod report` of a run tested on one batch (its detection.json's coverage) beside a whole one: the merged
    table a user copies says which row is not the split's, and so does the log; a report without coverage (written
    before it was recorded) or a whole one is not named."""
    write_table2_row(tmp_path / "a" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    (tmp_path / "a" / "detection.json").write_text(
        json.dumps({"coverage": {"images_tested": 8, "images_in_split": 38}})
    )
    write_table2_row(tmp_path / "b" / "table2_row.csv", "gradcam", {"cam": "0.50@1.00"})
    (tmp_path / "b" / "detection.json").write_text(
        json.dumps({"coverage": {"images_tested": 38, "images_in_split": 38}})
    )
    write_table2_row(tmp_path / "c" / "table2_row.csv", "xgradcam", {"cam": "0.40@1.00"})
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.detection.report"):
        markdown, _ = collect_table2([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    expected = (
        f"PART OF THE TEST SPLIT (a test cut short, e.g. --trainer.limit_test_batches): {tmp_path / 'a'} tested 8 "
    )
    assert markdown.endswith(expected + "of its 38 images\n")
    assert f"{tmp_path / 'a'} tested 8 of its 38 images (a test cut short): its row is not the split's" in caplog.text
    assert str(tmp_path / "b") not in caplog.text and str(tmp_path / "c") not in caplog.text


def test_collect_table2_errors_name_the_run(tmp_path):
    write_table2_row(tmp_path / "a" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: expected table2_row.csv"):
        collect_table2([tmp_path / "a", tmp_path / "empty"])
    write_table2_row(tmp_path / "c" / "table2_row.csv", "cam", {"cam": "0.10@1.00"})
    with pytest.raises(ValueError, match=r"cell \(cam, cam\) is 0.10@1.00.*list one run per training method"):
        collect_table2([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(ValueError, match="missing: no such run directory"):
        collect_table2([tmp_path / "a", tmp_path / "missing"])


def test_a_run_folder_with_its_test_report_nested_below_is_found(tmp_path, capsys, caplog):
    """`wsod report runs/study/runs/cam_seed42`: the test wrote its row into <project>/<run id>/ below it."""
    run = tmp_path / "runs" / "cam_seed42"
    write_table2_row(run / "wsod-mammo" / "abc123" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    (run / "wsod-mammo" / "fit0001").mkdir()  # the fit's own run id: no row
    with caplog.at_level("INFO", logger="wsod_mammo.detection.report"):
        main([str(run)])
    assert "| cam | 0.69@1.55 |" in capsys.readouterr().out
    assert f"{run}: using the test run {run / 'wsod-mammo' / 'abc123'}" in caplog.text
    write_table2_row(run / "wsod-mammo" / "def456" / "table2_row.csv", "cam", {"cam": "0.10@1.00"})
    with pytest.raises(ValueError, match="cam_seed42: expected one test run with table2_row.csv, found 2: .*abc123, "):
        main([str(run)])


def test_a_study_run_tested_twice_is_read_from_the_test_its_test_done_names(tmp_path, capsys, caplog):
    """A study's test stopped (or failed) after writing its report and run again by the study: two test folders,
    and `wsod report runs/study/runs/cam_seed42` refused, naming both and neither as the one the study's tables read."""
    run = tmp_path / "runs" / "cam_seed42"
    write_table2_row(run / "wsod-mammo" / "abc123" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    write_table2_row(run / "wsod-mammo" / "def456" / "table2_row.csv", "cam", {"cam": "0.10@1.00"})
    (run / "test.done").write_text("wsod-mammo/def456/detection.json\n")
    with caplog.at_level("INFO", logger="wsod_mammo.detection.report"):
        main([str(run)])
    assert "| cam | 0.10@1.00 |" in capsys.readouterr().out
    assert f"{run}: using the test run {run / 'wsod-mammo' / 'def456'}" in caplog.text


def test_main_writes_markdown_and_csv(tmp_path, capsys):
    write_table2_row(tmp_path / "run" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    main([str(tmp_path / "run"), "--output", str(tmp_path / "out")])
    assert "| cam | 0.69@1.55 |" in capsys.readouterr().out
    assert (tmp_path / "out" / "table2.md").read_text().startswith("| train \\ test | cam |")
    assert _parse((tmp_path / "out" / "table2.csv").read_text()) == [{"train_method": "cam", "cam": "0.69@1.55"}]
    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(ValueError, match="--output: .*a_file is a file"):
        main([str(tmp_path / "run"), "--output", str(tmp_path / "a_file")])
    assert (tmp_path / "a_file").read_text() == "keep me" and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "table2.csv", "table2.md"]  # fmt: skip


def test_a_tilde_in_the_output_and_run_folders_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wsod report ~/runs/x --output=~/tables`: the shell leaves the second ~, and the tables went to a folder named
    ~ in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    write_table2_row(tmp_path / "home" / "run" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    main(["~/run", "--output=~/tables"])
    assert not (tmp_path / "~").exists() and (tmp_path / "home" / "tables" / "table2.csv").is_file()


def test_main_on_a_full_disk_names_the_table_and_keeps_the_older_pair_whole(tmp_path, capsys):
    """`wsod report --output` on a disk filling up mid-file failed with `[Errno 27] File too large`, naming no file,
    and left `.table2.md.partial` behind: the error names the table, no temporary stays, the older pair is kept.
    (capsys: the printed table goes to memory; pytest's own capture is a file the size limit would cut too.)"""
    cells = {m: "0.69@1.55" for m in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam")}
    write_table2_row(tmp_path / "run" / "table2_row.csv", "cam", cells)
    main([str(tmp_path / "run"), "--output", str(tmp_path / "out")])
    earlier = contents(tmp_path / "out")
    write_table2_row(tmp_path / "run" / "table2_row.csv", "cam", dict.fromkeys(cells, "0.11@0.22"))
    named = rf"^\[Errno 27\] {tmp_path / 'out' / 'table2.md'}: not written \(File too large\)"
    with room_for(len(earlier["table2.md"]) - 20), pytest.raises(OSError, match=named):
        main([str(tmp_path / "run"), "--output", str(tmp_path / "out")])
    assert contents(tmp_path / "out") == earlier


def test_plot_froc_writes_a_png(tmp_path):
    curves = {
        "cam": (torch.tensor([0.0, 0.5, 1.5]), torch.tensor([0.0, 0.6, 0.8])),
        "gradcam": (torch.tensor([0.0, 2.0]), torch.tensor([float("nan"), float("nan")])),
    }
    path = tmp_path / "plots" / "froc.png"
    plot_froc(curves, path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_the_froc_axis_reaches_down_to_the_smallest_fppi_measured(tmp_path):
    """Operating points at FPPI 0.05 (one false positive in 20 images, the demo's) drawn on the 1/8 edge read as
    1/8: the axis goes down to the power of 2 below the smallest positive FPPI, not below 1/1024."""
    curve = {"cam": ([0.0, 0.05, 0.5], [0.5, 0.8, 0.9])}
    assert froc_axis(curve) == (1 / 32, 8.0)
    assert froc_axis({"cam": ([0.0, 0.5], [0.5, 0.9])}) == (1 / 8, 8.0)  # FPPI 0 alone: the literature's range
    assert froc_axis({"cam": ([0.25], [0.5])}, {"cam": (0.01, 0.5)}) == (1 / 128, 8.0)
    assert froc_axis({"cam": ([1e-6, 1.0], [0.5, 0.9])}) == (1 / 1024, 8.0)
    plot_froc(curve, tmp_path / "froc.png", points={"cam": (0.05, 0.8)})
    assert (tmp_path / "froc.png").stat().st_size > 5000


def _images_file(run, methods):
    """A ``detection_images.json`` as ``wsod test`` writes it: 6 mass images with one box each."""
    run.mkdir(parents=True, exist_ok=True)
    subsets = {"mass": {}}
    for name, hits in methods.items():
        subsets["mass"][name] = {
            "image_keys": [11, 12, 13, 14, 15, 16],
            "image_gt": [1, 1, 1, 1, 1, 1],
            "box_image": [0, 1, 2, 3, 4, 5],
            "box_scores": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "box_tp": hits,
        }
    (run / "detection_images.json").write_text(__import__("json").dumps({"fppi_budget": 1.0, "subsets": subsets}))
    (run / "table2_row.csv").write_text("train_method,cam,gradcam\ncam,0.50@0.50,0.33@0.67\n")


def test_compare_is_a_paired_bootstrap_over_the_same_images(tmp_path, capsys):
    _images_file(tmp_path / "run", {"cam": [1, 1, 1, 1, 1, 0], "gradcam": [1, 1, 1, 1, 0, 0]})
    main([str(tmp_path / "run"), "--compare", "cam", f"{tmp_path / 'run'}:gradcam"])
    out = capsys.readouterr().out
    assert "A run:cam: 0.833" in out and "B run:gradcam: 0.667" in out
    from wsod_mammo.detection.compare import load_side, paired_bootstrap

    a, b = (load_side(m, tmp_path / "run", "mass")[1] for m in ("cam", "gradcam"))
    result = paired_bootstrap(a, b, 1.0)
    # cam finds every mass gradcam finds, and one more: no resample can favour gradcam
    assert result["difference"]["low"] >= 0 and result["p_a_not_better"] < 0.5
    assert result["a"]["low"] < result["a"]["value"] < result["a"]["high"] or result["a"]["high"] == 1.0
    same = paired_bootstrap(a, a, 1.0)
    assert same["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0} and same["p_a_not_better"] == 1.0
    with pytest.raises(ValueError, match="no method 'scorecam'"):
        main([str(tmp_path / "run"), "--compare", "cam", "scorecam"])
    _images_file(tmp_path / "other", {"cam": [1, 1, 1, 1, 1, 0]})  # another test set: one image differs
    record = tmp_path / "other" / "detection_images.json"
    record.write_text(record.read_text().replace("16]", "17]"))
    with pytest.raises(ValueError, match="run:cam and other:cam were tested on different images: 6 and 6 images, 1 "):
        main([str(tmp_path / "run"), "--compare", "cam", f"{tmp_path / 'other'}:cam"])


def test_compare_draws_whole_studies_where_the_test_reports_recorded_them(tmp_path, capsys):
    """Three two-view studies: the paired resamples draw both views of a study together, as the reports did;
    a record written before studies were recorded is drawn image by image, and the paragraph says which."""
    from wsod_mammo.detection.bootstrap import resample_weights
    from wsod_mammo.detection.compare import load_side, paired_bootstrap

    _images_file(tmp_path / "run", {"cam": [1, 1, 1, 1, 1, 0], "gradcam": [1, 1, 0, 0, 1, 1]})
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam"])
    assert "paired bootstrap (95%) over images (run:cam and run:gradcam: a test report from before intervals" in (
        capsys.readouterr().out
    )
    record = tmp_path / "run" / "detection_images.json"
    data = json.loads(record.read_text())
    for side in data["subsets"]["mass"].values():
        side["study_keys"] = [1, 1, 2, 2, 3, 3]
    record.write_text(json.dumps(data))
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam"])
    assert "paired bootstrap (95%) over studies:" in capsys.readouterr().out
    del data["subsets"]["mass"]["gradcam"]["study_keys"]  # one side from before: images, naming that side
    record.write_text(json.dumps(data))
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam"])
    assert "over images (run:gradcam: a test report from before intervals drew studies; test again" in (
        capsys.readouterr().out
    )
    record.write_text(
        json.dumps(
            data
            | {
                "subsets": {
                    "mass": {
                        **data["subsets"]["mass"],
                        "gradcam": {**data["subsets"]["mass"]["gradcam"], "study_keys": [1, 1, 2, 2, 3, 3]},
                    }
                }
            }
        )
    )
    a, b = (load_side(m, tmp_path / "run", "mass")[1] for m in ("cam", "gradcam"))
    drawn = resample_weights(torch.ones(6, dtype=torch.long), keys=torch.arange(11, 17),
                             groups=torch.tensor([1, 1, 2, 2, 3, 3]))  # fmt: skip
    difference = (drawn @ torch.tensor([0.0, 0, 1, 1, 0, -1])) / drawn.sum(1)  # hits of A minus hits of B
    expected = difference.double().quantile(torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    result = paired_bootstrap(a, b, 1.0)["difference"]
    assert [result["low"], result["high"]] == pytest.approx(expected)


def test_compare_finds_the_test_run_inside_a_study_run_folder_and_names_a_bad_record(tmp_path, capsys):
    """`--compare RUN_DIR:method` looked for the record in RUN_DIR itself, while the listed RUN_DIR finds the test
    run below it (a study's runs/cam_seed42/<project>/<run id>/); a malformed record raised KeyError or named no
    file."""
    study_run = tmp_path / "runs" / "cam_seed42"
    _images_file(study_run / "wsod-mammo" / "id42", {"cam": [1, 1, 1, 1, 1, 0], "gradcam": [1, 1, 1, 1, 0, 0]})
    main([str(study_run), "--compare", f"{study_run}:cam", f"{study_run}:gradcam"])
    assert "A cam_seed42:cam: 0.833" in capsys.readouterr().out
    record = study_run / "wsod-mammo" / "id42" / "detection_images.json"
    for content, reason in [('{"fppi_budget": 1.0}', "no 'subsets' key"), ("{nope", "JSONDecodeError")]:
        record.write_text(content)
        with pytest.raises(ValueError, match=f"--compare cam: {record} is not a `wsod test` image record .*{reason}"):
            main([str(study_run), "--compare", "cam", "gradcam"])


def test_the_test_run_found_below_a_run_folder_is_said_once_per_report(tmp_path, capsys, caplog):
    """`wsod report RUN --compare cam gradcam` found RUN's test run for the table and for each side, and said
    "using the test run" three times; a second report in the same process says it again."""
    study_run = tmp_path / "runs" / "cam_seed42"
    _images_file(study_run / "wsod-mammo" / "id42", {"cam": [1, 1, 1, 1, 1, 0], "gradcam": [1, 1, 1, 1, 0, 0]})
    line = f"{study_run}: using the test run {study_run / 'wsod-mammo' / 'id42'}"
    for compare in (["cam", "gradcam"], [f"{study_run}:cam", f"{study_run}:gradcam"]):
        caplog.clear()
        with caplog.at_level("INFO", logger="wsod_mammo.detection.report"):
            main([str(study_run), "--compare", *compare])
        assert "A cam_seed42:cam: 0.833" in capsys.readouterr().out
        assert caplog.text.count(line) == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"train_method,cam,gradcam\ncam,0.5@0.5,0.3@0.6,0.1@0.1\n", "row 2: 4 fields, the header has 3"),
     (b"train_method,cam,cam\ncam,0.69@1.55,0.10@1.00\n", "the header names cam more than once"),
     (b"train_method,cam\ncam,0.5\xff@0.5\n", "not UTF-8 text")],
)  # fmt: skip
def test_a_malformed_table2_row_is_an_error_naming_the_file(tmp_path, content, problem):
    """A row with an extra field crashed in the Markdown writer, a repeated column kept its last value in silence,
    a non-UTF-8 file named no file."""
    (tmp_path / "table2_row.csv").write_bytes(content)
    with pytest.raises(ValueError, match=f"{tmp_path / 'table2_row.csv'}.*{problem}"):
        collect_table2([tmp_path])


def test_compare_redraws_with_the_test_reports_own_seed(tmp_path, capsys):
    """The interval --compare prints for a method is the one its test report gave: same draws, same seed."""
    import json

    from wsod_mammo.detection.compare import load_side, paired_bootstrap

    n = 30  # mass images, one box each, found by cam in 3 of 4
    records = {"image_keys": list(range(100, 100 + n)), "image_gt": [1] * n, "box_image": list(range(n)),
               "box_scores": [1 - i / n for i in range(n)], "box_tp": [int(i % 4 != 2) for i in range(n)]}  # fmt: skip
    (tmp_path / "run").mkdir()
    subsets = {"mass": {"cam": records, "gradcam": records | {"box_tp": [int(i % 2 == 0) for i in range(n)]}}}
    images = {"fppi_budget": 1.0, "bootstrap_seed": 7, "subsets": subsets}
    (tmp_path / "run" / "detection_images.json").write_text(json.dumps(images))
    (tmp_path / "run" / "table2_row.csv").write_text("train_method,cam,gradcam\ncam,0.67@0.33,0.50@0.50\n")
    a = load_side("cam", tmp_path / "run", "mass")[1]
    own, other = (paired_bootstrap(a, a, 1.0, seed)["a"] for seed in (7, 12345))
    assert (own["low"], own["high"]) != (other["low"], other["high"]), "the case must tell the seeds apart"
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam"])
    assert f"A run:cam: {own['value']:.3f} [{own['low']:.3f}, {own['high']:.3f}]" in capsys.readouterr().out


def test_report_help_names_the_subset_choices_and_counts_read_right(tmp_path, capsys):
    """`wsod report --help` showed --subset's type as `<function <locals>.<lambda> at 0x...>`; --compare on all
    images printed "on 6 all images"."""
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "--subset {mass,all}" in help_text and "<function" not in help_text and "default: mass" in help_text
    _images_file(tmp_path / "run", {"cam": [1, 1, 1, 1, 1, 0], "gradcam": [1, 1, 1, 1, 0, 0]})
    images = __import__("json").loads((tmp_path / "run" / "detection_images.json").read_text())
    images["subsets"]["all"] = images["subsets"]["mass"]
    (tmp_path / "run" / "detection_images.json").write_text(__import__("json").dumps(images))
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam", "--subset", "all"])
    assert "TPR at FPPI <= 1 on 6 test images, paired bootstrap" in capsys.readouterr().out
    main([str(tmp_path / "run"), "--compare", "cam", "gradcam"])
    assert "on 6 mass images, paired bootstrap" in capsys.readouterr().out


def test_a_row_three_folders_down_is_found_and_an_empty_cell_is_no_conflict(tmp_path) -> None:
    """A study's test run lies three levels below its run folder; one run's empty cell said it conflicted with
    another run's value for that cell."""
    from wsod_mammo.detection.report import find_run_dir

    write_table2_row(tmp_path / "deep" / "b" / "c" / "table2_row.csv", "cam", {"cam": "0.69@1.55"})
    assert find_run_dir(tmp_path / "deep") == tmp_path / "deep" / "b" / "c"
    write_table2_row(tmp_path / "a" / "table2_row.csv", "cam", {"layercam": "0.70@0.90"})
    write_table2_row(tmp_path / "b" / "table2_row.csv", "cam", {"cam": "0.69@1.55", "layercam": ""})
    markdown, _ = collect_table2([tmp_path / "a", tmp_path / "b"])
    assert "| cam | 0.69@1.55 | 0.70@0.90 |" in markdown


def test_a_row_of_untrained_weights_or_unvalidated_thresholds_is_marked_and_kept_apart(tmp_path, capsys, caplog):
    """`wsod test --ckpt_path untrained` wrote `layercam,0.00@0.00,...` like a trained run's row and `wsod report`
    showed it as the layercam row: a baseline read as a result. The row file records the weights and thresholds; the
    merged table labels the row, apart from the same method's trained row, and a warning names the run."""
    cells = {"cam": "0.50@0.50", "layercam": "0.70@0.90"}
    write_table2_row(tmp_path / "trained" / "table2_row.csv", "layercam", cells, "checkpoint", "validated")
    baseline = {"cam": "0.00@0.00", "layercam": "0.00@0.00"}
    write_table2_row(tmp_path / "untrained" / "table2_row.csv", "layercam", baseline, "untrained", "default")
    partly = {"cam": "0.60@1.00", "gradcam": "0.40@0.50"}
    write_table2_row(tmp_path / "partly" / "table2_row.csv", "cam", partly, "checkpoint", "default: gradcam")
    (tmp_path / "old").mkdir()  # a row written before the weights and thresholds columns: read as before
    (tmp_path / "old" / "table2_row.csv").write_text("train_method,xgradcam\nxgradcam,0.30@0.20\n")
    header = (tmp_path / "untrained" / "table2_row.csv").read_text().splitlines()[0]
    assert header == "train_method,cam,layercam,weights,thresholds"  # new columns last: older readers still parse
    runs = [str(tmp_path / name) for name in ("trained", "untrained", "partly", "old")]
    with caplog.at_level("WARNING", logger="wsod_mammo.detection.report"):
        main([*runs, "--output", str(tmp_path / "out")])
    assert (tmp_path / "out" / "table2.md").read_text().splitlines()[2:] == [
        "| cam (NOT VALIDATED: gradcam) | 0.60@1.00 | 0.40@0.50 | n/a | n/a |",
        "| xgradcam | n/a | n/a | 0.30@0.20 | n/a |",
        "| layercam | 0.50@0.50 | n/a | n/a | 0.70@0.90 |",
        "| layercam (untrained, NOT VALIDATED) | 0.00@0.00 | n/a | n/a | 0.00@0.00 |",
    ]
    assert "| layercam (untrained, NOT VALIDATED) |" in capsys.readouterr().out
    parsed = _parse((tmp_path / "out" / "table2.csv").read_text())
    assert [row["train_method"] for row in parsed] == [
        "cam (NOT VALIDATED: gradcam)", "xgradcam", "layercam", "layercam (untrained, NOT VALIDATED)"]  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and f"{tmp_path / 'untrained'}: its layercam row (weights untrained" in warned[0]
    assert f"{tmp_path / 'partly'}: its cam row (weights checkpoint, thresholds default: gradcam)" in warned[1]
    # two baselines of one method that disagree are still two runs for one row: refused, as two trained runs are
    other = {"layercam": "0.10@0.00"}
    write_table2_row(tmp_path / "untrained2" / "table2_row.csv", "layercam", other, "untrained", "default")
    with pytest.raises(ValueError, match=r"cell \(layercam \(untrained, NOT VALIDATED\), layercam\) is 0.10@0.00"):
        collect_table2([tmp_path / "untrained", tmp_path / "untrained2"])
    from wsod_mammo.detection.report import thresholds_record

    assert thresholds_record(["cam", "layercam", "gradcam"], {"cam"}) == "default: gradcam layercam"
    assert (thresholds_record(["cam"], {"cam"}), thresholds_record(["cam"], set())) == ("validated", "default")


def test_a_row_whose_threshold_validation_took_from_a_tie_is_marked_tied_and_kept_apart(tmp_path) -> None:
    """A threshold validation took from a tie at TPR 0 (no threshold found a mass: the grid's first) was recorded
    `validated` in the row file, and `wsod report` merged the row into its method's validated one without a mark."""
    from wsod_mammo.detection.report import thresholds_record

    methods = ["cam", "gradcam", "layercam"]
    tied_both = thresholds_record(methods, {"cam", "layercam"}, {"layercam", "cam"})
    assert tied_both == "default: gradcam; tied: cam layercam"
    assert thresholds_record(methods, set(methods), {"gradcam"}) == "validated; tied: gradcam"
    assert thresholds_record(methods, {"cam"}, {"gradcam"}) == "default: gradcam layercam"  # a default is no tie
    write_table2_row(tmp_path / "tied" / "table2_row.csv", "cam", {"cam": "0.00@0.00"}, "checkpoint",
                     "validated; tied: cam")  # fmt: skip
    write_table2_row(tmp_path / "both" / "table2_row.csv", "cam", {"gradcam": "0.10@0.50"}, "checkpoint",
                     "default: gradcam; tied: cam")  # fmt: skip
    write_table2_row(tmp_path / "chosen" / "table2_row.csv", "cam", {"cam": "0.50@0.50"}, "checkpoint", "validated")
    markdown, _ = collect_table2([tmp_path / name for name in ("tied", "both", "chosen")])
    assert markdown.splitlines()[2:] == [
        "| cam | 0.50@0.50 | n/a |",
        "| cam (TIED: cam) | 0.00@0.00 | n/a |",
        "| cam (NOT VALIDATED: gradcam, TIED: cam) | n/a | 0.10@0.50 |",
    ]


def test_wandbs_table2_labels_its_row_as_the_row_file_does() -> None:
    """W&B's Table II showed `cam` alone for an untrained, unvalidated or tied row, alike a validated one; the
    row file said `cam (untrained, NOT VALIDATED)`. The label now comes from the same cells and weights."""
    from wsod_mammo.detection.report import FROM_DEFAULT, FROM_TIE, FROM_VALIDATION
    from wsod_mammo.training.table2_report import summary_row_label

    def cells(*sources: str) -> dict:
        return {m: {"threshold_from": s, "cell": "0.50@0.10"} for m, s in zip(("cam", "gradcam"), sources, strict=True)}

    untrained = summary_row_label("cam", cells(FROM_DEFAULT, FROM_DEFAULT), "untrained network")
    assert untrained == "cam (untrained, NOT VALIDATED)"
    assert summary_row_label("cam", cells(FROM_VALIDATION, FROM_TIE), "checkpoint") == "cam (TIED: gradcam)"
    assert summary_row_label("cam", cells(FROM_VALIDATION, FROM_VALIDATION), "checkpoint") == "cam"
    logged = []

    class Logger:
        def log_table(self, key: str, columns: list, data: list) -> None:
            logged.append((key, data))

        def log_image(self, *args: object) -> None:
            pass

    summary = {"train_saliency": "cam", "weights": "untrained network", "mass": cells(FROM_DEFAULT, FROM_DEFAULT)}
    summary |= {key: None for key in ("pointing_game", "pointing_by_kind", "wafroc", "wafroc_by_kind")}
    summary |= {strata.key: None for strata in STRATUM_TABLES}
    _log_detection(Logger(), Path("."), summary, [])
    assert dict(logged)["test/table2_mass"] == [["cam (untrained, NOT VALIDATED)", "0.50@0.10", "0.50@0.10"]]
