"""Predict rows keep their own model outputs; overlays use the report's thresholds/quota."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from wsod_mammo.data.geometry import Geometry
from wsod_mammo.training.callbacks import DetectionMetrics, SaliencyOverlays, unvalidated_threshold
from wsod_mammo.training.predict import batch_predictions


def test_a_readable_image_after_an_unreadable_one_gets_its_own_outputs() -> None:
    """A batch [unreadable, readable]: the readable file's probability and map are the model's row 1, not row 0."""
    geometry = Geometry(32, 16, False, (0, 0, 16, 32), 32, 16).to_dict()
    metas = [
        {"path": "bad.dcm", "error": "bad.dcm: not a DICOM", "geometry": geometry},
        {"path": "good.dcm", "error": None, "geometry": geometry, "laterality": "L", "laterality_source": "dicom"},
    ]
    maps = torch.zeros(2, 1, 4, 2)
    maps[1, 0, 1, 1] = 1.0  # a hot cell only in the readable image's map
    prediction = {"method": "cam", "threshold": 0.5, "probabilities": torch.tensor([[0.1], [0.9]]), "maps": maps}
    batch = {"meta": metas, "image": torch.zeros(2, 1, 32, 16)}
    failed, made = batch_predictions(prediction, batch)
    assert failed.error and not made.error
    assert abs(made.probability - 0.9) < 1e-6 and len(made.boxes) == 1


def test_overlays_of_unvalidated_methods_use_the_configured_default_threshold() -> None:
    """The test report counts such a method's boxes at DetectionMetrics(default_threshold); overlays must draw those."""
    trainer = SimpleNamespace(callbacks=[DetectionMetrics(default_threshold=0.8)])
    assert unvalidated_threshold(trainer) == 0.8


def test_an_odd_number_of_overlays_rounds_the_positive_half_up() -> None:
    overlays = SaliencyOverlays(num_images=3)
    overlays._drawn = {True: 0, False: 0}
    assert overlays._pick(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])) == [0, 1, 3]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DetectionMetrics(thresholds=[]), r"^DetectionMetrics.thresholds: expected at least one threshold"),
        (lambda: DetectionMetrics(thresholds=[0.5, float("nan")]), r"^DetectionMetrics.thresholds: expected values"),
        (lambda: DetectionMetrics(default_threshold=2.0), r"^DetectionMetrics.default_threshold: expected one in"),
        (lambda: DetectionMetrics(iou_threshold=1.0), r"^DetectionMetrics.iou_threshold: expected a number in"),
        (lambda: DetectionMetrics(fppi_budget=float("inf")), r"^DetectionMetrics.fppi_budget: expected a finite"),
        (lambda: DetectionMetrics(class_index=-1), r"^DetectionMetrics.class_index: expected 0 or more"),
        (lambda: SaliencyOverlays(class_index=-1), r"^SaliencyOverlays.class_index: expected 0 or more"),
        (lambda: SaliencyOverlays(num_images=-2), r"^SaliencyOverlays.num_images: expected a number >= 0"),
    ],
)  # fmt: skip
def test_callback_options_out_of_range_are_refused_when_made(make, match: str) -> None:
    """``thresholds: []`` fell back to the default grid without a word; the others were taken as given."""
    with pytest.raises(ValueError, match=match):
        make()


def test_a_class_index_the_model_lacks_is_refused_at_setup_outside_the_cli() -> None:
    """A Trainer built in Python has no config check: the callbacks refuse at setup, before a training epoch."""
    module = SimpleNamespace(model=SimpleNamespace(num_classes=2), request_saliency_maps=lambda methods: None,
                             test_saliency=["cam"])  # fmt: skip
    DetectionMetrics(class_index=1).setup(None, module, "fit")
    with pytest.raises(ValueError, match=r"^DetectionMetrics.class_index: 2, but the model has 2 output class\(es\)"):
        DetectionMetrics(class_index=2).setup(None, module, "fit")
    with pytest.raises(ValueError, match=r"^SaliencyOverlays.class_index: 5, but the model has 2 output"):
        SaliencyOverlays(class_index=5).setup(None, module, "test")


