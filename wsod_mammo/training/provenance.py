"""What made a set of results: the weights (the checkpoint's absolute path and sha256, NYU's file, the weights
in memory or the untrained network) and the precision and versions they ran under. ``wsod test`` writes it into
``detection.json``, ``wsod predict`` into the predictions folder's ``weights.json``."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import LightningModule, Trainer

from wsod_mammo import __version__


def evaluation_setting(trainer: Trainer) -> dict[str, str]:
    """The precision and versions a test ran under: figures are deterministic for one set of them only (bf16-mixed
    runs the backbones in bf16, and its maps and patches differ somewhat from float32's)."""
    precision = getattr(trainer, "precision", None)
    return {"precision": str(precision), "torch": torch.__version__, "lightning": lightning.__version__,
            "wsod_mammo": __version__}  # fmt: skip


def input_frame(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """The frame a test ran at, by ``config.yaml``'s names (``data``'s ``input_size``, ``crop_breast``, ``resize``
    and the model's ``crop_shape``): boxes and FPPI were measured in it, and ``detection.json`` alone named none.
    None where the trainer has no data module or the module no GMIC."""
    data = getattr(trainer, "datamodule", None)
    size = getattr(data, "input_size", None)
    crop = getattr(getattr(pl_module, "model", None), "crop_shape", None)
    return {
        "input_size": None if size is None else [int(v) for v in size],
        "crop_breast": None if data is None else getattr(data, "crop_breast", None),
        "resize": None if data is None else getattr(data, "resize", None),
        "crop_shape": None if crop is None else [int(v) for v in crop],
    }


def evaluated_weights(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """What a test evaluated: ``weights`` (``checkpoint``, ``NYU weights`` as they are, ``weights in memory`` after
    a fit in the same process, or the ``untrained network``: ``--ckpt_path untrained``, a baseline) and
    ``checkpoint``, the file's ``{"path", "sha256"}`` (both None in memory) and, for a Lightning checkpoint, its
    epoch and scores (:func:`trained_to`, recorded by the module as it loads it)."""
    nyu = None if trainer.ckpt_path else getattr(pl_module, "nyu_weights_as_is", None)
    if nyu:
        return {"weights": "NYU weights", "checkpoint": checkpoint_record(nyu)}
    if trainer.ckpt_path:
        origin = getattr(pl_module, "loaded_from", None) or {}  # the loaded checkpoint's epoch and scores
        return {"weights": "checkpoint", "checkpoint": {**checkpoint_record(trainer.ckpt_path), **origin}}
    kind = "weights in memory" if getattr(pl_module, "trained_in_process", True) else "untrained network"
    return {"weights": kind, "checkpoint": checkpoint_record(trainer.ckpt_path)}


def trained_to(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``{"epoch", "global_step", "monitored": {monitor: the epoch's score}}`` of a Lightning checkpoint: which
    epoch a test evaluated (best.ckpt's is whichever its monitor kept) and what its checkpoint callbacks scored it
    (``current_score`` of each that monitors a figure; NaN where it scored none); empty for another file."""
    if "epoch" not in checkpoint:
        return {}
    monitored = {}
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor"):
            score = state.get("current_score")
            monitored[str(state["monitor"])] = float(score) if score is not None else math.nan
    return {"epoch": int(checkpoint["epoch"]), "global_step": int(checkpoint.get("global_step", 0)),
            "monitored": monitored}  # fmt: skip


def checkpoint_record(path: str | Path | None) -> dict[str, Any]:
    """``{"path", "sha256"}`` of the checkpoint a test evaluated (both None for the weights in memory)."""
    if not path or not Path(path).is_file():
        return {"path": None if not path else str(path), "sha256": None}
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, hex, read in 1 MiB blocks (a checkpoint of 170 MB, a DICOM) rather than whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
