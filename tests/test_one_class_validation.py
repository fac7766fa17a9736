"""A validation split with images of one class only: AUROC is undefined there, logged as NaN (not torchmetrics'
0.0), said once, and best.ckpt then follows the newest epoch (unless an earlier one had an AUROC)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import Trainer
from torchmetrics.functional.classification import binary_auroc

from wsod_mammo.models import GMIC
from wsod_mammo.training.checkpoints import BestCheckpoint
from wsod_mammo.training.classification import classification_metrics
from wsod_mammo.training.module import GMICLitModule


@pytest.mark.parametrize("label", [0, 1])
def test_the_auroc_of_images_of_one_class_is_nan_and_the_other_figures_stay(label: int) -> None:
    metrics = classification_metrics(num_classes=1)
    metrics.update(torch.tensor([0.9, 0.2, 0.6]), torch.full((3,), label))
    values = metrics.compute()
    assert math.isnan(values["auroc"].item())  # torchmetrics: 0.0 ("should be meaningless")
    assert metrics["auroc"].undefined == [(0, "positive" if label == 0 else "negative")]
    assert values["accuracy"].item() == pytest.approx(2 / 3 if label == 1 else 1 / 3)
    # the rate of the kind of image that is there is defined; the other is NaN, not torchmetrics' 0.0
    rated, unrated = ("tpr", "tnr") if label == 1 else ("tnr", "tpr")
    assert values[rated].item() == pytest.approx(2 / 3 if label == 1 else 1 / 3) and math.isnan(values[unrated])


def test_a_class_without_positives_is_left_out_of_the_macro_auroc() -> None:
    """Two classes, the second with no positive image: the macro mean is the first class's AUROC, not half of it."""
    metrics = classification_metrics(num_classes=2)
    preds = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.4, 0.2], [0.8, 0.6]])
    target = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0]])
    values = metrics(preds, target)
    assert values["auroc"].item() == pytest.approx(binary_auroc(preds[:, 0], target[:, 0]).item())
    assert metrics["auroc"].undefined == [(1, "positive")]
    assert values["tpr"].item() == pytest.approx(0.5)  # class 0's 1 of 2; class 1 has no positive to find
    assert values["tnr"].item() == pytest.approx((0.5 + 0.5) / 2)  # both classes have negatives: 1 of 2, 2 of 4
    assert math.isnan(classification_metrics(num_classes=2)(preds, torch.zeros_like(target))["auroc"].item())


def test_a_nan_score_never_beats_a_real_one_and_nan_ties_keep_the_newer_checkpoint() -> None:
    """Lightning stores a NaN score as -inf (mode max); the tie rule must then keep the newest, as it does for 1.0."""
    callback = BestCheckpoint(monitor="val/fusion/auroc", mode="max", save_top_k=1)
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))
    callback.best_k_models, callback.kth_best_model_path = {"old.ckpt": torch.tensor(0.7)}, "old.ckpt"
    assert callback.check_monitor_top_k(trainer, torch.tensor(float("nan"))) is False
    callback.best_k_models = {"old.ckpt": torch.tensor(float("-inf"))}  # an epoch that logged NaN
    assert callback.check_monitor_top_k(trainer, torch.tensor(float("nan"))) is True
    assert callback.check_monitor_top_k(trainer, torch.tensor(0.5)) is True


def test_equal_scores_that_float32_rounds_apart_tie_and_keep_the_newer_checkpoint() -> None:
    """An AUROC of 2/3 on both epochs was logged as 0.6666666865 and then 0.6666666269: the first epoch stayed best."""
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))
    for mode, kept, newer, worse in (
        ("max", 0.6666666865348816, 0.6666666269302368, 0.66666),
        ("min", 2.0, 2.000001, 2.01),
    ):
        callback = BestCheckpoint(monitor="val/fusion/auroc", mode=mode, save_top_k=1)
        callback.best_k_models, callback.kth_best_model_path = {"old.ckpt": torch.tensor(kept)}, "old.ckpt"
        assert callback.check_monitor_top_k(trainer, torch.tensor(newer)) is True, mode
        assert callback.check_monitor_top_k(trainer, torch.tensor(worse)) is False, mode


