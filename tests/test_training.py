"""GMICLitModule pieces: the loss, the per-head metrics, hyperparameters, thresholds and the W&B logger."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torchmetrics.functional.classification import multilabel_auroc, multilabel_recall

from wsod_mammo.models import GMIC, GMICOutput
from wsod_mammo.models.gmic import head_sigmoid
from wsod_mammo.training.checkpoints import BestCheckpoint, WholeCheckpoint, read_lightning_checkpoint
from wsod_mammo.training.classification import KeyedMean, classification_metrics
from wsod_mammo.training.loss import gmic_loss, gmic_sample_losses
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.wandb_logger import OfflineWandbLogger, use_writable_wandb_folders


def _output(y_global, y_local, y_fusion, saliency) -> GMICOutput:
    n = y_global.shape[0]
    return GMICOutput(y_global, y_local, y_fusion, saliency, torch.zeros(n, 1, 4), torch.ones(n, 1))


def test_loss_is_three_bce_terms_plus_beta_times_the_papers_sum_of_abs_saliency() -> None:
    """L_reg is the paper's sum over positions (NYU's beta of model 1, 3.259e-6, is on it), averaged over images."""
    target = torch.tensor([[1.0], [0.0]])
    y_global, y_local, y_fusion = (
        torch.tensor([[0.7], [0.2]]),
        torch.tensor([[0.6], [0.4]]),
        torch.tensor([[0.9], [0.1]]),
    )
    saliency = torch.rand(2, 1, 4, 3)
    loss = gmic_loss(_output(y_global, y_local, y_fusion, saliency), target, beta=3.259e-6)
    expected = sum(F.binary_cross_entropy(p, target) for p in (y_global, y_local, y_fusion))
    expected = expected + 3.259e-6 * saliency.abs().sum() / 2
    torch.testing.assert_close(loss.total, expected)
    torch.testing.assert_close(loss.saliency_reg, saliency.sum() / 2)
    assert GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64))).beta == 3.259e-6


def test_evaluation_loss_counts_each_image_once() -> None:
    """The per-image losses average to the batch loss, and the logged evaluation loss is their mean over distinct
    images: DDP's padding and ``selection: paper``'s repeats (here image b seen twice) do not weigh in."""
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    output = _output(*(torch.rand(3, 2) for _ in range(3)), torch.rand(3, 2, 4, 3))
    losses = gmic_sample_losses(output, target, beta=3.26)
    torch.testing.assert_close(losses.mean(), gmic_loss(output, target, beta=3.26).total)
    mean = KeyedMean()
    mean.update(losses, ["a", "b", "c"])
    mean.update(losses[1:2] + 100.0, ["b"])  # a repeat: its first occurrence counts
    torch.testing.assert_close(mean.compute(), losses.mean())


def test_the_evaluation_loss_is_the_same_whatever_order_the_images_arrive_in() -> None:
    """DDP gathers the images rank by rank, and a float32 mean depends on its order: 2 processes logged test/loss
    0.35942605 where 1 logged 0.35942611 (an audit); the tables were already equal."""
    losses = torch.rand(38, generator=torch.Generator().manual_seed(1)) * torch.logspace(-3, 3, 38)
    ids = [f"image{i}" for i in range(38)]
    one, two = KeyedMean(), KeyedMean()
    one.update(losses, ids)
    for rank in (0, 1):  # as DistributedSampler interleaves them, gathered rank by rank
        two.update(losses[rank::2], ids[rank::2])
    assert torch.equal(one.compute(), two.compute())
    assert one.compute().dtype == torch.float32


def test_loss_is_float32_and_finite_under_autocast_with_saturated_probabilities() -> None:
    target = torch.tensor([[1.0], [0.0]])
    saturated = torch.tensor([[0.0], [1.0]], dtype=torch.bfloat16)  # the worst possible predictions
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = gmic_loss(_output(saturated, saturated, saturated, torch.rand(2, 1, 2, 2).bfloat16()), target, 1.0)
    assert loss.total.dtype == torch.float32
    assert math.isfinite(loss.total.item()) and loss.total.item() > 30  # clamped, not infinite


def test_classification_metrics_match_hand_computed_values() -> None:
    metrics = classification_metrics(num_classes=1)
    probabilities = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.1, 0.2])
    target = torch.tensor([1, 1, 1, 0, 0, 0])
    values = metrics(probabilities, target)
    assert values["accuracy"].item() == pytest.approx(4 / 6)
    assert values["tpr"].item() == pytest.approx(2 / 3)  # 0.3 is a missed mass
    assert values["tnr"].item() == pytest.approx(2 / 3)  # 0.6 is a false alarm
    assert values["auroc"].item() == pytest.approx(8 / 9)  # 8 of 9 positive/negative pairs ordered right
    # two classes (NYU's heads): each figure per class, then their mean (macro); pooled (micro) AUROC would be 13/16
    two = classification_metrics(num_classes=2)
    probabilities = torch.tensor([[0.9, 0.6], [0.8, 0.4], [0.2, 0.7], [0.1, 0.3]])
    target = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 1]])
    values = two(probabilities, target)
    assert values["auroc"].item() == pytest.approx((1.0 + 1 / 4) / 2)  # class 1: 1 of 4 pairs ordered right
    for name in ("accuracy", "tpr", "tnr"):
        assert values[name].item() == pytest.approx((1.0 + 0.5) / 2), name


def test_module_hyperparameters_are_plain_data_and_thresholds_travel_in_checkpoints() -> None:
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency="xgradcam")
    assert "model" not in module.hparams and "optimizer" not in module.hparams
    assert module.hparams["train_saliency"] == "xgradcam"
    module.detection_thresholds = {"gradcampp": 0.4}
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)))
    restored.on_load_checkpoint(checkpoint)
    assert restored.detection_thresholds == {"gradcampp": 0.4}


def test_unknown_test_saliency_names_the_option() -> None:
    with pytest.raises(ValueError, match="model.test_saliency.*'nope'"):
        GMICLitModule(GMIC(num_classes=1), test_saliency=["cam", "nope"])


def test_eval_classification_with_a_gradient_patch_method_works_under_inference_mode() -> None:
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency="gradcampp").eval()
    images = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        expected = module.model(images, "gradcampp")
    with torch.inference_mode():
        output, maps = module.evaluate(images, ["cam", "layercam"])
        separately = module.saliency_maps(images, ["cam", "layercam"])
    torch.testing.assert_close(output.y_fusion, expected.y_fusion)
    assert maps["layercam"].shape == (2, 1, 2, 2) and (maps["layercam"] >= 0).all()
    torch.testing.assert_close(maps["layercam"], separately["layercam"])


def test_validation_steps_return_the_requested_maps_from_their_own_pass() -> None:
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency="xgradcam").eval()
    module.request_saliency_maps(["gradcam", "cam"])
    module.request_saliency_maps(["gradcam"])  # asked twice (two callbacks): made once
    with pytest.raises(ValueError, match="unknown"):
        module.request_saliency_maps(["gradcam++"])
    calls = []
    module.model.global_network.register_forward_hook(lambda *_: calls.append(1))
    batch = {"image": torch.randn(2, 1, 128, 128), "label": torch.tensor([[1.0], [0.0]])}
    with torch.inference_mode():
        outputs = module._evaluation_step("val", batch)
    assert len(calls) == 1 and list(outputs["maps"]) == ["gradcam", "cam"]
    torch.testing.assert_close(outputs["maps"]["gradcam"], module.saliency_maps(batch["image"], ["gradcam"])["gradcam"])


def test_wandb_logger_is_offline_by_default_and_honours_disabled_and_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert OfflineWandbLogger(save_dir=str(tmp_path))._offline is True
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = OfflineWandbLogger(save_dir=str(tmp_path))
    assert logger._offline is False and logger._wandb_init["mode"] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")  # the opt-in W&B's own offline banner suggests
    logger = OfflineWandbLogger(save_dir=str(tmp_path))
    assert logger._offline is False and logger._wandb_init.get("mode") in (None, "online")
    with pytest.raises(ValueError, match="log_model"):
        monkeypatch.delenv("WANDB_MODE")
        OfflineWandbLogger(save_dir=str(tmp_path), log_model=True)


def test_wandb_tables_are_logged_where_the_home_folder_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a read-only home (a container run as another user, HOME=/) `wsod test` wrote its report, then failed
    with wandb's PermissionError at its first W&B table: W&B stages tables in its data folder under the home. They
    go to the run's ``<save_dir>/wandb/`` then; a home that is a file refuses every folder below it, even to root."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    for variable in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.setenv(variable, "")  # recorded, so that the logger's setting is undone after the test
        monkeypatch.delenv(variable)
    for variable, below in (("HOME", ""), ("XDG_DATA_HOME", "share"), ("XDG_CACHE_HOME", "cache")):
        monkeypatch.setenv(variable, str(home / below))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = OfflineWandbLogger(save_dir=str(tmp_path / "runs"))
    try:
        logger.log_table("test/table1", columns=["head", "auc"], data=[["fusion", 1.0]])
    finally:
        logger.finalize("success")
    staging = tmp_path.resolve() / "runs" / "wandb" / "data" / "artifacts" / "staging"
    assert any(staging.iterdir())
    assert os.environ["WANDB_CACHE_DIR"] == str(tmp_path.resolve() / "runs" / "wandb" / "cache")


def test_wandb_dir_chooses_where_the_wandb_folder_goes_unless_the_command_line_gives_save_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WANDB_DIR, W&B's variable for where its wandb/ folder goes, was ignored: Lightning passes save_dir to
    wandb.init, which outranks it. It now holds the W&B run (the run folders stay in save_dir); a save_dir the command
    line gives (the CLI passes it as ``dir``) wins over it."""
    from wsod_mammo.cli_checks import keep_given_save_dir_for_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    wandb_path = "wsod_mammo.training.wandb_logger.OfflineWandbLogger"
    for typed, where in (({"--config"}, tmp_path / "wandb_dir"), ({"--trainer.logger.save_dir"}, tmp_path / "runs")):
        section = {"trainer": {"logger": {"class_path": wandb_path, "init_args": {"save_dir": str(tmp_path / "runs")}}}}
        keep_given_save_dir_for_wandb(section, typed)
        logger = OfflineWandbLogger(**section["trainer"]["logger"]["init_args"])
        try:
            logger.log_metrics({"loss": 1.0}, step=0)
            run = Path(logger.experiment.dir).resolve()
        finally:
            logger.finalize("success")
        assert run.is_relative_to(where.resolve() / "wandb"), (typed, run)
        assert logger.save_dir == str(tmp_path / "runs")  # the run folders (checkpoints, reports) stay there
    assert not any((tmp_path / "wandb_dir" / "wandb").glob(f"offline-run-*-{logger.version}"))


