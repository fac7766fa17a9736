"""``wsod report --compare A:fusion B:fusion``: a paired bootstrap of two classifiers' AUC over the same images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from wsod_mammo.detection.bootstrap import SEED, groups_of
from wsod_mammo.detection.calibration import calibration_summary
from wsod_mammo.detection.compare_auc import HEAD_NAMES, load_head, paired_auc
from wsod_mammo.detection.delong import paired_test
from wsod_mammo.detection.report_cli import main
from wsod_mammo.training.classification import HEADS
from wsod_mammo.training.table1_report import _figures_with_intervals, _images_record

N = 40  # images, two per study, the first 16 positive


def _cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int, int]]:
    generator = torch.Generator().manual_seed(3)
    keys = torch.arange(1000, 1000 + N)
    target = (torch.arange(N) < 16).float()
    noise = torch.rand(N, generator=generator)
    good = (0.6 * target + 0.4 * noise).clamp(0, 1)  # separates well, not perfectly
    groups = {int(k): int(k) // 2 for k in keys}
    return keys, target, torch.stack([good, noise]), groups


def _write_run(
    run: Path, heads: dict[str, torch.Tensor], keys, target, groups, seed: int = 7, order=None, breasts=None
) -> None:
    """A test run's image record as ``wsod test`` writes it (``order``: the images listed in another order)."""
    order = torch.arange(keys.numel()) if order is None else order
    record = _images_record({h: (keys[order], p[order], target[order]) for h, p in heads.items()}, groups, breasts)
    record |= {"class": "Mass"}
    run.mkdir(parents=True, exist_ok=True)
    (run / "detection_images.json").write_text(
        json.dumps({"fppi_budget": 1.0, "bootstrap_seed": seed, "subsets": {}, "classification": record})
    )
    (run / "table2_row.csv").write_text("train_method,cam\ncam,0.50@0.50\n")


def test_the_heads_compare_names_are_gmics() -> None:
    assert HEAD_NAMES == HEADS


