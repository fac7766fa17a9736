"""The fixed-reader random-case jackknife test of two methods' figures of merit (``wsod report --compare --figure
wafroc``): left-out figures by Chakraborty's sums, the test by its formula, and the printed line."""

from __future__ import annotations

import math

import pytest
import torch
from test_afroc import (
    _all_images_result,
    _by_definition,
    _random_study,
    _tensors,
    _write_report,
    copied,
    null_scores_over_seeds,
    null_study,
)

from wsod_mammo.detection.afroc import figures_of_merit, ratings
from wsod_mammo.detection.jackknife import Z_95, frrc_test, jackknife_covariance, left_out_figures
from wsod_mammo.detection.obuchowski_rockette import rrrc_test


@pytest.mark.parametrize("seed", range(4))
def test_each_left_out_figure_is_the_study_without_that_case(seed) -> None:
    """Cases of one image, then of two (a study of two views): each value is Chakraborty's double sum over the
    study with the case's images removed, ties and unmarked masses included."""
    study = _random_study(seed)
    rated = ratings(*_tensors(study))
    n = len(study[0])
    for cases in (torch.arange(n), torch.arange(n) // 2):
        for figure in ("wafroc", "afroc"):
            left = left_out_figures(rated, figure, cases)
            assert left.shape == (int(cases.max()) + 1,)
            for case in range(left.numel()):
                kept = [i for i in range(n) if int(cases[i]) != case]
                without = _by_definition(*copied(study, kept))
                assert float(left[case]) == pytest.approx(without[figure], abs=1e-12, nan_ok=True), (figure, case)


def test_the_test_is_the_jackknife_variance_of_the_difference() -> None:
    """Var = (K - 1) / K * the sum of squared deviations of the left-out differences; z = difference / its root;
    p two-sided normal; the interval difference +- 1.96 se."""
    left_a = torch.tensor([0.80, 0.82, 0.78, 0.85, 0.79], dtype=torch.float64)
    left_b = torch.tensor([0.70, 0.75, 0.69, 0.71, 0.74], dtype=torch.float64)
    result = frrc_test(0.81, 0.72, left_a, left_b)
    deviations = (left_a - left_b) - (left_a - left_b).mean()
    se = math.sqrt(4 / 5 * float((deviations**2).sum()))
    assert result["se"] == pytest.approx(se) and result["z"] == pytest.approx(0.09 / se)
    assert result["p"] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(0.09 / se / math.sqrt(2)))))
    assert (result["low"], result["high"]) == pytest.approx((0.09 - Z_95 * se, 0.09 + Z_95 * se))
    same = frrc_test(0.8, 0.8, left_a, left_a)  # a method against itself: no difference, p 1 (as DeLong's test)
    assert same["se"] == 0.0 and same["p"] == 1.0 and same["difference"] == 0.0
    shifted = frrc_test(0.9, 0.8, left_a + 0.1, left_a)  # the same lead without each case: no doubt left
    assert shifted["se"] == 0.0 and shifted["p"] == 0.0
    assert math.isnan(frrc_test(0.8, 0.7, left_a[:1], left_b[:1])["p"])  # one case: no variance


def test_compare_prints_the_jackknife_over_studies_beside_the_bootstrap(tmp_path, capsys) -> None:
    """``wsod report --compare A B --figure wafroc``: the jackknife leaves out whole studies (two views each here),
    its difference is the bootstrap's, and its standard error is the left-out figures' by the formula."""
    from wsod_mammo.detection.compare import load_side
    from wsod_mammo.detection.compare_afroc import paired_fom
    from wsod_mammo.detection.report_cli import main

    cam = _all_images_result({0: 0.9, 1: 0.8, 4: 0.4}, {6: 0.6, 7: 0.2})
    gradcam = _all_images_result({0: 0.9, 1: 0.85, 2: 0.7, 3: 0.7}, {6: 0.6})
    results = {(m, s): r for m, r in (("cam", cam), ("gradcam", gradcam)) for s in ("mass", "all")}
    _write_report(tmp_path / "run", results)
    _, a, _, seed = load_side("gradcam", tmp_path / "run", "all")
    _, b, _, _ = load_side("cam", tmp_path / "run", "all")
    r = paired_fom(a, b, "wafroc", seed, jackknife=True)
    assert (r["cases"], r["case"]) == (6, "study") and r["jackknife"]["difference"] == r["difference"]["value"]
    assert 0 < r["jackknife"]["p"] < 1 and r["jackknife"]["low"] < r["difference"]["value"] < r["jackknife"]["high"]
    main([str(tmp_path / "run"), "--compare", "gradcam", "cam", "--figure", "wafroc"])
    out = capsys.readouterr().out
    j = r["jackknife"]
    assert (f"  jackknife over the 6 studies (Obuchowski-Rockette, readers fixed, cases random: RJafroc's FRRC with "
            f"one reader): A - B {j['difference']:.3f} [{j['low']:.3f}, {j['high']:.3f}], z = {j['z']:.2f}, "
            f"p = {j['p']:.3f}") in out and j["p"] >= 0.001  # fmt: skip