def test_wandb_folders_go_to_the_run_where_there_is_no_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOME unset for a uid without a passwd entry (`docker run -u 12345`, OpenShift): platformdirs' "could not
    determine the home directory" failed `wsod fit` and `wsod test` with its traceback before the first batch."""
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    variables = ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")
    for variable in variables:
        monkeypatch.setenv(variable, "")  # recorded, so that the logger's setting is undone after the test
        monkeypatch.delenv(variable)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    use_writable_wandb_folders(tmp_path / "runs")
    from wandb import env

    assert env.get_data_dir() == str(tmp_path.resolve() / "runs" / "wandb" / "data")  # platformdirs asked first
    assert os.environ["WANDB_DATA_DIR"] == str(tmp_path.resolve() / "runs" / "wandb" / "data")
    assert os.environ["WANDB_CACHE_DIR"] == str(tmp_path.resolve() / "runs" / "wandb" / "cache")
    assert os.environ["WANDB_CONFIG_DIR"] == str(tmp_path.resolve() / "runs" / "wandb" / "config")


def test_wandb_settings_a_user_gives_keep_the_quiet_default_unless_they_set_it(tmp_path: Path) -> None:
    """`settings: {init_timeout: 30}` in a config replaced the quiet default: W&B's 80-row dump came back."""
    given = OfflineWandbLogger(save_dir=str(tmp_path), settings={"init_timeout": 30})._wandb_init["settings"]
    assert given == {"quiet": True, "init_timeout": 30}
    loud = OfflineWandbLogger(save_dir=str(tmp_path), settings={"quiet": False})._wandb_init["settings"]
    assert loud == {"quiet": False}


