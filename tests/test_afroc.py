"""The wAFROC and AFROC figures of merit: the definition, the bootstrap's draw counts, the test report and
``wsod report --compare A B --figure wafroc``."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import pytest
import torch

from wsod_mammo.detection.afroc import figures_of_merit, ratings


def _by_definition(image_gt, box_image, box_scores, box_gt, gt_image) -> dict[str, float]:
    """Chakraborty's sums written out: every (normal image, mass) pair, psi 1 / 1/2 / 0, -inf where unmarked."""
    n = len(image_gt)

    def best(owners: list[int], owner: int) -> float:
        return max([s for o, s in zip(owners, box_scores, strict=True) if o == owner], default=-math.inf)

    worst = [best(box_image, i) for i in range(n)]
    rated = [best(box_gt, m) for m in range(len(gt_image))]
    normals = [i for i in range(n) if image_gt[i] == 0]
    mass_images = sorted(set(gt_image))
    weighted = plain = 0.0
    for k1, (m, image) in itertools.product(normals, enumerate(gt_image)):
        psi = 1.0 if rated[m] > worst[k1] else 0.5 if rated[m] == worst[k1] else 0.0
        weighted += psi / image_gt[image]
        plain += psi
    return {"wafroc": weighted / (len(normals) * len(mass_images)), "afroc": plain / (len(normals) * len(gt_image))}


def _random_study(seed: int) -> tuple[list, ...]:
    """Images with 0-3 masses (some never marked: out of the frame), 0-4 boxes each with scores on a coarse grid
    (ties between normal and mass images), boxes on mass images that found a mass or nothing."""
    g = torch.Generator().manual_seed(seed)
    image_gt = torch.randint(0, 4, (14,), generator=g).tolist()
    image_gt[0], image_gt[1] = 0, 2
    gt_image = [i for i, k in enumerate(image_gt) for _ in range(k)]
    box_image, box_scores, box_gt = [], [], []
    for image in range(len(image_gt)):
        for _ in range(int(torch.randint(0, 5, (1,), generator=g))):
            box_image.append(image)
            box_scores.append(int(torch.randint(1, 6, (1,), generator=g)) / 5)
            rows = [m for m, i in enumerate(gt_image) if i == image]
            hit = rows and bool(torch.rand(1, generator=g) < 0.6)
            box_gt.append(rows[int(torch.randint(0, len(rows), (1,), generator=g))] if hit else -1)
    return image_gt, box_image, box_scores, box_gt, gt_image


def copied(study: tuple[list, ...], copies: list[int]) -> tuple[list, ...]:
    """The study whose images are ``copies`` (old indices, repeated as drawn), each with its masses and boxes."""
    image_gt, box_image, box_scores, box_gt, gt_image = study
    out: tuple[list, ...] = ([], [], [], [], [])
    for new, old in enumerate(copies):
        first = len(out[4])
        masses = [m for m, i in enumerate(gt_image) if i == old]
        out[0].append(image_gt[old])
        out[4].extend([new] * len(masses))
        for b, i in enumerate(box_image):
            if i == old:
                out[1].append(new)
                out[2].append(box_scores[b])
                out[3].append(first + masses.index(box_gt[b]) if box_gt[b] >= 0 else -1)
    return out