def test_a_fit_on_a_validation_split_of_normals_logs_nan_warns_once_and_keeps_the_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)))
    train = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])} for _ in range(2)]
    val = [{"image": torch.rand(2, 1, 64, 64), "label": torch.zeros(2, 1), "image_id": [f"v{i}a", f"v{i}b"]}
           for i in range(2)]  # fmt: skip
    loader = lambda batches: torch.utils.data.DataLoader(batches, batch_size=None)  # noqa: E731
    best = BestCheckpoint(dirpath=tmp_path, filename="{epoch}", monitor="val/fusion/auroc", mode="max", save_top_k=1)
    trainer = Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[best], default_root_dir=tmp_path)  # fmt: skip
    with caplog.at_level("WARNING", logger="wsod_mammo.training.module"):
        trainer.fit(module, loader(train), loader(val))
    for head in ("global", "local", "fusion"):
        assert math.isnan(trainer.callback_metrics[f"val/{head}/auroc"].item()), head
    assert math.isfinite(trainer.callback_metrics["val/fusion/accuracy"].item())
    assert Path(best.best_model_path).name == "epoch=2.ckpt" and best.best_model_score.item() == float("-inf")
    warnings = [r.getMessage() for r in caplog.records if "validation has no image with class 0" in r.getMessage()]
    assert len(warnings) == 1 and "best.ckpt (kept by val/fusion/auroc) then follows the newest epoch" in warnings[0]
    (validated,) = trainer.validate(module, loader(val), verbose=False)  # `wsod validate`: NaN, and said again
    assert math.isnan(validated["val/fusion/auroc"])
    assert sum("validation has no image with class 0" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(("limit", "blames"), [(1.0, "split"), (1, "batches"), (0.25, "batches")])
def test_the_one_class_warning_blames_the_batch_limit_when_one_is_set(limit: float, blames: str) -> None:
    """`--trainer.limit_val_batches 1` on a split of both kinds was told to try another --data.seed."""
    from wsod_mammo.training.undefined_auroc import undefined_auroc_message

    trainer = SimpleNamespace(limit_val_batches=limit, fast_dev_run=False, checkpoint_callbacks=[],
                              state=SimpleNamespace(fn=None))  # fmt: skip
    text = undefined_auroc_message([(0, "negative")], ["Mass"], trainer)
    assert text.startswith("validation has no image without Mass")
    assert ("--data.seed" in text) == (blames == "split")
    assert (f"in the batches it ran (--trainer.limit_val_batches {limit}" in text) == (blames == "batches")


CASES = {"positive_on_rank_1": [[0, 0, 0], [1, 0]], "normals_only": [[0, 0, 0], [0, 0]]}  # uneven shards


def _ddp_auroc(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        results = {}
        for case, labels in CASES.items():
            metric = classification_metrics(num_classes=1)["auroc"]
            target = torch.tensor(labels[rank])
            metric.update(torch.linspace(0.1, 0.9, len(target)), target, [f"{rank}-{i}" for i in range(len(target))])
            results[case] = (metric.compute().item(), metric.undefined)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_under_ddp_with_uneven_shards_the_auroc_is_undefined_only_when_all_processes_lack_the_class(
    tmp_path: Path,
) -> None:
    """The labels gathered over all processes decide: rank 0 holding only normals is no reason for NaN when rank 1
    has a positive, and both ranks log (and warn from) the same figure."""
    mp.spawn(_ddp_auroc, args=(f"file://{tmp_path / 'init'}", str(tmp_path / "out")), nprocs=2)
    ranks = [torch.load(tmp_path / f"out.{rank}", weights_only=False) for rank in range(2)]
    for results in ranks:
        auroc, undefined = results["positive_on_rank_1"]
        assert math.isfinite(auroc) and undefined == []
        auroc, undefined = results["normals_only"]
        assert math.isnan(auroc) and undefined == [(0, "positive")]
    assert ranks[0]["positive_on_rank_1"] == ranks[1]["positive_on_rank_1"]


def test_the_batch_limit_qualifies_the_missing_images_not_the_checkpoint_clause() -> None:
    """It read "...unless an earlier epoch had an AUROC: a NaN never replaces one in the batches it ran (...)"."""
    from wsod_mammo.training.undefined_auroc import undefined_auroc_message

    best = BestCheckpoint(monitor="val/fusion/auroc", mode="max")
    trainer = SimpleNamespace(limit_val_batches=1, fast_dev_run=False, checkpoint_callbacks=[best],
                              state=SimpleNamespace(fn=SimpleNamespace(value="fit")))  # fmt: skip
    text = undefined_auroc_message([(0, "positive")], ["Mass"], trainer)
    assert text.startswith("validation has no image with Mass in the batches it ran (--trainer.limit_val_batches 1")
    assert text.endswith("unless an earlier epoch had an AUROC: a NaN never replaces one.")


def test_a_nan_monitored_auroc_does_not_step_reduce_on_plateau(caplog: pytest.LogCaptureFixture) -> None:
    """torch counts NaN as an epoch without improvement: with patience 0 the learning rate fell 100x in 3 epochs of
    a validation split of normals only."""
    torch.manual_seed(0)
    plateau = lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0)  # noqa: E731
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)), scheduler=plateau)
    train = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])}]
    val = [{"image": torch.rand(2, 1, 64, 64), "label": torch.zeros(2, 1), "image_id": ["a", "b"]}]
    loader = lambda batches: torch.utils.data.DataLoader(batches, batch_size=None)  # noqa: E731
    trainer = Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, num_sanity_val_steps=0)  # fmt: skip
    with caplog.at_level("WARNING", logger="wsod_mammo.training.module"):
        trainer.fit(module, loader(train), loader(val))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3)  # Adam's default, not cut
    # said once, not once an epoch (a 100-epoch fit said it 100 times)
    assert sum("ReduceLROnPlateau is not stepped" in r.getMessage() for r in caplog.records) == 1