class _StaticOutputGMIC(GMIC):
    """GMIC whose outputs live in memory every call overwrites, as CUDA graphs' do (compile_training_forward)."""

    def forward(self, x: torch.Tensor, patch_saliency: str | None = None) -> GMICOutput:
        output = super().forward(x, patch_saliency)
        if not hasattr(self, "static"):
            self.static = GMICOutput(*(torch.empty_like(t) for t in output))
        for buffer, value in zip(self.static, output, strict=True):
            buffer.copy_(value)
        return self.static


def test_the_epoch_keeps_each_steps_heads_when_the_next_step_reuses_the_output_memory() -> None:
    module = GMICLitModule(_StaticOutputGMIC(num_classes=1, num_patches=2, crop_shape=(64, 64))).train()
    module.log_dict = lambda *args, **kwargs: None  # no Trainer here
    steps = []
    for seed in (0, 1):
        batch = {"image": torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(seed)),
                 "label": torch.tensor([[1.0], [0.0]])}  # fmt: skip
        module.training_step(batch, seed)
        steps.append([h.clone() for h in module.model.static[:3]])
    assert not torch.equal(steps[0][0], steps[1][0])
    for kept, step in zip(module._train_outputs, steps, strict=True):
        for head, expected in zip(kept[:3], step, strict=True):
            assert torch.equal(head, expected)


@pytest.mark.parametrize(("t_max", "max_epochs", "warned"), [(15, 50, True), (50, 50, False), (15, -1, False)])
def test_a_cosine_schedule_shorter_than_the_training_is_warned_about(
    t_max: int, max_epochs: int, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo decays over T_max 15 epochs; `--trainer.max_epochs 50` alone would bring the learning rate back up
    to its start at epoch 30 (cosine annealing is periodic)."""
    from lightning.pytorch import Trainer

    module = GMICLitModule(
        GMIC(num_classes=1, crop_shape=(64, 64)),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max),
    )
    module.trainer = Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with caplog.at_level("WARNING", logger="wsod_mammo.training.module"):
        module.configure_optimizers()
    message = f"CosineAnnealingLR with T_max {t_max} < trainer.max_epochs {max_epochs}: the learning rate climbs"
    assert (message in caplog.text) == warned


@pytest.mark.parametrize("rank_zero", [True, False])
def test_the_warnings_every_ddp_process_would_repeat_are_said_by_rank_zero(
    rank_zero: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2-process DDP fit printed the cosine schedule's warning twice, once a process (each configures its own
    optimizer), and so each process's loading of a checkpoint: rank 0 says them, the others do not."""
    module = GMICLitModule(
        GMIC(num_classes=1, crop_shape=(64, 64)),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1),
    )
    module.trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    monkeypatch.setattr(Trainer, "is_global_zero", property(lambda self: rank_zero))
    with caplog.at_level("WARNING", logger="wsod_mammo"):
        module.configure_optimizers()
        module.on_load_checkpoint({"train_saliency": {"class_path": "elsewhere.GradCAM", "method": "GradCAM()"}})
    said = [r.getMessage() for r in caplog.records if r.name.startswith("wsod_mammo")]
    assert len(said) == (2 if rank_zero else 0), said
    if rank_zero:
        assert "CosineAnnealingLR with T_max 1 < trainer.max_epochs 2" in said[0]
        assert said[1].startswith("checkpoint: its weights were trained selecting GMIC's patches with")
    assert logging.getLogger("wsod_mammo").level != logging.ERROR  # the processes' own level is given back


def test_the_learning_rate_schedule_steps_once_an_epoch() -> None:
    """Schedules are written in epochs (the demo's cosine T_max 15): stepped every batch, one would reach its end
    within a few epochs and climb back."""
    from lightning.pytorch import Trainer

    module = GMICLitModule(
        GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)),
        optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10),
    )
    batches = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])} for _ in range(3)]
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert trainer.global_step == 6  # two epochs of three steps
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx((1 + math.cos(math.pi * 2 / 10)) / 2)  # epoch 2 of 10, not step 6 (0.345)


