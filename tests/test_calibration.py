"""Calibration of Table I's probabilities: Brier score, ECE, reliability, and their place in the test report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from wsod_mammo.detection.bootstrap import interval, resample_weights
from wsod_mammo.detection.calibration import (
    bin_of,
    calibrated_ece,
    calibration_figures,
    calibration_summary,
    if_calibrated,
    reliability,
)


def test_hand_computed_brier_and_ece() -> None:
    """Four images: probabilities 0.15, 0.15 (bin 0.1-0.2, one positive: share 0.5, gap 0.35) and 0.95, 0.95 (bin
    0.9-1.0, both positive: gap 0.05). ECE = 2/4 x 0.35 + 2/4 x 0.05 = 0.2; Brier = (0.15^2 + 0.85^2 + 2 x 0.05^2)/4."""
    p, y = torch.tensor([0.15, 0.15, 0.95, 0.95]), torch.tensor([0.0, 1.0, 1.0, 1.0])
    figures = calibration_figures(torch.ones(1, 4), p, y)
    assert float(figures["ece"][0]) == pytest.approx(0.2)
    assert float(figures["brier"][0]) == pytest.approx((0.15**2 + 0.85**2 + 2 * 0.05**2) / 4)
    rows = reliability(p, y)
    assert (rows[1]["images"], rows[1]["positive_share"], rows[1]["mean_probability"]) == (2, 0.5, pytest.approx(0.15))
    assert rows[9]["images"] == 2 and rows[0]["images"] == 0 and rows[0]["mean_probability"] is None
    assert bin_of(torch.tensor([0.0, 0.1, 0.999, 1.0])).tolist() == [0, 1, 9, 9]


def test_weights_count_an_image_as_often_as_it_was_drawn() -> None:
    generator = torch.Generator().manual_seed(0)
    p, y = torch.rand(30, generator=generator), (torch.rand(30, generator=generator) < 0.4).double()
    counts = torch.randint(0, 3, (30,), generator=generator)
    weighted = calibration_figures(counts[None].double(), p, y)
    repeated = calibration_figures(
        torch.ones(1, int(counts.sum())), p.repeat_interleave(counts), y.repeat_interleave(counts)
    )
    for name in ("brier", "ece"):
        assert float(weighted[name][0]) == pytest.approx(float(repeated[name][0]))


def test_a_calibrated_head_has_a_small_ece_and_an_overconfident_one_a_large_one() -> None:
    generator = torch.Generator().manual_seed(1)
    p = torch.rand(20000, generator=generator, dtype=torch.float64)
    y = (torch.rand(20000, generator=generator, dtype=torch.float64) < p).double()  # true risk p
    confident = (p > 0.5).double() * 0.98 + 0.01  # says 0.99 or 0.01 where the risk is p
    calibrated, overconfident = (calibration_figures(torch.ones(1, 20000), q, y)["ece"][0] for q in (p, confident))
    assert float(calibrated) < 0.02 and float(overconfident) > 0.2


def _record(n: int = 40) -> dict:
    generator = torch.Generator().manual_seed(2)
    target = (torch.arange(n) < 16).double()
    fusion = (0.7 * target + 0.3 * torch.rand(n, generator=generator)).tolist()
    noise = torch.rand(n, generator=generator).tolist()
    return {"image_keys": list(range(100, 100 + n)), "study_keys": [k // 2 for k in range(100, 100 + n)],
            "target": target.tolist(), "heads": {"global": noise, "local": noise, "fusion": fusion}}  # fmt: skip


def test_the_summary_draws_table1s_resamples_of_whole_studies() -> None:
    record = _record()
    summary = calibration_summary(record, seed=7)
    assert summary is not None and summary["images"] == 40 and summary["bins"] == 10
    keys, target = torch.tensor(record["image_keys"]), torch.tensor(record["target"], dtype=torch.float64)
    weights = resample_weights((target > 0.5).long(), seed=7, keys=keys, groups=torch.tensor(record["study_keys"]))
    p = torch.tensor(record["heads"]["fusion"], dtype=torch.float64)
    drawn = calibration_figures(weights, p, target)["ece"]
    full = float(calibration_figures(torch.ones(1, 40), p, target)["ece"][0])
    assert summary["heads"]["fusion"]["ece"] == pytest.approx(interval(drawn, full))
    assert summary["heads"]["fusion"]["brier"]["value"] < summary["heads"]["global"]["brier"]["value"]
    assert calibration_summary({}, 7) is None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_the_test_report_writes_calibration_and_the_reliability_diagram(tmp_path: Path) -> None:
    from wsod_mammo.detection.metrics import DetectionMetric
    from wsod_mammo.training.table1_report import Table1Figures
    from wsod_mammo.training.test_report import write_test_report

    def result(positives_only: bool):
        metric = DetectionMetric(thresholds=(0.5,), operating_fppi=1.0, positives_only=positives_only)
        maps = torch.zeros(2, 20, 20)
        maps[:, 2:8, 2:8] = 1.0
        gt = [torch.tensor([[2.0, 2.0, 8.0, 8.0]]), torch.zeros(0, 4)]
        metric.update(maps, torch.tensor([0.9, 0.1]), gt, torch.tensor([1, 0]), (20, 20), ["a", "b"])
        return metric.compute()

    results = {("cam", "mass"): result(True), ("cam", "all"): result(False)}
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    figures = {"value": 0.5, "low": 0.25, "high": 0.75}
    table1 = Table1Figures({"fusion": dict.fromkeys(("accuracy", "auc", "tpr", "tnr"), figures)},
                           {"images": 40, "positive": 16}, {}, None, {}, _record())  # fmt: skip
    write_test_report(tmp_path, trainer, module, results, table1, 1.0, seed=7, groups={}, densities={})
    text = (tmp_path / "detection.json").read_text()
    report = json.loads(text, parse_constant=_not_json)["calibration"]  # strict JSON: jq, R's jsonlite read it
    undefined_as_null = json.loads(json.dumps(calibration_summary(_record(), 7)), parse_constant=lambda _: None)
    assert report == undefined_as_null  # a slope without one, too: null
    markdown = (tmp_path / "calibration.md").read_text()
    assert "Calibration of the class 0 probability on 40 distinct test images" in markdown
    fusion = report["heads"]["fusion"]["ece"]
    assert f"| fusion | {report['heads']['fusion']['brier']['value']:.3f} [" in markdown
    assert (tmp_path / "reliability.png").stat().st_size > 0
    rows = (tmp_path / "calibration.csv").read_text().splitlines()
    assert rows[0] == "head,figure,value,low,high" and len(rows) == 19  # 3 heads x (4 figures, ECE if calibrated, p)
    calibrated = report["heads"]["fusion"]["ece_if_calibrated"]
    assert f"fusion,ece_p,{calibrated['p']},nan,nan" in rows
    assert (  # beside the ECE
        f"| {fusion['value']:.3f} [{fusion['low']:.3f}, {fusion['high']:.3f}] | {calibrated['value']:.3f} "
        f"[{calibrated['low']:.3f}, {calibrated['high']:.3f}] | {calibrated['p']:.3f} |" in markdown
    )
    # the fusion head separates the classes (positives above 0.7, negatives below 0.3): no finite slope, said so
    assert report["heads"]["fusion"]["slope"]["value"] is None  # NaN in the summary, which JSON has no token for
    assert "| fusion |" in markdown and markdown.split("| fusion |")[1].split("\n")[0].count("| n/a |") == 1


def test_the_calibration_slope_and_intercept_are_the_logistic_recalibration_fit() -> None:
    """Probabilities whose outcome follows logit P = 0.3 + 0.5 logit p: the fit recovers the slope, and the
    likelihood's gradient is 0 at both estimates (the maximum), for each resample's weights alike."""
    from wsod_mammo.detection.recalibration import recalibration

    generator = torch.Generator().manual_seed(3)
    x = 2 * torch.randn(5000, generator=generator, dtype=torch.float64)
    y = (torch.rand(5000, generator=generator, dtype=torch.float64) < torch.sigmoid(0.3 + 0.5 * x)).double()
    p = torch.sigmoid(x)
    weights = torch.stack([torch.ones(5000), torch.randint(0, 3, (5000,), generator=generator).double()])
    fit = recalibration(weights, p, y)
    assert float(fit["slope"][0]) == pytest.approx(0.5, abs=0.05)
    for row in range(2):
        w, b = weights[row].double(), float(fit["slope"][row])
        # the slope's model: its intercept a solves sum w (y - sigmoid(a + b x)) = 0; then d/db is 0 too
        a = torch.logit(((w * y).sum() / w.sum()).reshape(1))  # a start; refine a alone by bisection
        low, high = -10.0, 10.0
        for _ in range(200):
            a = (low + high) / 2
            if float((w * (y - torch.sigmoid(a + b * x))).sum()) > 0:
                low = a
            else:
                high = a
        assert float((w * (y - torch.sigmoid(a + b * x)) * x).sum()) == pytest.approx(0.0, abs=1e-6 * float(w.sum()))
        shift = float(fit["intercept"][row])
        assert float((w * (y - torch.sigmoid(shift + x))).sum()) == pytest.approx(0.0, abs=1e-8 * float(w.sum()))
    calibrated = (torch.rand(5000, generator=generator, dtype=torch.float64) < p).double()
    ideal = recalibration(torch.ones(1, 5000), p, calibrated)
    assert float(ideal["slope"][0]) == pytest.approx(1.0, abs=0.08)
    assert float(ideal["intercept"][0]) == pytest.approx(0.0, abs=0.08)


def test_probabilities_that_separate_the_classes_have_no_slope_and_one_class_no_intercept(monkeypatch) -> None:
    from wsod_mammo.detection.recalibration import recalibration

    p = torch.tensor([0.1, 0.6, 0.4, 0.9])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    weights = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [3.0, 1.0, 1.0, 2.0]])
    fit = recalibration(weights, p, y)
    # a negative (0.6) above a positive (0.4): a finite slope; without it the classes separate; one class: neither
    assert not torch.isnan(fit["slope"][[0, 3]]).any() and torch.isnan(fit["slope"][1:3]).all()
    assert not torch.isnan(fit["intercept"][[0, 1, 3]]).any() and torch.isnan(fit["intercept"][2])
    # a fit that has not settled when the iterations run out is no estimate either
    monkeypatch.setattr("wsod_mammo.detection.recalibration.ITERATIONS", 1)
    assert torch.isnan(recalibration(weights, p, y)["slope"][[0, 3]]).all()
    monkeypatch.undo()
    # touching at a tie (quasi-complete separation, Albert & Anderson 1984): no finite maximum either
    tied = recalibration(torch.ones(1, 4), torch.tensor([0.1, 0.4, 0.4, 0.9]), y)
    assert torch.isnan(tied["slope"]).all() and not torch.isnan(tied["intercept"]).any()


def test_over_seeds_the_studys_calibration_counts_the_test_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over two seeds, calibration.md's Brier score, ECE, slope and intercept each have Hillis's single-treatment
    interval (each seed a random reader of the same test studies) from the covariance of the seeds' figures over the
    first seed's report's draws of whole studies, as Table I's; a slope that some resample's probabilities leave
    without an estimate (they separate the classes there) has the seeds' mean and no interval, one that the test set's
    leave without one is n/a; without a run's image record the whole table is Student-t over the seeds, said."""
    from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
    from wsod_mammo.detection.recalibration import recalibration
    from wsod_mammo.detection.study_report import write_study_outputs
    from wsod_mammo.training.table1_report import _images_record

    generator = torch.Generator().manual_seed(5)
    n = 40
    keys, target = torch.arange(100, 100 + n), (torch.arange(n) < 16).double()
    runs, heads_of = {}, []
    for seed in (1, 2):
        overlapping = 0.35 * target + 0.65 * torch.rand(n, generator=generator)
        nearly_apart = 0.7 * target + 0.3 * torch.rand(n, generator=generator)
        nearly_apart[0] = 0.01  # one positive study below the negatives: resamples without it separate the classes
        heads = {
            "global": overlapping,
            "local": nearly_apart,
            "fusion": 0.7 * target + 0.2 * torch.rand(n, generator=generator),
        }
        heads_of.append(heads)
        record = _images_record({h: (keys, p, target) for h, p in heads.items()}, {int(k): int(k) // 2 for k in keys})
        record |= {"class": "Mass"}
        run = tmp_path / f"cam_{seed}"
        run.mkdir()
        (run / "table2_row.csv").write_text("train_method,cam\ncam,0.50@0.50\n")
        (run / "detection_images.json").write_text(
            json.dumps({"fppi_budget": 1.0, "bootstrap_seed": 7, "subsets": {}, "classification": record})
        )
        report = {
            "table1": {},
            "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}},
            "calibration": calibration_summary(record, 7),
        }
        (run / "detection.json").write_text(json.dumps(report))
        runs[("cam", seed)] = run / "detection.json"
    write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "calibration.md").read_text()
    assert "mean [95% interval over the seeds and the test set: Obuchowski-Rockette" in table

    draws = torch.cat([torch.ones(1, n), resample_weights(target, seed=7, keys=keys, groups=keys // 2)])
    for head in ("global", "local", "fusion"):
        figures = [
            calibration_figures(draws, h[head], target) | recalibration(draws, h[head], target) for h in heads_of
        ]
        cells = []
        for name in ("brier", "ece", "slope", "intercept"):
            values = torch.stack([f[name] for f in figures])
            if torch.isnan(values[:, 0]).all():
                cells.append("n/a")
            elif torch.isnan(values).any():
                cells.append(f"{float(values[:, 0].mean()):.3f}")
            else:
                over = single_treatment_interval(values[:, 0], torch.cov(values[:, 1:]))
                low, high = (max(over["low"], 0), min(over["high"], 1)) if name in ("brier", "ece") else (
                    over["low"], over["high"])  # fmt: skip
                assert high - low > 0.01
                cells.append(f"{over['estimate']:.3f} [{low:.3f}, {high:.3f}]")
        assert f"| cam | {head} | {' | '.join(cells)} |" in table, (head, cells, table)
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| cam |")}
    assert rows["fusion"].count("| n/a |") == 1 and math.isfinite(float(rows["local"].split(" | ")[4]))  # no interval
    (runs[("cam", 2)].parent / "detection_images.json").unlink()  # a run tested before image records were kept
    with caplog.at_level("WARNING"):
        write_study_outputs(tmp_path / "study", runs)
    assert "calibration.md: its intervals over seeds are Student-t over the seeds only" in caplog.text
    # the warning names the run and its file, not a bare KeyError ('classification')
    assert (
        "Student-t over the seeds only (the seeds' spread, not the test set's): run cam_seed2: its "
        "detection_images.json" in caplog.text
    )
    assert "mean [95% interval over seeds; with one seed" in (tmp_path / "study" / "calibration.md").read_text()


def _simulated_runs(
    generator: torch.Generator, seeds: int, studies: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(probabilities (seeds, 2 * studies), target, study)``: two views per study, 40% positive; each image's logit
    shares its study's effect (what the test set does to every seed alike), each seed adds its own bias and noise."""
    positive = (torch.rand(studies, generator=generator) < 0.4).double()
    study = torch.arange(studies).repeat_interleave(2)
    target = positive[study]
    shared = torch.randn(studies, generator=generator)[study] + 0.5 * torch.randn(2 * studies, generator=generator)
    logits = [
        -1.0 + 2.5 * target + shared + 0.1 * torch.randn(1, generator=generator)
        + 0.3 * torch.randn(2 * studies, generator=generator)
        for _ in range(seeds)
    ]  # fmt: skip
    return torch.sigmoid(torch.stack(logits)), target, study


def test_over_seeds_the_brier_scores_interval_covers_the_populations_and_the_seeds_student_t_does_not() -> None:
    """300 test sets of 60 two-view studies, three seeds: the Brier score's 95% interval over the seeds and the test
    set (calibration.md's over seeds, 200 draws of the studies) covers the population's (20,000 studies, 400 seeds)
    in 92% of them (two seeds 93%); the Student-t interval of the three seeds' scores, which the table gave before, in
    53% (two seeds 74%). The ECE's covers 71% (Student-t 60%): at 120 images the ECE itself lies 0.025 above the
    population's 0.119 on average (binning's noise; 0.006 at 1,000 images, where its interval covers 86%), a bias no
    interval around it corrects."""
    from test_jackknife import covers

    population, target, _ = _simulated_runs(torch.Generator().manual_seed(10_000), 400, 20_000)
    ones = torch.ones(1, target.numel())
    truth = float(sum(calibration_figures(ones, p, target)["brier"][0] for p in population)) / 400
    covered = {"over_test_set": 0, "student_t": 0}
    for trial in range(300):
        probabilities, target, study = _simulated_runs(torch.Generator().manual_seed(trial), 3, 60)
        n = target.numel()
        draws = torch.cat([torch.ones(1, n), resample_weights(target, 200, trial, torch.arange(n), study)])
        values = torch.stack([calibration_figures(draws, p, target)["brier"] for p in probabilities])
        over_test_set, seeds_only = covers(values, truth)
        covered["over_test_set"] += over_test_set
        covered["student_t"] += seeds_only
    assert covered["over_test_set"] / 300 >= 0.9, covered
    assert covered["student_t"] / 300 < 0.7, covered


def test_the_ece_a_calibrated_head_would_show_tests_calibration_at_its_level() -> None:
    """300 test sets of 120 images whose outcomes follow their probabilities: the ECE if calibrated (1,000 draws of
    outcomes from the same probabilities) reaches the observed ECE with p < 0.05 in about 5% of them; an
    overconfident head (the same risks pushed halfway towards 0 and 1) in most, though its ECE alone would not say
    which sets are which (0.088 on average for the calibrated head, 0.122 for the overconfident one). Measured:
    4.7% and 89% (1,000 sets: 4.5% and 89%)."""
    rejected = {"calibrated": 0, "overconfident": 0}
    eces = []
    for trial in range(300):
        generator = torch.Generator().manual_seed(trial)
        risk = torch.sigmoid(2.0 * torch.randn(120, generator=generator, dtype=torch.float64))
        outcome = (torch.rand(120, generator=generator, dtype=torch.float64) < risk).double()
        overconfident = 0.5 * risk + 0.5 * (risk > 0.5).double()
        for name, p in (("calibrated", risk), ("overconfident", overconfident)):
            observed = float(calibration_figures(torch.ones(1, 120), p, outcome)["ece"][0])
            figure = calibrated_ece(if_calibrated(p, seed=trial)["ece"], observed)
            rejected[name] += figure["p"] < 0.05
            if name == "calibrated":
                eces.append(observed)
                assert figure["low"] <= figure["value"] <= figure["high"]
    assert 0.02 <= rejected["calibrated"] / 300 <= 0.08, rejected
    assert rejected["overconfident"] / 300 > 0.6, rejected
    assert 0.07 < sum(eces) / 300 < 0.13  # what a calibrated head's ECE is at this size: far from 0


def test_each_bin_of_the_reliability_diagram_gets_the_range_a_calibrated_heads_share_would_fall_in() -> None:
    """Hand-checkable: ten images at probability 0.05 and ten at 0.95. A calibrated head's share in the first bin is
    k/10 with k ~ Binomial(10, 0.05): its 95% range is 0 to 0.2; in the last, 0.8 to 1. Empty bins have none."""
    p = torch.cat([torch.full((10,), 0.05), torch.full((10,), 0.95)]).double()
    drawn = if_calibrated(p, seed=3, draws=4000)
    rows = reliability(p, torch.zeros(20), calibrated_shares=drawn["shares"])
    assert (rows[0]["calibrated_low"], rows[0]["calibrated_high"]) == (0.0, pytest.approx(0.2))
    assert (rows[9]["calibrated_low"], rows[9]["calibrated_high"]) == (pytest.approx(0.8), 1.0)
    assert rows[4]["images"] == 0 and rows[4]["calibrated_low"] is None and rows[4]["calibrated_high"] is None
    assert float(drawn["ece"].mean()) == pytest.approx(0.5 * 2 * 0.05 * 0.95**10 + 0.0, abs=0.1)  # small, not 0
    assert "calibrated_low" not in reliability(p, torch.zeros(20))[0]
    # the same images in another order (a DDP gather's): the same draws, each image its own outcomes
    keys, order = torch.arange(20), torch.randperm(20, generator=torch.Generator().manual_seed(0))
    first, shuffled = if_calibrated(p, 3, keys), if_calibrated(p[order], 3, keys[order])
    for name in ("ece", "shares"):  # an empty bin's share NaN in both
        torch.testing.assert_close(first[name], shuffled[name], rtol=0, atol=0, equal_nan=True)