def test_each_sides_interval_is_its_table1_interval_and_the_difference_is_paired(tmp_path: Path, capsys) -> None:
    """A side's AUC and interval are exactly the ones its Table I gave (same draws of whole studies, same seed); the
    better classifier's lead has an interval above 0; a side against itself differs by exactly 0."""
    keys, target, (good, noise), groups = _cases()
    _write_run(tmp_path / "a", {"fusion": good, "global": noise}, keys, target, groups)
    _write_run(tmp_path / "b", {"fusion": noise}, keys, target, groups, order=torch.randperm(N))  # other order
    _, a, seed = load_head(f"{tmp_path / 'a'}:fusion", tmp_path)
    _, b, _ = load_head(f"{tmp_path / 'b'}:fusion", tmp_path)
    result = paired_auc(a, b, seed, with_brier=True)
    studies = groups_of(keys, groups)
    assert result["a"] == _figures_with_intervals(good, target, keys, 7, studies)["auc"]
    assert result["b"] == _figures_with_intervals(noise, target, keys, 7, studies)["auc"]  # B's order is A's
    assert result["resampled"] == "studies" and result["num_images"] == N and result["positive"] == 16
    assert result["difference"]["low"] > 0 and result["p_a_not_better"] < 0.025
    # DeLong's test over the same studies: the bootstrap's difference, and a clear lead
    study_of_image = torch.tensor([groups[int(k)] for k in keys])
    assert result["delong"] == paired_test(good, noise, target, study_of_image)
    assert result["delong"]["difference"] == pytest.approx(result["difference"]["value"], abs=1e-6)
    assert result["delong"]["p"] < 0.01 and result["delong"]["low"] > 0
    same = paired_auc(a, a, seed, with_brier=True)
    assert same["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0} and same["p_a_not_better"] == 1.0
    assert same["delong"]["p"] == 1.0
    # the Brier scores over the same draws: each side's is its calibration.md's, the better head's lower
    record = json.loads((tmp_path / "a" / "detection_images.json").read_text())["classification"]
    assert result["brier"]["a"] == calibration_summary(record, 7)["heads"]["fusion"]["brier"]
    assert result["brier"]["b"] == calibration_summary(record, 7)["heads"]["global"]["brier"]  # b's noise is a's
    assert result["brier"]["difference"]["high"] < 0 and result["brier"]["p_a_not_better"] < 0.025
    assert same["brier"]["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    # the CLI: two runs' fusion heads, and two heads of one run (the first listed run's, without RUN_DIR)
    main([str(tmp_path / "a"), "--compare", "fusion", f"{tmp_path / 'b'}:fusion"])
    out = capsys.readouterr().out
    a_text = f"{result['a']['value']:.3f} [{result['a']['low']:.3f}, {result['a']['high']:.3f}]"
    assert f"AUC of Mass on {N} distinct test images (16 positive), paired bootstrap (95%) over studies" in out
    assert f"A a:fusion: {a_text}" in out and "B b:fusion: " in out
    t = result["delong"]
    delong_line = f"DeLong's test, clustered by study (Obuchowski): A - B = {t['difference']:+.3f} [{t['low']:+.3f}, "
    assert delong_line + f"{t['high']:+.3f}], z = {t['z']:.2f}, p < 0.001" in out
    brier = result["brier"]["difference"]
    assert "Brier score of the same probabilities (lower is better), the same resamples:" in out
    assert (
        f"  A - B: {brier['value']:.3f} [{brier['low']:.3f}, {brier['high']:.3f}]; share of resamples with A >= B: "
        in out
    )
    main([str(tmp_path / "a"), "--compare", "fusion", "global"])
    assert "B a:global: " in capsys.readouterr().out


def test_a_comparison_that_cannot_pair_says_why_naming_the_sides(tmp_path: Path) -> None:
    keys, target, (good, noise), groups = _cases()
    _write_run(tmp_path / "a", {"fusion": good}, keys, target, groups)
    _write_run(tmp_path / "fewer", {"fusion": noise[1:]}, keys[1:], target[1:], groups)
    _write_run(tmp_path / "relabelled", {"fusion": noise}, keys, 1 - target, groups)
    run = str(tmp_path / "a")
    cases = {
        f"{tmp_path / 'fewer'}:fusion": "a:fusion and fewer:fusion were tested on different images: 40 and 39 images",
        f"{tmp_path / 'relabelled'}:fusion": "a:fusion and relabelled:fusion label 40 of the same images differently",
        "local": r"--compare local: .*detection_images.json's 'classification' record is unusable \(no head 'local'",
        "cam": "one side is a head .* the other a saliency method",
    }
    for other, message in cases.items():
        with pytest.raises(ValueError, match=message):
            main([run, "--compare", "fusion", other])
    with pytest.raises(ValueError, match="--masses: it selects the masses a TPR counts; --compare of two heads"):
        main([run, "--compare", "fusion", "global", "--masses", "BI-RADS 5"])
    record = json.loads((tmp_path / "a" / "detection_images.json").read_text())
    record["classification"]["class"] = "Calcification"
    _write_run(tmp_path / "other_class", {"fusion": good}, keys, target, groups)  # then its class changed
    (tmp_path / "other_class" / "detection_images.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="a:fusion rates Mass and other_class:fusion Calcification"):
        main([run, "--compare", "fusion", f"{tmp_path / 'other_class'}:fusion"])
    del record["classification"]  # a test report written before the probabilities were recorded
    (tmp_path / "a" / "detection_images.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="records no probabilities per image .*test that run again"):
        main([run, "--compare", "fusion", "global"])


def test_without_recorded_studies_images_are_drawn_and_the_output_says_why(tmp_path: Path, capsys) -> None:
    keys, target, (good, noise), _ = _cases()
    _write_run(tmp_path / "a", {"fusion": good, "global": noise}, keys, target, None)
    main([str(tmp_path / "a"), "--compare", "fusion", "global"])
    out = capsys.readouterr().out
    assert "over images (a:fusion and a:global: a test report from before intervals drew studies" in out
    assert "  DeLong's test: A - B = " in out  # not clustered: no studies to cluster by
    _, a, _ = load_head("fusion", tmp_path / "a")
    assert paired_auc(a, a)["a"] == _figures_with_intervals(good, target, keys, SEED, None)["auc"]


def test_the_study_pairs_each_train_methods_auc_with_the_first_per_seed_and_over_seeds(
    tmp_path: Path, caplog, capsys
) -> None:
    """table1_paired.md: with one seed, the difference and share are `--compare gradcam:fusion cam:fusion`'s; over two
    seeds, Obuchowski-Rockette's interval and p with seeds as readers (the test set counted too, unlike the
    Student-t interval of the per-seed differences); a
    run whose report records no probabilities per image (or images that differ) leaves the table out, naming the
    runs; one train method writes none."""
    from wsod_mammo.detection.compare_auc import p_text
    from wsod_mammo.detection.study_paired import p_cells, seeds_auc_test
    from wsod_mammo.detection.study_report import write_study_outputs
    from wsod_mammo.detection.study_tables import seed_interval

    keys, target, (good, noise), groups = _cases()
    runs, sides = {}, {}
    for method, seed, probabilities in (("cam", 1, noise), ("gradcam", 1, good), ("cam", 2, good * 0.5 + noise * 0.5),
                                        ("gradcam", 2, good)):  # fmt: skip
        run = tmp_path / f"{method}_{seed}"
        _write_run(run, dict.fromkeys(HEADS, probabilities), keys, target, groups)
        report = {"table1": dict.fromkeys(HEADS, {"accuracy": 0.9, "auc": 0.9, "tpr": 0.9, "tnr": 0.9}),
                  "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}}}  # fmt: skip
        (run / "detection.json").write_text(json.dumps(report))
        runs[(method, seed)] = run / "detection.json"
        sides[(method, seed)] = load_head(f"{run}:fusion", tmp_path)[1]
    per_seed = [paired_auc(sides[("gradcam", s)], sides[("cam", s)], 7) for s in (1, 2)]
    assert per_seed[0]["difference"]["value"] > per_seed[1]["difference"]["value"] > 0  # the case tells seeds apart

    one_seed = {k: v for k, v in runs.items() if k[1] == 1}
    text = write_study_outputs(tmp_path / "one", one_seed)
    assert "Table I paired (each train method's AUC and Brier score minus the first's): table1_paired.md" in text
    d = per_seed[0]["difference"]
    row = f"| gradcam | fusion | {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | studies (1 seed) | "
    assert per_seed[0]["delong"]["p"] < 0.001  # printed as papers print it
    row += f"{per_seed[0]['p_a_not_better']:.3f} | < 0.001 |"
    assert row in (tmp_path / "one" / "table1_paired.md").read_text()
    # its Brier section: the paired bootstrap's difference, interval and share, as `--compare` prints them; no p
    one_brier = paired_auc(sides[("gradcam", 1)], sides[("cam", 1)], 7, with_brier=True)["brier"]
    b = one_brier["difference"]
    assert b["value"] < 0 and one_brier["p_a_not_better"] < 0.05  # gradcam's probabilities are the nearer
    row = f"| gradcam | fusion | {b['value']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}] | studies (1 seed) | "
    row += f"{one_brier['p_a_not_better']:.3f} | n/a | n/a |"
    assert row in (tmp_path / "one" / "table1_paired.md").read_text().split("## Brier score")[1]

    write_study_outputs(tmp_path / "two", runs)
    # over seeds: each seed a random reader of the same images, DeLong's covariance of the four runs' AUCs
    rrrc = seeds_auc_test([(sides[("gradcam", s)], sides[("cam", s)]) for s in (1, 2)])
    bounds = f"[{max(rrrc['low'], -1):+.3f}, {min(rrrc['high'], 1):+.3f}]"
    row = f"| gradcam | fusion | {rrrc['difference']:+.3f} {bounds} | 2 seeds and the test set | n/a | "
    assert row + f"{p_cells(rrrc['p'])[0]} |" in (tmp_path / "two" / "table1_paired.md").read_text()
    assert "Two seeds: the test over seeds" in (tmp_path / "two" / "table1_paired.md").read_text()
    assert "Two seeds:" not in (tmp_path / "one" / "table1_paired.md").read_text()
    seeds_only = seed_interval([r["difference"]["value"] for r in per_seed], bounds=(-1.0, 1.0))
    assert rrrc["difference"] == pytest.approx(seeds_only.mean) and rrrc["df"] > 1
    assert rrrc["high"] - rrrc["low"] != pytest.approx(seeds_only.high - seeds_only.low)  # not the seeds' spread
    # table1.md over the seeds: each figure's interval counts the test set (one seed's draws, seed 7, for both)
    from wsod_mammo.detection.bootstrap import bootstrap_covariance, classification_figures, resample_weights
    from wsod_mammo.detection.calibration import calibration_figures
    from wsod_mammo.detection.obuchowski_rockette import rrrc_test, single_treatment_interval

    draws = torch.cat([torch.ones(1, N), resample_weights(target, seed=7, keys=keys, groups=keys // 2)])
    figures = [classification_figures(draws, p, target) for p in (good, good)]  # gradcam's two seeds: good, good
    table1 = (tmp_path / "two" / "table1.md").read_text()
    for column, name in enumerate(("accuracy", "auc", "tpr", "tnr")):
        values = torch.stack([f[name] for f in figures]).double()
        drawn = values[:, 1:][:, torch.isfinite(values[:, 1:]).all(dim=0)]
        expected = single_treatment_interval(values[:, 0], torch.cov(drawn))
        cell = f"{expected['estimate']:.3f} [{max(expected['low'], 0):.3f}, {min(expected['high'], 1):.3f}]"
        (row,) = [line.split(" | ") for line in table1.splitlines() if line.startswith("| gradcam | fusion |")]
        assert row[2 + column].rstrip(" |") == cell, (name, row, cell)
    summary = (tmp_path / "two" / "summary.md").read_text()
    assert "Table I (classification, test images; mean [95% interval, over the seeds and the test set" in summary
    # the same test of the four runs from the command line, each side's runs paired in order
    runs_of = {m: ",".join(str(tmp_path / f"{m}_{s}") for s in (1, 2)) for m in ("gradcam", "cam")}
    main([str(tmp_path / "cam_1"), "--compare", f"{runs_of['gradcam']}:fusion", f"{runs_of['cam']}:fusion"])
    printed = capsys.readouterr().out
    assert "2 runs a side, A's i-th run paired with B's i-th" in printed and "clustered by study" in printed
    line = f"  A - B: {rrrc['difference']:+.3f} [{rrrc['low']:+.3f}, {rrrc['high']:+.3f}], t = {rrrc['t']:.2f} on "
    assert line + f"{rrrc['df']:.1f} degrees of freedom, {p_text(rrrc['p'])}\n" in printed
    # and the runs' Brier scores, each run's over the first A run's report's draws (seed 7) of whole studies
    brier = printed.split("Brier score of the same probabilities (lower is better)")[1]
    runs_a = [torch.mean((p - target) ** 2).item() for p in (good, good)]  # gradcam's seeds
    runs_b = [torch.mean((p - target) ** 2).item() for p in (noise, good * 0.5 + noise * 0.5)]
    for side, values in (("A", runs_a), ("B", runs_b)):
        (line,) = [text for text in brier.splitlines() if text.startswith(f"  {side}: mean ")]
        assert line.startswith(f"  {side}: mean {sum(values) / 2:.3f} (") and line.endswith(f" {values[1]:.3f})"), line
        assert f" {values[0]:.3f}, " in line, line
    figures = [
        calibration_figures(draws, p.double(), target)["brier"] for p in (good, good, noise, good * 0.5 + noise * 0.5)
    ]
    expected = rrrc_test(torch.stack(figures)[:, 0].reshape(2, 2), bootstrap_covariance(torch.stack(figures)[:, 1:]))
    assert expected["difference"] < 0  # gradcam's probabilities are nearer the truth (p 0.23: two runs a side)
    line = f"  A - B, covariance over 1,000 bootstrap draws: {expected['difference']:+.3f} [{expected['low']:+.3f}, "
    assert line + f"{expected['high']:+.3f}], t = {expected['t']:.2f} on {expected['df']:.1f} degrees" in brier, brier
    # and the study's table1_paired.md gives the same test of the Brier scores over its two seeds
    bounds = f"[{max(expected['low'], -1):+.3f}, {min(expected['high'], 1):+.3f}]"
    row = f"| gradcam | fusion | {expected['difference']:+.3f} {bounds} | 2 seeds and the test set | n/a | "
    row += f"{p_cells(expected['p'])[0]} | {p_cells(expected['p'])[0]} |"  # Holm's over one train method: the same
    assert row in (tmp_path / "two" / "table1_paired.md").read_text().split("## Brier score")[1]

    assert "table1_paired" not in write_study_outputs(tmp_path / "cam", {("cam", 1): runs[("cam", 1)]})
    assert not (tmp_path / "cam" / "table1_paired.md").exists()
    images = runs[("cam", 2)].parent / "detection_images.json"
    record = json.loads(images.read_text())
    images.write_text(json.dumps({**record, "classification": None}))  # tested before probabilities were recorded
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "two", runs)
    assert "table1_paired" not in text and not (tmp_path / "two" / "table1_paired.md").exists()
    assert "no paired Table I: the test reports of cam_seed2 record no probabilities per image" in caplog.text
    _write_run(runs[("cam", 2)].parent, {h: noise[1:] for h in HEADS}, keys[1:], target[1:], groups)  # an image less
    with caplog.at_level("WARNING"):
        write_study_outputs(tmp_path / "two", runs)
    assert "no paired Table I: --compare: gradcam_seed2 and cam_seed2 were tested on different images" in caplog.text


def test_a_difference_over_seeds_without_obuchowski_rockette_keeps_the_seeds_interval() -> None:
    """Seeds whose runs were tested on other images have no covariance over the same cases: the interval over seeds
    is then the Student-t interval of the per-seed differences, and says so."""
    from wsod_mammo.detection.obuchowski_rockette import RESULT_KEYS
    from wsod_mammo.detection.study_paired import basis_text, seeds_estimate
    from wsod_mammo.detection.study_tables import seed_interval

    differences = [0.04, 0.01, 0.03]
    undefined = seeds_estimate(dict.fromkeys(RESULT_KEYS, math.nan), differences)
    assert undefined == seed_interval(differences, bounds=(-1.0, 1.0)) and basis_text(undefined) == "3 seeds"
    test = {"difference": 0.9, "low": 0.7, "high": 1.2, "se": 0.1, "df": 4.0, "t": 9.0, "p": 0.001}
    defined = seeds_estimate(test, [0.8, 0.9, 1.0])
    assert (defined.low, defined.high) == (0.7, 1.0) and basis_text(defined) == "3 seeds and the test set"


def test_p_values_print_as_papers_print_them() -> None:
    from wsod_mammo.detection.compare_auc import p_text, p_value

    assert (p_value(0.04249), p_value(0.0009), p_value(1.0)) == ("0.042", "< 0.001", "1.000")
    assert (p_text(0.04249), p_text(0.0009)) == ("p = 0.042", "p < 0.001")


def test_a_side_of_the_run_given_as_the_current_folder_is_named_by_the_folder(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """``wsod report . --compare fusion global`` printed ``A :fusion``: the label of ``.`` is its folder's name, and of
    a study's run folder its name, not the id of the test run below it."""
    keys, target, (good, noise), groups = _cases()
    _write_run(tmp_path / "run_a", {"fusion": good, "global": noise}, keys, target, groups)
    monkeypatch.chdir(tmp_path / "run_a")
    main([".", "--compare", "fusion", "global"])
    out = capsys.readouterr().out
    assert "  A run_a:fusion: " in out and "  B run_a:global: " in out
    # a study's run folder, its test run found below it: named as typed, not by the run id (`x1y2:fusion`)
    _write_run(tmp_path / "cam_seed42" / "wsod-mammo" / "x1y2", {"fusion": good, "global": noise}, keys, target, groups)
    main([str(tmp_path / "cam_seed42"), "--compare", "fusion", "global"])
    out = capsys.readouterr().out
    assert "  A cam_seed42:fusion: " in out and "  B cam_seed42:global: " in out


def test_a_run_folder_whose_name_holds_a_comma_is_one_run_not_a_list_of_runs(tmp_path: Path, capsys) -> None:
    """``--compare "runs/Doe, J:fusion" "runs/Doe, J:global"``: the comma made each side two runs (over seeds), and
    the report stopped at "runs/Doe: no such run directory"."""
    keys, target, (good, noise), groups = _cases()
    run = tmp_path / "Doe, J"
    _write_run(run, {"fusion": good, "global": noise}, keys, target, groups)
    main([str(run), "--compare", f"{run}:fusion", f"{run}:global"])
    out = capsys.readouterr().out
    assert "  A Doe, J:fusion: " in out and "  B Doe, J:global: " in out


def test_at_breast_level_each_side_is_its_breast_level_table1_and_deLong_clusters_by_study(
    tmp_path: Path, capsys
) -> None:
    """``--level breast``: a breast's probability is the mean of its views', as Table I's breast level rates it, so each
    side's interval is its ``table1_breast.md`` interval (studies of two breasts drawn whole)."""
    from wsod_mammo.detection.breasts import breast_predictions
    from wsod_mammo.detection.compare_auc import breast_side

    keys, target, (good, noise), _ = _cases()
    studies = {int(k): int(k) // 4 for k in keys}  # a study: two breasts of two views each
    breasts = {int(k): int(k) // 2 for k in keys}
    _write_run(tmp_path / "a", {"fusion": good, "global": noise}, keys, target, studies, breasts=breasts)
    main([str(tmp_path / "a"), "--compare", "fusion", "global", "--level", "breast"])
    out = capsys.readouterr().out
    assert "AUC of Mass on 20 breasts (8 positive, a breast the mean of its views), paired bootstrap (95%) over " in out
    assert "DeLong's test, clustered by study (Obuchowski)" in out
    rated = breast_predictions(good, target, keys, breasts)
    assert rated is not None
    study_of_breast = {breasts[k]: studies[k] for k in keys.tolist()}
    table1_breast = _figures_with_intervals(rated.probabilities, rated.target, rated.keys, 7,
                                            groups_of(rated.keys, study_of_breast))["auc"]  # fmt: skip
    label, side, seed = load_head("fusion", tmp_path / "a")
    result = paired_auc(breast_side(side, label), breast_side(load_head("global", tmp_path / "a")[1], label), seed)
    assert result["a"] == table1_breast and result["num_images"] == 20 and result["resampled"] == "studies"
    _write_run(tmp_path / "no_breasts", {"fusion": good, "global": noise}, keys, target, studies)
    with pytest.raises(ValueError, match="--level breast: no_breasts:fusion's test report records no breast per image"):
        main([str(tmp_path / "no_breasts"), "--compare", "fusion", "global", "--level", "breast"])
    with pytest.raises(ValueError, match="--level breast: it rates the heads --compare compares"):
        main([str(tmp_path / "a"), "--compare", "cam", "gradcam", "--level", "breast"])


def test_the_studys_paired_table1_adds_a_breast_level_section_where_every_run_names_breasts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from wsod_mammo.detection.compare_auc import breast_side
    from wsod_mammo.detection.study_report import write_study_outputs

    keys, target, (good, noise), _ = _cases()
    studies = {int(k): int(k) // 4 for k in keys}
    breasts = {int(k): int(k) // 2 for k in keys}
    runs = {}
    for method, probabilities in (("cam", noise), ("gradcam", good)):
        run = tmp_path / method
        _write_run(run, dict.fromkeys(HEADS, probabilities), keys, target, studies, breasts=breasts)
        report = {"table1": dict.fromkeys(HEADS, {"accuracy": 0.9, "auc": 0.9, "tpr": 0.9, "tnr": 0.9}),
                  "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}}}  # fmt: skip
        (run / "detection.json").write_text(json.dumps(report))
        runs[(method, 1)] = run / "detection.json"
    write_study_outputs(tmp_path / "study", runs)
    _, breast_section = (tmp_path / "study" / "table1_paired.md").read_text().split("## Breast level")
    sides = [breast_side(load_head(f"{tmp_path / m}:fusion", tmp_path)[1], m) for m in ("gradcam", "cam")]
    d = paired_auc(*sides, 7)["difference"]
    assert f"| gradcam | fusion | {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | studies (1 seed) | " in (
        breast_section
    )
    _write_run(tmp_path / "cam", dict.fromkeys(HEADS, noise), keys, target, studies)  # a run naming no breasts
    with caplog.at_level("WARNING"):
        write_study_outputs(tmp_path / "study", runs)
    assert "## Breast level" not in (tmp_path / "study" / "table1_paired.md").read_text()
    assert "table1_paired.md has no breast level: the test reports of cam_seed1 name no breast per image" in caplog.text


def test_holm_adjusts_each_heads_comparisons_against_the_reference() -> None:
    """Four train methods against the first make four tests per head: table1_paired.md's p (Holm) bounds the chance
    of any false finding among them (hand values: 0.01, 0.04, 0.03 -> 0.03, 0.06, 0.06)."""
    from wsod_mammo.detection.study_paired import holm, table1_paired_text
    from wsod_mammo.detection.study_tables import Estimate

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, float("nan"), 0.04]) == pytest.approx([0.02, float("nan"), 0.04], nan_ok=True)  # two tests
    assert holm([]) == []
    estimate = Estimate(0.01, -0.01, 0.03, 1, "studies")
    differences = {("gradcam", "fusion"): (estimate, 0.2, 0.01), ("layercam", "fusion"): (estimate, 0.3, 0.04),
                   ("gradcam", "local"): (estimate, 0.2, 0.02)}  # fmt: skip
    text = table1_paired_text(differences, "cam")
    assert "| gradcam | fusion | +0.010 [-0.010, +0.030] | studies (1 seed) | 0.200 | 0.010 | 0.020 |" in text
    assert "| layercam | fusion | " in text and " | 0.040 | 0.040 |" in text
    assert " | 0.020 | 0.020 |" in text  # the local head's one comparison: unadjusted


def _null_auc_over_seeds(seed: int, seeds: int = 3) -> tuple[float, float]:
    """:func:`seeds_auc_test`'s p and the t-test of the per-seed AUC differences on the test set of
    ``null_scores_over_seeds`` (60 four-view studies, half with a breast of two positive views), its scores as
    probabilities."""
    from scipy.stats import ttest_1samp
    from test_afroc import null_scores_over_seeds

    from wsod_mammo.detection.delong import auc_covariance
    from wsod_mammo.detection.study_paired import seeds_auc_test

    scores, study, has_mass = null_scores_over_seeds(seed, seeds)
    target = has_mass.double()
    sides = [[{"class": "Mass", "image_keys": list(range(study.numel())), "target": target.tolist(),
               "probabilities": torch.sigmoid(run).tolist(), "study_keys": study.tolist()} for run in method]
             for method in scores]  # fmt: skip
    pairs = list(zip(sides[0], sides[1], strict=True))
    aucs = [auc_covariance(torch.sigmoid(scores[:, run]), target)[0] for run in range(seeds)]
    return seeds_auc_test(pairs)["p"], float(ttest_1samp([float(a[0] - a[1]) for a in aucs], 0.0).pvalue)


def test_under_the_null_over_seeds_table1_paireds_p_rejects_at_its_level_and_the_t_test_over_seeds_too_often() -> None:
    """300 simulated test sets of 60 studies, two train methods equally good, three seeds each: table1_paired.md's p
    over seeds (seeds random readers, DeLong's covariance clustered by study) falls below 0.05 in 5.3% of them (4.1%
    of 1,000; 5.3% with five seeds); the t-test of the per-seed differences, blind to what the test set does to every
    seed alike, in 22% (22% of 1,000; 43% with five seeds)."""
    trials = [_null_auc_over_seeds(seed) for seed in range(300)]
    readers = sum(p < 0.05 for p, _ in trials) / len(trials)
    t_test = sum(p < 0.05 for _, p in trials) / len(trials)
    assert 0.02 <= readers <= 0.09, readers
    assert t_test > readers + 0.1, (t_test, readers)