def _fit_one_cycle(total_steps: int, accumulate: int = 1) -> Trainer:
    """The trainer of two epochs of four batches under a OneCycleLR of ``total_steps``."""
    module = GMICLitModule(
        GMIC(num_classes=1, num_patches=1, crop_shape=(32, 32)),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total_steps),
    )
    batches = [{"image": torch.rand(2, 1, 64, 64), "label": torch.tensor([[1.0], [0.0]])} for _ in range(4)]
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                      accumulate_grad_batches=accumulate)  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return trainer


def test_a_one_cycle_schedule_steps_at_each_optimizer_step(caplog: pytest.LogCaptureFixture) -> None:
    """torch's OneCycleLR is a batch schedule sized in steps: stepped once an epoch, a fit of 4 optimizer steps took
    2 of its steps and ended in mid-cycle. With accumulate_grad_batches 2 the 8 batches are 4 optimizer steps:
    total_steps 4 fits (Trainer.estimated_stepping_batches), and no warning."""
    with caplog.at_level("WARNING", logger="wsod_mammo.training.lr_schedule"):
        trainer = _fit_one_cycle(total_steps=4, accumulate=2)
    assert trainer.global_step == 4
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4  # one scheduler step per optimizer step
    assert "OneCycleLR" not in caplog.text


@pytest.mark.parametrize(("total_steps", "said"), [(20, "the fit ends 12 steps before the cycle does"),
                                                   (6, "torch raises at optimizer step 7")])  # fmt: skip
def test_a_one_cycle_schedule_of_another_length_than_the_fit_is_warned_about(
    total_steps: int, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """total_steps counted in batches with accumulate_grad_batches, or for other max_epochs, left the learning rate
    high at the end, or stopped the fit when torch refused a step past the cycle: said before the fit starts."""
    with caplog.at_level("WARNING", logger="wsod_mammo.training.lr_schedule"):
        if total_steps < 8:
            with pytest.raises(ValueError, match=f"Tried to step {total_steps + 1} times"):
                _fit_one_cycle(total_steps=total_steps)
        else:
            _fit_one_cycle(total_steps=total_steps)
    assert f"OneCycleLR with total_steps {total_steps}, but the fit takes 8 optimizer steps" in caplog.text
    assert said in caplog.text and "--model.scheduler.init_args.total_steps 8" in caplog.text


@pytest.mark.parametrize(("mode", "monitor", "refused"),
                         [("min", "val/fusion/auroc", True), ("max", "val/fusion/auroc", False),
                          ("min", "val/loss", False), ("min", "val/detection/cam/tpr@fppi1", True),
                          ("min", "val/wafroc/layercam", True), ("min", "val/pointing/cam/hit", True),
                          ("min", "val/detection/cam/threshold", False)])  # fmt: skip
def test_a_plateau_schedule_watching_a_figure_that_rises_must_say_max(mode: str, monitor: str, refused: bool) -> None:
    """ReduceLROnPlateau's default mode is 'min': on the default monitor, AUROC, it cut the learning rate while the
    model improved. Table II's TPR at an FPPI (whose names the rule once missed), the figures of merit and the
    pointing game rise too."""
    module = GMICLitModule(
        GMIC(num_classes=1, crop_shape=(64, 64)), scheduler_monitor=monitor,
        scheduler=lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode),
    )  # fmt: skip
    if refused:
        with pytest.raises(ValueError, match=f"mode 'min' on scheduler_monitor {re.escape(monitor)}.*mode max"):
            module.configure_optimizers()
    else:
        module.configure_optimizers()


def test_best_checkpoint_refuses_lightnings_default_mode_on_a_figure_that_rises() -> None:
    """Built in Python, not through `wsod fit` (whose config check says it first): best.ckpt would keep the epoch
    with the lowest wAFROC."""
    from wsod_mammo.training.checkpoints import BestCheckpoint

    with pytest.raises(ValueError, match="^BestCheckpoint: mode 'min' on monitor val/wafroc/cam, a figure that rises"):
        BestCheckpoint(monitor="val/wafroc/cam").setup(None, None, "fit")  # type: ignore[arg-type]


def test_a_tie_with_the_best_score_keeps_the_newer_checkpoint() -> None:
    """Validation AUROC saturates at 1.0 early: best.ckpt must follow the training, not stay at its first 1.0."""
    from types import SimpleNamespace

    from wsod_mammo.training.checkpoints import BestCheckpoint

    callback = BestCheckpoint(monitor="val/fusion/auroc", mode="max", save_top_k=1)
    callback.best_k_models, callback.kth_best_model_path = {"old.ckpt": torch.tensor(1.0)}, "old.ckpt"
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))
    assert callback.check_monitor_top_k(trainer, torch.tensor(1.0)) is True
    assert callback.check_monitor_top_k(trainer, torch.tensor(0.9)) is False
    # one-class validation logs a NaN AUROC: it never replaces a real score, and follows the newest epoch after NaNs
    assert callback.check_monitor_top_k(trainer, torch.tensor(float("nan"))) is False
    callback.best_k_models = {"old.ckpt": torch.tensor(float("-inf"))}  # how Lightning keeps a NaN epoch's score
    assert callback.check_monitor_top_k(trainer, torch.tensor(float("nan"))) is True


def test_the_wandb_group_defaults_to_the_save_dirs_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fits and tests of one config share a W&B group: the name of the folder they save into."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert OfflineWandbLogger(save_dir=str(tmp_path / "myrun"))._wandb_init["group"] == "myrun"


