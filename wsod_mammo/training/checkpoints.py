"""Checkpoints: the one safe way to read a ``wsod fit`` checkpoint, each one written whole or not at all, and the
``best`` one kept with ties to the newer."""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
from pathlib import Path
from typing import Any
from weakref import proxy

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from wsod_mammo.atomic_files import temporary_name
from wsod_mammo.data.dicom import MAX_PIXELS
from wsod_mammo.models.resnet import GLOBAL_STRIDE
from wsod_mammo.training.monitors import check_logged, check_mode
from wsod_mammo.weights_only import WeightsOnlyLoadError, first_nonfinite, load_weights_only

log = logging.getLogger(__name__)

PAPER_INPUT_SIZE = (2944, 1920)
FRAME_KEYS = ("input_size", "crop_breast", "resize")  # what a checkpoint records of the input frame it was made for


def recorded_frame(checkpoint: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """The input frame (``FRAME_KEYS``) a checkpoint's weights were trained or made for: its ``input_frame``, else
    its datamodule's hyperparameters; NYU's weights without either: 2944 x 1920. Keys it does not record are left
    out, so that the caller's defaults apply. An ``input_size`` that is no pair of numbers, that GMIC cannot take
    (a side not a positive multiple of ``GLOBAL_STRIDE``) or of more than ``MAX_PIXELS`` pixels (the most an image
    may have) is a ValueError naming ``where`` (the bare ``invalid literal for int()`` named neither the file nor the
    entry; ``wsod predict`` adopts the frame, and a damaged or crafted one of 65536 x 65536 took tens of GB an
    image)."""
    data = checkpoint.get("input_frame") or checkpoint.get("datamodule_hyper_parameters") or {}
    if not data and checkpoint.get("init_from_nyu"):
        data = {"input_size": list(PAPER_INPUT_SIZE)}
    frame = {key: data[key] for key in FRAME_KEYS if data.get(key) is not None}
    if "input_size" in frame:
        size = frame["input_size"]
        try:
            frame["input_size"] = [int(v) for v in size]
        except (TypeError, ValueError):
            frame["input_size"] = []
        if len(frame["input_size"]) != 2:
            raise ValueError(f"{where}: its input frame's input_size is {size!r}, not [height, width] in pixels (the "
                             "checkpoint was damaged, edited or written by another tool)")  # fmt: skip
        height, width = frame["input_size"]
        if min(height, width) < GLOBAL_STRIDE or height % GLOBAL_STRIDE or width % GLOBAL_STRIDE:
            raise ValueError(f"{where}: its input frame's input_size is {size!r}, which GMIC cannot take (each side a "
                             f"positive multiple of {GLOBAL_STRIDE}; the checkpoint was damaged, edited or written by "
                             "another tool)")  # fmt: skip
        if height * width > MAX_PIXELS:
            raise ValueError(f"{where}: its input frame's input_size is {size!r}, {height * width:,} pixels, over the "
                             f"{MAX_PIXELS:,} an image may have (the checkpoint was damaged, edited or written by "
                             "another tool)")  # fmt: skip
    return frame


def check_detection_thresholds(checkpoint: dict[str, Any], where: str = "checkpoint") -> None:
    """Each threshold a checkpoint records cuts its method's maps, min-max normalized into [0, 1]: one that is not
    a number there (a file damaged, edited or written by another tool) cut them into no box (NaN, above 1) or one of
    the whole image (below 0), and Table II reported that method's cell as validated; a string failed in a traceback
    as the test began. A ValueError naming ``where`` and the entry."""
    thresholds = checkpoint.get("detection_thresholds") or {}
    if not isinstance(thresholds, dict):
        kind = type(thresholds).__name__
        raise ValueError(f"{where}: its detection_thresholds are a {kind}, not {{method: threshold}}")
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"{where}: its detection_thresholds[{name!r}] is {value!r}, not a threshold in [0, 1] (the checkpoint "
                "was damaged, edited or written by another tool)"
            )


