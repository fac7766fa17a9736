"""DeLong's test of two correlated AUCs and its clustered form (Obuchowski 1997), against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from wsod_mammo.detection.bootstrap import classification_figures
from wsod_mammo.detection.delong import auc_covariance, paired_test, placements


def _psi(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """(M, N) Mann-Whitney kernel: 1 where the positive outranks the negative, 1/2 on a tie."""
    x, y = scores[positive][:, None], scores[~positive][None, :]
    return (x > y).double() + 0.5 * (x == y).double()


def _delong_by_definition(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """DeLong et al. (1988)'s covariance written out from the kernel matrices, one scorer per row of ``scores``."""
    v10 = torch.stack([_psi(s, positive).mean(1) for s in scores])
    v01 = torch.stack([_psi(s, positive).mean(0) for s in scores])
    s10 = torch.cov(v10, correction=1).reshape(len(scores), len(scores))
    s01 = torch.cov(v01, correction=1).reshape(len(scores), len(scores))
    return s10 / v10.shape[1] + s01 / v01.shape[1]


def _tied_scores(generator: torch.Generator, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    target = (torch.rand(n, generator=generator) < 0.4).double()
    target[:2] = torch.tensor([0.0, 1.0])
    scores = torch.randint(0, 6, (2, n), generator=generator).double() + target  # coarse: many ties
    return scores, target


def test_placements_are_the_kernel_means_and_average_to_the_auc_the_bootstrap_counts() -> None:
    scores, target = _tied_scores(torch.Generator().manual_seed(0))
    positive = target > 0.5
    v10, v01 = placements(scores[0], target)
    torch.testing.assert_close(v10, _psi(scores[0], positive).mean(1))
    torch.testing.assert_close(v01, _psi(scores[0], positive).mean(0))
    auc_bootstrap = classification_figures(torch.ones(1, target.numel()), scores[0], target)["auc"][0]
    assert float(v10.mean()) == pytest.approx(float(auc_bootstrap), abs=1e-6)
    assert float(v01.mean()) == pytest.approx(float(v10.mean()), abs=1e-12)


def test_without_clusters_the_covariance_is_delongs() -> None:
    scores, target = _tied_scores(torch.Generator().manual_seed(1))
    auc, covariance = auc_covariance(scores, target)
    torch.testing.assert_close(covariance, _delong_by_definition(scores, target > 0.5))
    torch.testing.assert_close(auc, torch.stack([_psi(s, target > 0.5).mean() for s in scores]))


def test_one_image_per_cluster_is_delong_whatever_the_cluster_ids() -> None:
    scores, target = _tied_scores(torch.Generator().manual_seed(2))
    ids = torch.randperm(target.numel(), generator=torch.Generator().manual_seed(3)) * 7 + 100
    torch.testing.assert_close(auc_covariance(scores, target, ids)[1], auc_covariance(scores, target)[1])


def test_clustered_variance_ignores_copies_of_an_image_where_delong_halves_it() -> None:
    """Two views rated alike carry one image's evidence: Obuchowski's variance of the doubled set, clustered by the
    original image, is the original's exactly; DeLong's, treating the copies as independent, about halves."""
    scores, target = _tied_scores(torch.Generator().manual_seed(4))
    doubled_scores, doubled_target = scores.repeat(1, 2), target.repeat(2)
    original = torch.arange(target.numel()).repeat(2)
    _, alone = auc_covariance(scores, target)
    _, clustered = auc_covariance(doubled_scores, doubled_target, original)
    _, naive = auc_covariance(doubled_scores, doubled_target)
    torch.testing.assert_close(clustered, alone)
    assert float(naive[0, 0] / alone[0, 0]) < 0.55


def _obuchowski_by_definition(scores: torch.Tensor, positive: torch.Tensor, clusters: list[int]) -> torch.Tensor:
    """Obuchowski (1997)'s variance of one scorer written out cluster by cluster, as the paper states it."""
    psi = _psi(scores, positive)
    v10, v01 = psi.mean(1).tolist(), psi.mean(0).tolist()
    auc = float(psi.mean())
    pos_clusters = [c for c, p in zip(clusters, positive.tolist(), strict=True) if p]
    neg_clusters = [c for c, p in zip(clusters, positive.tolist(), strict=True) if not p]
    ids = sorted(set(clusters))
    x = [sum(v for v, c in zip(v10, pos_clusters, strict=True) if c == i) for i in ids]
    y = [sum(v for v, c in zip(v01, neg_clusters, strict=True) if c == i) for i in ids]
    m = [pos_clusters.count(i) for i in ids]
    n = [neg_clusters.count(i) for i in ids]
    big_m, big_n, i10, i01, big_i = sum(m), sum(n), sum(k > 0 for k in m), sum(k > 0 for k in n), len(ids)
    s10 = i10 / ((i10 - 1) * big_m) * sum((xi - mi * auc) ** 2 for xi, mi in zip(x, m, strict=True))
    s01 = i01 / ((i01 - 1) * big_n) * sum((yi - ni * auc) ** 2 for yi, ni in zip(y, n, strict=True))
    s11 = (
        big_i / (big_i - 1) * sum((xi - mi * auc) * (yi - ni * auc) for xi, mi, yi, ni in zip(x, m, y, n, strict=True))
    )
    return torch.tensor(s10 / big_m + s01 / big_n + 2 * s11 / (big_m * big_n), dtype=torch.float64)


def test_clusters_holding_both_classes_follow_obuchowskis_definition() -> None:
    """A VinDr study holds a breast with a mass and a normal one: its positives' and negatives' components covary
    (Obuchowski's S11 term), and a scorer's covariance with itself is that variance."""
    generator = torch.Generator().manual_seed(7)
    a, b, target, studies = _mixed_studies(generator)
    _, covariance = auc_covariance(torch.stack([a, b]), target, studies)
    for k, scores in enumerate((a, b)):
        expected = _obuchowski_by_definition(scores, target > 0.5, studies.tolist())
        torch.testing.assert_close(covariance[k, k], expected)
    assert bool(torch.isclose(covariance, covariance.T).all())


def test_hanley_and_mcneils_ratings_give_their_published_auc() -> None:
    """Hanley & McNeil (Radiology 1982), 109 CT images rated 1-5: AUC 0.893, standard error 0.032 by their
    approximation (DeLong's estimate lies close to it)."""
    rating = torch.arange(1, 6)
    normal, abnormal = torch.tensor([33, 6, 6, 11, 2]), torch.tensor([3, 2, 2, 11, 33])
    scores = torch.cat([rating.repeat_interleave(normal), rating.repeat_interleave(abnormal)]).double()
    target = torch.cat([torch.zeros(int(normal.sum())), torch.ones(int(abnormal.sum()))])
    auc, covariance = auc_covariance(scores, target)
    assert float(auc[0]) == pytest.approx(0.893, abs=5e-4)
    assert math.sqrt(float(covariance[0, 0])) == pytest.approx(0.032, abs=0.003)


def _null_studies(generator: torch.Generator, studies: int = 60, views: int = 4) -> tuple:
    """Two equally good scorers over studies of ``views`` images sharing a label; each scorer errs alike on all the
    images of a study (a study-level effect of its own), as a classifier rates the views of one breast alike."""
    label = (torch.rand(studies, generator=generator) < 0.4).double()
    label[:2] = torch.tensor([0.0, 1.0])
    target = label.repeat_interleave(views)
    effects = torch.randn(2, studies, generator=generator).repeat_interleave(views, dim=1)
    scores = target + effects + 0.3 * torch.randn(2, studies * views, generator=generator)
    return scores[0], scores[1], target, torch.arange(studies).repeat_interleave(views)


def _mixed_studies(generator: torch.Generator, studies: int = 60) -> tuple:
    """Studies of two breasts x two views, a breast with a mass at random: the scorers' study and breast effects are
    shared by images of both classes (as VinDr's exams are)."""
    label = (torch.rand(studies, 2, generator=generator) < 0.3).double()
    label[0] = torch.tensor([1.0, 0.0])
    target = label.repeat_interleave(2, dim=1).reshape(-1)
    study = torch.randn(2, studies, generator=generator).repeat_interleave(4, dim=1)
    breast = torch.randn(2, studies * 2, generator=generator).repeat_interleave(2, dim=1)
    scores = target + study + 0.7 * breast + 0.3 * torch.randn(2, studies * 4, generator=generator)
    return scores[0], scores[1], target, torch.arange(studies).repeat_interleave(4)


@pytest.mark.parametrize("make_studies", [_null_studies, _mixed_studies], ids=["one label a study", "mixed studies"])
def test_under_the_null_the_clustered_test_keeps_its_size_where_delongs_is_too_eager(make_studies) -> None:
    generator = torch.Generator().manual_seed(5)
    rejected = {"clustered": 0, "naive": 0}
    trials = 300
    for _ in range(trials):
        a, b, target, studies = make_studies(generator)
        rejected["clustered"] += paired_test(a, b, target, studies)["p"] < 0.05
        rejected["naive"] += paired_test(a, b, target)["p"] < 0.05
    assert 0.02 <= rejected["clustered"] / trials <= 0.09, rejected
    assert rejected["naive"] / trials > 0.12, rejected


def test_paired_test_of_a_real_difference_and_of_identical_ratings() -> None:
    generator = torch.Generator().manual_seed(6)
    target = (torch.rand(400, generator=generator) < 0.5).double()
    good = target + 0.5 * torch.randn(400, generator=generator)
    poor = target + 2.0 * torch.randn(400, generator=generator)
    result = paired_test(good, poor, target)
    assert result["difference"] > 0.1 and result["p"] < 1e-4 and result["low"] < result["difference"] < result["high"]
    assert result["z"] == pytest.approx(result["difference"] / result["se"])
    same = paired_test(good, good, target)
    assert (same["difference"], same["se"], same["p"]) == (0.0, 0.0, 1.0)


def test_undefined_where_a_class_or_its_spread_is_missing() -> None:
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    result = paired_test(torch.tensor([0.9, 0.1, 0.2, 0.3]), torch.tensor([0.5, 0.1, 0.6, 0.3]), target)
    assert result["difference"] == pytest.approx(1 / 3) and math.isnan(result["p"]) and math.isnan(result["se"])
    auc, covariance = auc_covariance(torch.tensor([[0.1, 0.2]]), torch.tensor([0.0, 0.0]))
    assert math.isnan(float(auc[0])) and bool(torch.isnan(covariance).all())