def test_worst_predictions_cost_minus_log_eps_per_head() -> None:
    target = torch.tensor([[1.0], [0.0]])
    worst = torch.tensor([[0.0], [1.0]])
    out = GMICOutput(worst, worst, worst, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 4), torch.ones(2, 1))
    loss = gmic_loss(out, target, beta=0.0)
    # torch's own BCE gives 100 per term (it clamps log at -100); the 1e-6 clamp bounds it by about 13.8
    # (float32 rounds 1 - 1e-6, hence the tolerance)
    for term in (loss.global_bce, loss.local_bce, loss.fusion_bce):
        assert abs(term.item() - (-math.log(1e-6))) < 0.05


def test_tpr_is_sensitivity_and_tnr_specificity() -> None:
    # 4 positives, 2 caught (TPR 1/2); 2 negatives, both rejected (TNR 1)
    probabilities = torch.tensor([0.9, 0.8, 0.3, 0.2, 0.1, 0.4])
    target = torch.tensor([1, 1, 1, 1, 0, 0])
    values = classification_metrics(num_classes=1)(probabilities, target)
    assert values["tpr"].item() == pytest.approx(0.5) and values["tnr"].item() == pytest.approx(1.0)
    two = classification_metrics(num_classes=2)
    values = two(torch.stack([probabilities, probabilities], 1), torch.stack([target, target], 1))
    assert values["tpr"].item() == pytest.approx(0.5) and values["tnr"].item() == pytest.approx(1.0)


def test_an_image_seen_twice_counts_once_in_the_table1_figures() -> None:
    """DDP padding / `selection: paper` repeats: only an image's first occurrence may count."""
    metrics = classification_metrics(num_classes=1)
    metrics.update(torch.tensor([0.9, 0.2]), torch.tensor([1, 0]), image_ids=["a", "b"])
    metrics.update(torch.tensor([0.1, 0.1, 0.1]), torch.tensor([1, 1, 1]), image_ids=["a", "a", "a"])  # repeats
    values = metrics.compute()
    assert values["accuracy"].item() == pytest.approx(1.0) and values["tpr"].item() == pytest.approx(1.0)


def _module(num_classes: int = 1, **kwargs) -> GMICLitModule:
    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=num_classes, num_patches=2, crop_shape=(64, 64)), **kwargs)
    module.log = module.log_dict = lambda *args, **kw: None  # no Trainer here
    return module


def _batch(num_classes: int = 1) -> dict:
    gen = torch.Generator().manual_seed(1)
    label = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[:, :num_classes]
    return {"image": torch.randn(3, 1, 128, 128, generator=gen), "label": label, "image_id": ["a", "b", "c"]}


def _paper_loss(out, label, beta) -> torch.Tensor:
    """Shen et al. 2021 eq. 9: BCE of the three heads + beta * sum |A| (per image, averaged over the batch)."""
    bce = sum(F.binary_cross_entropy(y.double(), label.double()) for y in (out.y_global, out.y_local, out.y_fusion))
    return bce + beta * out.saliency.double().abs().flatten(1).sum(1).mean()


def test_training_step_returns_the_papers_loss_with_the_modules_beta() -> None:
    module = _module(beta=0.5).train()
    batch = _batch()
    torch.manual_seed(2)
    loss = module.training_step(batch, 0)
    torch.manual_seed(2)
    with torch.no_grad():
        out = module.model(batch["image"], module.train_saliency)
    torch.testing.assert_close(loss.double(), _paper_loss(out, batch["label"], 0.5), rtol=1e-5, atol=1e-6)


def test_evaluation_loss_uses_the_modules_beta() -> None:
    module = _module(beta=0.5).eval()
    batch = _batch()
    with torch.inference_mode():
        module._evaluation_step("val", batch)
    with torch.no_grad():
        out = module.model(batch["image"])
    expected = _paper_loss(out, batch["label"], 0.5)
    torch.testing.assert_close(module.evaluation_loss["val"].compute().double(), expected, rtol=1e-5, atol=1e-6)


def test_beta_zero_is_a_valid_weight() -> None:
    assert _module(beta=0.0).beta == 0.0


def test_predict_step_reports_the_fusion_probabilities() -> None:
    module = _module(train_saliency="cam", predict_saliency="gradcam").eval()
    batch = _batch()
    with torch.inference_mode():
        result = module.predict_step(batch, 0)
    with torch.no_grad():
        out = module.model(batch["image"])
    torch.testing.assert_close(result["probabilities"], out.y_fusion)


def test_two_class_metrics_pair_each_head_with_its_own_label_column() -> None:
    module = _module(num_classes=2).eval()
    with torch.no_grad():  # class 1's fusion score is minus class 0's: the two heads rank the images oppositely
        module.model.fusion.weight[1] = -module.model.fusion.weight[0]
        module.model.fusion.bias[1] = -module.model.fusion.bias[0]
    batch = _batch(2)
    batch["label"] = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    with torch.inference_mode():
        module._evaluation_step("val", batch)
    with torch.no_grad():
        out = module.model(batch["image"])
    metrics = module.metrics["val_fusion"].compute()
    target = batch["label"].long()
    expected = multilabel_auroc(out.y_fusion, target, 2, average="macro")
    assert expected != multilabel_auroc(out.y_fusion, target.flip(1), 2, average="macro")  # the columns matter here
    torch.testing.assert_close(metrics["val/fusion/auroc"], expected)
    torch.testing.assert_close(metrics["val/fusion/tpr"], multilabel_recall(out.y_fusion, target, 2, average="macro"))


