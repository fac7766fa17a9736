"""The study's Obuchowski-Rockette analyses against a published one: Van Dyke et al.'s cine vs spin-echo MRI study
(5 readers, 114 cases of which 45 diseased, ratings 1-5; RJafroc's ``dataset02``, MRMCaov's ``VanDyke``), as Smith,
Hillis and Pesce's MRMCaov article reports its empirical-AUC analyses (docs/jss, "Covariance Estimation Methods" and
"Fixed Factors"). Every expected figure below is theirs; none is computed here by another route.

A ROC study is a wAFROC one with a single lesion per diseased case rated at the case's rating: its wAFROC is then the
Wilcoxon AUC, so the same data checks the jackknife path of ``wafroc_paired.md`` (``left_out_figures``,
``jackknife_covariance``, ``frrc_test``, ``rrrc_test``) and the DeLong path of ``table1_paired.md``
(``auc_covariance``, ``rrrc_test``).
"""

from __future__ import annotations

import pytest
import torch

from wsod_mammo.detection.afroc import Ratings, figures_of_merit
from wsod_mammo.detection.delong import auc_covariance
from wsod_mammo.detection.jackknife import frrc_test, jackknife_covariance, left_out_figures
from wsod_mammo.detection.obuchowski_rockette import rrrc_test, single_treatment_interval

# Each reader's ratings of the 69 non-diseased cases then the 45 diseased ones, per treatment (1: cine MRI, 2: spin
# echo), in case order; transcribed from RJafroc's inst/extdata/datasets/VD.lrc (Van Dyke et al., RSNA 1993).
VAN_DYKE = {
    1: [
        "122151111111411111111131311214111113121211233131133111111221111332111555545554555434245555555154454553555115554451",
        "232222222322522232222222422223222222222222222222222222222432232222222535555542555442225555555243354552425225555352",
        "222235112242422232221232411322112224121412112222223211211221151421212545555555555542355555555252255552555225555552",
        "111111311111111111112111211112111111111111111111331111111111111311111555555555555555155555555554544553555125555555",
        "351211112221211122113221111211211231221113332111211111111341231212113525255551545452235555554144322151515115553552",
    ],
    2: [
        "333222223213122222211111421312214323123122233111333113412421241442111535555554555544335555555355355554455535555551",
        "322222223222222122221222322222212212222231223222222222322322222222122535555552555344245455545252355532425525555552",
        "242222322211132222121121411512112122212221132111233113221232341242121525555555555354145555555253355543555534555551",
        "221111312111122111211111321212111122112111112121212211111212111323211545555554555455555555555455445555555535555555",
        "223122221222111222122212322321212222112121132122332122221222231233111525455555455343335555555251332532545533555553",
    ],
}
NORMAL_CASES = 69


def _scores() -> torch.Tensor:
    """``(10, 114)``: the ratings, treatment-major (treatment 1's five readers, then treatment 2's)."""
    return torch.tensor([[float(c) for c in row] for t in (1, 2) for row in VAN_DYKE[t]], dtype=torch.float64)


def _ratings(score: torch.Tensor) -> Ratings:
    normal, diseased = torch.arange(NORMAL_CASES), torch.arange(NORMAL_CASES, score.numel())
    return Ratings(normal, score[normal], diseased, score[diseased], score.numel())


def _block_means(covariance: torch.Tensor) -> dict[str, float]:
    """Obuchowski-Rockette's Var, Cov1 (same reader, other treatment), Cov2 (other reader, same treatment) and Cov3
    (both other) of a treatment-major ``(10, 10)`` covariance."""
    index = torch.arange(10)
    treatment, reader = index // 5, index % 5
    same_t, same_r = treatment[:, None] == treatment[None, :], reader[:, None] == reader[None, :]
    blocks = {"var": same_t & same_r, "cov1": ~same_t & same_r, "cov2": same_t & ~same_r, "cov3": ~same_t & ~same_r}
    return {name: float(covariance[mask].mean()) for name, mask in blocks.items()}


def test_each_readers_auc_is_the_published_one() -> None:
    auc = torch.stack([figures_of_merit(_ratings(score))["wafroc"][0] for score in _scores()])
    published = [0.9196457, 0.8587762, 0.9038647, 0.9731079, 0.8297907, 0.9478261, 0.9053140, 0.9217391, 0.9993559,
                 0.9299517]  # fmt: skip
    torch.testing.assert_close(auc, torch.tensor(published, dtype=torch.float64), rtol=0, atol=5e-8)


def test_rrrc_from_delongs_covariance_is_mrmcaovs() -> None:
    """``table1_paired.md``'s path: MRMCaov's ``mrmc(empirical_auc(...), cov = DeLong)``: F 4.484854 on 1 and
    15.06611 degrees of freedom, p 0.05123303, treatment 1 - 2 = -0.04380032 (SE 0.0206825) [-0.0878672, +0.0002666]."""
    scores = _scores()
    target = (torch.arange(scores.shape[1]) >= NORMAL_CASES).double()
    auc, covariance = auc_covariance(scores, target)
    blocks = _block_means(covariance)
    published = {"var": 0.0007921325, "cov1": 0.0003420090, "cov2": 0.0003395265, "cov3": 0.0002358497}
    assert blocks == pytest.approx(published, rel=1e-6)
    result = rrrc_test(auc.reshape(2, 5), covariance)
    assert result["t"] ** 2 == pytest.approx(4.484854, rel=1e-6) and result["df"] == pytest.approx(15.06611, rel=1e-6)
    assert result["p"] == pytest.approx(0.05123303, rel=1e-6)
    assert result["difference"] == pytest.approx(-0.04380032, rel=1e-6)
    assert result["se"] == pytest.approx(0.0206825, rel=1e-5)
    assert (result["low"], result["high"]) == pytest.approx((-0.0878671960, 0.0002665519), rel=1e-5)


