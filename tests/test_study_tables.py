"""The study's aggregation: intervals over seeds, the per-image fallback, Table II text and the best pair."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from full_disk import contents, room_for

from wsod_mammo.detection.study_report import write_study_outputs
from wsod_mammo.detection.study_tables import (
    best_pairs,
    keep_test_methods,
    seed_interval,
    table1_text,
    table2_cells,
    table2_text,
    tpr_estimate,
)


def test_seed_interval_is_the_student_t_interval() -> None:
    estimate = seed_interval([0.6, 0.7, 0.8])
    # mean 0.7, sd 0.1, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.1 / sqrt(3) = 0.24842
    assert estimate.mean == pytest.approx(0.7)
    assert (estimate.low, estimate.high) == pytest.approx((0.7 - 0.24842, 0.7 + 0.24842), abs=1e-4)
    assert estimate.basis == "seeds" and estimate.n == 3
    assert estimate.text() == "0.70 [0.45, 0.95]"


def test_a_seed_interval_stays_within_the_values_a_fraction_can_take() -> None:
    """TPR 0.0, 0.05, 0.1 over three seeds: mean 0.05, half-width 0.124; a TPR below 0 is no result."""
    low = seed_interval([0.0, 0.05, 0.1])
    assert low.low == 0.0 and low.high == pytest.approx(0.05 + 0.12421, abs=1e-4)
    high = seed_interval([1.0, 0.95, 0.9])
    assert high.high == 1.0 and high.low == pytest.approx(0.95 - 0.12421, abs=1e-4)
    assert seed_interval([0.5, 1.5, 2.5], bounds=(0.0, math.inf)).high > 2.5  # FPPI has no upper bound


def test_one_seed_has_no_seed_interval_but_takes_the_reports_interval_over_images() -> None:
    single = seed_interval([0.5, math.nan])
    assert single.n == 1 and math.isnan(single.low) and single.text() == "0.50"
    assert tpr_estimate([{"tpr": 0.5}]).basis == "none"
    from_images = tpr_estimate([{"tpr": 0.5, "intervals": {"tpr": {"value": 0.5, "low": 0.3, "high": 0.65}}}])
    assert (from_images.low, from_images.high, from_images.basis) == (0.3, 0.65, "images")


def _report(cells: dict[str, tuple[float, float]]) -> dict:
    return {"table1": {}, "mass": {m: {"tpr": t, "fppi": f} for m, (t, f) in cells.items()}}


def test_table2_over_seeds_and_the_best_pair_with_ties_to_the_lower_fppi() -> None:
    reports = {
        ("cam", 1): _report({"cam": (0.5, 0.25), "gradcam": (0.75, 0.5)}),
        ("cam", 2): _report({"cam": (0.75, 0.125), "gradcam": (0.5, 0.25)}),
        ("gradcampp", 1): _report({"cam": (0.625, 0.25), "gradcam": (math.nan, math.nan)}),
    }
    cells = table2_cells(reports)
    assert list(cells) == ["cam", "gradcampp"]
    assert cells["cam"]["cam"][0].mean == 0.625 and cells["cam"]["cam"][1].mean == 0.1875
    ((train, test, tpr, fppi),) = best_pairs(cells)
    assert (train, test) == ("cam", "cam")  # TPR 0.625 everywhere: the lowest FPPI (0.1875) wins
    assert (tpr.mean, fppi.mean, tpr.basis) == (0.625, 0.1875, "seeds")
    markdown, csv_text = table2_text(cells)
    assert "| gradcampp | 0.62 @ 0.25 | n/a |" in markdown
    header = "train_method,test_method,tpr,tpr_low,tpr_high,fppi,runs,interval_over,tied_seeds,default_seeds"
    assert csv_text.splitlines()[0] == header
    assert len(csv_text.splitlines()) == 5
    tied = cells | {"gradcampp": {"cam": cells["cam"]["cam"], "gradcam": cells["gradcampp"]["gradcam"]}}
    assert [(train, test) for train, test, *_ in best_pairs(tied)] == [("cam", "cam"), ("gradcampp", "cam")]


def test_a_run_tested_on_part_of_its_split_is_named_in_the_summary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run whose `wsod test` was cut to a few batches (its detection.json's coverage) enters the study's means as
    it is: the summary names it, and the log warns; runs that cover their split, or reports from before coverage
    was recorded, are not named."""
    whole, part = {"images_tested": 8, "images_in_split": 8}, {"images_tested": 4, "images_in_split": 8}
    runs = {("cam", 1): _report({"cam": (0.5, 0.25)}) | {"coverage": whole},
            ("cam", 2): _report({"cam": (0.75, 0.5)}) | {"coverage": part},
            ("cam", 3): _report({"cam": (0.5, 0.5)})}  # fmt: skip
    paths = {}
    for (train, seed), content in runs.items():
        paths[(train, seed)] = tmp_path / f"{train}_{seed}.json"
        paths[(train, seed)].write_text(json.dumps(content))
    with caplog.at_level(logging.WARNING):
        summary = write_study_outputs(tmp_path / "study", paths)
    expected = "PART OF THE TEST SPLIT: cam_seed2 tested 4 of its 8 images (a test cut short, e.g. --trainer."
    assert expected in summary and expected in (tmp_path / "study" / "summary.md").read_text()
    assert "cam_seed1" not in summary and "cam_seed3" not in summary
    assert expected in caplog.text


