"""Detection metrics per test-time saliency method (validation and test) and saliency overlays."""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from wsod_mammo.data.geometry import content_regions, input_pixel_sizes
from wsod_mammo.detection.afroc import FIGURES, Ratings, figures_of_merit
from wsod_mammo.detection.afroc_report import result_ratings
from wsod_mammo.detection.bootstrap import SEED
from wsod_mammo.detection.boxes import DEFAULT_THRESHOLD, saliency_to_boxes
from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.detection.normal_ratings import NormalImageRatings
from wsod_mammo.detection.overlay import method_panels, render_overlay, short_id, write_png
from wsod_mammo.detection.overlay_frame import overlay_frame
from wsod_mammo.detection.pointing import POINTING_UNITS, TOLERANCE
from wsod_mammo.detection.report import SUBSETS
from wsod_mammo.saliency import SaliencyMethod
from wsod_mammo.training.batch_targets import class_targets, mass_notes, target_findings, target_sizes, unseen_targets
from wsod_mammo.training.evaluation_options import (
    Alignment,
    check_class_of_model,
    check_methods_of_model,
    checked_class_index,
    map_placement,
    method_names,
)
from wsod_mammo.training.run_dir import report_directory, report_withheld
from wsod_mammo.training.table1_report import table1_intervals
from wsod_mammo.training.test_report import write_test_report
from wsod_mammo.training.test_split import breast_groups, density_labels, study_groups

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def step_maps(
    pl_module: GMICLitModule, outputs: dict[str, Any], images: Tensor, methods: Sequence[str]
) -> dict[str, Tensor]:
    """The step's maps of ``methods`` (``outputs["maps"]``, see ``request_saliency_maps``); any it lacks are made
    in a separate saliency pass."""
    maps = dict(outputs.get("maps", {}))
    missing = [m for m in methods if m not in maps]
    if missing:
        maps.update(pl_module.saliency_maps(images, missing))
    return maps