def test_a_head_saturated_on_the_wrong_side_still_gets_a_gradient() -> None:
    """The 1e-6 clamp bounds the loss but used to stop the gradient: a positive image whose head sits at logit -14
    (probability 8e-7) got none, and could never be pulled back; unclamped heads get exactly BCE's gradient."""
    logits = torch.tensor([[-14.0], [-2.0]], requires_grad=True)
    probabilities = torch.sigmoid(logits)
    output = GMICOutput(probabilities, probabilities, probabilities, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 4),
                        torch.ones(2, 1))  # fmt: skip
    gmic_loss(output, torch.ones(2, 1), beta=0.0).total.backward()
    reference = torch.tensor([[-14.0], [-2.0]], requires_grad=True)
    F.binary_cross_entropy(torch.sigmoid(reference)[1], torch.ones(1)).backward()
    assert logits.grad[0, 0] < -1.0  # about 3 heads x -0.42: the BCE gradient at the clamped probability
    torch.testing.assert_close(logits.grad[1], 3 * reference.grad[1] / 2)


def test_a_head_saturated_as_a_false_positive_gets_the_gradient_of_its_mirror_image() -> None:
    """float32 rounds sigmoid(17) to 1, and torch.sigmoid's derivative y (1 - y) was then 0: a normal image whose
    local and fusion heads sat at logit 17 got no gradient from their BCE (a positive at logit -17 got -0.04 per
    head). Below saturation the gradient is torch.sigmoid's, bit for bit (fits keep their figures)."""
    torch.manual_seed(0)
    model = GMIC(num_classes=1, num_patches=1, crop_shape=(64, 64)).train()
    x = torch.randn(2, 1, 128, 128)
    grads = {}
    for bias, label in ((17.0, 0.0), (-17.0, 1.0), (15.0, 0.0)):
        with torch.no_grad():
            model.classifier.weight.zero_()  # y_local 0.5; y_fusion = sigmoid(bias)
            model.fusion.weight.zero_()
            model.fusion.bias.fill_(bias)
        model.zero_grad()
        output = model(x)
        loss = gmic_loss(output._replace(y_global=output.y_global.detach()), torch.full((2, 1), label), beta=0.0)
        loss.total.backward()
        grads[bias] = model.fusion.bias.grad.item()
    assert grads[17.0] > 0.03  # pulled down (0 before)
    assert grads[17.0] == pytest.approx(-grads[-17.0], rel=0.02)  # float32's 1 - 1e-6 clamp is 1 - 1.013e-6
    logits = torch.linspace(-20, 16, 97).requires_grad_()
    reference = logits.detach().clone().requires_grad_()
    weights = torch.rand(97)
    (head_sigmoid(logits) * weights).sum().backward()
    (torch.sigmoid(reference) * weights).sum().backward()
    assert torch.equal(logits.grad, reference.grad) and grads[15.0] == pytest.approx(0.353, abs=1e-3)


def test_the_last_checkpoint_callback_keeps_the_state_key_of_the_model_checkpoint_it_replaces(tmp_path: Path) -> None:
    """Runs begun with Lightning's ModelCheckpoint for last.ckpt resume with WholeCheckpoint's state (and without
    Lightning's warning that a callback of the checkpoint is missing); BestCheckpoint's key stays its own."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    options = {"filename": "last", "save_top_k": 1, "enable_version_counter": False}
    last = WholeCheckpoint(dirpath=tmp_path, **options)
    trainer = Trainer(logger=False, max_epochs=1, limit_train_batches=1, limit_val_batches=0, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[last])  # fmt: skip
    trainer.fit(BoringModel())
    assert last.state_key == ModelCheckpoint(**options).state_key
    assert list(torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]) == [last.state_key]
    assert BestCheckpoint(monitor="val/fusion/auroc", mode="max").state_key.startswith("BestCheckpoint{")


def test_a_python_fit_with_a_model_checkpoint_of_its_own_beside_whole_checkpoint_saves_and_resumes(
    tmp_path: Path, data_root: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """Lightning's ModelCheckpoint keeping every epoch (no monitor) has the state key WholeCheckpoint takes from
    ModelCheckpoint: `wsod fit` gave WholeCheckpoint its own key before building the Trainer, a Python fit
    (`Trainer(callbacks=[...])`) was refused before anything ran, "Found more than one stateful callback of type
    `ModelCheckpoint`". Each resumes with its own state."""
    from cli_configs import INPUT_SIZE

    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    def fit(epochs: int, ckpt_path: str | None = None) -> None:
        torch.manual_seed(0)
        module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(64, 64)))
        data = VinDrMammoDataModule(str(data_root), input_size=INPUT_SIZE, batch_size=4, num_workers=0)
        last = WholeCheckpoint(dirpath=tmp_path, filename="last", enable_version_counter=False)
        every = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
        trainer = Trainer(logger=False, max_epochs=epochs, limit_train_batches=1, limit_val_batches=1,
                          num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=[last, every])  # fmt: skip
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)

    fit(1)
    fit(2, str(tmp_path / "last.ckpt"))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    (whole,) = [state for key, state in last["callbacks"].items() if key.startswith("WholeCheckpoint{")]
    assert Path(whole["best_model_path"]).name == "last.ckpt"  # its own state, apart from the ModelCheckpoint's
    assert any(key.startswith("ModelCheckpoint{") for key in last["callbacks"])
    assert not [w for w in recwarn if "callbacks used to create the checkpoint" in str(w.message)]