def test_a_study_table_the_disk_cannot_hold_keeps_the_earlier_one_whole_and_names_it(tmp_path: Path) -> None:
    """A full disk while the study wrote its tables left a cut table1.md, FROC figure or summary.md where the
    earlier ones stood, looking whole, under an error that named no file."""
    paths = {}
    for seed, cell in ((1, (0.5, 0.25)), (2, (0.75, 0.5))):
        paths[("cam", seed)] = tmp_path / f"cam_{seed}.json"
        paths[("cam", seed)].write_text(json.dumps(_report({"cam": cell, "gradcam": cell})))
    write_study_outputs(tmp_path / "study", paths)
    earlier = contents(tmp_path / "study")
    assert min(len(text) for text in earlier.values()) > 100
    with room_for(100), pytest.raises(OSError, match=rf"^\[Errno 27\] {tmp_path}/study/\S+: not written \(File too"):
        write_study_outputs(tmp_path / "study", paths)
    assert contents(tmp_path / "study") == earlier


def test_a_cell_whose_threshold_a_seed_took_from_a_tie_is_marked_in_table2_its_csv_and_the_best_pair(
    tmp_path: Path,
) -> None:
    """`wsod test` marks a threshold validation took from a tie at TPR 0 (no threshold found a mass: the grid's
    first, not a choice) in its detection.json; the study's Table II averaged such seeds in without a word."""
    import csv
    import io

    from wsod_mammo.detection.report import FROM_DEFAULT, FROM_TIE

    def report(cam: tuple[float, float, str], gradcam: tuple[float, float, str]) -> dict:
        cells = {m: {"tpr": t, "fppi": f, "threshold_from": source} for m, (t, f, source) in
                 (("cam", cam), ("gradcam", gradcam))}  # fmt: skip
        return {"table1": {}, "mass": cells}

    runs = {
        ("cam", 1): report((0.0, 0.5, FROM_TIE), (0.5, 0.5, "validation")),
        ("cam", 2): report((0.25, 0.5, FROM_TIE), (0.5, 0.5, "validation")),
        ("gradcam", 1): report((0.75, 0.25, "validation"), (0.25, 1.0, FROM_DEFAULT)),
        ("gradcam", 2): report((0.75, 0.25, FROM_TIE), (0.25, 1.0, "validation")),
    }
    paths = {}
    for (train, seed), content in runs.items():
        paths[(train, seed)] = tmp_path / f"{train}_{seed}.json"
        paths[(train, seed)].write_text(json.dumps(content))
    summary = write_study_outputs(tmp_path / "study", paths)
    table = (tmp_path / "study" / "table2.md").read_text()
    assert "| cam | 0.12 [0.00, 1.00] @ 0.50 \u2020 | 0.50 [0.50, 0.50] @ 0.50 |" in table
    assert "| gradcam | 0.75 [0.75, 0.75] @ 0.25 \u2020 | 0.25 [0.25, 0.25] @ 1.00 \u2021 |" in table
    assert "\u2020 the threshold is the grid's first, from a tie at TPR 0" in table
    assert "train cam, test cam (seeds 1, 2); train gradcam, test cam (seed 2)." in table
    assert "\u2021 NOT VALIDATED" in table and "train gradcam, test gradcam (seed 1)." in table
    assert table in summary  # the summary shows the marks and what they mean
    assert "Best pair: train gradcam, test cam: TPR 0.75 [0.75, 0.75] at 0.25 FPPI \u2020" in summary
    rows = {(r["train_method"], r["test_method"]): r for r in
            csv.DictReader(io.StringIO((tmp_path / "study" / "table2.csv").read_text()))}  # fmt: skip
    assert (rows[("cam", "cam")]["tied_seeds"], rows[("cam", "cam")]["default_seeds"]) == ("1 2", "")
    assert (rows[("gradcam", "gradcam")]["tied_seeds"], rows[("gradcam", "gradcam")]["default_seeds"]) == ("", "1")
    assert (rows[("cam", "gradcam")]["tied_seeds"], rows[("cam", "gradcam")]["default_seeds"]) == ("", "")