def test_a_skipped_plateau_step_is_said_again_only_after_an_epoch_that_stepped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Undefined, undefined, defined, undefined: said at the first and the fourth epoch; the defined one steps."""
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)))
    stepped: list[float] = []
    scheduler = SimpleNamespace(step=stepped.append)
    with caplog.at_level("WARNING", logger="wsod_mammo.training.module"):
        for metric in (math.nan, math.nan, 0.7, math.nan):
            module.lr_scheduler_step(scheduler, torch.tensor(metric))
    assert [float(m) for m in stepped] == [pytest.approx(0.7)]
    said = [r.getMessage() for r in caplog.records if "is not stepped" in r.getMessage()]
    assert len(said) == 2 and all("not stepped while it is undefined" in text for text in said)


def test_a_fit_keeping_best_by_wafroc_on_a_validation_split_without_masses_logs_nan_and_keeps_the_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`wsod study --select_by wafroc` keeps best.ckpt by val/wafroc/<method>: a validation split without a mass in
    view (normals only, or the batches a limit leaves) logged no such key, and Lightning stopped the fit after its
    first epoch (`could not find the monitored key`). That it has none is said once a run (it was every epoch, for
    every method)."""
    from wsod_mammo.training.callbacks import DetectionMetrics

    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)), test_saliency=["cam"])
    train = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])}]
    val = [{"image": torch.rand(2, 1, 64, 64), "label": torch.zeros(2, 1), "image_id": ["a", "b"],
            "boxes": [torch.zeros(0, 4)] * 2, "box_labels": [torch.zeros(0, dtype=torch.long)] * 2,
            "meta": [{}, {}]}]  # fmt: skip
    loader = lambda batches: torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda b: b)  # noqa: E731
    best = BestCheckpoint(dirpath=tmp_path, filename="{epoch}", monitor="val/wafroc/cam", mode="max", save_top_k=1)
    trainer = Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[DetectionMetrics(methods=["cam"]), best], default_root_dir=tmp_path,
                      num_sanity_val_steps=0)  # fmt: skip
    with caplog.at_level("WARNING", logger="wsod_mammo.training.callbacks"):
        trainer.fit(module, loader(train), loader(val))
    said = [r.getMessage() for r in caplog.records if "no mass boxes in view" in r.getMessage()]
    assert len(said) == 1 and "cam keeps its threshold" in said[0], said
    assert math.isnan(trainer.callback_metrics["val/wafroc/cam"].item())
    assert math.isnan(trainer.callback_metrics["val/detection/cam/tpr@fppi1"].item())
    assert Path(best.best_model_path).name == "epoch=1.ckpt" and best.best_model_score.item() == float("-inf")


def _fit_validating_two_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, **options: Any
) -> tuple[Trainer, list[str]]:
    """A tiny fit (one training batch, two validation batches of a mass and a normal image each) with the Trainer
    ``options`` that cut validation; -> the trainer and its "validation ran ..." warnings."""
    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)))
    train = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])}]
    val = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]]), "image_id": [f"v{i}a", f"v{i}b"]}
           for i in range(2)]  # fmt: skip
    loader = lambda batches: torch.utils.data.DataLoader(batches, batch_size=None)  # noqa: E731
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      default_root_dir=tmp_path, **options)  # fmt: skip
    with caplog.at_level("WARNING", logger="wsod_mammo.training.module"):
        trainer.fit(module, loader(train), loader(val))
    return trainer, [r.getMessage() for r in caplog.records if r.getMessage().startswith("validation ran")]


@pytest.mark.parametrize(("limit", "said"), [(1, True), (1.0, False)])
def test_a_fit_validating_part_of_its_split_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limit: float, said: bool
) -> None:
    """`--trainer.limit_val_batches` ran the split's first batches (VinDr's mass images first) and their figures
    were logged, and best.ckpt kept, as the split's, with nothing said unless they held one kind of image only."""
    _, warnings = _fit_validating_two_batches(tmp_path, caplog, max_epochs=2, limit_val_batches=limit)
    assert warnings == (["validation ran 1 of its 2 batches (--trainer.limit_val_batches 1): the val/ figures, "
                         "best.ckpt and the detection thresholds come from the split's first images alone, not the "
                         "split (VinDr's lists its mass images first) (said once a fit)"] if said else [])  # fmt: skip


def test_a_fit_overfitting_its_first_batches_names_overfit_batches_not_the_limit_it_sets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--trainer.overfit_batches 1` (Lightning sets limit_train_batches and limit_val_batches from it) was said as
    `(--trainer.limit_val_batches 1)`, an option absent from the user's command and config; so was the one-kind
    warning of the batches it validated."""
    from wsod_mammo.training.undefined_auroc import undefined_auroc_message

    trainer, (warning,) = _fit_validating_two_batches(tmp_path, caplog, max_epochs=1, overfit_batches=1)
    assert warning.startswith("validation ran 1 of its 2 batches (--trainer.overfit_batches 1): the val/ figures")
    text = undefined_auroc_message([(0, "negative")], ["Mass"], trainer)
    assert text.startswith("validation has no image without Mass in the batches it ran (--trainer.overfit_batches 1): ")