def check_finite_weights(checkpoint: dict[str, Any], where: str) -> None:
    """Weights holding a NaN or an infinity (a fit that diverged before its checks, a damaged or edited file) give
    NaN for every image: a test refused them only after running its whole split, and a predict wrote every row
    without a probability. A ValueError naming ``where`` and the first such tensor."""
    if (bad := first_nonfinite(checkpoint.get("state_dict") or {})) is not None:
        raise ValueError(f"{where}: its weights hold NaN or infinite values (first: {bad}): the fit that wrote it "
                         "diverged, or the file was damaged; they give no usable figures or predictions")  # fmt: skip


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
    for key in ("state_dict", "hyper_parameters"):  # read as dicts everywhere: an AttributeError traceback
        if key in checkpoint and not isinstance(checkpoint[key], dict):
            raise ValueError(f"{option} {path}: its {key} is a {type(checkpoint[key]).__name__}, not a dict (the "
                             "checkpoint was damaged, edited or written by another tool)")  # fmt: skip
    return checkpoint


def _looks_like_nyu(obj: object) -> bool:
    """A plain state dict in nyukat/GMIC's key layout (``ds_net.``, ``fusion_dnn.``...)."""
    from wsod_mammo.models.nyu import KEY_PREFIXES

    prefixes = tuple(nyu for nyu, _ in KEY_PREFIXES)
    return isinstance(obj, dict) and any(isinstance(k, str) and k.startswith(prefixes) for k in obj)


class WholeCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose file is replaced whole: a save goes to ``<name>.partial`` beside it and is renamed.

    Lightning writes into a temporary file in ``$TMPDIR`` and moves it to the checkpoint's name; when the checkpoint
    folder is on another file system (a data disk, NFS, tmpfs) that move is a copy straight into ``last.ckpt``, and a
    Ctrl-C, a kill or a full disk during it left an empty or cut ``last.ckpt``: the previous epoch's was gone too.
    A rename within one folder is atomic, so an interrupted save now costs only the ``.partial`` file.
    """

    #: whether it takes the key of the ``ModelCheckpoint`` it replaces (``state_key``): decided in ``setup``, where
    #: the trainer's callbacks are known; its own key until then
    takes_model_checkpoint_key = False

    @property
    def state_key(self) -> str:
        """The key of the ``ModelCheckpoint`` it replaces in the configs, so that a run begun with that one resumes
        with this one's state (and without Lightning's warning of a callback missing); its own where a callback
        beside it has that key (``setup``)."""
        key = super().state_key
        return (
            key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
            if type(self) is WholeCheckpoint and self.takes_model_checkpoint_key
            else key
        )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Take the ``ModelCheckpoint`` key unless a callback beside it has it (a ``ModelCheckpoint`` of its own
        triggers, no monitor and every epoch, that a user adds to keep every epoch's weights). The Trainer checks
        the keys distinct when it is built, before any hook: with that key there, it refused the two ("more than one
        stateful callback of type ModelCheckpoint", of a list holding one); it reads them again to save and restore
        the callbacks' states, after ``setup``."""
        super().setup(trainer, pl_module, stage)
        self.takes_model_checkpoint_key = False
        if type(self) is WholeCheckpoint:
            key = self.state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
            callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning's callback connector
            self.takes_model_checkpoint_key = not any(
                c is not self and type(c) is not WholeCheckpoint and c.state_key == key for c in callbacks
            )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A run folder moved with its checkpoints (copied off a cluster, renamed) keeps its best score: Lightning
        drops the state of a callback whose recorded ``dirpath`` differs, and a fit resumed there then replaced
        ``best.ckpt`` at its next validation whatever it scored. A folder without those files starts afresh."""
        super().load_state_dict(_moved_state(state_dict, self.dirpath))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: Any) -> None:
        """A checkpoint without a monitor (``last.ckpt``) is saved every epoch: with ``check_val_every_n_epoch: 2``
        Lightning saved it only after validations, so ``last`` was an epoch behind and a kill lost that epoch."""
        super().on_train_epoch_end(trainer, pl_module)
        every = trainer.check_val_every_n_epoch
        if (
            self.monitor is None
            and isinstance(every, int)
            and every > 1
            and (trainer.current_epoch + 1) % every != 0  # no validation after this epoch to save it
            and not self._should_save_on_train_epoch_end(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # object stores upload whole objects already; a plugin's own writer (AsyncCheckpointIO) may not have written
        # the file when save_checkpoint returns
        if not isinstance(self._fs, LocalFileSystem) or type(trainer.strategy.checkpoint_io) is not TorchCheckpointIO:
            return super()._save_checkpoint(trainer, filepath)
        partial = os.path.join(os.path.dirname(filepath), temporary_name(os.path.basename(filepath), "", ".partial"))
        strategy = trainer.strategy
        lightnings, strategy.checkpoint_io = strategy.checkpoint_io, BesideCheckpointIO()
        try:
            trainer.save_checkpoint(partial, self.save_weights_only)  # every rank takes part; global rank 0 writes
        except OSError as error:  # a full disk or quota: Lightning's message names no file
            if self._fs.exists(partial):  # a cut file (100 MB and more) would hold on to the space that ran out
                self._fs.rm(partial)
            kept = "the previous one is kept" if self._fs.exists(filepath) else "no earlier one exists"
            raise OSError(
                error.errno,
                f"{filepath}: checkpoint not written ({error.strerror or error}{_free_space(filepath, error)}); {kept}",
            ) from error
        finally:
            strategy.checkpoint_io = lightnings
        if trainer.is_global_zero:  # paths as fsspec wrote them (a `file:` root directory is a local path too)
            os.replace(self._fs._strip_protocol(partial), self._fs._strip_protocol(filepath))
        trainer.strategy.barrier("WholeCheckpoint.replace")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


def _moved_state(state: dict[str, Any], dirpath: Any) -> dict[str, Any]:
    """``state`` with its paths under the recorded ``dirpath`` moved to ``dirpath``, when every checkpoint it keeps
    (``best_k_models``; a callback without a monitor keeps only ``best_model_path``) lies there under its name; else
    ``state`` unchanged."""
    old = state.get("dirpath")
    if not isinstance(old, str) or not isinstance(dirpath, str) or old == dirpath:
        return state

    def moved(path: Any) -> Any:
        if not isinstance(path, str) or os.path.dirname(path) != old:
            return path
        return os.path.join(dirpath, os.path.basename(path))

    kept = {moved(path): score for path, score in (state.get("best_k_models") or {}).items()}
    files = list(kept) or [path for path in [moved(state.get("best_model_path"))] if path]
    if not files or not all(isinstance(path, str) and os.path.isfile(path) for path in files):
        return state
    paths = ("best_model_path", "kth_best_model_path", "last_model_path")
    return {**state, **{key: moved(state.get(key)) for key in paths if key in state}, "best_k_models": kept,
            "dirpath": dirpath}  # fmt: skip


class BesideCheckpointIO(TorchCheckpointIO):
    """Torch's checkpoint writer, writing straight into the file it is given (``WholeCheckpoint``'s ``.partial``,
    renamed into place after): Lightning's writes each checkpoint whole into $TMPDIR first (fsspec's transaction)
    and then moves it, so a small TMPDIR (a node's tmpfs, a scratch quota) failed every save of a fit whose
    checkpoints folder had gigabytes free, and a tmpfs held the checkpoint in memory meanwhile."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:  # Lightning's refuses them, naming the option
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = LocalFileSystem._strip_protocol(str(path))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        buffer = io.BytesIO()  # as Lightning's: a full disk is then an OSError of the write, not torch's RuntimeError
        torch.save(checkpoint, buffer)
        with open(path, "wb") as handle:
            handle.write(buffer.getbuffer())


def _free_space(filepath: str, error: OSError) -> str:
    """For a full disk, the free space of the checkpoints folder (the one place a checkpoint is written)."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return ""
    folder = os.path.dirname(os.path.abspath(filepath))
    try:
        return f": {shutil.disk_usage(folder).free / 2**20:.0f} MiB free in the checkpoints folder {folder}"
    except OSError:
        return ""


class BestCheckpoint(WholeCheckpoint):
    """``ModelCheckpoint`` whose ties replace the kept checkpoint instead of keeping the oldest.

    Validation AUROC saturates (1.0 on a small or easy validation split, often within a few epochs); Lightning's
    strict comparison would then keep the first epoch that reached it, while later epochs with the same AUROC
    have kept improving everything else (localization, calibration). ``--ckpt_path last`` needs a separate
    every-epoch checkpoint: Lightning refreshes ``save_last`` only when a top-k checkpoint is saved.

    Scores within float32 rounding of each other (1e-6) tie. A NaN score (validation AUROC with images of one class
    only) counts as the worst, as Lightning ranks it (-inf for ``mode: max``): it never displaces a real score, and
    with NaN every epoch the tie rule keeps the newest. The file records the NaN its epoch logged as its score.
    """

    #: the score the validation being checkpointed logged (NaN kept), None outside one
    _logged_score: Tensor | None = None
    #: the global step of this fit's latest validation (not the sanity check); None before its first
    _validated_at: int | None = None
    _said_unvalidated = False  # the warning of a save without validation, once a fit

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Lightning's default mode, min, would keep the epoch with the lowest AUROC or wAFROC as best.ckpt
        check_mode("BestCheckpoint:", self.mode, "monitor", self.monitor, "mode: max in its init_args")
        if stage == "fit":  # Lightning refuses a monitor never logged after the first epoch, with nothing saved
            check_logged("BestCheckpoint:", "monitor", self.monitor)
        super().setup(trainer, pl_module, stage)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """An epoch without validation (``check_val_every_n_epoch`` > 1) has no score of its own (``last.ckpt``
        then records none, not the previous validation's)."""
        super().on_train_epoch_start(trainer, pl_module)
        self.current_score = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self._validated_at, self._said_unvalidated = None, False  # a notebook's second fit: not validated yet

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_at = trainer.global_step
        super().on_validation_end(trainer, pl_module)

    def _save_topk_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        """A save with no validation since the weights last changed is passed over: an epoch that
        ``trainer.max_steps`` ends before its validation is saved at its end all the same, and its ``val/`` figures
        are then the previous validation's. They tie with best.ckpt's own, and the tie rule replaced best.ckpt with
        weights no validation had seen, recording the earlier epoch's score (and thresholds) as theirs."""
        stale = str(self.monitor).startswith("val/") and self._validated_at != trainer.global_step
        if stale and self.monitor in monitor_candidates:
            if trainer.is_global_zero and not self._said_unvalidated:
                self._said_unvalidated = True
                log.warning(
                    "epoch %d ended at step %d without a validation (trainer.max_steps?): best.ckpt does not weigh "
                    "its weights, whose %s would be the previous validation's (last.ckpt holds them; said once a fit)",
                    trainer.current_epoch, trainer.global_step, self.monitor,
                )  # fmt: skip
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_monitor_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        """``current_score`` is this validation's score whether or not it replaced ``best.ckpt``: Lightning updates
        it only when it saves, so ``last.ckpt`` of an epoch that did not beat best.ckpt recorded best's score as its
        own (``provenance.trained_to``; ``wsod test --ckpt_path last`` printed it beside the later epoch)."""
        self._logged_score = monitor_candidates.get(str(self.monitor))
        try:
            super()._save_monitor_checkpoint(trainer, monitor_candidates)
        finally:
            current, self._logged_score = self._logged_score, None
        if current is not None:  # a NaN stays NaN
            self.current_score = current

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Lightning sets ``current_score`` to its ranking's stand-in for a NaN score (-inf for ``mode: max``) just
        before it saves: best.ckpt of a NaN epoch recorded -inf, and ``wsod test --ckpt_path RUN:best`` printed
        ``val/fusion/auroc -inf``. The file records the score the epoch logged (``best_model_score`` keeps -inf, the
        ranking a resumed fit compares with)."""
        if self._logged_score is not None:
            self.current_score = self._logged_score
        super()._save_checkpoint(trainer, filepath)

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        if current is None or self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return super().check_monitor_top_k(trainer, current)
        if torch.isnan(current):  # Lightning's _update_best_and_save keeps it as this; torch.ge(nan, -inf) is False
            current = torch.tensor(float("-inf" if self.mode == "max" else "inf"), device=current.device)
        kept = self.best_k_models[self.kth_best_model_path]
        # one figure computed twice in float32 rounds apart (2/3 logged as 0.66666669 and 0.66666663): a tie
        slack = 1e-6 * max(1.0, float(kept.abs())) if torch.isfinite(kept) else 0.0
        improved = bool(current >= kept - slack) if self.mode == "max" else bool(current <= kept + slack)
        return trainer.strategy.reduce_boolean_decision(improved)