def _density_records(extra_studies: int, seed: int) -> dict:
    """A side's image record: 8 four-view studies of DENSITY C then ``extra_studies`` of DENSITY D, the first half of
    each density's studies with a mass in views 0 and 1; one box an image, scored at random, a mass found 70% of the
    time."""
    g = torch.Generator().manual_seed(seed)
    names = ("image_keys", "study_keys", "image_gt", "density", "box_image", "box_scores", "box_tp", "box_gt")
    record: dict = {name: [] for name in (*names, "gt_image")}
    for density, first, studies in (("DENSITY C", 0, 8), ("DENSITY D", 100, extra_studies)):
        for s in range(studies):
            for view in range(4):
                image, mass = len(record["image_keys"]), s < studies // 2 and view < 2
                hit = mass and float(torch.rand(1, generator=g)) < 0.7
                record["gt_image"] += [image] if mass else []
                score = float(torch.rand(1, generator=g)) + 0.5 * mass
                found = len(record["gt_image"]) - 1 if hit else -1
                values = (1000 * (first + s) + view, first + s, int(mass), density, image, score, int(hit), found)
                for name, value in zip(names, values, strict=True):
                    record[name].append(value)
    return record


def test_a_densitys_jackknife_leaves_out_its_own_studies_alone() -> None:
    """``--compare A B --figure wafroc --density``: a study of another density never changes the figure, yet each was
    a case left out in turn, so the jackknife's (K - 1) / K and its case count grew with the test set's other
    densities (se 0.237 over its 8 studies alone, 0.251 "over 48" with 40 of DENSITY D): its own studies are its
    cases."""
    from wsod_mammo.detection.compare_afroc import paired_fom

    alone = paired_fom(_density_records(0, 1), _density_records(0, 2), "wafroc", 0, jackknife=True,
                       density="DENSITY C")  # fmt: skip
    assert alone["cases"] == 8 and 0 < alone["jackknife"]["se"]
    for extra in (10, 40):
        r = paired_fom(_density_records(extra, 1), _density_records(extra, 2), "wafroc", 0, jackknife=True,
                       density="DENSITY C")  # fmt: skip
        assert r["difference"]["value"] == pytest.approx(alone["difference"]["value"], abs=1e-12)
        assert r["cases"] == 8 and torch.equal(r["case_keys"], alone["case_keys"])
        assert torch.allclose(r["left_out"], alone["left_out"], atol=1e-12)
        for name in ("se", "z", "p"):
            assert r["jackknife"][name] == pytest.approx(alone["jackknife"][name], abs=1e-12), (extra, name)


def _null_p(seed: int, by_study: bool) -> float:
    rated, study, _ = null_study(seed)
    cases = study if by_study else torch.arange(study.numel())
    full = [float(figures_of_merit(r)["wafroc"][0]) for r in rated]
    left = [left_out_figures(r, "wafroc", cases) for r in rated]
    return frrc_test(full[0], full[1], left[0], left[1])["p"]


def test_under_the_null_the_jackknife_over_studies_rejects_at_its_level_and_over_images_too_often() -> None:
    """The bootstrap's simulated test sets (60 four-view studies, two equally good methods, a method finding or
    missing a breast's two views together): the jackknife over studies puts p below 0.05 in 6.0% of 300 (5.0% of
    200 at 240 studies; the study bootstrap 7.3% on the same 300); leaving out one image at a time, as a case of one
    image would, 11%: the views of a study are not independent cases."""
    by_study = sum(_null_p(seed, True) < 0.05 for seed in range(300)) / 300
    by_image = sum(_null_p(seed, False) < 0.05 for seed in range(300)) / 300
    assert 0.02 <= by_study <= 0.085, by_study
    assert by_image > by_study + 0.03, (by_image, by_study)


