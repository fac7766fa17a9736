"""Checkpoints: the one safe way to read a ``wsod fit`` checkpoint, and the ``best`` one kept with ties to the newer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from wsod_mammo.weights_only import WeightsOnlyLoadError, load_weights_only


def read_lightning_checkpoint(path: str | Path, option: str) -> dict[str, Any]:
    """Read a Lightning checkpoint with ``weights_only=True`` (memory-mapped when zip: tensors stay on disk).

    Any failure, or a file without a ``state_dict``, is a ValueError naming ``option`` and the file.
    """
    try:
        checkpoint = load_weights_only(path)
    except WeightsOnlyLoadError as error:
        raise ValueError(f"{option} {path}: not a checkpoint that loads with weights_only=True ({error})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        if _looks_like_nyu(checkpoint):
            raise ValueError(
                f"{option} {path}: NYU's GMIC weights (nyukat/GMIC's sample_model_<i>.p layout), not a Lightning "
                f"checkpoint: run them with --model.init_from_nyu {path} (Predictor.from_nyu in Python), or write a "
                "checkpoint of them with wsod_mammo.inference.nyu_to_checkpoint"
            )
        raise ValueError(f"{option} {path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def _looks_like_nyu(obj: object) -> bool:
    """A plain state dict in nyukat/GMIC's key layout (``ds_net.``, ``fusion_dnn.``...)."""
    from wsod_mammo.models.nyu import KEY_PREFIXES

    prefixes = tuple(nyu for nyu, _ in KEY_PREFIXES)
    return isinstance(obj, dict) and any(isinstance(k, str) and k.startswith(prefixes) for k in obj)


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