def _tensors(study: tuple[list, ...]) -> tuple[torch.Tensor, ...]:
    image_gt, box_image, box_scores, box_gt, gt_image = study
    return (torch.tensor(image_gt), torch.tensor(box_image, dtype=torch.long), torch.tensor(box_scores),
            torch.tensor(box_gt, dtype=torch.long), torch.tensor(gt_image, dtype=torch.long))  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_the_figures_of_merit_are_chakrabortys_sums_over_normal_image_and_mass_pairs(seed) -> None:
    study = _random_study(seed)
    got = figures_of_merit(ratings(*_tensors(study)))
    expected = _by_definition(*study)
    assert float(got["wafroc"][0]) == pytest.approx(expected["wafroc"], abs=1e-12)
    assert float(got["afroc"][0]) == pytest.approx(expected["afroc"], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_wafroc_curves_area_is_the_figure_of_merit(seed) -> None:
    from wsod_mammo.detection.afroc import wafroc_curve

    rated = ratings(*_tensors(_random_study(seed)))
    fpf, wllf = wafroc_curve(rated)
    assert (fpf[0], wllf[0], fpf[-1], wllf[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert bool((fpf.diff() >= 0).all() and (wllf.diff() >= 0).all())  # a curve, rising
    area = float(torch.trapezoid(wllf, fpf))
    assert area == pytest.approx(float(figures_of_merit(rated)["wafroc"][0]), abs=1e-12)


def test_a_resamples_draw_counts_weigh_as_that_many_copies_of_each_image() -> None:
    """The bootstrap's weights: an image drawn k times counts as k copies (normal among K1, mass image among K2)."""
    study = _random_study(11)
    counts = [2, 0, 1, 3, 1, 0, 2, 1, 1, 2, 0, 1, 1, 2]
    weights = torch.tensor([counts, [1] * len(counts)], dtype=torch.float32)
    got = figures_of_merit(ratings(*_tensors(study)), weights)
    expected = _by_definition(*copied(study, [image for image, k in enumerate(counts) for _ in range(k)]))
    for figure in ("wafroc", "afroc"):
        assert float(got[figure][0]) == pytest.approx(expected[figure], abs=1e-12)
        assert float(got[figure][1]) == pytest.approx(_by_definition(*study)[figure], abs=1e-12)


def test_finding_every_mass_above_every_normal_scores_1_and_marking_nothing_scores_half() -> None:
    image_gt = torch.tensor([0, 0, 1, 2])
    gt_image = torch.tensor([2, 3, 3])
    perfect = ratings(image_gt, torch.tensor([0, 2, 3, 3, 3]), torch.tensor([0.4, 0.9, 0.8, 0.7, 0.95]),
                      torch.tensor([-1, 0, 1, 2, -1]), gt_image)  # fmt: skip
    assert {k: float(v) for k, v in figures_of_merit(perfect).items()} == {"wafroc": 1.0, "afroc": 1.0}
    empty = torch.zeros(0, dtype=torch.long)
    nothing = ratings(image_gt, empty, torch.zeros(0), empty, gt_image)
    assert {k: float(v) for k, v in figures_of_merit(nothing).items()} == {"wafroc": 0.5, "afroc": 0.5}
    # a box that found no mass on a mass image is no normal image's worst box: it does not count
    ignored = ratings(image_gt, torch.tensor([2, 2]), torch.tensor([0.3, 0.99]), torch.tensor([0, -1]), gt_image)
    assert float(figures_of_merit(ignored)["afroc"]) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert float(figures_of_merit(ignored)["wafroc"]) == pytest.approx((1 + 0.5) / 2)
    no_normal = ratings(torch.tensor([1, 2]), empty, torch.zeros(0), empty, gt_image - 2)
    assert all(math.isnan(float(v)) for v in figures_of_merit(no_normal).values())
    with pytest.raises(ValueError, match="3 masses counted per image but 2 mass rows"):
        ratings(image_gt, empty, torch.zeros(0), empty, gt_image[:2])


def _all_images_result(found: dict[int, float], normal_scores: dict[int, float], birads: list[int] | None = None):
    """12 images in a 200 x 200 frame through a real ``DetectionMetric`` of every image: mass images 0-5 (a mass at
    the top left, of finding BI-RADS ``birads[i]`` where given), normal images 6-11. A mass image in ``found`` has its
    map's peak on the mass, the others at the bottom right; the box scores are the probabilities; a normal image in
    ``normal_scores`` has a blob."""
    from wsod_mammo.detection.metrics import DetectionMetric

    maps = torch.zeros(12, 10, 10)
    probabilities = torch.full((12,), 0.5)
    for i in range(6):
        maps[i, 1 if i in found else 8, 1 if i in found else 8] = 1.0
        probabilities[i] = found.get(i, 0.3)
    for i, score in normal_scores.items():
        maps[i, 5, 5] = 1.0
        probabilities[i] = score
    gt = [torch.tensor([[15.0, 15.0, 45.0, 45.0]]) if i < 6 else torch.zeros(0, 4) for i in range(12)]
    labels = torch.tensor([1] * 6 + [0] * 6)
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=1.0)
    categories = None if birads is None else [[birads[i]] if i < 6 else [] for i in range(12)]
    metric.update(maps, probabilities, gt, labels, (200, 200), [f"i{i}" for i in range(12)], gt_categories=categories)
    return metric.compute()


def _write_report(run, results, seed: int = 7, train: str = "cam", densities: dict | None = None):
    from wsod_mammo.training.table1_report import Table1Figures
    from wsod_mammo.training.test_report import write_test_report

    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name=train), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    keys = results[("cam", "all")].image_keys
    groups = {int(k): i // 2 for i, k in enumerate(keys.tolist())}  # two views a study
    run.mkdir(parents=True)
    write_test_report(run, trainer, module, results, Table1Figures({}, {}, {}, None), 1.0, seed=seed, groups=groups,
                      densities=densities or {})  # fmt: skip
    return groups


def test_the_test_report_gives_each_methods_figures_of_merit_with_table_iis_intervals(tmp_path) -> None:
    from wsod_mammo.detection.bootstrap import interval, resample_weights

    cam = _all_images_result({0: 0.9, 1: 0.8, 2: 0.4}, {6: 0.6, 7: 0.2})
    gradcam = _all_images_result({0: 0.9, 1: 0.8, 2: 0.7, 3: 0.7, 4: 0.9}, {6: 0.6})
    results = {(m, s): r for m, r in (("cam", cam), ("gradcam", gradcam)) for s in ("mass", "all")}
    groups = _write_report(tmp_path / "run", results)
    report = json.loads((tmp_path / "run" / "detection.json").read_text())["wafroc"]
    assert (report["normal_images"], report["mass_images"], report["masses"]) == (6, 6, 6)
    # cam: masses rated 0.9, 0.8, 0.4 and three unmarked; normals' worst 0.6, 0.2 and four unmarked
    expected = (6 + 6 + 5 + 3 * (4 * 0.5)) / 36  # 0.9, 0.8 above all six; 0.4 above five; unmarked: ties with four
    assert report["methods"]["cam"]["wafroc"]["value"] == pytest.approx(expected)
    keys = cam.image_keys
    weights = resample_weights((cam.image_gt > 0).long(), seed=7, keys=keys,
                               groups=torch.tensor([groups[int(k)] for k in keys]))  # fmt: skip
    r = cam.per_threshold[0]
    drawn = figures_of_merit(ratings(cam.image_gt, r.box_image, r.box_scores, r.box_gt, cam.gt_image), weights)
    assert report["methods"]["cam"]["wafroc"] == pytest.approx(interval(drawn["wafroc"], expected))
    assert report["methods"]["cam"]["wafroc"]["low"] < expected < report["methods"]["cam"]["wafroc"]["high"]
    assert report["methods"]["gradcam"]["afroc"]["value"] > report["methods"]["cam"]["afroc"]["value"]
    markdown = (tmp_path / "run" / "wafroc.md").read_text()
    assert "6 normal images, 6 mass images with 6 masses" in markdown
    assert "interval over studies (each with all its images), drawn as Table II's" in markdown
    assert f"| cam | {expected:.3f} [" in markdown
    rows = (tmp_path / "run" / "wafroc.csv").read_text().splitlines()
    assert rows[0] == ("test_method,normal_images,mass_images,masses,wafroc,wafroc_low,wafroc_high,afroc,afroc_low,"
                       "afroc_high")  # fmt: skip
    assert rows[1].startswith("cam,6,6,6,") and float(rows[1].split(",")[4]) == pytest.approx(expected)
    assert (tmp_path / "run" / "wafroc.png").stat().st_size > 0  # the curves, the figures of merit their areas


def test_compare_of_two_methods_figure_of_merit_pairs_their_reports_intervals(tmp_path, capsys) -> None:
    from wsod_mammo.detection.compare import load_side
    from wsod_mammo.detection.compare_afroc import paired_fom
    from wsod_mammo.detection.report_cli import main

    cam = _all_images_result({0: 0.9, 1: 0.8, 2: 0.4}, {6: 0.6, 7: 0.2})
    gradcam = _all_images_result({0: 0.9, 1: 0.8, 2: 0.7, 3: 0.7, 4: 0.9}, {6: 0.6})
    results = {(m, s): r for m, r in (("cam", cam), ("gradcam", gradcam)) for s in ("mass", "all")}
    run = tmp_path / "run"
    _write_report(run, results)
    reported = json.loads((run / "detection.json").read_text())["wafroc"]["methods"]
    _, a, _, seed = load_side("gradcam", run, "all")
    _, b, _, _ = load_side("cam", run, "all")
    for figure in ("wafroc", "afroc"):
        paired = paired_fom(a, b, figure, seed, ("gradcam", "cam"))
        assert paired["a"] == pytest.approx(reported["gradcam"][figure])
        assert paired["b"] == pytest.approx(reported["cam"][figure])
        value = reported["gradcam"][figure]["value"] - reported["cam"][figure]["value"]
        assert paired["difference"]["value"] == pytest.approx(value) and value > 0
        assert paired["resampled"] == "studies" and paired["num_images"] == 12
    main([str(run), "--compare", "gradcam", "cam", "--figure", "wafroc", "--subset", "mass"])
    out = capsys.readouterr().out
    assert "wAFROC figure of merit on 12 test images, paired bootstrap (95%) over studies:" in out
    assert f"A - B: {value:.3f} [" in out
    del a["box_gt"]
    with pytest.raises(ValueError, match="--figure wafroc: gradcam's test report records no masses per box"):
        paired_fom(a, b, "wafroc", seed, ("gradcam", "cam"))


def _study_runs(tmp_path, seeds: dict[int, dict[str, dict]]) -> dict:
    """Test runs of train methods cam and gradcam per seed, each testing cam and gradcam: ``{seed: {train: {test:
    (found, normal_scores)}}}`` through ``_all_images_result`` and the real test report."""
    runs = {}
    for seed, trains in seeds.items():
        for train, tests in trains.items():
            results = {(m, s): _all_images_result(*tests[m]) for m in tests for s in ("mass", "all")}
            run = tmp_path / f"{train}_seed{seed}"
            _write_report(run, results, train=train)
            runs[(train, seed)] = run / "detection.json"
    return runs


GOOD = ({0: 0.9, 1: 0.8, 2: 0.7, 3: 0.7, 4: 0.9}, {6: 0.6})
FAIR = ({0: 0.9, 1: 0.8, 2: 0.4}, {6: 0.6, 7: 0.2})
POOR = ({0: 0.3}, {6: 0.6, 7: 0.5, 8: 0.9})


def test_the_study_pairs_the_best_pairs_wafroc_with_every_other_on_the_same_images(tmp_path, caplog, capsys) -> None:
    """wafroc_paired.md: the best (train, test) pair by mean wAFROC minus each other pair, as ``--compare
    BEST_RUN:method RUN:method --figure wafroc`` computes it; with one seed the bootstrap's two-sided p, over seeds
    Obuchowski-Rockette's test from the covariance over the same bootstrap draws, as ``--compare RUN_1,RUN_2:method``
    prints it; beside them the jackknife test (one seed: FRRC, over seeds: RRRC); Holm over all the comparisons; a run
    without boxes per mass is named."""
    from scipy.stats import ttest_1samp

    from wsod_mammo.detection.bootstrap import resampled_means
    from wsod_mammo.detection.compare import load_side, resampled_tprs
    from wsod_mammo.detection.compare_afroc import paired_fom
    from wsod_mammo.detection.compare_pointing import scored
    from wsod_mammo.detection.jackknife import jackknife_covariance
    from wsod_mammo.detection.obuchowski_rockette import rrrc_test
    from wsod_mammo.detection.report_cli import main as report_main
    from wsod_mammo.detection.study_afroc import bootstrap_p
    from wsod_mammo.detection.study_paired import holm, p_cells
    from wsod_mammo.detection.study_report import write_study_outputs

    one_seed = {1: {"cam": {"cam": FAIR, "gradcam": GOOD}, "gradcam": {"cam": POOR, "gradcam": FAIR}}}
    runs = _study_runs(tmp_path, one_seed)
    text = write_study_outputs(tmp_path / "study", runs)
    assert "wAFROC paired (the best pair's minus every other's): wafroc_paired.md" in text
    table = (tmp_path / "study" / "wafroc_paired.md").read_text()
    assert "the best pair (train cam, test gradcam, wAFROC " in table
    assert "Best pair by wAFROC (every test image): train cam, test gradcam: 0.903 [" in text  # named in the summary
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ") for line in table.splitlines()[3:] if line.startswith("| ")}
    assert set(rows) == {("| cam", "cam"), ("| gradcam", "cam"), ("| gradcam", "gradcam")}  # the best is no row
    expected, ps, jackknife_ps = {}, [], []
    for train, test in (("cam", "cam"), ("gradcam", "cam"), ("gradcam", "gradcam")):
        _, best, _, seed = load_side("gradcam", runs[("cam", 1)].parent, "all")
        _, other, _, _ = load_side(test, runs[(train, 1)].parent, "all")
        expected[(train, test)] = paired_fom(best, other, "wafroc", seed, jackknife=True)
        r = expected[(train, test)]
        ps.append(bootstrap_p(r["p_a_not_better"], r["p_a_not_worse"], r["resamples"]))
        jackknife_ps.append(r["jackknife"]["p"])
    for ((train, test), r), p, adjusted, jp, jadjusted in zip(expected.items(), ps, holm(ps), jackknife_ps,
                                                            holm(jackknife_ps), strict=True):  # fmt: skip
        d = r["difference"]
        row = rows[(f"| {train}", test)]
        assert row[3] == f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" and row[4] == "studies (1 seed)"
        assert (row[5], row[6]) == (f"{p:.3f}", f"{adjusted:.3f}")
        # and the jackknife test JAFROC analyses report, over the same whole studies, Holm-adjusted alike
        assert (row[7], row[8].rstrip(" |")) == tuple(p_cells(jp, jadjusted)) and not math.isnan(jp)
    assert expected[("gradcam", "cam")]["difference"]["value"] > 0.3 and ps[1] < 0.05  # the poor pair, found poorer
    # the summary says which pairs the jackknife (Holm) cannot tell from the best
    close = [f"train {t}, test {m}" for (t, m), a in zip(expected, holm(jackknife_ps), strict=True) if not a < 0.05]
    assert (
        close
        and "not told apart from it (jackknife p, Holm-adjusted, >= 0.05 or undefined): " + "; ".join(close)
        in text.split("Best pair by wAFROC")[1].splitlines()[0]
    )
    assert bootstrap_p(0.0, 1.0, 1000) == pytest.approx(2 / 1001) and bootstrap_p(0.5, 0.5, 1000) == 1.0
    # ties at 0 count half to each tail: 36% of resamples at exactly 0, none below, is a tail of 18%, not 36%
    assert bootstrap_p(0.36, 1.0, 1000) == pytest.approx(2 * (180 + 1) / 1001)
    # two seeds: Obuchowski-Rockette's test with the seeds as random readers, its interval and p from the covariance
    # of the four runs' figures over the same bootstrap draws of the studies
    second = {"cam": {"cam": POOR, "gradcam": GOOD}, "gradcam": {"cam": POOR, "gradcam": GOOD}}
    runs |= _study_runs(tmp_path, {2: second})
    assert "Two seeds:" not in (tmp_path / "study" / "wafroc_paired.md").read_text()  # one seed: no test over seeds
    write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "wafroc_paired.md").read_text()
    assert "the best pair (train cam, test gradcam, wAFROC " in table
    assert "Two seeds: the test over seeds rests on one degree of freedom for how the seeds differ" in table
    (row,) = [line.split(" | ") for line in table.splitlines() if line.startswith("| cam | cam |")]
    per_seed = []
    for seed in (1, 2):
        _, best, _, drawn = load_side("gradcam", runs[("cam", seed)].parent, "all")
        _, other, _, _ = load_side("cam", runs[("cam", seed)].parent, "all")
        per_seed.append(paired_fom(best, other, "wafroc", drawn, jackknife=True))
    values = [r["difference"]["value"] for r in per_seed]
    full = torch.tensor([[r["a"]["value"] for r in per_seed], [r["b"]["value"] for r in per_seed]])
    drawn = torch.stack([r["drawn"] for r in per_seed], dim=1).reshape(4, -1)  # method-major: A's seeds, B's
    drawn = drawn[:, torch.isfinite(drawn).all(dim=0)]  # resamples without a normal image or a mass: no figure
    over = rrrc_test(full, torch.cov(drawn))
    assert over["difference"] == pytest.approx(sum(values) / 2) and over["high"] - over["low"] > 0
    interval = f"{over['difference']:+.3f} [{max(over['low'], -1):+.3f}, {min(over['high'], 1):+.3f}]"
    assert (row[3], row[4], row[5]) == (interval, "2 seeds and the test set", p_cells(over["p"])[0]), row
    assert row[5] != f"{ttest_1samp(values, 0.0).pvalue:.3f}"  # not the t-test of the per-seed differences
    # the same comparison of the two seeds' runs from the command line
    both = ",".join(str(runs[("cam", seed)].parent) for seed in (1, 2))
    report_main([both.split(",")[0], "--compare", f"{both}:gradcam", f"{both}:cam", "--figure", "wafroc"])
    printed = capsys.readouterr().out
    assert (
        "2 runs a side, A's i-th run paired with B's i-th, each run a random reader of the same test studies" in printed
    )
    line = f"A - B, covariance over 1,000 bootstrap draws: {over['difference']:+.3f} [{over['low']:+.3f}, "
    assert f"  {line}{over['high']:+.3f}], t = {over['t']:.2f} on {over['df']:.1f} degrees of freedom, " in printed
    assert (
        f"  A: mean {sum(full[0].tolist()) / 2:.3f} (cam_seed1:gradcam {full[0, 0]:.3f}, cam_seed2:gradcam " in printed
    )
    with pytest.raises(ValueError, match="A names 2 run.s., B 1; each side's i-th run is paired"):
        report_main([both.split(",")[0], "--compare", f"{both}:gradcam", f"{both.split(',')[0]}:cam", "--figure",
                     "wafroc"])  # fmt: skip
    # the pointing game over the runs: each run's share of hits (its pointing_game.md figure), the covariance of the
    # four runs' shares over the first A run's draws of the studies
    capsys.readouterr()
    report_main([both.split(",")[0], "--compare", f"{both}:gradcam", f"{both}:cam", "--figure", "pointing"])
    printed = capsys.readouterr().out
    sides = [load_side(f"{runs[('cam', s)].parent}:{m}", tmp_path, "mass") for m in ("gradcam", "cam") for s in (1, 2)]
    hits = [scored(side, "pointing", label) for label, side, _, _ in sides]
    keys = [k for k in sides[0][1]["image_keys"] if k in hits[0]]
    study = dict(zip(sides[0][1]["image_keys"], sides[0][1]["study_keys"], strict=True))
    shares = [torch.tensor([h[k] for k in keys], dtype=torch.float64) for h in hits]
    means = resampled_means(shares, torch.tensor(keys), torch.tensor([study[k] for k in keys]), sides[0][3])
    per_run = torch.stack([share.mean() for share in shares]).reshape(2, 2)
    pointing = rrrc_test(per_run, torch.cov(torch.stack(means)))
    assert f"Pointing game on {len(keys)} images with a mass in view, 2 runs a side" in printed
    assert not math.isnan(pointing["p"]) and pointing["high"] > pointing["low"]
    line = f"A - B, covariance over 1,000 bootstrap draws: {pointing['difference']:+.3f} [{pointing['low']:+.3f}, "
    assert (
        f"  {line}{pointing['high']:+.3f}], t = {pointing['t']:.2f} on {pointing['df']:.1f} degrees of freedom, "
        in printed
    )
    reported = json.loads(runs[("cam", 1)].read_text())["pointing_game"]["methods"]["gradcam"]["hit"]["value"]
    assert f"(cam_seed1:gradcam {reported:.3f}, " in printed and float(per_run[0, 0]) == pytest.approx(reported)
    # Table II's TPR over the runs: the covariance of the four runs' TPRs over the first A run's draws
    capsys.readouterr()
    report_main([both.split(",")[0], "--compare", f"{both}:gradcam", f"{both}:cam"])
    printed = capsys.readouterr().out
    loaded = [load_side(f"{runs[('cam', seed)].parent}:{m}", tmp_path, "mass") for m in ("gradcam", "cam")
              for seed in (1, 2)]  # fmt: skip
    tprs = resampled_tprs([side for _, side, _, _ in loaded], loaded[0][2], loaded[0][3], [s[0] for s in loaded])
    drawn = tprs[:, 1:][:, torch.isfinite(tprs[:, 1:]).all(dim=0)]
    tested = rrrc_test(tprs[:, 0].reshape(2, 2), torch.cov(drawn))
    assert "TPR at FPPI <= 1 on 12 mass images, 2 runs a side, A's i-th run paired with B's i-th" in printed, printed
    line = f"  A - B, covariance over 1,000 bootstrap draws: {tested['difference']:+.3f} [{tested['low']:+.3f}, "
    assert line + f"{tested['high']:+.3f}], t = {tested['t']:.2f} on {tested['df']:.1f} degrees of" in printed, printed
    # a seed whose test report drew with another bootstrap seed: every seed is redrawn with the first seed's draws
    images = runs[("cam", 2)].parent / "detection_images.json"
    images.write_text(json.dumps({**json.loads(images.read_text()), "bootstrap_seed": 5}))
    write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "wafroc_paired.md").read_text()
    assert [line.split(" | ") for line in table.splitlines() if line.startswith("| cam | cam |")] == [row]
    # and the jackknife with each seed a random reader of the same studies (RRRC)
    left = torch.stack([r["left_out"] for r in per_seed], dim=1).reshape(4, -1)  # method-major: A's seeds, B's
    rrrc = rrrc_test(full, jackknife_covariance(left))
    assert row[7] == p_cells(rrrc["p"])[0] and not math.isnan(rrrc["p"])
    # a run whose image record predates the boxes' masses: no table, the run named
    images = runs[("gradcam", 2)].parent / "detection_images.json"
    record = json.loads(images.read_text())
    for method in record["subsets"]["all"].values():
        del method["box_gt"]
    images.write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert "wAFROC paired" not in text and not (tmp_path / "study" / "wafroc_paired.md").exists()
    assert "no paired wAFROC: the test reports of gradcam_seed2 record no mass per box" in caplog.text