def _rrrc(full: torch.Tensor, left: torch.Tensor) -> dict[str, float]:
    """The study's test over seeds: ``left (2, J, K)``'s jackknife covariance into Obuchowski-Rockette's RRRC."""
    return rrrc_test(full, jackknife_covariance(left.reshape(-1, left.shape[2])))


def _or_by_definition(full: torch.Tensor, left: torch.Tensor) -> tuple[float, float, float]:
    """Obuchowski-Rockette's RRRC ``(F, ddf, p)`` for I treatments x J readers, entry by entry as Chakraborty's book
    writes it (ch. 10): the jackknife covariance of every (i, j), (i', j') pair averaged into Cov2 (same treatment,
    other reader) and Cov3 (other treatment, other reader), MS(T) and MS(TR) from the figures."""
    from scipy.stats import f

    treatments, readers, cases = left.shape
    cov2, cov3 = [], []
    for i in range(treatments):
        for j in range(readers):
            for i2 in range(treatments):
                for j2 in range(readers):
                    if j == j2:
                        continue
                    a, b = left[i, j], left[i2, j2]
                    value = (cases - 1) ** 2 / cases * float(((a - a.mean()) * (b - b.mean())).sum()) / (cases - 1)
                    (cov2 if i == i2 else cov3).append(value)
    mean_t, mean_r, mean = full.mean(1), full.mean(0), full.mean()
    ms_t = readers / (treatments - 1) * float(((mean_t - mean) ** 2).sum())
    residual = full - mean_t[:, None] - mean_r[None, :] + mean
    ms_tr = float((residual**2).sum()) / ((treatments - 1) * (readers - 1))
    denominator = ms_tr + readers * max(sum(cov2) / len(cov2) - sum(cov3) / len(cov3), 0.0)
    ddf = denominator**2 / (ms_tr**2 / ((treatments - 1) * (readers - 1)))
    statistic = ms_t / denominator
    return statistic, ddf, float(f.sf(statistic, treatments - 1, ddf))


def test_over_seeds_the_test_is_obuchowski_rockettes_with_readers_and_cases_random() -> None:
    """Each seed a reader of the same cases: the F test with Hillis's degrees of freedom, by its definition; its t is
    F's root, its interval the mean difference +- t(ddf) se. Without case sampling shared by the seeds (every
    left-out figure equal) it is the t-test of the per-seed differences; one seed, or a left-out figure undefined,
    gives none."""
    from scipy.stats import t, ttest_1samp

    g = torch.Generator().manual_seed(3)
    case = torch.randn(40, generator=g, dtype=torch.float64)  # shared by every seed and both methods
    own = torch.randn(2, 1, 40, generator=g, dtype=torch.float64)  # each method's, shared by its seeds
    left = 0.8 + 0.01 * (case + 0.7 * own + 0.5 * torch.randn(2, 3, 40, generator=g, dtype=torch.float64))
    full = torch.tensor([[0.84, 0.81, 0.86], [0.80, 0.79, 0.78]], dtype=torch.float64)
    result = _rrrc(full, left)
    statistic, ddf, p = _or_by_definition(full, left)
    assert result["t"] ** 2 == pytest.approx(statistic) and result["df"] == pytest.approx(ddf)
    assert result["p"] == pytest.approx(p) and result["difference"] == pytest.approx(0.14 / 3)
    half = float(t.ppf(0.975, ddf)) * result["se"]
    assert (result["low"], result["high"]) == pytest.approx((0.14 / 3 - half, 0.14 / 3 + half))
    assert ddf > 2  # the shared case sampling adds degrees of freedom to the seeds' 2
    flat = torch.full_like(left, 0.8)
    assert _rrrc(full, flat)["p"] == pytest.approx(float(ttest_1samp((full[0] - full[1]).tolist(), 0.0).pvalue))
    assert math.isnan(_rrrc(full[:, :1], left[:, :1])["p"])
    equal = torch.full((2, 3), 0.8, dtype=torch.float64)  # every seed's AUC 1 for both, say: nothing differs
    assert _rrrc(equal, flat)["p"] == 1.0 and _rrrc(equal + torch.tensor([[0.1], [0.0]]), flat)["p"] == 0.0
    undefined = left.clone()
    undefined[1, 2, 5] = math.nan
    assert math.isnan(_rrrc(full, undefined)["p"])
    assert math.isnan(_rrrc(full, left[:, :, :1])["p"])  # one case: no covariance


