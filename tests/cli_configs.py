"""A tiny but complete ``wsod`` config for end-to-end CLI tests (CPU, 192 x 128 inputs, one epoch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback

from wsod_mammo.saliency import SaliencyInputs, SaliencyMethod

INPUT_SIZE = (192, 128)
REPO = Path(__file__).resolve().parents[1]


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a command a test sends Ctrl-C to: SIGINT at its default, as a terminal starts a command. A
    shell's ``cmd &`` starts pytest ignoring SIGINT, its commands inherit that, and ``wsod`` leaves an ignored SIGINT
    ignored (as it should: such a job is not the terminal's), so the test's Ctrl-C would not reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_wsod(
    *args: str, cwd: Path, check: bool = True, timeout: int = 600, wandb_mode: str = "disabled"
) -> subprocess.CompletedProcess:
    """Runs the `wsod` console script as a user does (a hang past ``timeout`` fails the test), with this folder
    importable for the callbacks below; ``check``: exit status 0."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}  # fmt: skip
    script = Path(sys.executable).with_name("wsod")
    result = subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0 or not check, result.stdout[-3000:] + result.stderr[-3000:]
    return result


class FirstBatchRecorder(Callback):
    """Saves the first batch's images of each stage as the model receives them (after the device transfer)."""

    def __init__(self, path: str) -> None:
        self.path, self.images = path, {}

    def _keep(self, stage: str, batch: dict[str, Any]) -> None:
        self.images.setdefault(stage, batch["image"].detach().clone())
        torch.save(self.images, self.path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._keep("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep("val", batch)


class SquaredCAM(SaliencyMethod):
    """A user's own test-time method, not registered: CLI tests name it by ``class_path``."""

    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.float() ** 2


class GroupSigterm(Callback):
    """Sends SIGTERM (or ``signal_name``: SIGUSR1, SLURM's warning before the time limit) to the whole process group,
    as a scheduler does to a job: ``at`` ``epoch <k>`` as that epoch starts (before its DataLoader workers start),
    ``epoch <k> backward`` before each backward of that epoch (DDP: the other rank in its own), ``epoch <k> batch <b>``
    as that batch starts (the workers running), ``setup`` before Lightning listens for it, ``never``."""

    def __init__(self, at: str = "never", signal_name: str = "SIGTERM") -> None:
        self.at, self.signal = at, getattr(signal, signal_name)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.at == "setup":
            os.killpg(os.getpgrp(), self.signal)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.at == f"epoch {trainer.current_epoch}" and trainer.is_global_zero:  # one signal to each process
            os.killpg(os.getpgrp(), self.signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.at == f"epoch {trainer.current_epoch} batch {batch_idx}" and trainer.is_global_zero:
            os.killpg(os.getpgrp(), self.signal)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.at == f"epoch {trainer.current_epoch} backward" and trainer.is_global_zero:
            os.killpg(os.getpgrp(), self.signal)


class SignalHandlers(Callback):
    """Writes, as training starts, which handler SIGUSR1 has (``default`` or another's: Lightning's for SLURM)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        handler = signal.getsignal(signal.SIGUSR1)
        Path(self.path).write_text("default" if handler == signal.SIG_DFL else type(handler).__name__)


class LockHolder(Callback):
    """Writes, as training starts, who holds the lock of the fit's checkpoint folder (``folder_locks.holder``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        from wsod_mammo.folder_locks import holder

        Path(self.path).write_text(str(holder(trainer.checkpoint_callback.dirpath)))


class BatchSums(Callback):
    """Saves, per stage, every batch's image sum (float64) as the model receives it: a cheap fingerprint of all
    batches, to compare two runs that must see the same data."""

    def __init__(self, path: str) -> None:
        self.path, self.sums = path, {"train": [], "val": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sums["train"].append(batch["image"].double().sum().item())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.sums["val"].append(batch["image"].double().sum().item())

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.save(self.sums, self.path)


def tiny_config(directory: Path, data_root: Path, train_saliency: str = "cam", **data: Any) -> dict[str, Any]:
    """The whole config as a dict; ``directory`` receives runs (with their checkpoints) and predictions."""
    return {
        "seed_everything": 42,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "precision": "32",
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {
                "class_path": "wsod_mammo.training.wandb_logger.OfflineWandbLogger",
                "init_args": {"project": "wsod-test", "save_dir": str(directory / "runs")},
            },
            "callbacks": [
                {
                    "class_path": "wsod_mammo.training.checkpoints.BestCheckpoint",
                    "init_args": {
                        "filename": "best",
                        "monitor": "val/fusion/auroc",
                        "mode": "max",
                        "save_top_k": 1,
                        "enable_version_counter": False,
                    },
                },
                {
                    "class_path": "wsod_mammo.training.checkpoints.WholeCheckpoint",
                    "init_args": {
                        "filename": "last",
                        "save_top_k": 1,
                        "enable_version_counter": False,
                    },
                },
                {"class_path": "wsod_mammo.training.callbacks.DetectionMetrics"},
                {"class_path": "wsod_mammo.training.callbacks.SaliencyOverlays", "init_args": {"num_images": 2}},
                {
                    "class_path": "wsod_mammo.training.predict.PredictionWriter",
                    "init_args": {"output_dir": str(directory / "predictions")},
                },
            ],
        },
        "model": {
            "class_path": "wsod_mammo.training.module.GMICLitModule",
            "init_args": {
                "model": {
                    "class_path": "wsod_mammo.models.GMIC",
                    "init_args": {"num_classes": 1, "num_patches": 2, "crop_shape": [64, 64], "percent_t": 0.1},
                },
                "train_saliency": train_saliency,
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1.0e-3}},
            },
        },
        "data": {
            "class_path": "wsod_mammo.data.datamodule.VinDrMammoDataModule",
            "init_args": {
                "data_root": str(data_root),
                "selection": "all",
                "input_size": list(INPUT_SIZE),
                "batch_size": 4,
                "num_workers": 0,
                "val_fraction": 0.3,
                **data,
            },
        },
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def checkpoint(directory: Path, name: str = "last") -> Path:
    """The one run's ``{name}.ckpt`` under ``directory/runs`` (checkpoints live in their run folder)."""
    (path,) = list((directory / "runs").glob(f"**/checkpoints/{name}.ckpt"))
    return path


class LearningRateFrom(Callback):
    """Sets every parameter group's learning rate to ``lr`` from epoch ``epoch`` on: a fit that trains well, then
    diverges."""

    def __init__(self, epoch: int, lr: float) -> None:
        self.epoch, self.lr = epoch, lr

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = self.lr


class NaNImageOn(Callback):
    """Makes the first image of training batch ``batch`` NaN on process ``rank`` only: one process's loss goes NaN
    while the others' stay finite (an overflow on one image of one shard)."""

    def __init__(self, rank: int = 0, batch: int = 1) -> None:
        self.rank, self.batch = rank, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and batch_idx == self.batch:
            batch["image"][0] = float("nan")