def test_table2_over_seeds_gives_each_cell_an_interval_over_the_seeds_and_the_test_set(tmp_path, caplog) -> None:
    """Over two seeds, a Table II cell's interval is Hillis's single-treatment one, each seed a random reader of the
    same test studies, from the covariance of the seeds' TPRs over their reports' bootstrap draws (wafroc.md's cells
    alike); without a run's image record every cell falls back to Student-t over the seeds, and the summary and a
    warning say so."""
    from wsod_mammo.detection.bootstrap import resampled_means
    from wsod_mammo.detection.compare import load_side, resampled_tprs
    from wsod_mammo.detection.compare_afroc import paired_fom
    from wsod_mammo.detection.compare_pointing import scored
    from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
    from wsod_mammo.detection.study_report import write_study_outputs

    runs = _study_runs(
        tmp_path, {1: {"cam": {"cam": FAIR, "gradcam": GOOD}}, 2: {"cam": {"cam": POOR, "gradcam": FAIR}}}
    )
    text = write_study_outputs(tmp_path / "study", runs)
    assert "TPR [95% interval, over the seeds and the test set: Obuchowski-Rockette, each seed a random" in text
    loaded = [load_side(f"{runs[('cam', seed)].parent}:cam", tmp_path, "mass") for seed in (1, 2)]
    values = resampled_tprs([side for _, side, _, _ in loaded], loaded[0][2], loaded[0][3], [s[0] for s in loaded])
    drawn = values[:, 1:][:, torch.isfinite(values[:, 1:]).all(dim=0)]
    expected = single_treatment_interval(values[:, 0], torch.cov(drawn))
    assert expected["high"] - expected["low"] > 0 and 0 < expected["estimate"] < 1
    cell = f"{expected['estimate']:.2f} [{max(expected['low'], 0):.2f}, {min(expected['high'], 1):.2f}] @ "
    (row,) = [line for line in (tmp_path / "study" / "table2.md").read_text().splitlines() if line.startswith("| cam")]
    assert row.split(" | ")[1].startswith(cell), (row, cell)
    assert ",seeds and test set" in (tmp_path / "study" / "table2.csv").read_text()
    # wafroc.md's cells alike, over every test image: both seeds' figures over the same draws, as --compare pairs them
    first, second = (load_side(f"{runs[('cam', seed)].parent}:cam", tmp_path, "all") for seed in (1, 2))
    paired = paired_fom(first[1], second[1], "wafroc", first[3], jackknife=True)
    drawn = paired["drawn"][:, torch.isfinite(paired["drawn"]).all(dim=0)]
    full = torch.tensor([paired["a"]["value"], paired["b"]["value"]], dtype=torch.float64)
    expected = single_treatment_interval(full, torch.cov(drawn))
    cell = f"{expected['estimate']:.3f} [{max(expected['low'], 0):.3f}, {min(expected['high'], 1):.3f}]"
    wafroc = (tmp_path / "study" / "wafroc.md").read_text()
    assert "interval over the seeds and the test set: Obuchowski-Rockette" in wafroc
    (row,) = [line for line in wafroc.split("## AFROC")[0].splitlines() if line.startswith("| cam")]
    assert row.split(" | ")[1] == cell, (row, cell)
    # pointing_game.md alike: each seed's share of hits over the images with a mass in view, the same draws
    hits = [scored(side, "pointing", label) for label, side, _, _ in (first, second)]
    keys = [k for k in first[1]["image_keys"] if k in hits[0]]
    study = dict(zip(first[1]["image_keys"], first[1]["study_keys"], strict=True))
    sides = [torch.tensor([h[k] for k in keys], dtype=torch.float64) for h in hits]
    means = resampled_means(sides, torch.tensor(keys), torch.tensor([study[k] for k in keys]), first[3])
    full = torch.stack([side.mean() for side in sides])
    expected = single_treatment_interval(full, torch.cov(torch.stack(means)))
    cell = f"{expected['estimate']:.2f} [{max(expected['low'], 0):.2f}, {min(expected['high'], 1):.2f}]"
    pointing = (tmp_path / "study" / "pointing_game.md").read_text()
    (row,) = [line for line in pointing.split("## Energy")[0].splitlines() if line.startswith("| cam")]
    assert row.split(" | ")[1] == cell and "interval over the seeds and the test set" in pointing, (row, cell)
    (runs[("cam", 2)].parent / "detection_images.json").unlink()  # a run tested before image records were kept
    with caplog.at_level("WARNING"):
        text = write_study_outputs(tmp_path / "study", runs)
    assert "TPR [95% interval, Student-t over seeds]" in text
    assert "table2.md: its intervals are Student-t over the seeds only (the seeds' spread" in caplog.text
    assert "mean [95% interval over seeds; with one seed" in (tmp_path / "study" / "wafroc.md").read_text()