@pytest.mark.parametrize("rank_zero", [True, False])
def test_the_test_says_unvalidated_and_tied_thresholds_in_one_line_each_on_rank_zero(
    rank_zero: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod test --ckpt_path untrained` under 2-process DDP printed "<method>: no threshold validated ..." ten
    times, once a method and rank; the tied thresholds' line came once a method. Now one line each, on rank 0."""
    module = SimpleNamespace(detection_thresholds={"xgradcam": 0.1, "layercam": 0.1, "gradcampp": 0.4},
                             tied_thresholds={"xgradcam", "layercam"}, device=torch.device("cpu"),
                             test_saliency=["cam", "gradcam", "gradcampp", "xgradcam", "layercam"])  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=rank_zero)
    DetectionMetrics(default_threshold=0.5).on_test_epoch_start(trainer, module)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("wsod_mammo")]
    if not rank_zero:
        assert said == []
        return
    assert said == [
        "cam, gradcam: no threshold validated for this checkpoint, using 0.5",
        "xgradcam, layercam: their thresholds 0.1 were validated from a tie at TPR 0 (no threshold of the grid found "
        "a mass in validation): not a choice; the report marks them TIED",
    ]


def test_a_threshold_chosen_from_a_tie_at_tpr_zero_is_said_once_a_run(caplog: pytest.LogCaptureFixture) -> None:
    """Maps hot only off the mass: every threshold of the grid scores TPR 0, and validation kept the first of the
    tie as if it had chosen it. The one that finds the mass at some threshold is not warned about."""
    from wsod_mammo.detection.metrics import DetectionMetric

    def metric(on_mass: bool) -> DetectionMetric:
        made = DetectionMetric(thresholds=(0.3, 0.6), pointing_tolerance=0.0)
        maps = torch.zeros(1, 20, 20)
        maps[0, 12:16, 12:16] = 1.0  # off the mass
        maps[0, 2:8, 2:8] = 0.5 if on_mass else 0.0
        made.update(maps, torch.tensor([0.9]), [torch.tensor([[2.0, 2.0, 8.0, 8.0]])], torch.tensor([1]), (20, 20))
        return made

    callback = DetectionMetrics(thresholds=[0.3, 0.6])
    logged: dict[str, float] = {}
    module = SimpleNamespace(detection_thresholds={}, tied_thresholds=set(),
                             log=lambda name, value, **_: logged.__setitem__(name, value))  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=3)
    for _ in range(2):
        callback._metrics = {("blind", "mass"): metric(False), ("seeing", "mass"): metric(True)}
        callback.on_validation_epoch_end(trainer, module)
    tied = [r.getMessage() for r in caplog.records if "first of a tie" in r.getMessage()]
    assert len(tied) == 1 and tied[0].startswith("validation: blind finds none of the 1 masses at FPPI <= 1 ")
    assert "(TPR 0 at each, epoch 3): its threshold 0.3 is the first of a tie" in tied[0]
    assert module.detection_thresholds == {"blind": 0.3, "seeing": 0.3} and module.tied_thresholds == {"blind"}
    assert logged["val/detection/seeing/tpr@fppi1"] == 1.0 and logged["val/detection/blind/tpr@fppi1"] == 0.0
    # threshold-free, per epoch: both maps peak off the mass; only the seeing one puts energy on it
    assert logged["val/pointing/seeing/hit"] == logged["val/pointing/blind/hit"] == 0.0
    assert logged["val/pointing/blind/energy"] == 0.0 < logged["val/pointing/seeing/energy"] < 1.0
    caplog.clear()
    callback = DetectionMetrics(thresholds=[0.3, 0.6])  # another run: several methods tied say so in one line
    callback._metrics = {(name, "mass"): metric(False) for name in ("cam", "gradcam")}
    callback.on_validation_epoch_end(trainer, module)
    (both,) = [r.getMessage() for r in caplog.records if "first of a tie" in r.getMessage()]
    assert both.startswith("validation: cam, gradcam find none of the 1 masses") and "their threshold 0.3" in both