@pytest.mark.parametrize("setup", ["file_url_root", "async_checkpoint_io"])
def test_whole_checkpoints_with_a_file_url_root_and_a_checkpoint_io_plugin(tmp_path: Path, setup: str) -> None:
    """A `file://` root directory (a local path fsspec writes after stripping `file:`) and AsyncCheckpointIO (which
    returns before the file exists) both failed in the rename; Lightning's own ModelCheckpoint saved in both."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.plugins.io import AsyncCheckpointIO

    root = f"file://{tmp_path}" if setup == "file_url_root" else str(tmp_path)
    trainer = Trainer(default_root_dir=root, logger=False, max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                      enable_progress_bar=False, enable_model_summary=False,
                      plugins=[AsyncCheckpointIO()] if setup == "async_checkpoint_io" else None,
                      callbacks=[WholeCheckpoint(filename="last", enable_version_counter=False)])  # fmt: skip
    trainer.fit(BoringModel())
    (last,) = list(tmp_path.glob("**/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_python_fit_whose_heads_do_not_match_the_datas_classes_is_refused_before_a_step(
    synthetic_root: Path,
) -> None:
    """GMIC(num_classes=1) with two classes in the data failed in the first training step with a loss's tensor
    sizes ("target size (torch.Size([4, 2])) ... input size (torch.Size([4, 1]))"); `wsod fit` refused it, a
    Python fit did not. The refusal names both counts and the classes."""
    from lightning.pytorch import Trainer

    from wsod_mammo.data.datamodule import VinDrMammoDataModule

    data = VinDrMammoDataModule(
        str(synthetic_root), classes=["Mass", "Suspicious Calcification"], input_size=(128, 96), num_workers=2
    )
    module = GMICLitModule(GMIC(num_classes=1, crop_shape=(32, 32), num_patches=2))
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with pytest.raises(
        ValueError, match=r"GMIC has 1 output class\(es\), the data's classes are 2 \(Mass, Suspicious "
    ):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0


def fit_scored(folder: Path, scores: list[float], **trainer_options: object) -> None:
    """Fit Lightning's BoringModel logging ``scores`` as val/fusion/auroc, one a validation, with best.ckpt and
    last.ckpt (the configs' BestCheckpoint and WholeCheckpoint) kept in ``folder``."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    logged = iter(scores)

    class Scripted(BoringModel):
        def on_validation_epoch_end(self) -> None:
            self.log("val/fusion/auroc", next(logged))

    best = BestCheckpoint(dirpath=folder, filename="best", monitor="val/fusion/auroc", mode="max", save_top_k=1,
                          enable_version_counter=False)  # fmt: skip
    last = WholeCheckpoint(dirpath=folder, filename="last", enable_version_counter=False)
    trainer = Trainer(logger=False, limit_val_batches=1, num_sanity_val_steps=0, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[best, last], **trainer_options)  # fmt: skip
    trainer.fit(Scripted())


@pytest.mark.parametrize(("every", "epochs", "last_score"), [(1, 2, 0.6), (2, 4, 0.6), (2, 3, math.nan)])
def test_last_ckpt_records_its_own_epochs_score_not_best_ckpts(
    tmp_path: Path, every: int, epochs: int, last_score: float
) -> None:
    """`wsod test --ckpt_path last` printed `epoch 1 (0-based), val/fusion/auroc 0.715`: best.ckpt's score (epoch
    0's), not epoch 1's 0.554, since Lightning updates the monitor's current_score only when it saves best.ckpt. An
    epoch without validation (the third of `check_val_every_n_epoch: 2`) has no score of its own."""
    from wsod_mammo.training.provenance import trained_to

    fit_scored(tmp_path, [0.8, 0.6], max_epochs=epochs, limit_train_batches=1, check_val_every_n_epoch=every)
    read = lambda name: trained_to(torch.load(tmp_path / name, map_location="cpu", weights_only=False))  # noqa: E731
    assert read("best.ckpt")["epoch"] == every - 1
    assert read("best.ckpt")["monitored"]["val/fusion/auroc"] == pytest.approx(0.8)
    assert read("last.ckpt")["epoch"] == epochs - 1
    assert read("last.ckpt")["monitored"]["val/fusion/auroc"] == pytest.approx(last_score, nan_ok=True)


def test_a_checkpoint_whose_name_nears_the_file_systems_limit_is_saved(tmp_path: Path) -> None:
    """A filename template giving a 251-byte name (which fits the 255-byte limit) was saved under that name plus
    `.partial`, and the fit ended in "File name too long"."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    last = WholeCheckpoint(dirpath=tmp_path, filename="b" * 246, enable_version_counter=False)
    trainer = Trainer(logger=False, max_epochs=1, limit_train_batches=1, limit_val_batches=0, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[last])  # fmt: skip
    trainer.fit(BoringModel())
    assert [path.name for path in tmp_path.iterdir()] == ["b" * 246 + ".ckpt"]


def test_an_epoch_that_max_steps_ends_before_its_validation_does_not_replace_best_ckpt(tmp_path: Path) -> None:
    """``--trainer.max_steps`` ending an epoch before its validation: Lightning saves the checkpoints at that epoch's
    end all the same, with the previous validation's val/fusion/auroc, which tied with best.ckpt's own, and the tie
    rule replaced best.ckpt (epoch 0, validated) with epoch 1's unvalidated weights, recording epoch 0's score."""
    from wsod_mammo.training.provenance import trained_to

    fit_scored(tmp_path, [0.8, 0.6], max_epochs=3, max_steps=5, limit_train_batches=3)
    kept = read_lightning_checkpoint(tmp_path / "best.ckpt", "best.ckpt")
    assert (kept["epoch"], kept["global_step"]) == (0, 3)
    assert trained_to(kept)["monitored"]["val/fusion/auroc"] == pytest.approx(0.8)
    newest = read_lightning_checkpoint(tmp_path / "last.ckpt", "last.ckpt")
    assert (newest["epoch"], newest["global_step"]) == (1, 5)
    assert math.isnan(trained_to(newest)["monitored"]["val/fusion/auroc"])  # no score of its own


def test_best_ckpt_of_a_nan_scored_epoch_records_nan_not_lightnings_minus_infinity(tmp_path: Path) -> None:
    """A validation of one class logs val/fusion/auroc NaN; Lightning ranks it as -inf and set current_score to that
    just before saving best.ckpt, so `wsod test --ckpt_path RUN:best` printed `val/fusion/auroc -inf`. The ranking
    keeps -inf (best_model_score): a later real score still replaces the NaN epoch."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    from wsod_mammo.training.provenance import trained_to
    from wsod_mammo.training.test_report import epoch_text

    scores = iter([math.nan, math.nan, 0.6])
    saved = []

    class Scripted(BoringModel):
        def on_validation_epoch_end(self) -> None:
            self.log("val/fusion/auroc", next(scores))

        def on_train_epoch_start(self) -> None:  # best.ckpt as the previous epoch's validation left it
            if self.current_epoch:
                saved.append(read_lightning_checkpoint(tmp_path / "best.ckpt", "best.ckpt"))

    best = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val/fusion/auroc", mode="max", save_top_k=1,
                          enable_version_counter=False)  # fmt: skip
    trainer = Trainer(logger=False, max_epochs=3, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[best])  # fmt: skip
    trainer.fit(Scripted())
    saved.append(read_lightning_checkpoint(tmp_path / "best.ckpt", "best.ckpt"))
    assert [c["epoch"] for c in saved] == [0, 1, 2]  # NaN epochs: the newest kept; then the real score
    for checkpoint, score in zip(saved, [math.nan, math.nan, 0.6], strict=True):
        assert trained_to(checkpoint)["monitored"]["val/fusion/auroc"] == pytest.approx(score, nan_ok=True)
    assert epoch_text(trained_to(saved[1])) == ", epoch 1 (0-based), val/fusion/auroc nan"
    (state,) = [v for k, v in saved[1]["callbacks"].items() if k.startswith("BestCheckpoint")]
    assert state["best_model_score"] == float("-inf")