def test_the_summary_says_whether_the_jackknife_tells_the_best_pair_from_the_others() -> None:
    from wsod_mammo.detection.study_afroc import told_apart_text
    from wsod_mammo.detection.study_tables import Estimate

    estimate = Estimate(0.1, 0.0, 0.2, 1, "studies")
    far = {("cam", "cam"): (estimate, 0.01, 0.001), ("gradcam", "cam"): (estimate, 0.01, 0.002)}
    assert told_apart_text(far) == "; below it, every other pair (jackknife p, Holm-adjusted, < 0.05)"
    near = far | {("gradcam", "layercam"): (estimate, 0.5, 0.02)}  # Holm: 0.02 x 2 = 0.04, below; 0.4 is not
    near[("cam", "layercam")] = (estimate, 0.5, 0.4)
    assert told_apart_text(near) == ("; not told apart from it (jackknife p, Holm-adjusted, >= 0.05 or undefined): "
                                     "train cam, test layercam")  # fmt: skip
    assert told_apart_text({("cam", "cam"): (estimate, 0.5, math.nan)}) == ""  # no jackknife: nothing said


def null_study(seed: int, studies: int = 60) -> tuple[list, torch.Tensor, torch.Tensor]:
    """One simulated test set where two methods are equally good: ``studies`` four-view studies, half with a mass
    seen in one breast's two views; each image's rating shares its study's effect, and each method has an effect of
    its own per study (a method finds or misses both views of a breast together). Returns both methods'
    :class:`Ratings`, each image's study and whether it holds a mass."""
    from wsod_mammo.detection.afroc import Ratings

    g = torch.Generator().manual_seed(seed)
    n = studies * 4
    study = torch.arange(n) // 4
    has_mass = (study < studies // 2) & (torch.arange(n) % 4 < 2)
    shared = torch.randn(studies, generator=g, dtype=torch.float64)[study] + 0.5 * torch.randn(n, generator=g)
    rated = []
    for _ in range(2):
        own = 0.8 * torch.randn(studies, generator=g, dtype=torch.float64)[study] + 0.3 * torch.randn(n, generator=g)
        score = shared + own + has_mass.double()
        normal, lesion = torch.nonzero(~has_mass).flatten(), torch.nonzero(has_mass).flatten()
        rated.append(Ratings(normal, score[normal], lesion, score[lesion], n))
    return rated, study, has_mass


def null_scores_over_seeds(
    seed: int, seeds: int = 3, studies: int = 60
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`null_study`'s test set, two equally good methods each trained ``seeds`` times: each image's score shares
    its study's effect, each method has an effect of its own per study that all its seeds share (what it finds or
    misses on a study, however trained) and each seed one more. Returns ``scores (2, seeds, n)``, each image's study
    and whether it holds a mass."""
    g = torch.Generator().manual_seed(seed)
    n = studies * 4
    study = torch.arange(n) // 4
    has_mass = (study < studies // 2) & (torch.arange(n) % 4 < 2)
    shared = torch.randn(studies, generator=g, dtype=torch.float64)[study] + 0.5 * torch.randn(n, generator=g)
    scores = torch.zeros(2, seeds, n, dtype=torch.float64)
    for method in range(2):
        own = 0.8 * torch.randn(studies, generator=g, dtype=torch.float64)[study]
        for run in range(seeds):
            trained = 0.5 * torch.randn(studies, generator=g, dtype=torch.float64)[study]
            scores[method, run] = shared + own + trained + 0.3 * torch.randn(n, generator=g) + has_mass.double()
    return scores, study, has_mass


def _null_trial(seed: int, clustered: bool, studies: int = 60) -> float:
    """The paired bootstrap's two-sided p of the wAFROC difference on :func:`null_study`, drawing whole studies or
    (``clustered=False``) images one by one."""
    from wsod_mammo.detection.bootstrap import resample_weights
    from wsod_mammo.detection.study_afroc import bootstrap_p

    rated, study, has_mass = null_study(seed, studies)
    n = study.numel()
    drawn = resample_weights(has_mass.long(), seed=seed, keys=torch.arange(n), groups=study if clustered else None)
    weights = torch.cat([torch.ones(1, n), drawn])
    a, b = (figures_of_merit(r, weights)["wafroc"] for r in rated)
    d = (a - b)[1:]
    return bootstrap_p(float((d <= 0).double().mean()), float((d >= 0).double().mean()), d.numel())


def test_under_the_null_the_paired_bootstrap_over_studies_rejects_at_its_level_and_over_images_too_often() -> None:
    """300 test sets of 60 studies where two methods localize equally well: wafroc_paired.md's p (whole studies
    drawn, ties at 0 half to each tail) falls below 0.05 7.3% of the time (6.7% over 1,000 sets: the percentile
    bootstrap is mildly liberal at 30 studies a stratum; 4.8% at 240 studies); drawing images one by one, which
    treats the views of a breast a method finds or misses together as independent, rejects 12%."""
    clustered = sum(_null_trial(seed, True) < 0.05 for seed in range(300)) / 300
    by_image = sum(_null_trial(seed, False) < 0.05 for seed in range(300)) / 300
    assert 0.02 <= clustered <= 0.085, clustered
    assert by_image > clustered + 0.03, (by_image, clustered)
