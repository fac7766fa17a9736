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