def test_a_fit_resumed_in_a_moved_run_folder_keeps_its_best_checkpoint(tmp_path: Path) -> None:
    """A run folder copied off a cluster (or renamed) records its old ``dirpath``: Lightning then dropped the best
    score, and the resumed fit's next validation replaced best.ckpt (0.8) with a worse epoch (0.6)."""
    import shutil

    from lightning.pytorch.demos.boring_classes import BoringModel

    scores = iter([0.8, 0.6])

    class Scripted(BoringModel):
        def on_validation_epoch_end(self) -> None:
            self.log("val/fusion/auroc", next(scores))

    def fit(folder: Path, epochs: int, ckpt_path: str | None = None) -> None:
        best = BestCheckpoint(dirpath=folder, filename="best", monitor="val/fusion/auroc", mode="max", save_top_k=1,
                              enable_version_counter=False)  # fmt: skip
        last = WholeCheckpoint(dirpath=folder, filename="last", enable_version_counter=False)
        trainer = Trainer(logger=False, max_epochs=epochs, limit_train_batches=1, limit_val_batches=1,
                          num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=[best, last])  # fmt: skip
        trainer.fit(Scripted(), ckpt_path=ckpt_path)

    fit(tmp_path / "cluster", 1)
    shutil.move(tmp_path / "cluster", tmp_path / "here")
    fit(tmp_path / "here", 2, str(tmp_path / "here" / "last.ckpt"))
    best = read_lightning_checkpoint(tmp_path / "here" / "best.ckpt", "best.ckpt")
    assert best["epoch"] == 0
    last = read_lightning_checkpoint(tmp_path / "here" / "last.ckpt", "last.ckpt")
    state = next(v for k, v in last["callbacks"].items() if k.startswith("BestCheckpoint"))
    assert state["best_model_path"] == str(tmp_path / "here" / "best.ckpt")
    assert float(state["best_model_score"]) == pytest.approx(0.8)


def test_two_tests_without_a_logger_in_one_folder_keep_both_reports(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`trainer.test` twice without a logger (a notebook testing best.ckpt, then last.ckpt): both reports went to
    default_root_dir, the second silently replacing the first's detection.json, tables and overlays. The second is
    now written to `test.1` there, as the log says."""
    from cli_configs import INPUT_SIZE

    from wsod_mammo.data.datamodule import VinDrMammoDataModule
    from wsod_mammo.training.callbacks import DetectionMetrics, SaliencyOverlays

    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=1, crop_shape=(64, 64)), test_saliency=["cam"])
    data = VinDrMammoDataModule(str(data_root), selection="all", input_size=INPUT_SIZE, batch_size=4, num_workers=0)
    trainer = Trainer(logger=False, default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[DetectionMetrics(), SaliencyOverlays(num_images=1)])  # fmt: skip
    trainer.test(module, datamodule=data, verbose=False)
    first = {path: path.stat().st_ino for path in [tmp_path / "detection.json", *tmp_path.glob("overlays/*.png")]}
    assert len(first) == 2
    with caplog.at_level("WARNING", logger="wsod_mammo"):
        trainer.test(module, datamodule=data, verbose=False)
    assert {path: path.stat().st_ino for path in first} == first  # the first report's files, as it wrote them
    assert (tmp_path / "test.1" / "detection.json").is_file() and len(list(tmp_path.glob("test.1/overlays/*"))) == 1
    said = f"test: {tmp_path} holds an earlier test's report; this one is written to {tmp_path / 'test.1'}"
    assert [r.getMessage() for r in caplog.records if "earlier test's report" in r.getMessage()] == [said]