def test_table1_with_one_seed_takes_the_reports_intervals_over_images() -> None:
    """As Table II's cells: with one seed its heading's interval comes from the test report, not nowhere."""
    figures = {"accuracy": 0.9, "auc": 0.95, "tpr": 0.8, "tnr": 1.0}
    intervals = {k: {"value": v, "low": v - 0.1, "high": min(v + 0.05, 1.0)} for k, v in figures.items()}
    heads = ("global", "local", "fusion")
    one = {("cam", 1): {"table1": dict.fromkeys(heads, figures), "table1_intervals": dict.fromkeys(heads, intervals)}}
    assert "| cam | local | 0.900 [0.800, 0.950] | 0.950 [0.850, 1.000] | 0.800 [0.700, 0.850] |" in table1_text(one)
    two = one | {("cam", 2): {"table1": dict.fromkeys(heads, figures)}}  # over seeds now: no spread, [x, x]
    assert "| cam | local | 0.900 [0.900, 0.900] |" in table1_text(two)


def test_the_study_writes_table1_at_breast_level_beside_images_and_only_from_reports_that_rate_breasts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each run's breast-level Table I goes into the study's table1_breast.md and summary.md, seeds averaged as for
    images; with a report written before breasts were rated there is none (averaged over the other seeds it would
    claim seeds it lacks), a warning names the run, and an earlier study's file is dropped."""

    heads = ("global", "local", "fusion")
    images = {"accuracy": 0.9, "auc": 0.95, "tpr": 0.8, "tnr": 1.0}
    runs = {}
    for seed, accuracy in ((1, 0.7), (2, 0.8)):
        breasts = images | {"accuracy": accuracy}
        report = {"table1": dict.fromkeys(heads, images), "table1_breast": dict.fromkeys(heads, breasts),
                  "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}}}  # fmt: skip
        (tmp_path / f"{seed}.json").write_text(json.dumps(report))
        runs[("cam", seed)] = tmp_path / f"{seed}.json"
    text = write_study_outputs(tmp_path / "study", runs)
    breast_md = (tmp_path / "study" / "table1_breast.md").read_text()
    assert "| cam | fusion | 0.750 [" in breast_md and "Table I, breast level" in text and breast_md in text
    assert "| cam | fusion | 0.900 [0.900, 0.900] |" in (tmp_path / "study" / "table1.md").read_text()
    # tested before breasts were rated
    _older_report_leaves_out(tmp_path, runs, caplog, "table1_breast", "table1_breast.md", "breast level",
                             "no breast-level Table I: the test reports of cam_seed1 rate no breasts")  # fmt: skip


@pytest.mark.parametrize(
    ("key", "file", "names", "title", "lack"),
    [
        ("by_density", "table2_by_density.md", ("DENSITY A", "DENSITY D"), "Table II per breast density",
         "rate no densities"),
        ("by_finding_birads", "table2_by_birads.md", ("BI-RADS 4", "BI-RADS 5"), "Table II per finding BI-RADS",
         "rate no finding BI-RADS"),
        ("by_mass_size", "table2_by_size.md", ("< 10 mm", ">= 20 mm"), "Table II per mass size", "rate no mass sizes"),
    ],
)  # fmt: skip
def test_the_study_writes_table2_per_stratum_from_every_runs_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, key: str, file: str, names: tuple[str, str], title: str,
    lack: str,
) -> None:  # fmt: skip
    """Each stratum's (breast density's, finding BI-RADS') cells are averaged over seeds as Table II's, keep the
    runs' threshold marks and only the methods the study tabulates; with one run's report lacking the strata there
    is no such table, and a warning."""

    def report(seed: int, tied: bool) -> dict:
        source = "validation, from a tie at TPR 0 (no threshold of the grid found a mass there): not a choice"
        cells = {m: {"tpr": 0.5, "fppi": 0.5, **({"threshold_from": source} if tied and m == "cam" else {})}
                 for m in ("cam", "gradcam")}  # fmt: skip
        strata = {
            name: {"studies": 3, "images": 5, "masses": 6,
                   "cells": {m: {"tpr": tpr + seed / 10, "fppi": 0.25, "tpr_interval": {}} for m in cells}}
            for name, tpr in zip(names, (0.2, 0.6), strict=True)
        }  # fmt: skip
        return {"table1": {}, "mass": cells, key: {"mass": strata, "all": strata}}

    runs = {}
    for seed in (1, 2):
        (tmp_path / f"{seed}.json").write_text(json.dumps(report(seed, tied=seed == 2)))
        runs[("cam", seed)] = tmp_path / f"{seed}.json"
    text = write_study_outputs(tmp_path / "study", runs, test_methods=["gradcam", "cam"])
    table = (tmp_path / "study" / file).read_text()
    assert f"{title}: {file}" in text and table.startswith(f"{title} (mass images")
    a, d = table.split(f"## {names[0]} (3 studies, 5 images, 6 masses)")[1].split(f"## {names[1]}")
    assert "| cam | 0.35 [" in a and "| cam | 0.75 [" in d  # means over the two seeds
    assert "@ 0.25 \u2020" in a and "seed 2" in a  # seed 2's tied threshold marked as in table2.md
    only_cam = write_study_outputs(tmp_path / "study", runs, test_methods=["cam"])
    assert "gradcam" not in (tmp_path / "study" / file).read_text() and only_cam
    (tmp_path / "1.json").write_text(json.dumps({**report(1, False), key: None}))
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert title not in text and not (tmp_path / "study" / file).exists()
    assert f"the test reports of cam_seed1 {lack}" in caplog.text