def _null_over_seeds(seed: int, seeds: int = 3, studies: int = 60, resamples: int = 200) -> tuple[float, ...]:
    """On :func:`null_scores_over_seeds`' test set: the RRRC p from the jackknife's covariance, from the covariance over
    ``resamples`` class-stratified bootstrap draws of whole studies (``wafroc_paired.md``'s p over seeds), and the
    t-test of the per-seed differences."""
    from scipy.stats import ttest_1samp

    from wsod_mammo.detection.afroc import Ratings
    from wsod_mammo.detection.bootstrap import bootstrap_covariance, resample_weights

    scores, study, has_mass = null_scores_over_seeds(seed, seeds, studies)
    n = study.numel()
    normal, lesion = torch.nonzero(~has_mass).flatten(), torch.nonzero(has_mass).flatten()
    weights = torch.cat([torch.ones(1, n), resample_weights(has_mass.long(), resamples, seed, torch.arange(n), study)])
    full, left = torch.zeros(2, seeds, dtype=torch.float64), torch.zeros(2, seeds, studies, dtype=torch.float64)
    drawn = torch.zeros(2, seeds, resamples, dtype=torch.float64)
    for method in range(2):
        for run in range(seeds):
            score = scores[method, run]
            rated = Ratings(normal, score[normal], lesion, score[lesion], n)
            full[method, run], drawn[method, run] = (v := figures_of_merit(rated, weights)["wafroc"])[0], v[1:]
            left[method, run] = left_out_figures(rated, "wafroc", study)
    bootstrap = rrrc_test(full, bootstrap_covariance(drawn.reshape(2 * seeds, -1)))["p"]
    return _rrrc(full, left)["p"], bootstrap, float(ttest_1samp((full[0] - full[1]).tolist(), 0.0).pvalue)


def test_under_the_null_over_seeds_obuchowski_rockette_rejects_at_its_level_and_the_t_test_over_seeds_too_often() -> (
    None
):
    """300 test sets of 60 studies, two equally good methods, three seeds each: RRRC from the jackknife's covariance
    puts p below 0.05 in 5.3% of them (4.0% of 1,000; 4.5% at 240 studies; 5.1% with 5 seeds), from the covariance
    over 200 bootstrap draws of the studies in 6.3% (5.7% over the study's 1,000 draws; 5.1% of 1,000 sets; 5.0% at
    240 studies; 5.7% with 5 seeds); the t-test of the per-seed differences, blind to what the test set's studies do
    to all seeds alike, 22% (22% of 1,000; 25% at 240 studies; 40% with 5 seeds)."""
    trials = [_null_over_seeds(seed) for seed in range(300)]
    jackknife, bootstrap, t_test = (sum(t[i] < 0.05 for t in trials) / len(trials) for i in range(3))
    assert 0.02 <= jackknife <= 0.09, jackknife
    assert 0.02 <= bootstrap <= 0.09, bootstrap
    assert t_test > jackknife + 0.1, (t_test, jackknife)


