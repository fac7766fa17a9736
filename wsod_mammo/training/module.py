"""GMICLitModule: trains GMIC from image-level labels with a chosen patch-selection saliency method."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal, cast

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from torchmetrics import MetricCollection

from wsod_mammo.data.resume_sampling import stopped_epoch_as_unfinished
from wsod_mammo.detection.boxes import DEFAULT_THRESHOLD
from wsod_mammo.detection.report import METHOD_ORDER
from wsod_mammo.logging_setup import said_by_rank_zero
from wsod_mammo.models import GMIC, GMICOutput
from wsod_mammo.models.nyu import load_nyu_checkpoint, load_nyu_state_dict, nyu_percent_t
from wsod_mammo.saliency import SaliencyMethod, available_saliency_methods, distinct_methods, get_saliency_method
from wsod_mammo.training.batch_limits import val_limit_option
from wsod_mammo.training.checkpoints import check_detection_thresholds, recorded_frame
from wsod_mammo.training.classification import HEADS, KeyedClassificationMetric, KeyedMean, stage_head_metrics
from wsod_mammo.training.collapse import ProbabilitySpread, collapsed_message
from wsod_mammo.training.divergence import (
    DivergenceWatch,
    TrainingDivergedError,
    count_nonfinite_images,
    diverged_evaluation_message,
    diverged_training_message,
)
from wsod_mammo.training.loss import gmic_loss, gmic_sample_losses
from wsod_mammo.training.lr_schedule import scheduler_config
from wsod_mammo.training.provenance import trained_to
from wsod_mammo.training.run_dir import logger_folders
from wsod_mammo.training.undefined_auroc import undefined_auroc_message

log = logging.getLogger(__name__)

_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    """True for data a checkpoint can hold and ``torch.load(weights_only=True)`` can read back."""
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _test_time_methods(
    test_saliency: list[str | SaliencyMethod] | None, predict_saliency: str | SaliencyMethod
) -> tuple[list[SaliencyMethod], SaliencyMethod]:
    """``model.test_saliency`` (default: every method; one of them given with settings as ``predict_saliency``
    stands in for its namesake) and ``model.predict_saliency`` as methods, each refused with the option named
    where it is unknown, repeated or empty."""
    given = list(test_saliency) if test_saliency is not None else list(METHOD_ORDER)
    tested = [get_saliency_method(m, "model.test_saliency") for m in given]
    predicted = get_saliency_method(predict_saliency, "model.predict_saliency")
    if test_saliency is None:  # the default five: a predict method given with settings stands in for its namesake
        tested = [predicted if method.name == predicted.name else method for method in tested]
    tested = distinct_methods(tested, "model.test_saliency")
    if not tested:
        raise ValueError(f"model.test_saliency: give at least one of {available_saliency_methods()}")
    return tested, predicted


class GMICLitModule(LightningModule):
    """GMIC with the paper's loss, per-head classification metrics and injected optimizer/scheduler.

    Args:
        model: the GMIC network (chosen in YAML by ``class_path``).
        train_saliency: the method whose map selects GMIC's patches, in training and when classifying
            (name or instance; ``cam`` is the original GMIC).
        test_saliency: the methods evaluated for detection in validation/test (default: all five): names, or
            methods given with settings or of your own (instances; ``class_path`` in YAML), each under its own name.
        saliency_target: the score the gradient methods differentiate (``y_global`` or ``y_fusion``).
        predict_saliency: the method whose map gives the boxes of ``wsod predict`` (as ``test_saliency``'s).
        beta: weight of the saliency regularizer, the paper's ``L_reg`` (a sum over positions, see ``gmic_loss``);
            the default is NYU's model 1's.
        init_from_nyu: path of an NYU GMIC checkpoint (``sample_model_*.p``, zip or legacy format) to start a
            fresh fit from, or to test/predict with as it is when no ``--ckpt_path`` is given.
        optimizer: optimizer factory (Adam by default); scheduler: optional LR scheduler factory.
        scheduler_monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
        channels_last: run GMIC in the channels-last memory format (faster convolutions on recent GPUs and CPUs).
    """

    def __init__(
        self,
        model: GMIC,
        train_saliency: str | SaliencyMethod = "cam",
        test_saliency: list[str | SaliencyMethod] | None = None,
        saliency_target: Literal["y_global", "y_fusion"] = "y_global",
        predict_saliency: str | SaliencyMethod = "gradcampp",
        beta: float = 3.259e-6,
        init_from_nyu: str | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_monitor: str = "val/fusion/auroc",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self._save_plain_hyperparameters(locals())
        self.model = model
        self.train_saliency = get_saliency_method(train_saliency, "model.train_saliency")
        tested, predicted = _test_time_methods(test_saliency, predict_saliency)
        # The test-time methods as given, by the names the steps, callbacks and thresholds use: a method given with
        # settings (LayerCAM(layers=["stage5"])) or not registered (a user's class_path) keeps them.
        both = "model.test_saliency and model.predict_saliency"
        self._named_methods = {m.name: m for m in distinct_methods([*tested, predicted], both)}
        self.test_saliency = [method.name for method in tested]
        self.saliency_target = saliency_target
        self.predict_saliency = predicted.name
        if not beta >= 0:  # a negative weight rewards large maps: the saliency regularizer turned upside down
            raise ValueError(f"model.beta: expected a weight >= 0 of the saliency regularizer, found {beta}")
        self.beta = beta
        self.init_from_nyu = init_from_nyu
        self._nyu_loaded = False
        # The NYU file whose weights the module holds as they are (test/validate/predict with no --ckpt_path), for
        # the test report's record of what it evaluated; None once training has changed them.
        self.nyu_weights_as_is: str | None = None
        self.trained_in_process = False  # a test with no checkpoint and no NYU weights: untrained unless a fit ran
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = scheduler_monitor
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.metrics = stage_head_metrics(model.num_classes)
        self.evaluation_loss = nn.ModuleDict({stage: KeyedMean() for stage in ("val", "test")})  # each image once
        # Binarization threshold per test-time method, chosen on validation data (DetectionMetrics) and stored
        # in every checkpoint so that test and predict never tune on their own data.
        self.detection_thresholds: dict[str, float] = {}
        # methods whose stored threshold validation took from a tie at TPR 0 (not a choice; the report says so)
        self.tied_thresholds: set[str] = set()
        # The names of the outputs, as the checkpoint this module was loaded from recorded them (its data's
        # classes; NYU's heads for nyu_to_checkpoint's), for predict; None: take the data's.
        self.class_names: list[str] | None = None
        # The input frame (input_size, crop_breast, resize) the checkpoint loaded was trained in, for a Predictor
        # built on this module to bring images to it; empty: none recorded.
        self.recorded_input_frame: dict[str, Any] = {}
        self.loaded_from: dict[str, Any] = {}  # epoch and scores of the checkpoint loaded (provenance.trained_to)
        # Training predictions stay on the device until the epoch ends and enter the metrics in one update: per step,
        # the heads' metric updates and logging calls would add their small kernels and Python work to a step that
        # is launch-bound on a GPU (the step's freedom from host syncs: tests/test_sync_free.py).
        self._train_outputs: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        # Maps that callbacks asked for: validation and test steps return them from their classification pass.
        self._requested_maps: list[str] = []
        self._warned_undefined_auroc = False  # once per fit/validate run (reset in setup)
        self._warned_part_of_validation = False  # once per fit (reset in setup)
        self._plateau_held = False  # a skipped ReduceLROnPlateau step said; reset by a step (and in setup)
        # A loss or probabilities gone NaN/inf stop the run with where and why, before any checkpoint holds them;
        # counted on the device and read where the run synchronizes anyway (log steps, epoch ends)
        self._divergence = DivergenceWatch()
        self._nonfinite_images: Tensor | None = None
        self._fusion_spread = ProbabilitySpread()  # a model answering every image alike is said, not reported

    def _save_plain_hyperparameters(self, init_locals: dict[str, Any]) -> None:
        """Save hparams so that checkpoints stay loadable with ``weights_only=True``.

        Under LightningCLI the parsed config (plain dicts with ``class_path``) is saved, which lets
        ``wsod test --ckpt_path`` rebuild the model; in plain Python, arguments that are objects are skipped.
        """
        if _given_hyperparameters.get() is not None:
            self.save_hyperparameters()
            return
        skipped = [k for k, v in init_locals.items() if k not in ("self", "__class__") and not _is_plain(v)]
        self.save_hyperparameters(ignore=skipped)

    # ----------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        self._warned_undefined_auroc = False
        self._warned_part_of_validation = False
        self._plateau_held = False
        self._check_heads_match_data(stage)
        # A fresh fit starts from NYU's weights; test/predict without --ckpt_path run NYU's weights as they are.
        # Once per module: a test after fit in the same process keeps the trained weights.
        if self.init_from_nyu and self.trainer.ckpt_path is None and not self._nyu_loaded:
            self._nyu_loaded = True
            source = f"model.init_from_nyu: {self.init_from_nyu}"
            state = load_nyu_checkpoint(self.init_from_nyu, option="model.init_from_nyu")
            fresh = load_nyu_state_dict(self.model, state, source=source)
            log.info("Initialized GMIC from %s; freshly initialized: %s", self.init_from_nyu, fresh or "none")
            self.nyu_weights_as_is = None if stage == "fit" else str(self.init_from_nyu)
            nyu_t = nyu_percent_t(self.init_from_nyu)
            if self.nyu_weights_as_is and nyu_t is not None and nyu_t != self.model.percent_t and self._says():
                # the config's percent_t (0.02, sample_model_1's) is not the file's: y_global and the maps that
                # differentiate its top t% (GradCAM++, XGradCAM, LayerCAM) then differ from NYU's for the same weights
                log.warning(
                    "%s: nyukat/GMIC runs this model with percent_t %s, the model has %s: y_global and the maps that "
                    "differentiate it differ from NYU's (--model.model.init_args.percent_t %s runs it as NYU does)",
                    source, nyu_t, self.model.percent_t, nyu_t,
                )  # fmt: skip

    def _check_heads_match_data(self, stage: str) -> None:
        """Each output is rated against one of the data's classes: a count that differs failed at the first batch
        with a loss's tensor sizes (``wsod`` refuses it before running; this says it in Python too). Not predict:
        it reads no labels, and NYU's two heads predict on data of any classes."""
        # Trainer.datamodule: set by Lightning's data connector, undeclared in its type hints
        data = self.trainer.datamodule if self._trainer is not None else None  # type: ignore[attr-defined]
        names = getattr(data, "class_names", None)
        if stage == "predict" or not names or len(names) == self.model.num_classes:
            return
        raise ValueError(
            f"model: GMIC has {self.model.num_classes} output class(es), the data's classes are {len(names)} "
            f"({', '.join(map(str, names))}): give one class per output (GMIC(num_classes={len(names)}), or the data "
            "as many classes)"
        )

    def on_train_start(self) -> None:
        self.nyu_weights_as_is = None  # trained from here on (a fit after a test in one process)
        self.trained_in_process = True

    def on_validation_end(self) -> None:
        # after Lightning computed (and so synced over all processes) the epoch's metrics
        self._warn_if_part_of_validation()
        if self.trainer.sanity_checking or self._warned_undefined_auroc:
            return
        collection = cast(MetricCollection, self.metrics["val_fusion"])  # stage_head_metrics
        undefined = cast(KeyedClassificationMetric, collection["auroc"]).undefined
        if not undefined:
            return
        self._warned_undefined_auroc = True
        if self.trainer.is_global_zero:
            log.warning(undefined_auroc_message(undefined, self._output_names(), self.trainer))

    def _warn_if_part_of_validation(self) -> None:
        """Say once a fit when validation ran fewer batches than its split holds (``--trainer.limit_val_batches``):
        its figures were logged, and best.ckpt and the detection thresholds chosen, as if from the whole split, while
        they came from its first images (VinDr's lists a split's mass images before its normal ones)."""
        trainer = self.trainer
        if (
            trainer.sanity_checking
            or trainer.state.fn != "fit"
            or getattr(trainer, "fast_dev_run", False)  # checkpoints are off there
            or self._warned_part_of_validation
        ):
            return
        loader = trainer.val_dataloaders
        loader = loader[0] if isinstance(loader, (list, tuple)) and loader else loader
        ran = trainer.num_val_batches[0] if trainer.num_val_batches else 0
        try:
            held = len(loader)  # type: ignore[arg-type]  # a DataLoader; an iterable dataset's has no length
        except TypeError:
            return
        if 0 < ran < held:
            self._warned_part_of_validation = True
            if trainer.is_global_zero:
                log.warning(
                    "validation ran %d of its %d batches (%s): the val/ figures, best.ckpt and the detection "
                    "thresholds come from the split's first images alone, not the split (VinDr's lists its mass "
                    "images first) (said once a fit)", ran, held, val_limit_option(trainer),
                )  # fmt: skip

    def _output_names(self) -> list[str]:
        # Trainer.datamodule: set by Lightning's data connector, undeclared in its type hints
        data = self.trainer.datamodule if self._trainer is not None else None  # type: ignore[attr-defined]
        names = getattr(data, "class_names", None) or self.class_names or []
        names = [str(name) for name in names]
        return names if len(names) == self.model.num_classes else [f"class {i}" for i in range(self.model.num_classes)]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        every = self.trainer.check_val_every_n_epoch if self._trainer is not None else 1
        steps = None  # read only for a one-cycle schedule: it counts the training batches
        if self._trainer is not None and isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
            steps = float(self.trainer.estimated_stepping_batches)
        with said_by_rank_zero(self._says()):  # every DDP process configures its optimizer: said once
            schedule = scheduler_config(scheduler, self.scheduler_monitor, max_epochs, every, steps)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def _says(self) -> bool:
        """Whether this process says the warnings every process would repeat: rank 0's, or one without a trainer."""
        return self._trainer is None or self.trainer.is_global_zero

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """A NaN monitored figure (an AUROC undefined on a validation split of one kind) is not a plateau:
        ReduceLROnPlateau would count it as an epoch without improvement and cut the learning rate every epoch.
        Said when it starts, not every epoch (a fit on a validation split of one kind said it once an epoch), and
        again where it starts anew after an epoch that stepped."""
        if metric is not None and not math.isfinite(float(metric)):
            if self._says() and not self._plateau_held:  # the monitored figure is the same on every rank: said once
                log.warning(
                    "model.scheduler: %s is %s at epoch %d: %s is not stepped while it is undefined (it would count "
                    "each such epoch as one without improvement and lower the learning rate); said again only "
                    "after an epoch it is defined",
                    self.scheduler_monitor, float(metric), self.current_epoch, type(scheduler).__name__,
                )  # fmt: skip
            self._plateau_held = True
            return
        self._plateau_held = False
        super().lr_scheduler_step(scheduler, metric)

    # ------------------------------------------------------------------------------------------------ steps
    def forward(self, images: Tensor) -> GMICOutput:
        images = images.contiguous(memory_format=self.memory_format)
        return self.model(images, patch_saliency=self.train_saliency)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        output = self(batch["image"])
        loss = gmic_loss(output, batch["label"], self.beta)
        batch_size = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in loss.terms().items()}, batch_size=batch_size, sync_dist=False)
        heads = (output.y_global, output.y_local, output.y_fusion)
        # copies: under compile_training_forward + reduce-overhead the heads are CUDA-graph memory the next step reuses
        self._train_outputs.append((*(h.detach().to(torch.float32, copy=True) for h in heads), batch["label"].detach()))
        self._divergence.update(loss.total, self.global_step)
        return loss.total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by Lightning's logger connector
        if self.global_step % max(1, every) == 0:  # Lightning reads the logged loss here
            self._raise_if_diverged()

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self._raise_if_diverged()  # validation in a fit, before its checkpoints are saved

    def _raise_if_diverged(self) -> None:
        """Stop the fit, on every process alike, when a training loss so far was NaN or infinite."""
        strategy = self.trainer.strategy
        first = self._divergence.first_bad_step(lambda t: strategy.reduce(t, reduce_op="min"), self.device)
        if first is None:
            return
        optimizers = self.trainer.optimizers
        lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else None
        kept = sorted(
            {
                path
                for callback in self.trainer.checkpoint_callbacks
                for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", ""))
                if path
            }
        )  # fmt: skip
        raise TrainingDivergedError(diverged_training_message(first, self.current_epoch, lr, kept))

    def on_train_epoch_end(self) -> None:
        self._raise_if_diverged()  # before the epoch's checkpoints (they run after this hook)
        if not self._train_outputs:
            return
        *heads, labels = (torch.cat(parts) for parts in zip(*self._train_outputs, strict=True))
        self._train_outputs = []
        self._update_metrics("train", heads, labels)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluation_step("test", batch)

    def _evaluation_step(self, stage: str, batch: dict[str, Any]) -> dict[str, Any]:
        output, maps = self.evaluate(batch["image"], self._requested_maps)
        image_ids = batch.get("image_id")
        evaluation_loss = cast(KeyedMean, self.evaluation_loss[stage])
        evaluation_loss.update(gmic_sample_losses(output, batch["label"], self.beta), image_ids)
        self.log(f"{stage}/loss", evaluation_loss, on_step=False, on_epoch=True)
        heads = (output.y_global, output.y_local, output.y_fusion)
        self._update_metrics(stage, heads, batch["label"], image_ids)
        bad = count_nonfinite_images(heads)
        self._nonfinite_images = bad if self._nonfinite_images is None else self._nonfinite_images + bad
        self._fusion_spread.update(output.y_fusion)
        return {"y_global": output.y_global, "y_fusion": output.y_fusion, "maps": maps}

    def on_validation_epoch_end(self) -> None:
        self._raise_if_nonfinite_evaluation("sanity_check" if self.trainer.sanity_checking else "validate")
        self._warn_if_collapsed("val")

    def on_test_epoch_end(self) -> None:
        self._raise_if_nonfinite_evaluation("test")
        self._warn_if_collapsed("test")

    def _warn_if_collapsed(self, stage: str) -> None:
        """Say when the fusion head gave every evaluated image the same probability (not in the sanity check, whose
        two batches prove nothing); on every process alike, written by the first."""
        strategy = self.trainer.strategy
        reduce = lambda tensor, op: strategy.reduce(tensor, reduce_op=op)  # noqa: E731
        constants = self._fusion_spread.collapsed(self.model.num_classes, reduce, self.device)
        if constants is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        fitting = self.trainer.state.fn == "fit"
        log.warning(collapsed_message(stage, constants, self._output_names(), fitting))

    def _raise_if_nonfinite_evaluation(self, stage: str) -> None:
        """Stop before checkpoints (validation) or reports (test) use figures of NaN probabilities; on every process
        alike. Runs after the callbacks' epoch-end hooks, before ``on_validation_end``/``on_test_end``."""
        count, self._nonfinite_images = self._nonfinite_images, None
        local = count if count is not None else torch.zeros((), dtype=torch.long, device=self.device)
        total = int(self.trainer.strategy.reduce(local.clone(), reduce_op="sum"))
        if total:
            fitting = self.trainer.state.fn == "fit" and stage != "sanity_check"  # not a resumed checkpoint's
            message = diverged_evaluation_message(stage, total, self.trainer.ckpt_path, fitting)
            self._fusion_spread.reset()
            raise TrainingDivergedError(message)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        output, maps = self.evaluate(batch["image"], [self.predict_saliency])
        return {
            "method": self.predict_saliency,
            "threshold": self.detection_thresholds.get(self.predict_saliency, DEFAULT_THRESHOLD),
            "probabilities": output.y_fusion.detach().float(),
            "maps": maps[self.predict_saliency],
        }

    def _update_metrics(
        self, stage: str, heads: Sequence[Tensor], label: Tensor, image_ids: Sequence[str] | None = None
    ) -> None:
        """Per-head Table I metrics of ``heads``' probabilities (in ``HEADS``' order); with ``image_ids`` an image
        seen again (DDP padding, repeats) counts once."""
        target = label.long()
        squeeze = self.model.num_classes == 1
        for head, output in zip(HEADS, heads, strict=True):
            probabilities = output.detach().float()
            metrics = cast(MetricCollection, self.metrics[f"{stage}_{head}"])  # stage_head_metrics
            preds, targets = (probabilities[:, 0], target[:, 0]) if squeeze else (probabilities, target)
            metrics.update(preds, targets, image_ids=image_ids)
            on_bar = stage == "val" and head == "fusion"  # the figure that picks best.ckpt, on the progress bar
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=label.shape[0], prog_bar=on_bar)

    # ---------------------------------------------------- gradient saliency in eval, test and predict steps
    def request_saliency_maps(self, methods: Sequence[str]) -> None:
        """Ask validation and test steps to return these maps under ``outputs["maps"]`` (callbacks call this in
        ``setup``), made in the same global pass that classifies the batch instead of a second one."""
        for name in methods:
            name = self._named(name).name
            if name not in self._requested_maps:
                self._requested_maps.append(name)

    def _named(self, method: str | SaliencyMethod) -> SaliencyMethod:
        """A method by name: the one this module was given under it, else the registered one."""
        if isinstance(method, str) and method in self._named_methods:
            return self._named_methods[method]
        return get_saliency_method(method, "saliency method")

    def validated_threshold(self, method: str | SaliencyMethod) -> float | None:
        """The checkpoint's validated binarization threshold of ``method`` (a name, or an instance: only where its
        settings are those the threshold was validated for: ``LayerCAM(layers=["stage5"])`` is not the validated
        default LayerCAM); None where it has none."""
        name = method if isinstance(method, str) else method.name
        if name not in self.detection_thresholds:
            return None
        if not isinstance(method, str) and method_record(method) != method_record(self._named(name)):
            return None
        return float(self.detection_thresholds[name])

    def evaluate(
        self, images: Tensor, methods: Sequence[str | SaliencyMethod] = ()
    ) -> tuple[GMICOutput, dict[str, Tensor]]:
        """Classification outputs and the maps of ``methods`` from one GMIC pass (``GMIC.evaluate``), detached.

        Lightning runs validation, test and predict under ``torch.inference_mode()``, where no autograd graph
        can be built; when the maps need one (``GMIC.needs_autograd``) the images are cloned out of inference mode.
        """
        images = images.contiguous(memory_format=self.memory_format)
        args = (self.train_saliency, [self._named(m) for m in methods], self.saliency_target)
        if not self.model.needs_autograd(*args):
            return self.model.evaluate(images, *args)
        with torch.inference_mode(False), torch.enable_grad():
            return self.model.evaluate(images.clone(), *args)

    def saliency_maps(self, images: Tensor, methods: Sequence[str | SaliencyMethod]) -> dict[str, Tensor]:
        """All requested maps ``{name: (N, C, h, w)}`` from one global forward and one gradient call, and the
        probabilities computed on the way under the reserved keys ``y_global`` (N, C) (and ``y_fusion`` with that
        ``saliency_target``, on the patches ``train_saliency`` selects, as the steps' own pass), as
        ``GMIC.saliency_maps`` returns them."""
        context = self.trainer.precision_plugin.forward_context() if self._trainer is not None else nullcontext()
        with torch.inference_mode(False), torch.enable_grad(), context:
            named = [self._named(m) for m in methods]
            maps = self.model.saliency_maps(images.clone(), named, self.saliency_target, self.train_saliency)
        return {name: value.detach().float() for name, value in maps.items()}

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["detection_thresholds"] = dict(self.detection_thresholds)
        checkpoint["detection_thresholds_tied"] = sorted(self.tied_thresholds & set(self.detection_thresholds))
        checkpoint["detection_methods"] = {  # the method each threshold was validated for, settings and all
            name: method_record(self._named(name)) for name in self.detection_thresholds
        }
        checkpoint["train_saliency"] = method_record(self.train_saliency)  # what selected the patches, even where
        # the hyperparameters cannot hold it (an instance given in Python)
        if isinstance(self.logger, WandbLogger) and self.logger.version:  # `--ckpt_path` continues this W&B run,
            checkpoint["wandb_run_id"] = str(self.logger.version)  # wherever the checkpoints were written
        if folders := logger_folders(self.loggers):  # `--ckpt_path` continues each in its own folder
            checkpoint["logger_folders"] = folders
        # Trainer.datamodule: set by Lightning's data connector, undeclared in its type hints
        data = self.trainer.datamodule if self._trainer is not None else None  # type: ignore[attr-defined]
        names = getattr(data, "class_names", None) or self.class_names
        if names:
            checkpoint["class_names"] = [str(name) for name in names]
        if data is not None and hasattr(data, "input_size"):  # the input frame the weights were trained in, for
            checkpoint["input_frame"] = {  # Predictor.from_checkpoint to bring images to it as `wsod predict` does
                "input_size": list(data.input_size),
                "crop_breast": bool(getattr(data, "crop_breast", True)),
                "resize": str(getattr(data, "resize", "stretch")),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stopped_epoch_as_unfinished(checkpoint)  # before Lightning restores its loops from it
        with said_by_rank_zero(self._says()):  # every DDP process loads the checkpoint: its warnings said once
            self._load_records(checkpoint)

    def _load_records(self, checkpoint: dict[str, Any]) -> None:
        check_detection_thresholds(checkpoint)
        self.detection_thresholds = dict(checkpoint.get("detection_thresholds", {}))
        self.tied_thresholds = {str(m) for m in checkpoint.get("detection_thresholds_tied", [])}
        self._drop_thresholds_of_other_methods(checkpoint.get("detection_methods") or {})
        trained, selecting = checkpoint.get("train_saliency"), method_record(self.train_saliency)
        if isinstance(trained, dict) and not _same_method(trained, selecting):  # a checkpoint of a Python fit, whose
            log.warning(  # hyperparameters could not hold the method, loaded with the default: other patches, outputs
                "checkpoint: its weights were trained selecting GMIC's patches with %s; this module selects them "
                "with %s: its local and fusion outputs are not the fit's (give train_saliency=%s)",
                _shown(trained, selecting), _shown(selecting, trained), _shown(trained, selecting),
            )  # fmt: skip
        names = checkpoint.get("class_names")
        self.class_names = [str(name) for name in names] if isinstance(names, list) and names else None
        self.recorded_input_frame = recorded_frame(checkpoint)
        self.loaded_from = trained_to(checkpoint)  # the test report says which epoch it evaluated

    def _drop_thresholds_of_other_methods(self, validated_for: dict[str, Any]) -> None:
        """A threshold validated for one method serves no other of its name: a fit that validated
        ``LayerCAM(layers=["stage5"])`` and a test of the default LayerCAM shared the name ``layercam``, and the test
        cut the default's maps at the other's threshold, marked validated. Such a threshold is dropped (the method
        is then NOT VALIDATED, at the default threshold); a checkpoint of before this record keeps them all."""
        for name, record in validated_for.items():
            try:
                here = method_record(self._named(name))
            except ValueError:  # a method of a module nobody imported: this run cannot make its maps anyway
                continue
            if name in self.detection_thresholds and not _same_method(record, here):
                del self.detection_thresholds[name]
                if name in self.test_saliency or name == self.predict_saliency:
                    log.warning(
                        "checkpoint: the threshold of %s was validated for %s, not for this run's %s: it is not "
                        "used (the default, NOT VALIDATED)", name, _shown(record, here), _shown(here, record),
                    )  # fmt: skip

    def recorded_class_names(self) -> list[str] | None:
        """The names the checkpoint recorded for the outputs, when they name every one (else None)."""
        names = self.class_names
        return list(names) if names and len(names) == self.model.num_classes else None


#: a ``repr`` that names where an object lies in memory (``<function f at 0x7f...>``): another in every process
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def method_record(method: SaliencyMethod) -> dict[str, Any]:
    """A saliency method as plain data: its class, ``repr`` and settings (its attributes, each as ``repr``), for a
    checkpoint. A method's ``repr`` names its layers only, unless it says more: a method of your own with another
    setting (``PowerCAM(power=8)``) had the record of ``PowerCAM(power=2)``, whose threshold it then took. A setting
    whose ``repr`` is a memory address (a function, a plain object) is left out: it would differ in every process,
    and a test would drop every threshold the fit validated."""
    settings = {key: text for key, value in sorted(vars(method).items()) if not _ADDRESS.search(text := repr(value))}
    return {"class_path": f"{type(method).__module__}.{type(method).__qualname__}", "method": repr(method),
            "settings": settings}  # fmt: skip


def _same_method(record: Any, here: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``method_record`` is ``here``'s method: its settings are compared where it has them
    (a checkpoint of before they were recorded has its class and ``repr`` only)."""
    if not isinstance(record, dict):
        return False
    return all(record.get(key) == value for key, value in here.items() if key != "settings" or key in record)


def _shown(record: Any, other: dict[str, Any]) -> str:
    """A ``method_record``'s method for a message, with its settings where its ``repr`` is ``other``'s."""
    method = str(record.get("method")) if isinstance(record, dict) else repr(record)
    settings = record.get("settings") if isinstance(record, dict) else None
    if method != other.get("method") or not isinstance(settings, dict):
        return method
    return f"{method} ({settings_text(settings)})"


def settings_text(settings: Any) -> str:
    """A ``method_record``'s settings for a message: ``power=2.0, layer='final'``, or ``no settings``."""
    pairs = settings.items() if isinstance(settings, dict) else ()
    return ", ".join(f"{key}={value}" for key, value in pairs) or "no settings"