def test_fppi_is_averaged_over_the_seeds_whose_tpr_is() -> None:
    """A seed with an undefined TPR was left out of the TPR mean but not of the FPPI mean (0.70 @ 1.80, not 0.20)."""
    reports = {
        ("cam", s): _report({"cam": (t, f)}) for s, (t, f) in enumerate([(math.nan, 5.0), (0.8, 0.1), (0.6, 0.3)])
    }
    tpr, fppi = table2_cells(reports)["cam"]["cam"]
    assert (tpr.mean, tpr.n) == (pytest.approx(0.7), 2) and (fppi.mean, fppi.n) == (pytest.approx(0.2), 2)


def test_a_run_without_a_method_the_others_have_is_an_error_naming_it(tmp_path: Path) -> None:
    """It used to drop out of that cell's mean (or a train method without mass results out of Table II) in silence,
    leaving a cell "over seeds" of one seed, or one seed's interval over images."""
    full = _report({"cam": (0.5, 0.25), "gradcam": (0.75, 0.5)})
    reports = {("cam", 1): full, ("cam", 2): _report({"cam": (0.75, 0.125)})}
    with pytest.raises(ValueError, match=r"run cam seed 2: its test report has no gradcam \(it has cam\); .*"
                                         r"\(--test_methods cam keeps the methods every run has\)"):  # fmt: skip
        keep_test_methods(reports)
    with pytest.raises(ValueError, match="run gradcam seed 1: its test report has no cam, gradcam .*no mass-image"):
        keep_test_methods({("cam", 1): full, ("gradcam", 1): {"table1": {}}})
    assert list(keep_test_methods({("cam", 1): full})[("cam", 1)]["mass"]) == ["cam", "gradcam"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [("[]", "expected a JSON object, found list"), ('{"mass": {}}', "no 'table1' object"),
     ('{"table1": {}, "mass": {"cam": {"tpr": "0.5", "fppi": 0.5}}}', r"'mass.cam.tpr' is '0.5', not a number"),
     ('{"table1": {}, "mass": {"cam": 3}}', "'mass' is not an object of one object per test method")],
)  # fmt: skip
def test_a_malformed_test_report_is_an_error_naming_it_before_any_output(
    tmp_path: Path, content: str, problem: str
) -> None:
    """A list, a report without table1 or a null figure raised AttributeError, KeyError or TypeError, the last
    after table1.md and table2.md were rewritten beside the old summary.md."""
    (tmp_path / "detection.json").write_text(content)
    output = tmp_path / "study"
    with pytest.raises(ValueError, match=f"run cam seed 1: {tmp_path / 'detection.json'} is not a `wsod test` report"
                                         f" as expected: {problem}"):  # fmt: skip
        write_study_outputs(output, {("cam", 1): tmp_path / "detection.json"})
    assert not output.exists()


