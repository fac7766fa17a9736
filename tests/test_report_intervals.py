"""The test report's FPPI interval and --compare's seed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from wsod_mammo.detection.compare import load_side, paired_bootstrap
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.training.test_report import detection_intervals, write_test_report

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


def test_the_fppi_interval_is_that_of_the_operating_point() -> None:
    result = _result()
    assert (result.per_threshold[0].tpr, result.per_threshold[0].fppi) == (1.0, 1.0)
    assert detection_intervals(result, 1.0, seed=0)["fppi"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_compare_redraws_a_reports_interval_with_the_reports_own_seed(tmp_path) -> None:
    missed = (0, 3, 5)  # TPR 5/8: the resamples vary, so the seed shows in the interval
    results = {("cam", "mass"): _result(True, missed), ("cam", "all"): _result(False, missed)}
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(
        train_saliency=SimpleNamespace(name="cam"),
        detection_thresholds={"cam": 0.5},
        nyu_weights_as_is=None,
        trained_in_process=True,
    )
    write_test_report(tmp_path, trainer, module, results, {}, fppi_budget=1.0, seed=7)
    reported = json.loads((tmp_path / "detection.json").read_text())["mass"]["cam"]["intervals"]["tpr"]
    _, records, budget, seed = load_side("cam", tmp_path, "mass")
    assert seed == 7
    assert paired_bootstrap(records, records, budget, seed)["a"] == pytest.approx(reported, nan_ok=True)