class DetectionMetrics(Callback):
    """TPR@FPPI and FROC for every test-time saliency method, from the maps of the pass that classifies each batch.

    Validation: each method's binarization threshold is chosen on a grid (maximum TPR at ``fppi_budget``) and
    stored in the module, hence in every checkpoint. Test: each method is measured at its stored threshold, on
    mass images (the study) and on all images; Table I, the Table II row, FROC plots and a JSON summary are
    written to the run directory and logged to W&B.

    Args:
        methods: test-time methods (default: the module's ``test_saliency``): names, or a method of your own as
            the module's ``test_saliency`` gives it (``class_path``).
        thresholds: the validation grid of binarization thresholds on min-max normalized maps.
        fppi_budget: FPPI at which validation maximizes TPR; the reported Table II cell is the same figure (the
            FROC point with the highest TPR at FPPI <= the budget), so the selected operating point is the reported one.
        default_threshold: used in test for a method with no validated threshold (with a warning).
        class_index: the class whose maps and boxes are evaluated (0: the first of ``classes``).
        alignment: how maps are placed on the image: ``resize`` (plain resizing, as the study's pytorch-grad-cam
            did, and the block convention GMIC's own patch crops train the map to) or ``receptive_field`` (each cell
            on the centre of its receptive field, ~30 px up-left). Measured on the demo: ``receptive_field`` wins
            early in training, ``resize`` once patch selection has shaped the map.
        bootstrap_seed: seed of the 1,000 class-stratified resamples behind every 95% interval of the report.
        pointing_tolerance: how far a map's peak may lie off a mass and still hit it in the pointing game, in
            ``pointing_unit`` (Zhang et al.'s 15 pixels; at 2944 x 1920 a VinDr pixel is about 0.1 mm).
        pointing_unit: ``px`` (pixels of the input frame) or ``mm`` (on the breast, from each DICOM's pixel spacing
            and the resize's scale per axis: the same distance on every image; images without a spacing, PNG or
            TIFF inputs, are then left out of the pointing game, not of the energy).
    """

    def __init__(
        self,
        methods: list[str | SaliencyMethod] | None = None,
        thresholds: list[float] | None = None,
        fppi_budget: float = 1.0,
        default_threshold: float = DEFAULT_THRESHOLD,
        iou_threshold: float = 0.3,
        class_index: int = 0,
        alignment: Alignment = "resize",
        bootstrap_seed: int = SEED,
        pointing_tolerance: float = TOLERANCE,
        pointing_unit: Literal["px", "mm"] = "px",
    ) -> None:
        self.methods = method_names(methods, "DetectionMetrics.methods")
        self._given_methods = list(methods or [])
        self.alignment = alignment
        self.bootstrap_seed = bootstrap_seed
        if thresholds is not None and not thresholds:
            raise ValueError("DetectionMetrics.thresholds: expected at least one threshold in [0, 1], found []")
        self.thresholds = tuple(thresholds) if thresholds is not None else DEFAULT_THRESHOLD_GRID
        # maps are min-max normalized: above 1 no box, below 0 one box of the whole image (NaN is refused too)
        if not all(0.0 <= float(v) <= 1.0 for v in self.thresholds):
            raise ValueError(f"DetectionMetrics.thresholds: expected values in [0, 1], found {list(self.thresholds)}")
        if not 0.0 <= float(default_threshold) <= 1.0:
            raise ValueError(f"DetectionMetrics.default_threshold: expected one in [0, 1], found {default_threshold}")
        if not 0.0 <= float(fppi_budget) < math.inf:
            raise ValueError(f"DetectionMetrics.fppi_budget: expected a finite number >= 0, found {fppi_budget}")
        if not 0.0 <= float(iou_threshold) < 1.0:  # a hit is IoU > iou_threshold: below 0 any box hits every mass
            raise ValueError(f"DetectionMetrics.iou_threshold: expected a number in [0, 1), found {iou_threshold}")
        if not 0.0 <= float(pointing_tolerance) < math.inf:
            raise ValueError(
                f"DetectionMetrics.pointing_tolerance: expected a distance >= 0, found {pointing_tolerance}"
            )
        if pointing_unit not in POINTING_UNITS:
            raise ValueError(
                f"DetectionMetrics.pointing_unit: expected one of {POINTING_UNITS}, found {pointing_unit!r}"
            )
        self.pointing_tolerance = float(pointing_tolerance)
        self.pointing_unit = pointing_unit
        self.fppi_budget = fppi_budget
        self.default_threshold = default_threshold
        self.iou_threshold = iou_threshold
        self.class_index = checked_class_index(class_index, "DetectionMetrics")
        self._metrics: dict[tuple[str, str], DetectionMetric] = {}
        self._normals: dict[str, NormalImageRatings] = {}  # validation's normal images, per method (wAFROC)
        self._results: dict[tuple[str, str], DetectionResult] = {}
        self._groups: dict[int, int] = {}  # image key -> study key of the test split (test_split.study_groups)
        self._said_tie: set[str] = set()  # methods whose threshold validation chose from a tie at TPR 0 (said once)
        self._said_unfound: set[str] = set()  # methods validation had no mass in view for (said once)

    def _methods(self, pl_module: GMICLitModule) -> list[str]:
        return list(self.methods) if self.methods else list(pl_module.test_saliency)

    def _build(
        self,
        pl_module: GMICLitModule,
        subsets: Mapping[str, bool],
        thresholds: Mapping[str, Sequence[float]],
        by_kind: bool,
    ) -> None:
        self._metrics = {
            (method, subset): DetectionMetric(
                thresholds=thresholds[method],
                iou_threshold=self.iou_threshold,
                positives_only=positives_only,
                cell0_center=map_placement(pl_module, self.alignment),
                operating_fppi=self.fppi_budget,
                pointing_tolerance=self.pointing_tolerance,
                pointing_unit=self.pointing_unit,
                pointing_by_kind=by_kind,
            ).to(pl_module.device)
            for method in self._methods(pl_module)
            for subset, positives_only in subsets.items()
        }
        self._normals = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        check_class_of_model(self.class_index, pl_module, "DetectionMetrics")
        check_methods_of_model(self._given_methods, pl_module, "DetectionMetrics.methods")
        self._said_tie, self._said_unfound = set(), set()
        pl_module.request_saliency_maps(self._methods(pl_module))  # made in the steps' own pass

    def _update(self, pl_module: GMICLitModule, outputs: dict[str, Any], batch: dict[str, Any]) -> None:
        methods = sorted({method for method, _ in self._metrics})
        maps = step_maps(pl_module, outputs, batch["image"], methods)
        gt_boxes, labels = class_targets(batch, self.class_index)
        probabilities = outputs["y_fusion"][:, self.class_index].float()
        size = tuple(batch["image"].shape[-2:])
        regions = content_regions(batch["meta"])
        unseen = unseen_targets(batch, self.class_index)
        birads = target_findings(batch, self.class_index, "birads")
        sizes = target_sizes(batch, self.class_index)
        pixels = input_pixel_sizes(batch["meta"]) if self.pointing_unit == "mm" else None
        for (method, _), metric in self._metrics.items():
            metric.update(maps[method][:, self.class_index], probabilities, gt_boxes, labels, size, batch["image_id"],
                          regions, unseen, birads, sizes, pixels)  # fmt: skip
        for method, normals in self._normals.items():
            normals.update(maps[method][:, self.class_index], probabilities, labels == 0, size, batch["image_id"],
                           regions)  # fmt: skip

    # ------------------------------------------------------------------------------------------ validation
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        grid = {m: self.thresholds for m in self._methods(pl_module)}
        self._build(pl_module, {"mass": True}, grid, by_kind=False)  # per-kind figures are the test report's
        # the threshold is chosen on the mass images; wAFROC also reads the normal images' highest box scores
        placement = map_placement(pl_module, self.alignment)
        self._normals = {
            method: NormalImageRatings(self.thresholds, placement).to(pl_module.device)
            for method in self._methods(pl_module)
        }

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if not trainer.sanity_checking:
            self._update(cast("GMICLitModule", pl_module), outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        tied: list[str] = []
        unfound: list[str] = []
        for (method, _), metric in self._metrics.items():
            result = metric.compute()
            if not result.tpr_defined or result.num_gt_in_view == 0:  # nothing any threshold could find
                if method not in self._said_unfound:
                    self._said_unfound.add(method)
                    unfound.append(method)
                # logged as NaN, as an undefined AUROC is: a BestCheckpoint on val/wafroc/<method> (the study's
                # --select_by wafroc) stopped the fit with Lightning's missing-monitor error when the keys were absent
                for point in result.fppi_points:
                    pl_module.log(f"val/detection/{method}/tpr@fppi{point:g}", math.nan, sync_dist=False)
                log_figures_of_merit(pl_module, "val", method, None)
                continue
            threshold = result.best_threshold(self.fppi_budget)
            pl_module.detection_thresholds[method] = threshold
            chosen_index = self.thresholds.index(threshold)
            chosen = result.per_threshold[chosen_index]
            tied_here = chosen.tpr_within(self.fppi_budget) == 0.0
            if tied_here:
                pl_module.tied_thresholds.add(method)
            else:
                pl_module.tied_thresholds.discard(method)
            if tied_here and method not in self._said_tie:
                self._said_tie.add(method)
                tied.append(method)
            for point, value in zip(result.fppi_points, chosen.tpr_at_fppi.tolist(), strict=True):
                pl_module.log(f"val/detection/{method}/tpr@fppi{point:g}", value, sync_dist=False)
            pl_module.log(f"val/detection/{method}/threshold", threshold)
            log_pointing(pl_module, "val", method, result)
            if (normals := self._normals.get(method)) is not None:
                normal_rating = normals.compute()[:, chosen_index]
                log_figures_of_merit(pl_module, "val", method, result_ratings(result, chosen_index, normal_rating))
        self._metrics, self._normals = {}, {}
        if unfound and trainer.is_global_zero:  # the split is the same every epoch: once a run, once for all ranks
            keeps = "keeps its threshold" if len(unfound) == 1 else "keep their thresholds"
            log.warning(
                "validation has no mass boxes in view: TPR is undefined or 0 whatever the threshold, %s %s (the "
                "figures are logged as NaN; said once a run)", ", ".join(unfound), keeps,
            )  # fmt: skip
        if tied and trainer.is_global_zero:  # every method saw the same images: one mass count
            its, s = ("its", "s") if len(tied) == 1 else ("their", "")
            log.warning(
                "validation: %s find%s none of the %d masses at FPPI <= %g at any threshold of the grid (TPR 0 at "
                "each, epoch %d): %s threshold %g is the first of a tie, not a choice; %s maps do not localize the "
                "masses yet (said once a run)", ", ".join(tied), s, result.num_gt_in_view, self.fppi_budget,
                trainer.current_epoch, its, self.thresholds[0], its,
            )  # fmt: skip

    # ------------------------------------------------------------------------------------------------ test
    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        chosen = {m: (pl_module.detection_thresholds.get(m, self.default_threshold),) for m in self._methods(pl_module)}
        said = unvalidated_threshold_lines(pl_module, list(chosen), self.default_threshold)
        if said and trainer.is_global_zero:  # one line for all methods, once for all ranks (was one a method and rank)
            for line in said:
                log.warning(line)
        self._build(pl_module, SUBSETS, chosen, by_kind=True)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._update(cast("GMICLitModule", pl_module), outputs, batch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        self._results = {key: metric.compute() for key, metric in self._metrics.items()}
        for (method, subset), result in self._results.items():
            if not result.tpr_defined:
                continue
            figures = result.per_threshold[0]
            for point, value in zip(result.fppi_points, figures.tpr_at_fppi.tolist(), strict=True):
                pl_module.log(f"test/detection/{subset}/{method}/tpr@fppi{point:g}", value, sync_dist=False)
            pl_module.log(f"test/detection/{subset}/{method}/tpr", figures.tpr, sync_dist=False)
            pl_module.log(f"test/detection/{subset}/{method}/fppi", figures.fppi, sync_dist=False)
            if subset == "mass":
                log_pointing(pl_module, "test", method, result)
            else:
                log_figures_of_merit(pl_module, "test", method, result_ratings(result))
        self._groups = study_groups(trainer)  # the test split's studies, which the bootstrap draws whole
        # collective (the metric states are gathered): all ranks
        self._table1 = table1_intervals(pl_module, self.bootstrap_seed, self._groups, breast_groups(trainer),
                                        density_labels(trainer))  # fmt: skip
        for head, breast_figures in self._table1.breast_rows.items():  # beside test/<head>/auroc, for W&B's run table
            pl_module.log(f"test/breast/{head}/auroc", breast_figures["auc"]["value"], sync_dist=False)
        self._run_dir = None if report_withheld(trainer) else report_directory(trainer, say=True)
        self._metrics = {}

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        if trainer.is_global_zero and self._results:
            with contextlib.ExitStack() as stack:  # fast_dev_run: the report is made and printed, its files dropped
                directory = self._run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
                write_test_report(directory, trainer, pl_module, self._results, self._table1,
                                  fppi_budget=self.fppi_budget, seed=self.bootstrap_seed, iou_rule=self.iou_threshold,
                                  groups=self._groups, kept=self._run_dir is not None)  # fmt: skip


def log_pointing(pl_module: LightningModule, stage: str, method: str, result: DetectionResult) -> None:
    """``<stage>/pointing/<method>/hit`` and ``.../energy``: the pointing game and the energy inside the masses over
    the images with a mass in view, a threshold-free localization curve per epoch (the states are gathered already:
    every rank logs the same value)."""
    for name, values in (("hit", result.pointing), ("energy", result.energy)):
        if values is not None and bool((~torch.isnan(values)).any()):
            pl_module.log(f"{stage}/pointing/{method}/{name}", float(values.nanmean()), sync_dist=False)


def log_figures_of_merit(pl_module: LightningModule, stage: str, method: str, rated: Ratings | None) -> None:
    """``<stage>/wafroc/<method>`` and ``<stage>/afroc/<method>`` (test: over every test image, ``wafroc.md`` gives
    their intervals; validation: at the threshold it chose). Where the images lack normal images or masses (``rated``
    None) validation logs NaN, as it logs an undefined AUROC, so that a checkpoint or a schedule watching it finds it
    (a NaN is the worst score); the test logs nothing."""
    if rated is not None:
        for name, value in figures_of_merit(rated).items():
            pl_module.log(f"{stage}/{name}/{method}", float(value[0]), sync_dist=False)
    elif stage == "val":
        for name in FIGURES:
            pl_module.log(f"{stage}/{name}/{method}", math.nan, sync_dist=False)


def unvalidated_threshold(trainer: Trainer) -> float:
    """The threshold of a method validation chose none for: DetectionMetrics' ``default_threshold`` (the overlays
    then draw the boxes the test report counted), ``DEFAULT_THRESHOLD`` without that callback."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning's callback connector
    metrics = next((c for c in callbacks if isinstance(c, DetectionMetrics)), None)
    return metrics.default_threshold if metrics is not None else DEFAULT_THRESHOLD


def unvalidated_threshold_lines(pl_module: GMICLitModule, methods: list[str], default: float) -> list[str]:
    """The test's warnings about its thresholds, one line each for all the methods concerned: those tested at the
    default threshold (no validation chose one), and those whose validated threshold is a tie at TPR 0."""
    lines = []
    unvalidated = [m for m in methods if m not in pl_module.detection_thresholds]
    if unvalidated:
        lines.append(f"{', '.join(unvalidated)}: no threshold validated for this checkpoint, using {default:g}")
    tied = [m for m in methods if m in pl_module.detection_thresholds and m in pl_module.tied_thresholds]
    if tied:
        values = "/".join(f"{v:g}" for v in sorted({pl_module.detection_thresholds[m] for m in tied}))
        its, was, it = ("its threshold", "was", "it") if len(tied) == 1 else ("their thresholds", "were", "them")
        lines.append(
            f"{', '.join(tied)}: {its} {values} {was} validated from a tie at TPR 0 (no threshold of the grid found a "
            f"mass in validation): not a choice; the report marks {it} TIED"
        )
    return lines


class SaliencyOverlays(Callback):
    """Saves, for ``num_images`` test images (half with the class, half normal), the image with ground truth and each
    method's heatmap and predicted boxes (at the validated thresholds) side by side, to ``RUN_DIR/overlays`` and
    W&B; drawn on the original image as its source file shows it (see ``overlay_frame``). The images are the first
    such ones of the whole test set, in its order, whatever the number of processes: under DDP each process draws
    those it tests (when the test dataset lists its images' labels up front, as ``VinDrDataset`` does; otherwise
    the first process draws the first it tests)."""

    def __init__(
        self,
        num_images: int = 8,
        methods: list[str | SaliencyMethod] | None = None,
        class_index: int = 0,
        alignment: Alignment = "resize",
    ) -> None:
        if not int(num_images) >= 0:
            raise ValueError(f"SaliencyOverlays.num_images: expected a number >= 0, found {num_images}")
        self.num_images = num_images
        self.alignment = alignment
        self.methods = method_names(methods, "SaliencyOverlays.methods")
        self._given_methods = list(methods or [])
        self.class_index = checked_class_index(class_index, "SaliencyOverlays")
        self._written: list[Path] = []
        self._failed = 0  # overlays that could not be written
        self._drawn = {True: 0, False: 0}  # this process's positives and normals drawn (``_pick``)
        self._numbers: dict[str, int] | None = None  # the test set's choice (``_test_set_choice``), once known
        self._done: set[str] = set()  # the chosen images this process has drawn
        self._withheld = False  # fast_dev_run's test: no overlay (``report_withheld``)

    def _methods(self, pl_module: GMICLitModule) -> list[str]:
        return list(self.methods) if self.methods else list(pl_module.test_saliency)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        if stage == "test":
            check_class_of_model(self.class_index, pl_module, "SaliencyOverlays")
            check_methods_of_model(self._given_methods, pl_module, "SaliencyOverlays.methods")
            pl_module.request_saliency_maps(self._methods(pl_module))

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._written, self._drawn, self._failed = [], {True: 0, False: 0}, 0
        self._withheld = report_withheld(trainer)  # fast_dev_run: no overlay drawn
        if self._withheld:
            return
        self._directory = report_directory(trainer) / "overlays"
        self._numbers, self._done = self._test_set_choice(trainer), set()

    def _test_set_choice(self, trainer: Trainer) -> dict[str, int] | None:
        """``image_id -> overlay number`` of the images to draw, chosen from the whole test set by ``_pick``'s rule
        (each image once: ``selection: paper`` lists some twice), so 1 or 8 processes draw the same pictures (one
        process alone saw every other image under DDP: another set, and fewer than asked on a small one). None when
        the test dataset does not list ``records`` and ``classes``."""
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
        dataset = getattr(loader, "dataset", None)
        records, classes = getattr(dataset, "records", None), getattr(dataset, "classes", None)
        if records is None or classes is None:
            return None
        distinct = list({record.image_id: record for record in records}.values())  # in order of first listing
        labels = torch.tensor([float(record.label(classes)[self.class_index]) for record in distinct])
        chosen = self._pick(labels, {True: 0, False: 0}) if distinct else []
        return {distinct[i].image_id: number for number, i in enumerate(chosen)}

    def _picked(self, trainer: Trainer, batch: dict[str, Any]) -> list[int]:
        """Batch indices to draw here: the chosen images this process has not drawn yet (an image the DDP sampler
        gives two processes, as padding or a repeat, may be drawn by both: the same file, written whole by each)."""
        if self._numbers is None:
            return self._pick(batch["label"][:, self.class_index]) if trainer.is_global_zero else []
        picked = []
        for i, image_id in enumerate(batch["image_id"]):
            if image_id in self._numbers and image_id not in self._done:
                self._done.add(image_id)
                picked.append(i)
        return picked

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if self._withheld or not (picked := self._picked(trainer, batch)):
            return
        pl_module = cast("GMICLitModule", pl_module)  # Lightning's hooks type it as any LightningModule
        methods = self._methods(pl_module)
        index = torch.as_tensor(picked, device=batch["image"].device)
        images = batch["image"][index]
        maps = {m: value[index] for m, value in step_maps(pl_module, outputs, batch["image"], methods).items()}
        probabilities = outputs["y_fusion"][index, self.class_index].float()
        size = tuple(images.shape[-2:])
        subset = {k: [batch[k][i] for i in picked] for k in ("boxes", "box_labels")}
        gt_boxes, labels = class_targets({**subset, "label": batch["label"][index]}, self.class_index)
        image_ids = [batch["image_id"][i] for i in picked]
        regions = content_regions([batch["meta"][i] for i in picked])
        cell0 = map_placement(pl_module, self.alignment)
        fallback = unvalidated_threshold(trainer)
        notes = mass_notes(batch, self.class_index, picked, [len(b) for b in gt_boxes])
        for i in range(len(images)):
            panels = method_panels({m: maps[m][i, self.class_index] for m in methods}, size, cell0)
            boxes = {
                m: saliency_to_boxes(
                    maps[m][i : i + 1, self.class_index],
                    size,
                    pl_module.detection_thresholds.get(m, fallback),
                    probabilities[i : i + 1],
                    cell0_center=cell0,
                    regions=regions[i : i + 1],
                )[0]
                for m in methods
            }
            # by the label: a positive whose masses the frame leaves out has no box in view, and is no normal
            kind = ("with mass" if len(gt_boxes[i]) else "mass out of frame") if labels[i] > 0 else "normal"
            title = f"{short_id(image_ids[i])}\n({kind}) p(mass) = {float(probabilities[i]):.2f}"
            frame = overlay_frame(batch["meta"][picked[i]], images[i, 0], gt_boxes[i], panels, boxes)
            picture = render_overlay(frame.image, frame.gt_boxes, frame.maps, frame.boxes, frame.title(title), notes[i])
            number = len(self._written) + self._failed if self._numbers is None else self._numbers[image_ids[i]]
            path = self._directory / f"{number:03d}_{image_ids[i]}.png"
            try:
                write_png(path, picture)
            except OSError as error:  # a picture, not a figure: the tables are still written (a full disk stopped
                self._failed += 1  # the test at its first overlay, before any table)
                log.warning("test: no overlay of %s (%s)", image_ids[i], error)
                continue
            self._written.append(path)

    def _pick(self, labels: Tensor, drawn: dict[bool, int] | None = None) -> list[int]:
        """Indices of ``labels (N,)`` to draw: up to half the overlays (rounded up) on positive images and the rest on
        normal ones, where the false positives live, in the order of the test set; ``drawn`` counts those already
        drawn of each kind (this process's count, ``self._drawn``, unless given) and is updated."""
        drawn = self._drawn if drawn is None else drawn
        quota = {True: (self.num_images + 1) // 2, False: self.num_images // 2}
        picked = []
        for i, positive in enumerate((labels > 0.5).tolist()):
            if drawn[positive] < quota[positive]:
                drawn[positive] += 1
                picked.append(i)
        return picked

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers or self._withheld:
            return
        written = self._written
        if self._numbers is not None:  # every process's pictures, once all are written
            trainer.strategy.barrier("overlays written")
            drawn = (self._directory / f"{n:03d}_{image_id}.png" for image_id, n in self._numbers.items())
            written = [path for path in drawn if path.is_file()]
        if written and trainer.is_global_zero:
            for logger in loggers:
                logger.log_image("test/overlays", [str(p) for p in written])