def test_one_methods_interval_over_seeds_covers_its_figure_and_the_seeds_student_t_does_not() -> None:
    """Table II's cells over seeds: one method, three seeds, 300 test sets of 60 studies (the null sets' first
    method), its wAFROC's 95% interval over the seeds and the test set (Hillis's single-treatment analysis from the
    covariance over 200 bootstrap draws of the studies) covers the figure of the whole population (a test set of
    3,000 studies, 8 runs) in 93.7% of them (93.7% over 1,000 draws; two seeds 91.3%, over 1,000 draws 93.3%; from
    the jackknife's covariance 94.7%, two seeds 94.3%); the Student-t interval of the three seeds' figures, which
    Table II gave before, in 61% (83% with two seeds)."""
    from wsod_mammo.detection.afroc import Ratings
    from wsod_mammo.detection.bootstrap import resample_weights

    def wafroc(score: torch.Tensor, has_mass: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        normal, lesion = torch.nonzero(~has_mass).flatten(), torch.nonzero(has_mass).flatten()
        return figures_of_merit(Ratings(normal, score[normal], lesion, score[lesion], score.numel()), weights)["wafroc"]

    scores, _, has_mass = null_scores_over_seeds(10_000, 8, 3000)
    truth = sum(float(wafroc(scores[0, run], has_mass)[0]) for run in range(8)) / 8
    covered = {"or": 0, "student_t": 0}
    for seed in range(300):
        scores, study, has_mass = null_scores_over_seeds(seed, 3, 60)
        n = study.numel()
        draws = resample_weights(has_mass.long(), 200, seed, torch.arange(n), study)
        values = torch.stack(
            [wafroc(scores[0, run], has_mass, torch.cat([torch.ones(1, n), draws])) for run in range(3)]
        )
        over_test_set, seeds_only = covers(values, truth)
        covered["or"] += over_test_set
        covered["student_t"] += seeds_only
    assert covered["or"] / 300 >= 0.9, covered
    assert covered["student_t"] / 300 < 0.75, covered


def _null_pointing_over_runs(seed: int, seeds: int, studies: int = 60) -> float:
    """Obuchowski-Rockette's p of ``--compare RUNS:a RUNS:b --figure pointing`` on one simulated test set where two
    methods point equally well: each image's hit shares its study's difficulty, each method's own luck on that study
    (every seed alike) and each run's bias; the covariance of every run's share over the report's draws of studies."""
    from wsod_mammo.detection.bootstrap import bootstrap_covariance, resampled_means

    generator = torch.Generator().manual_seed(seed)
    study = torch.arange(studies).repeat_interleave(2)
    shared = torch.randn(studies, generator=generator)[study] + 0.5 * torch.randn(2 * studies, generator=generator)
    hits = []
    for _ in range(2):
        luck = 0.7 * torch.randn(studies, generator=generator)[study]
        for _ in range(seeds):
            bias, noise = 0.3 * torch.randn(1, generator=generator), 0.5 * torch.randn(2 * studies, generator=generator)
            hits.append(((0.5 + shared + luck + bias + noise) > 0).double())
    drawn = torch.stack(resampled_means(hits, torch.arange(2 * studies), study, seed))
    return rrrc_test(torch.stack(hits).mean(1).reshape(2, seeds), bootstrap_covariance(drawn))["p"]


@pytest.mark.parametrize(("seeds", "most"), [(3, 0.11), (5, 0.08)])
def test_under_the_null_the_pointing_game_over_runs_rejects_near_its_level(seeds: int, most: float) -> None:
    """300 test sets of 60 two-view studies where two methods point equally well: the pointing game's test over
    runs puts p below 0.05 in 8.0% of them with three runs a side (7.6% of 1,000; 7.0% at 240 studies), 4.3% with five
    (5.0% of 1,000); with two runs a side in 12.3% (11.6% of 1,000, the jackknife's covariance 11.2%): Hillis's
    degrees of freedom rest on one degree of freedom of the runs' interaction there, so compare three seeds or more."""
    rejected = sum(_null_pointing_over_runs(seed, seeds) < 0.05 for seed in range(300)) / 300
    assert 0.02 <= rejected <= most, rejected


def _null_tpr_over_runs(seed: int, seeds: int, studies: int = 60) -> float:
    """Obuchowski-Rockette's p of ``--compare RUNS:a RUNS:b`` (Table II's TPR at FPPI <= 1) on one simulated test set
    where two methods find masses equally well: two-view studies, 40% with a mass in each view; each run puts a box on
    each mass, scored by the study's difficulty, its method's luck on the study (every seed alike), its own bias and
    noise, a hit where that score is positive, and Poisson(1) false positives on every image."""
    from wsod_mammo.detection.bootstrap import bootstrap_covariance
    from wsod_mammo.detection.compare import resampled_tprs

    generator = torch.Generator().manual_seed(seed)
    study = torch.arange(studies).repeat_interleave(2)
    positive = (torch.rand(studies, generator=generator) < 0.4)[study]
    shared = torch.randn(studies, generator=generator)[study] + 0.5 * torch.randn(2 * studies, generator=generator)
    records = []
    for _ in range(2):
        luck = 0.7 * torch.randn(studies, generator=generator)[study]
        for _ in range(seeds):
            bias = 0.3 * torch.randn(1, generator=generator)
            latent = 0.3 + shared + luck + bias + 0.5 * torch.randn(2 * studies, generator=generator)
            false = torch.poisson(torch.ones(2 * studies), generator=generator).long()  # (N,) per image
            false_image = torch.repeat_interleave(torch.arange(2 * studies), false)
            false_score = torch.sigmoid(torch.randn(false_image.numel(), generator=generator) - 0.5 + bias)
            mass = torch.nonzero(positive).flatten()
            records.append({"image_keys": list(range(2 * studies)), "study_keys": study.tolist(),
                            "image_gt": positive.long().tolist(),
                            "box_image": [*mass.tolist(), *false_image.tolist()],
                            "box_scores": [*torch.sigmoid(latent[mass]).tolist(), *false_score.tolist()],
                            "box_tp": [*(latent[mass] > 0).long().tolist(), *[0] * false_image.numel()]})  # fmt: skip
    values = resampled_tprs(records, 1.0, seed, [str(i) for i in range(len(records))])  # (2 x runs, 1 + B)
    return rrrc_test(values[:, 0].reshape(2, seeds), bootstrap_covariance(values[:, 1:]))["p"]


def test_under_the_null_table2s_tpr_over_runs_rejects_near_its_level() -> None:
    """300 test sets of 60 two-view studies where two methods find masses equally well, three runs a side: the TPR's
    test over runs (``--compare RUNS:a RUNS:b``) puts p below 0.05 in 6.0% of them (6.2% of 1,000; two runs a
    side 10.5% of 1,000, five 6.7% of 300: two runs a side lean liberal, as the pointing game's)."""
    rejected = sum(_null_tpr_over_runs(seed, 3) < 0.05 for seed in range(300)) / 300
    assert 0.02 <= rejected <= 0.11, rejected


def _null_brier_over_runs(seed: int, seeds: int, studies: int = 60) -> float:
    """Obuchowski-Rockette's p of the Brier scores of ``--compare RUNS:fusion RUNS:fusion`` on one simulated test set
    where two training configurations' heads are equally good: two-view studies, 40% with a mass in both views; each
    run's probability of an image separates by the study's difficulty, its configuration's luck on the study (every
    seed alike), its own bias and noise."""
    from wsod_mammo.detection.bootstrap import bootstrap_covariance
    from wsod_mammo.detection.study_paired import seeds_brier_draws

    generator = torch.Generator().manual_seed(seed)
    study = torch.arange(studies).repeat_interleave(2)
    positive = (torch.rand(studies, generator=generator) < 0.4)[study].double()
    shared = torch.randn(studies, generator=generator)[study] + 0.5 * torch.randn(2 * studies, generator=generator)
    sides = []
    for _ in range(2):
        luck = 0.7 * torch.randn(studies, generator=generator)[study]
        for _ in range(seeds):
            bias, noise = 0.3 * torch.randn(1, generator=generator), 0.5 * torch.randn(2 * studies, generator=generator)
            latent = (2 * positive - 1) * (1.0 + shared + luck) + bias + noise
            sides.append({"image_keys": list(range(2 * studies)), "study_keys": study.tolist(),
                          "target": positive.tolist(), "probabilities": torch.sigmoid(latent).tolist()})  # fmt: skip
    values = seeds_brier_draws(list(zip(sides[:seeds], sides[seeds:], strict=True)), seed)  # (2 x runs, 1 + B)
    return rrrc_test(values[:, 0].reshape(2, seeds), bootstrap_covariance(values[:, 1:]))["p"]


def test_under_the_null_the_brier_score_over_runs_rejects_near_its_level() -> None:
    """300 test sets of 60 two-view studies where two configurations' probabilities are equally good, three runs a
    side: the Brier score's test over runs puts p below 0.05 in 6.0% of them (5.7% of 1,000; two runs a side 5.9%,
    five 4.8% of 1,000). Drawn image by image instead of by study, 13.3% of 300: the draws must keep a study's views
    together."""
    rejected = sum(_null_brier_over_runs(seed, 3) < 0.05 for seed in range(300)) / 300
    assert 0.02 <= rejected <= 0.1, rejected


def covers(values: torch.Tensor, truth: float) -> tuple[bool, bool]:
    """Whether the interval over the seeds and the test set of ``values (seeds, 1 + B)`` (full sample, then the
    shared draws) covers ``truth``, and whether the Student-t interval of the seeds' figures does."""
    from wsod_mammo.detection.bootstrap import bootstrap_covariance
    from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
    from wsod_mammo.detection.study_tables import seed_interval

    over = single_treatment_interval(values[:, 0], bootstrap_covariance(values[:, 1:]))
    seeds_only = seed_interval(values[:, 0].tolist())
    return over["low"] <= truth <= over["high"], seeds_only.low <= truth <= seeds_only.high