def test_a_report_with_its_undefined_figures_as_null_gives_the_tables_of_one_with_nan(tmp_path: Path) -> None:
    """detection.json writes an undefined figure (a slope where the classes separate, a cell without masses) as
    null, which jq and R's jsonlite read, where it wrote NaN, which they refuse; the study reads both alike."""
    nan = math.nan
    slope = {"value": nan, "low": nan, "high": nan}
    heads = {
        "fusion": {
            "brier": {"value": 0.2, "low": 0.1, "high": 0.3},
            "ece": {"value": 0.1, "low": nan, "high": nan},
            "slope": slope,
            "intercept": {"value": 0.5, "low": 0.1, "high": 0.9},
            "reliability": [],
        }
    }
    report = {
        "table1": {"fusion": {"auc": nan}},
        "mass": {
            "cam": {"tpr": 0.5, "fppi": 0.25},
            "gradcam": {"tpr": nan, "fppi": nan, "fppi_curve": [0.0, 0.5], "tpr_curve": [nan, nan]},  # 0/0
        },
        "calibration": {"bins": 10, "images": 40, "heads": heads},
    }
    (tmp_path / "nan.json").write_text(json.dumps(report))
    (tmp_path / "null.json").write_text(json.dumps(report).replace("NaN", "null"))
    for name in ("nan", "null"):
        write_study_outputs(tmp_path / name, {("cam", 1): tmp_path / f"{name}.json"})
    for table in ("table1.md", "table2.md", "table2.csv", "calibration.md", "froc_cam.png"):
        assert (tmp_path / "null" / table).read_bytes() == (tmp_path / "nan" / table).read_bytes()