def test_the_jackknifes_covariance_and_its_tests_are_mrmcaovs() -> None:
    """``wafroc_paired.md``'s path, each case left out of the figure of merit: MRMCaov's jackknife Var, Cov1, Cov2 and
    Cov3, its fixed-reader test of reader 1 (-0.02818035, SE 0.02551213, p 0.26933885) and the random-reader
    random-case F, MS(T) / (MS(T:R) + J max(Cov2 - Cov3, 0)) from its published mean squares and covariances."""
    scores = _scores()
    full, left = [], []
    for score in scores:
        rated = _ratings(score)
        full.append(figures_of_merit(rated)["wafroc"][0])
        left.append(left_out_figures(rated, "wafroc", torch.arange(score.numel())))
    full_t, left_t = torch.stack(full), torch.stack(left)
    published = {"var": 0.0008022883, "cov1": 0.0003466137, "cov2": 0.0003440748, "cov3": 0.0002390284}
    assert _block_means(jackknife_covariance(left_t)) == pytest.approx(published, rel=1e-6)
    reader_1 = frrc_test(float(full_t[0]), float(full_t[5]), left_t[0], left_t[5])
    assert reader_1["difference"] == pytest.approx(-0.02818035, rel=1e-6)
    assert reader_1["se"] == pytest.approx(0.02551213, rel=1e-6)
    assert reader_1["p"] == pytest.approx(0.26933885, rel=1e-5)
    assert (reader_1["low"], reader_1["high"]) == pytest.approx((-0.078183215, 0.021822507), rel=1e-5)
    ms_t, ms_tr = 0.004796171, 0.0005510306  # MRMCaov's ANOVA of the same AUCs
    denominator = ms_tr + 5 * (published["cov2"] - published["cov3"])
    result = rrrc_test(full_t.reshape(2, 5), jackknife_covariance(left_t))
    assert result["t"] ** 2 == pytest.approx(ms_t / denominator, rel=1e-5)  # 4.456, as RJafroc prints for dataset02
    assert result["df"] == pytest.approx(denominator**2 * 4 / ms_tr**2, rel=1e-5)  # 15.26


def test_each_treatments_interval_from_delongs_covariance_is_mrmcaovs() -> None:
    """The study's Table II cells over seeds: one method's figure averaged over readers with its own interval
    (MRMCaov: "95% treatment empirical_auc CIs, each analysis based only on data for the specified treatment", with
    DeLong's covariance): treatment 1 0.8970370 (SE 0.03307642, 12.59597 degrees of freedom) [0.8253461, 0.9687280],
    treatment 2 0.9408374 (SE 0.02150464, 12.56530) [0.8942155, 0.9874592]."""
    scores = _scores()
    target = (torch.arange(scores.shape[1]) >= NORMAL_CASES).double()
    published = {1: (0.8970370, 0.03307642, 12.59597, 0.8253461, 0.9687280),
                 2: (0.9408374, 0.02150464, 12.56530, 0.8942155, 0.9874592)}  # fmt: skip
    for treatment, rows in ((1, slice(0, 5)), (2, slice(5, 10))):
        auc, covariance = auc_covariance(scores[rows], target)
        result = single_treatment_interval(auc, covariance)
        keys = ("estimate", "se", "df", "low", "high")
        assert tuple(result[k] for k in keys) == pytest.approx(published[treatment], rel=2e-6), treatment


def test_seeds_that_agree_exactly_up_to_rounding_are_seeds_that_agree_exactly() -> None:
    """0.3 - 0.1 and 0.7 - 0.5 differ by 2e-17 in float64: MS(TR) was that rounding squared, and the test printed
    t = 1e16 on 1 degree of freedom (a bootstrap covariance of 0) or t = 6.32 on 7e60 (a positive one), where
    differences that agree exactly give t = inf, or t = 6.32 on infinite degrees of freedom."""
    full = torch.tensor([[0.3, 0.7], [0.1, 0.5]], dtype=torch.float64)
    alone = rrrc_test(full, torch.zeros(4, 4, dtype=torch.float64))
    assert (alone["se"], alone["df"], alone["t"], alone["p"]) == (0.0, float("inf"), float("inf"), 0.0)
    covariance = torch.full((4, 4), 0.001, dtype=torch.float64)
    covariance[:2, 2:] = covariance[2:, :2] = 0.0005
    shared = rrrc_test(full, covariance)
    assert shared["df"] == float("inf") and shared["t"] == pytest.approx(6.3246, abs=1e-4)
    single = single_treatment_interval(torch.tensor([0.1 + 0.2, 0.3], dtype=torch.float64), torch.zeros(2, 2))
    assert (single["se"], single["df"]) == (0.0, float("inf"))
