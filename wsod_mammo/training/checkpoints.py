"""The checkpoint kept as ``best``: Lightning's ModelCheckpoint, with ties going to the newer model."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ties replace the kept checkpoint instead of keeping the oldest.

    Validation AUROC saturates (1.0 on a small or easy validation split, often within a few epochs); Lightning's
    strict comparison would then keep the first epoch that reached it, while later epochs with the same AUROC
    have kept improving everything else (localization, calibration). ``--ckpt_path last`` needs a separate
    every-epoch checkpoint: Lightning refreshes ``save_last`` only when a top-k checkpoint is saved.
    """

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        if current is None or self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return super().check_monitor_top_k(trainer, current)
        monitor_op = {"min": torch.le, "max": torch.ge}[self.mode]
        improved = bool(monitor_op(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(improved)