def test_table2_csv_gives_the_seed_interval_low_then_high_and_rows_in_method_order() -> None:
    """The interval columns were never read back; rows of train methods the tests lack both (layercam, xgradcam)
    came out alphabetically while the columns kept the study's order."""
    import csv
    import io

    reports = {
        ("cam", s): {"table1": {}, "mass": {"cam": {"tpr": t, "fppi": 0.5}}} for s, t in [(1, 0.6), (2, 0.7), (3, 0.8)]
    }
    (row,) = list(csv.DictReader(io.StringIO(table2_text(table2_cells(reports))[1])))
    assert float(row["tpr_low"]) == pytest.approx(0.45158, abs=1e-4)  # 0.7 -/+ t(0.975, 2) x 0.1 / sqrt(3)
    assert float(row["tpr_high"]) == pytest.approx(0.94842, abs=1e-4)
    one = {"table1": {}, "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}}}
    assert list(table2_cells({("layercam", 1): one, ("xgradcam", 1): one})) == ["xgradcam", "layercam"]


def test_a_one_seed_study_says_what_its_report_intervals_were_drawn_over_and_names_runs_drawn_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study resumed across the version that drew studies held report intervals over images (old runs) and over
    studies (new ones) in one table, under captions that named neither (audit of artifacts from before)."""
    import csv
    import io

    cell = {"tpr": 0.5, "fppi": 0.5, "intervals": {"tpr": {"value": 0.5, "low": 0.3, "high": 0.7}}}
    runs = {}
    for method, bootstrap in (("cam", {"seed": 0}), ("gradcam", {"seed": 0, "resampled": "studies"})):
        path = tmp_path / f"{method}.json"
        path.write_text(json.dumps({"table1": {}, "mass": {"cam": cell}, "bootstrap": bootstrap}))
        runs[(method, 1)] = path
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert "the test report's bootstrap over studies, but over images for cam_seed1 (tested before" in text
    assert "the test reports of cam_seed1 drew their intervals over images" in caplog.text
    rows = list(csv.DictReader(io.StringIO((tmp_path / "study" / "table2.csv").read_text())))
    assert [(r["train_method"], r["interval_over"]) for r in rows] == [("cam", "images"), ("gradcam", "studies")]
    del runs[("cam", 1)]
    caption = "Table I (classification, test images; mean [95% interval, the test report's bootstrap over studies, "
    assert caption + "where it gives one])" in write_study_outputs(tmp_path / "study", runs)


def test_a_train_methods_froc_figure_holds_its_own_runs_only(tmp_path: Path, monkeypatch) -> None:
    """froc_cam.png drew gradcam-trained runs' curves too, under the same "cam (seed 1)" label."""
    import wsod_mammo.detection.study_report as study_report

    seen = {}
    monkeypatch.setattr(study_report, "plot_froc", lambda curves, path, **_: seen.__setitem__(Path(path).name, curves))

    def cell(tpr: float) -> dict:
        return {"tpr": tpr, "fppi": 0.5, "tpr_curve": [tpr], "fppi_curve": [0.5]}

    reports = {("cam", 1): {"table1": {}, "mass": {"cam": cell(0.1)}},
               ("gradcam", 1): {"table1": {}, "mass": {"cam": cell(0.9)}}}  # fmt: skip
    study_report._froc_figures(tmp_path, reports)
    assert dict(seen["froc_cam.png"]) == {"cam (seed 1)": ([0.5], [0.1])}


def test_the_study_writes_table1_per_breast_density_over_seeds_and_with_one_seed_the_reports_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each density's Table I is averaged over seeds as table1.md's; with one seed its interval is the report's;
    a report written before densities were rated leaves the table out, naming the run."""

    heads = ("global", "local", "fusion")
    figures = {"accuracy": 0.9, "auc": 0.95, "tpr": 0.8, "tnr": 1.0}

    def density(accuracy: float) -> dict:
        values = figures | {"accuracy": accuracy}
        with_intervals = {k: {"value": v, "low": v - 0.1, "high": min(v + 0.05, 1.0)} for k, v in values.items()}
        return {"studies": 2, "images": 5, "positive": 3, "heads": dict.fromkeys(heads, with_intervals)}

    runs = {}
    for seed, accuracy in ((1, 0.6), (2, 0.8)):
        by_density = {"DENSITY B": density(accuracy), "DENSITY C": density(accuracy / 2)}
        report = {"table1": dict.fromkeys(heads, figures), "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}},
                  "table1_by_density": by_density}  # fmt: skip
        (tmp_path / f"{seed}.json").write_text(json.dumps(report))
        runs[("cam", seed)] = tmp_path / f"{seed}.json"
    text = write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "table1_by_density.md").read_text()
    assert "Table I per breast density: table1_by_density.md" in text
    b, c = table.split("## DENSITY B (2 studies, 5 images, 3 positive)")[1].split("## DENSITY C")
    assert "| cam | fusion | 0.700 [" in b and "| cam | fusion | 0.350 [" in c  # means over the two seeds
    one = write_study_outputs(tmp_path / "one", {("cam", 1): runs[("cam", 1)]})
    assert one and "| cam | fusion | 0.600 [0.500, 0.650] |" in (tmp_path / "one" / "table1_by_density.md").read_text()
    # tested before densities were rated
    warning = "no Table I per breast density: the test reports of cam_seed1 rate no densities"
    _older_report_leaves_out(tmp_path, runs, caplog, "table1_by_density", "table1_by_density.md",
                             "Table I per breast density", warning)  # fmt: skip


def _older_report_leaves_out(
    tmp_path: Path, runs: dict, caplog: pytest.LogCaptureFixture, key: str, file: str, title: str, warning: str
) -> None:
    """cam_seed1's report without ``key`` (written before it was): the study leaves ``file`` out (removing the one the
    last call wrote), says nothing of ``title``, and the warning names the run."""
    report = json.loads(runs[("cam", 1)].read_text())
    del report[key]
    runs[("cam", 1)].write_text(json.dumps(report))
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert title not in text and not (tmp_path / "study" / file).exists()
    assert warning in caplog.text


def _figure(value: float) -> dict:
    """A test report's figure with an interval around it."""
    return {"value": value, "low": value - 0.1, "high": value + 0.05}


def _run_with(path: Path, key: str, part: dict) -> Path:
    """A test report of train method cam testing cam and gradcam, holding ``part`` under ``key``, written to
    ``path``."""
    report = {"table1": {}, "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}, "gradcam": {"tpr": 0.5, "fppi": 0.5}}, key: part}
    path.write_text(json.dumps(report))
    return path


def test_the_study_writes_the_pointing_game_over_seeds_and_with_one_seed_the_reports_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """pointing_game.md: per train and test method the pointing game and the energy inside the masses, averaged over
    seeds (Student-t), with one seed the report's interval; a report written before leaves it out, naming the run."""
    import csv
    import io

    runs = {}
    for seed, hit in ((1, 0.6), (2, 0.8)):
        pointing = {"tolerance_px": 15.0, "images": 8,
                    "methods": {"cam": {"hit": _figure(hit), "energy": _figure(hit / 2)},
                                "gradcam": {"hit": _figure(0.5), "energy": _figure(0.2)}}}  # fmt: skip
        runs[("cam", seed)] = _run_with(tmp_path / f"{seed}.json", "pointing_game", pointing)
    text = write_study_outputs(tmp_path / "study", runs)
    assert "Pointing game (each map's peak and energy against the masses): pointing_game.md" in text
    table = (tmp_path / "study" / "pointing_game.md").read_text()
    assert "within 15 px of a mass" in table
    hits, energy = table.split("## Pointing game")[1].split("## Energy inside the masses")
    over = seed_interval([0.6, 0.8])
    assert f"| cam | 0.70 [{over.low:.2f}, {over.high:.2f}] | 0.50 [0.50, 0.50] |" in hits  # gradcam: seeds agree
    assert "| cam | 0.35 [" in energy
    rows = list(csv.DictReader(io.StringIO((tmp_path / "study" / "pointing_game.csv").read_text())))
    assert len(rows) == 4 and {r["figure"] for r in rows} == {"hit", "energy"}
    (cam_hit,) = [r for r in rows if (r["test_method"], r["figure"]) == ("cam", "hit")]
    assert float(cam_hit["mean"]) == pytest.approx(0.7)
    assert (cam_hit["runs"], cam_hit["interval_over"]) == ("2", "seeds")
    write_study_outputs(tmp_path / "one", {("cam", 1): runs[("cam", 1)]})
    assert "| cam | 0.60 [0.50, 0.65] | 0.50 [0.40, 0.55] |" in (tmp_path / "one" / "pointing_game.md").read_text()
    # two tolerances do not average: no table, and the warning names the runs of each
    report = json.loads(runs[("cam", 2)].read_text())
    runs[("cam", 2)].write_text(json.dumps(report | {"pointing_game": report["pointing_game"] | {"tolerance_px": 30}}))
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert "Pointing game" not in text and not (tmp_path / "study" / "pointing_game.csv").exists()
    assert "different tolerances (15 px: cam_seed1; 30 px: cam_seed2)" in caplog.text
    runs[("cam", 2)].write_text(json.dumps(report))
    warning = "no pointing game: the test reports of cam_seed1 score no pointing game"
    _older_report_leaves_out(tmp_path, runs, caplog, "pointing_game", "pointing_game.md", "Pointing game", warning)


def test_the_study_writes_calibration_over_seeds_and_with_one_seed_the_reports_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def figure(value: float) -> dict:
        return {"value": value, "low": value - 0.02, "high": value + 0.03}

    runs = {}
    for seed, ece in ((1, 0.10), (2, 0.14)):
        heads = {head: {"brier": figure(0.2), "ece": figure(ece), "reliability": []} for head in ("global", "fusion")}
        report = {"table1": {}, "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}},
                  "calibration": {"bins": 10, "images": 40, "heads": heads}}  # fmt: skip
        (tmp_path / f"{seed}.json").write_text(json.dumps(report))
        runs[("cam", seed)] = tmp_path / f"{seed}.json"
    text = write_study_outputs(tmp_path / "study", runs)
    assert "Calibration (Brier score and ECE of Table I's probabilities): calibration.md" in text
    table = (tmp_path / "study" / "calibration.md").read_text()
    over = seed_interval([0.10, 0.14])
    assert f"| cam | fusion | 0.200 [0.200, 0.200] | 0.120 [{over.low:.3f}, {over.high:.3f}] |" in table
    write_study_outputs(tmp_path / "one", {("cam", 1): runs[("cam", 1)]})
    assert (
        "| cam | global | 0.200 [0.180, 0.230] | 0.100 [0.080, 0.130] |"
        in (tmp_path / "one" / "calibration.md").read_text()
    )
    assert "| slope |" not in table  # reports written before the slope and intercept: their columns left out
    for seed, slope in ((1, 0.8), (2, 1.3)):  # with them: means over seeds, intervals not cut to [0, 1]
        report = json.loads(runs[("cam", seed)].read_text())
        for head in report["calibration"]["heads"].values():
            head |= {"slope": figure(slope), "intercept": figure(slope - 1)}
        runs[("cam", seed)].write_text(json.dumps(report))
    text = write_study_outputs(tmp_path / "study", runs)
    assert "Calibration (Brier score, ECE, recalibration slope and intercept of Table I's probabilities)" in text
    table = (tmp_path / "study" / "calibration.md").read_text()
    slopes, shifts = seed_interval([0.8, 1.3], bounds=(-math.inf, math.inf)), seed_interval([-0.2, 0.3], bounds=(-9, 9))
    assert "| ECE | slope | intercept |" in table and shifts.low < 0 < 1 < slopes.high
    assert f"| 1.050 [{slopes.low:.3f}, {slopes.high:.3f}] | 0.050 [{shifts.low:.3f}, {shifts.high:.3f}] |" in table
    assert "beyond chance" not in table  # reports written before the test of calibration: no column
    for seed, p in ((1, 0.01), (2, 0.049)):  # with it: how many seeds' test reports reject calibration
        report = json.loads(runs[("cam", seed)].read_text())
        for head in report["calibration"]["heads"].values():
            head["ece_if_calibrated"] = {"value": 0.09, "low": 0.05, "high": 0.14, "p": p}
        runs[("cam", seed)].write_text(json.dumps(report))
    write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "calibration.md").read_text()
    assert "| intercept | ECE beyond chance |" in table and table.count(" | 2 of 2 |\n") == 2  # a row per head
    write_study_outputs(tmp_path / "one", {("cam", 1): runs[("cam", 1)]})
    assert (tmp_path / "one" / "calibration.md").read_text().count(" | 1 of 1 |\n") == 2
    warning = "no calibration: the test reports of cam_seed1 measure no calibration"
    _older_report_leaves_out(tmp_path, runs, caplog, "calibration", "calibration.md", "Calibration", warning)


def test_the_study_writes_the_figures_of_merit_over_seeds_and_with_one_seed_the_reports_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """wafroc.md|csv: per train and test method the wAFROC and AFROC figures of merit averaged over seeds, with one
    seed the report's interval; a report written before them leaves the table out, naming the run."""
    import csv
    import io

    runs = {}
    for seed, value in ((1, 0.62), (2, 0.74)):
        figures = {"normal_images": 6, "mass_images": 6, "masses": 7,
                   "methods": {"cam": {"wafroc": _figure(value), "afroc": _figure(value - 0.02)},
                               "gradcam": {"wafroc": _figure(0.55), "afroc": _figure(0.5)}}}  # fmt: skip
        runs[("cam", seed)] = _run_with(tmp_path / f"{seed}.json", "wafroc", figures)
    text = write_study_outputs(tmp_path / "study", runs)
    assert "wAFROC and AFROC figures of merit (every test image): wafroc.md" in text
    weighted, plain = (tmp_path / "study" / "wafroc.md").read_text().split("## wAFROC")[1].split("## AFROC")
    over = seed_interval([0.62, 0.74])
    assert f"| cam | 0.680 [{over.low:.3f}, {over.high:.3f}] | 0.550 [0.550, 0.550] |" in weighted
    assert "| cam | 0.660 [" in plain
    rows = list(csv.DictReader(io.StringIO((tmp_path / "study" / "wafroc.csv").read_text())))
    assert len(rows) == 4 and {r["figure"] for r in rows} == {"wafroc", "afroc"}
    write_study_outputs(tmp_path / "one", {("cam", 1): runs[("cam", 1)]})
    assert "| cam | 0.620 [0.520, 0.670] | 0.550 [0.450, 0.600] |" in (tmp_path / "one" / "wafroc.md").read_text()
    write_study_outputs(tmp_path / "only_cam", runs, test_methods=["cam"])  # Table II's columns, and only them
    assert "| train \\ test | cam |\n" in (tmp_path / "only_cam" / "wafroc.md").read_text()
    warning = "no wAFROC figures of merit: the test reports of cam_seed1 give no wAFROC figure of merit"
    _older_report_leaves_out(tmp_path, runs, caplog, "wafroc", "wafroc.md", "wAFROC", warning)
    assert not (tmp_path / "study" / "wafroc.csv").exists()
