"""``wsod predict`` output: per image the probability of one class, scored boxes in DICOM pixels, and an overlay PNG.

Each run writes into its own folder ``<output_dir>/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken), so overlays of
an earlier run never mix with new rows; a run cut short is continued in its own (``resume_dir``: ``predict_resume``).
The writer is a thin layer on the Python API: each batch's outputs become ``inference.Prediction``s through
``inference.predictions_from_outputs`` (the path ``Predictor`` takes), and the writer only serializes them (CSV,
JSON, overlays).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import Subset

from wsod_mammo.atomic_files import write_atomic, write_text_atomic
from wsod_mammo.data.predict_data import spelt_out
from wsod_mammo.detection.json_figures import dumps_strict
from wsod_mammo.detection.overlay import method_panels, render_overlay, short_id, write_png
from wsod_mammo.detection.overlay_frame import overlay_frame
from wsod_mammo.inference import (
    NONFINITE_OUTPUT,
    Loaded,
    Prediction,
    padded_class_names,
    prediction_record,
    predictions_from_outputs,
)
from wsod_mammo.models.nyu import NYU_CLASS_NAMES
from wsod_mammo.training.collapse import constant_probabilities, constants_text
from wsod_mammo.training.divergence import TrainingDivergedError
from wsod_mammo.training.evaluation_options import Alignment, check_class_of_model, checked_class_index, map_placement
from wsod_mammo.training.module import method_record
from wsod_mammo.training.predict_breasts import BREAST_CSV_COLUMNS, breast_csv_rows, breast_rows
from wsod_mammo.training.predict_resume import (
    ContinueRefusedError,
    NothingLeftToPredict,
    check_resume_dir,
    drawn_again,
    finished_records,
    input_keys,
    inputs_hint,
    made_alike,
    overlay_name,
    read_again,
    record_key,
    stale_files,
)
from wsod_mammo.training.provenance import evaluated_weights, evaluation_setting, file_sha256

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule

log = logging.getLogger(__name__)

#: The data module's options that change what an image's prediction is (recorded in weights.json).
PREDICT_DATA_OPTIONS = ("input_size", "resize", "crop_breast", "predict_laterality")

#: What ``--trainer.fast_dev_run`` writes of a predict run.
WITHHELD = "--trainer.fast_dev_run writes no predictions folder"

CSV_COLUMNS = [
    "image_id", "path", "class", "probability", "box", "xmin", "ymin", "xmax", "ymax", "score", "size_mm", "warning",
    "error", "not_an_image",
]  # fmt: skip


class NoReadableInputError(RuntimeError):
    """``wsod predict`` was given inputs of which none could be read (the exit status is then non-zero)."""


def new_run_folder(output_dir: Path) -> Path:
    """A folder of its own under ``output_dir``, named by the start time (suffixed when two runs share a second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        candidate = output_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"output_dir: {output_dir} has no free run folder name for {stamp}")


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (one row per box, or per image when it has none) and ``predictions.json``.

    Boxes come from the module's ``predict_saliency`` map at its validated threshold and are mapped back to the
    original DICOM pixel frame (flip, breast crop and resize undone). An input that could not be read gets a row
    with its error; the other images still get results, and when no input could be read the run ends with
    ``NoReadableInputError`` after writing the rows. Under DDP the processes' rows are gathered into the one pair
    of files, in input order. A run cut short (Ctrl-C, an error) writes the rows of the images done so far (under
    DDP each process its own ``.rankN`` files: the others may be gone), and ``resume_dir`` continues it. DICOM
    inputs that name their exam also get ``breasts.json`` and ``breasts.csv``: one row per breast, the mean of its
    views (``predict_breasts``).

    Args:
        output_dir: parent of the per-run folders (``run_dir`` after ``on_predict_start``).
        class_index: the class whose probability and boxes are written (its name is written with them: the data's
            ``classes``, or NYU's ``benign``/``malignant`` for NYU's weights run as they are).
        overlays: write an overlay PNG per image.
        alignment: how the map is placed on the image (see ``map_placement``).
        min_score: boxes scoring below it are left out (0 keeps every box).
        resume_dir: the run folder of a run cut short: the inputs with no row there are predicted into it, and its
            files end as one whole run's (``predict_resume``); other weights or options are refused.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        class_index: int = 0,
        overlays: bool = True,
        alignment: Alignment = "resize",
        min_score: float = 0.0,
        resume_dir: str | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.resume_dir = check_resume_dir(resume_dir) if resume_dir is not None else None
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score: expected a score in [0, 1], found {min_score}")
        self.min_score = min_score
        self.run_dir = Path(output_dir)
        self.alignment = alignment
        self.output_dir = Path(output_dir)
        self.class_index = class_index
        self.class_names = padded_class_names(None, class_index + 1)
        self.overlays = overlays
        self._records: list[dict[str, Any]] = []
        self._indices: list[int] = []  # each record's position in the inputs, to gather the processes' rows in order
        self._open = False  # a run folder whose rows are not yet written
        # resume_dir: the rows it held, by input position, and the position of each input this run predicts
        self._finished: dict[int, dict[str, Any]] = {}
        self._positions: list[int] | None = None
        self._inputs = 0
        # --trainer.fast_dev_run, a smoke check: the run's files are made in a scratch folder of each process's own
        # and dropped (as Lightning writes no checkpoint or log); they went into a dated predictions folder
        self._withheld = False
        self._scratch: str | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """With ``resume_dir``: after the data's setup, before its loader is made, leave out of the predict inputs
        those with a row in the folder (refusing a folder of other weights, options or inputs)."""
        self._finished, self._positions, self._inputs = {}, None, 0
        self._withheld = bool(getattr(trainer, "fast_dev_run", False))
        if self.resume_dir is not None and str(getattr(stage, "value", stage)) == "predict":
            self._continue(trainer, pl_module, self.resume_dir)

    def _continue(self, trainer: Trainer, pl_module: LightningModule, folder: Path) -> None:
        """The weights are checked in ``on_predict_start``: Lightning loads a checkpoint after the setup. A folder
        whose every input has its rows gets its whole files (none of this run's weights or options are used)."""
        datasets = getattr(getattr(trainer, "datamodule", None), "datasets", None)
        keys = input_keys(datasets.get("predict")) if isinstance(datasets, dict) else None
        if keys is None or not isinstance(datasets, dict):
            raise ContinueRefusedError(f"resume_dir {folder}: continuing needs the data module's predict inputs")
        position = {key: i for i, key in enumerate(keys)}
        records = finished_records(folder)
        if strangers := [r["path"] for r in records if record_key(r) not in position]:
            raise ContinueRefusedError(
                f"resume_dir {folder}: it holds rows of {len(strangers)} input(s) this run is not given (the first: "
                f"{spelt_out(str(strangers[0]))}): {inputs_hint(records)}"
            )  # fmt: skip
        self._finished = {position[record_key(r)]: r for r in records if not (read_again(r) or drawn_again(r))}
        self._positions = [i for i in range(len(keys)) if i not in self._finished]
        self._inputs = len(keys)
        unreadable = sum(1 for r in records if read_again(r))
        undrawn = sum(1 for r in records if drawn_again(r))
        if not self._positions:
            if self._withheld:
                raise NothingLeftToPredict(
                    f"predict: {folder} already holds the rows of all its {len(keys)} inputs: nothing left to "
                    f"predict ({WITHHELD}: it is left as it is)"
                )
            self.run_dir = folder
            if trainer.is_global_zero:
                self._write_whole(self._with_finished([]))
            raise NothingLeftToPredict(
                f"predict: {folder} already holds the rows of all its {len(keys)} inputs: nothing left to predict "
                "(its predictions.csv|json are whole)"
            )
        if trainer.is_global_zero:
            why = [f"{unreadable} of them unreadable there: read again"] if unreadable else []
            why += [f"{undrawn} of them without their overlay there: drawn again"] if undrawn else []
            again = f" ({'; '.join(why)})" if why else ""
            log.info("predict: continuing %s: %d of its %d inputs have their rows there; predicting the other %d%s",
                     folder, len(self._finished), len(keys), len(self._positions), again)  # fmt: skip
        datasets["predict"] = Subset(datasets["predict"], self._positions)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records, self._indices, self._open = [], [], False
        self.class_names = class_names_of(trainer, pl_module, self.class_index)
        if self._withheld:  # every process alike: no collective call is skipped by one
            self._drop_scratch()
            self._scratch = tempfile.mkdtemp(prefix="wsod-predict-")
            if trainer.is_global_zero:
                log.info("predict: %s (as no checkpoint or log): the rows and overlays of its batches are made in a "
                         "scratch folder and dropped", WITHHELD)  # fmt: skip
        if self.resume_dir is not None:
            made_alike(self.resume_dir, self._weights_record(trainer, pl_module))  # the same: weights.json stays
            self.run_dir, self._open = Path(self._scratch) if self._scratch else self.resume_dir, True
            return
        if self._scratch is not None:
            self.run_dir, self._open = Path(self._scratch), True
            if trainer.is_global_zero:
                self._write_weights_record(trainer, pl_module)
            return
        folder = str(new_run_folder(self.output_dir)) if trainer is None or trainer.is_global_zero else None
        run_dir = trainer.strategy.broadcast(folder) if trainer is not None else folder
        assert run_dir is not None  # made on rank 0 (or without a trainer), and broadcast gives every rank rank 0's
        self.run_dir = Path(run_dir)
        if trainer is not None and trainer.is_global_zero:
            self._write_weights_record(trainer, pl_module)
        # rows not yet on disk: on_predict_end, or on_exception when the run is cut short (a folder without its
        # weights.json, on a full disk, is none that resume_dir continues: no rows for it)
        self._open = True

    def _write_weights_record(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``weights.json``: which weights made these predictions (a checkpoint's absolute path and sha256, NYU's
        file...), the saliency method and the precision and versions: ``config.yaml``'s ``ckpt_path`` is as typed,
        relative to the directory the command ran in (``runs/demo/...`` after ``--ckpt_path best``), and no hash."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # strict JSON: a monitor that scored no number (NaN, a one-class validation) as null, which jq and R read
        write_text_atomic(
            self.run_dir / "weights.json", dumps_strict(self._weights_record(trainer, pl_module), indent=2)
        )

    def _weights_record(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """``weights.json``'s record, and in ``options`` the writer's and the input frame's options: a run continued
        in the folder (``resume_dir``) must share them."""
        data = getattr(trainer, "datamodule", None)
        options = {"class_index": self.class_index, "class_names": self.class_names, "min_score": self.min_score,
                   "alignment": self.alignment, "overlays": self.overlays,
                   **{name: getattr(data, name, None) for name in PREDICT_DATA_OPTIONS}}  # fmt: skip
        name = getattr(pl_module, "predict_saliency", None)
        named = getattr(pl_module, "_named", None)  # GMICLitModule's method of that name, settings and all
        settings = {"predict_saliency_method": method_record(named(name))} if name and callable(named) else {}
        return {**evaluated_weights(trainer, pl_module), "evaluated_under": evaluation_setting(trainer),
                "predict_saliency": name, **settings, "options": options}  # fmt: skip

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:  # fmt: skip
        cell0 = map_placement(cast("GMICLitModule", pl_module), self.alignment) if pl_module is not None else None
        results = batch_predictions(prediction, batch, self.class_index, cell0, self.min_score)
        first = len(self._records)
        for i, result in enumerate(results):
            record = prediction_record(result, batch["image_id"][i], self.class_names)
            if result.not_an_image:  # a report or presentation state beside the images: nothing went wrong
                log.info("predict: %s", result.error)
            elif result.error:
                log.error("predict: %s", result.error)
            elif self.overlays:
                saliency = torch.from_numpy(result.maps[result.method][result.class_index][None])  # (1, h, w)
                boxes = (torch.from_numpy(result.input_boxes), torch.from_numpy(result.scores))
                try:
                    args = (saliency, boxes, result.method, result.probability, cell0)
                    # relative to the run folder (the file's own): the rows stay right wherever it is moved or read
                    record["overlay"] = self._write_overlay(batch, i, *args).relative_to(self.run_dir).as_posix()
                except OSError as err:  # a picture, not a prediction: the row stays, the run goes on
                    record["overlay_error"] = str(err)
                    log.warning("predict: %s: no overlay (%s)", record["image_id"], err)
            self._records.append(record)
            self._indices.append(batch_indices[i] if batch_indices else len(self._indices))
        self._append_partial_rows(trainer, self._records[first:])
        if getattr(trainer, "received_sigterm", False) and not _last_batch(trainer, batch_idx, dataloader_idx):
            raise SIGTERMException  # Lightning's predict loop never looks: a pre-empted predict ran on to its end

    def _partial_path(self, trainer: Trainer | None) -> Path:
        """``predictions[.rank<N>].partial.csv``: this process's rows so far, a batch at a time."""
        return self.run_dir / f"predictions{_rank_suffix(trainer)}.partial.csv"

    def _append_partial_rows(self, trainer: Trainer | None, records: list[dict[str, Any]]) -> None:
        """Each finished batch's rows appended to the process's partial CSV: a process killed outright (Lightning
        SIGKILLs the other DDP processes after a Ctrl-C, and every process when one of them exits on a SIGTERM)
        never reaches ``on_exception``, and its finished rows were lost though their overlays were on disk. Their
        whole records go to ``.partial.jsonl``, one a line, which a run continued in the folder takes them from."""
        path = self._partial_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            _write_csv(handle, records, header=new)
        with open(path.with_suffix(".jsonl"), "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)

    def _remove_partial_rows(self, trainer: Trainer | None) -> None:
        """The partial CSV and JSON lines, once the process's rows are written whole (or gathered into the run's)."""
        self._partial_path(trainer).unlink(missing_ok=True)
        self._partial_path(trainer).with_suffix(".jsonl").unlink(missing_ok=True)

    def _write_overlay(
        self,
        batch: dict[str, Any],
        i: int,
        saliency: torch.Tensor,
        boxes: tuple[torch.Tensor, torch.Tensor],
        method: str,
        probability: float,
        cell0_center: float | None,
    ) -> Path:
        size = tuple(batch["image"].shape[-2:])
        title = f"{short_id(batch['image_id'][i])}\np({self.class_names[self.class_index]}) = {probability:.2f}"
        panels = method_panels({method: saliency[0]}, size, cell0_center)
        frame = overlay_frame(batch["meta"][i], batch["image"][i, 0], torch.zeros(0, 4), panels, {method: boxes})
        picture = render_overlay(
            frame.image, frame.gt_boxes, frame.maps, frame.boxes, frame.title(title), ground_truth=False
        )
        path = self.run_dir / overlay_name(batch["image_id"][i])
        write_png(path, picture)
        return path

    def _drop_scratch(self) -> None:
        """The scratch folder of a ``fast_dev_run``, removed with what it holds."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _where(self, path: Path) -> str:
        """`` in <path>`` for a log line, or that a ``fast_dev_run`` writes it nowhere."""
        return f", not written ({WITHHELD})" if self._withheld else f" in {path}"

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        try:
            self._end(trainer)
        finally:
            self._drop_scratch()

    def _end(self, trainer: Trainer) -> None:
        records = self._with_finished(self._gathered_records(trainer))
        failed = sum(1 for r in records if r.get("error"))
        csv_path = self.run_dir / "predictions.csv"
        if trainer.is_global_zero:
            self._write_rows(records, "")
        if trainer.world_size > 1:
            trainer.strategy.barrier()  # the run's rows on disk before any process drops its partial ones
        self._remove_partial_rows(trainer)
        if trainer.is_global_zero:
            self._write_whole(records, written=True)
            given = self._inputs or _input_count(trainer)
            if given is not None and len(records) < given and not self._withheld:  # its point: the first batches
                log.warning(
                    "predict: %d of the %d inputs were not predicted: --trainer.limit_predict_batches %s stops "
                    "after the first batches", given - len(records), given, trainer.limit_predict_batches,
                )  # fmt: skip
        self._open = False
        where = "in the lines above" if self._withheld else f"in {csv_path}"
        if failed and failed == len(records):  # every rank holds every row: all decide alike, none waits alone
            kinds = _not_images(records)
            what = f"is an image ({_count_kinds(kinds)})" if len(kinds) == failed else _first_reason(records)
            raise NoReadableInputError(f"predict: none of the {failed} input(s) {what}; the reasons are {where}")
        nonfinite = sum(1 for r in records if NONFINITE_OUTPUT in r.get("warnings", ()))
        if nonfinite and nonfinite == len(records) - failed:
            raise TrainingDivergedError(
                f"predict: the model gave NaN or infinite probabilities for every image read ({nonfinite}): the "
                f"weights of {trainer.ckpt_path or 'the model'} give no usable predictions (their training "
                f"diverged?); the rows are {where}"
            )
        if nonfinite and trainer.is_global_zero:
            log.warning(
                "predict: the model gave NaN or infinite probabilities for %d of the %d images (their rows "
                "say so in `warning`): its weights are not usable",
                nonfinite,
                len(records) - failed,
            )
        if (constant := _constant_probabilities(records)) is not None and trainer.is_global_zero:
            log.warning(
                "predict: the model gives every one of the %d images read the same probabilities (%s): its weights "
                "have collapsed to a constant output and rank nothing (%s)",
                len(records) - failed, constant, getattr(trainer, "ckpt_path", None) or "the model",
            )  # fmt: skip

    def _gathered_records(self, trainer: Trainer) -> list[tuple[int, dict[str, Any]]]:
        """Every process's rows with their positions in the inputs predicted, in input order, each input once:
        Lightning's sampler deals the inputs out round-robin and repeats none, but with
        ``trainer.use_distributed_sampler: false`` every process predicts every input (the rows were written once
        per process)."""
        if trainer.world_size == 1:
            return list(zip(self._indices, self._records, strict=True))
        parts: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(parts, list(zip(self._indices, self._records, strict=True)))
        by_index = {index: record for part in reversed(parts) for index, record in part}  # the first process's wins
        return [(index, by_index[index]) for index in sorted(by_index)]

    def _with_finished(self, predicted: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The records of ``predicted`` (positions in the inputs this run predicts), and with ``resume_dir`` the
        folder's finished ones: every row in the order of all the inputs, as one whole run writes them."""
        if self._positions is None:
            return [record for _, record in predicted]
        rows = dict(self._finished) | {self._positions[index]: record for index, record in predicted}
        return [rows[position] for position in sorted(rows)]

    def _write_whole(self, records: list[dict[str, Any]], written: bool = False) -> None:
        """The run's whole files (its rows where not ``written`` yet; its breasts) and, continuing a run cut short,
        without that run's files of processes and finished batches (their rows are in the whole ones)."""
        if not written:
            self._write_rows(records, "")
        if self.resume_dir is not None:
            for path in stale_files(self.run_dir):
                path.unlink(missing_ok=True)
        log.info("%s%s", _summary(records), self._where(self.run_dir))
        self._write_breasts(records)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A run cut short (Ctrl-C, which Lightning turns into this hook, or an error in a later batch) still
        writes the rows of the images finished so far: their overlays are already on disk."""
        if not self._open:
            self._drop_scratch()
            return  # no predict run started, or its rows are already written (on_predict_end's own error)
        suffix = _rank_suffix(trainer)
        records = self._with_finished(list(zip(self._indices, self._records, strict=True)))
        self._open = False
        how = "interrupted" if isinstance(exception, KeyboardInterrupt) else f"stopped by {type(exception).__name__}"
        if self._withheld:  # nothing to continue: a scratch folder's rows
            self._drop_scratch()
            log.warning("predict %s after %s (%s)", how, _done_count(records), WITHHELD)
            return
        try:
            self._write_rows(records, suffix)
        except OSError:  # a full disk: the error the run stopped with is the one to report; these rows stay
            log.warning("predict: the rows of the %s stay in %s and its .jsonl, not written whole; the same command "
                        "with --trainer.callbacks.init_args.resume_dir %s writes them and predicts the others",
                        _done_count(records), self._partial_path(trainer), self.run_dir)  # fmt: skip
            return
        self._remove_partial_rows(trainer)
        where: Path | str = self.run_dir
        breasts = ""
        if trainer.world_size > 1:  # each process's own count and files: two lines alike read as one run's
            how = f"{how} on process {trainer.global_rank} of {trainer.world_size}"
            where = (f"{self.run_dir / f'predictions{suffix}'}.csv and .json, apart from the other processes' (a "
                     "process killed before it wrote them leaves its finished batches' rows in "
                     "predictions.rank<N>.partial.csv)")  # fmt: skip
            # no breasts.csv|json: a process holds a share of each breast's views, and gathering the others' rows
            # would wait on a collective a dead process never joins; the line said nothing of the missing files
            if breast_rows(records):
                breasts = " and writes breasts.csv|json (none now: each process holds only its share of the views)"
        else:  # the breasts of the views finished (a process's share under DDP would give half-breasts)
            self._write_breasts(records)
        log.warning(
            "predict %s after %s%s: their rows are in %s (%s); the same command with "
            "--trainer.callbacks.init_args.resume_dir %s predicts the others into that folder%s",
            how, _done_count(records), _not_predicted(trainer, len(self._records), self._inputs), where,
            _summary(records), self.run_dir, breasts,
        )  # fmt: skip

    def _write_breasts(self, records: list[dict[str, Any]]) -> None:
        """``breasts.json`` and ``breasts.csv``: each breast's views together (``predict_breasts``), where any input
        is a DICOM that names its study."""
        rows = breast_rows(records)
        if not rows:
            return
        write_text_atomic(self.run_dir / "breasts.json", json.dumps(rows, indent=2))
        handle = io.StringIO(newline="")
        writer = csv.DictWriter(handle, fieldnames=BREAST_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(breast_csv_rows(rows))
        write_atomic(self.run_dir / "breasts.csv", handle.getvalue().encode(errors="backslashreplace"))
        log.info("predict: %d breast%s (the mean of each one's views)%s", len(rows), "" if len(rows) == 1 else "s",
                 self._where(self.run_dir / "breasts.csv"))  # fmt: skip

    def _write_rows(self, records: list[dict[str, Any]], suffix: str) -> None:
        """``predictions<suffix>.json`` and ``.csv`` of ``records``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_dir / f"predictions{suffix}.json", json.dumps(records, indent=2))
        # a path that is not UTF-8 is spelt out as its image_id is (predictions.json keeps it exactly, as \udcXX)
        handle = io.StringIO(newline="")
        _write_csv(handle, records)
        write_text_atomic(self.run_dir / f"predictions{suffix}.csv", handle.getvalue())


def _write_csv(handle: Any, records: list[dict[str, Any]], header: bool = True) -> None:
    """``records`` as rows of predictions.csv, after its header where ``header``."""
    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
    if header:
        writer.writeheader()
    for row in _csv_rows(records):
        writer.writerow({key: spelt_out(v) if isinstance(v, str) else v for key, v in row.items()})


def _not_images(records: list[dict[str, Any]]) -> list[str]:
    """The class of every input that is a DICOM object holding no image (a CAD report...), in input order."""
    return [r["not_an_image"] for r in records if r.get("not_an_image")]


def _done_count(records: list[dict[str, Any]]) -> str:
    """``4 images``, ``and 1 input(s) that hold no image`` added for the CAD reports among the inputs finished: a
    run cut short counted them as images."""
    others = len(_not_images(records))
    images = f"{len(records) - others} images"
    return f"{images} and {others} input(s) that hold no image" if others else images


def _first_reason(records: list[dict[str, Any]]) -> str:
    """``could be read (the first: <path>: file not found)``: a mistyped folder is told on the line, not only in the
    CSV it points to. The first unreadable one: a CAD report beside them is no failure."""
    first = next(r for r in records if r.get("error") and not r.get("not_an_image"))
    return f"could be read (the first: {first['error']})"


def _count_kinds(kinds: list[str]) -> str:
    """``["Mammography CAD SR Storage"] * 2`` -> ``"2 Mammography CAD SR Storage objects"``, kinds joined by ", "."""
    counted = Counter(kinds)
    return ", ".join(f"{n} {kind} object{'s' if n > 1 else ''}" for kind, n in counted.items())


def _summary(records: list[dict[str, Any]]) -> str:
    """``predictions for N images (K unreadable)``, and the inputs that hold no image apart: a PACS export's CAD
    reports and presentation states are not failures, and were counted among the unreadable."""
    kinds = _not_images(records)
    failed = sum(1 for r in records if r.get("error")) - len(kinds)
    line = f"predictions for {len(records) - len(kinds)} images ({failed} unreadable)"
    return f"{line}, and {len(kinds)} input(s) that hold no image ({_count_kinds(kinds)})" if kinds else line


def _last_batch(trainer: Trainer, batch_idx: int, dataloader_idx: int) -> bool:
    """Whether ``batch_idx`` is the run's last batch (a SIGTERM then stops nothing: every row is written)."""
    counts = getattr(trainer, "num_predict_batches", None) or []
    return dataloader_idx == len(counts) - 1 and batch_idx == counts[dataloader_idx] - 1


def _rank_suffix(trainer: Trainer | None) -> str:
    """``.rank<N>`` in the names of a process's own files under DDP; "" on one process."""
    return f".rank{trainer.global_rank}" if trainer is not None and trainer.world_size > 1 else ""


def _annotated(meta: dict[str, Any]) -> str | None:
    """``annotations`` for an image of the data's split (predict without ``predict_paths``, whose samples say no
    ``laterality_source``): its laterality and study are the CSV's (``study_id``; a file given by path names its
    folder there, not an exam). Without it breasts.csv|json stayed empty for the split."""
    return "annotations" if meta.get("study_id") and meta.get("laterality") else None


def _not_predicted(trainer: Trainer, done: int, inputs: int = 0) -> str:
    """`` (of the 8 inputs; 4 not predicted)`` for a run cut short, under DDP of the process's own share (the
    unrepeated sampler deals input i to process i mod N); empty where the inputs cannot be counted. ``done`` counts
    this run's images; a run continued in its folder (``inputs``: all of them) counts the folder's too."""
    if (given := _input_count(trainer)) is None:
        return ""
    if trainer.world_size > 1:
        share = len(range(trainer.global_rank, given, trainer.world_size))
        return f" (of its {share} inputs; {share - done} not predicted)"
    return f" (of the {inputs or given} inputs; {given - done} not predicted)"


def _input_count(trainer: Trainer) -> int | None:
    """How many inputs the predict run was given (None where a dataloader cannot say)."""
    loaders = getattr(trainer, "predict_dataloaders", None)
    datasets: list[Any] = [
        getattr(loader, "dataset", None) for loader in (loaders if isinstance(loaders, list) else [loaders])
    ]
    try:
        return sum(len(dataset) for dataset in datasets)
    except TypeError:  # an iterable dataset, or no loader
        return None


def batch_predictions(
    prediction: dict[str, Any],
    batch: dict[str, Any],
    class_index: int = 0,
    cell0_center: float | None = None,
    min_score: float = 0.0,
) -> list[Prediction]:
    """``predict_step``'s outputs (``method``, ``threshold``, ``probabilities (N, C)``, ``maps (N, C, h, w)``) and
    its batch -> one ``Prediction`` per sample, in order; a sample that could not be read is ``Prediction.failed``
    with its ``meta["error"]``."""
    metas = batch["meta"]
    readable = [i for i, meta in enumerate(metas) if not meta.get("error")]
    inputs = [
        Loaded(
            metas[i].get("path", ""),
            metas[i]["geometry"],
            metas[i].get("laterality"),
            metas[i]["laterality_source"] if "laterality_source" in metas[i] else _annotated(metas[i]),
            tuple(metas[i].get("warnings", ())),
            metas[i].get("study", "") if "laterality_source" in metas[i] else metas[i].get("study_id", ""),
            metas[i].get("view") or "",
            metas[i].get("instance", ""),
        )
        for i in readable
    ]
    rows = torch.tensor(readable, dtype=torch.long, device=prediction["probabilities"].device)
    maps = {prediction["method"]: prediction["maps"][rows]}
    size = tuple(batch["image"].shape[-2:])
    args = (prediction["method"], prediction["threshold"], size, class_index, cell0_center, min_score)
    made = iter(predictions_from_outputs(prediction["probabilities"][rows], maps, inputs, *args))
    return [
        Prediction.failed(m.get("path", ""), m["error"], m.get("not_an_image", "")) if m.get("error") else next(made)
        for m in metas
    ]


def class_names_of(trainer: Trainer | None, pl_module: LightningModule | None, class_index: int) -> list[str]:
    """The names of the model's output classes: NYU's heads for NYU's two-class weights run as they are
    (``init_from_nyu`` outside a fit), else those the checkpoint recorded (the classes it was trained on;
    ``nyu_to_checkpoint``'s: NYU's heads), else the data's ``classes`` (``class <k>`` where none says); a
    ``class_index`` the model does not have is an error naming the option."""
    checked_class_index(class_index, "PredictionWriter")
    check_class_of_model(class_index, pl_module, "PredictionWriter")  # as DetectionMetrics and SaliencyOverlays
    num_classes = getattr(getattr(pl_module, "model", None), "num_classes", None)
    if getattr(pl_module, "nyu_weights_as_is", None) and num_classes == len(NYU_CLASS_NAMES):
        return list(NYU_CLASS_NAMES)
    if recorded := getattr(pl_module, "recorded_class_names", lambda: None)():
        return recorded
    names = list(getattr(getattr(trainer, "datamodule", None), "class_names", None) or [])
    return padded_class_names(names, max(num_classes or 0, class_index + 1))


def _constant_probabilities(records: list[dict[str, Any]]) -> str | None:
    """``"0.73 for Mass, ..."`` when the images read got one answer (``constant_probabilities``), else None; rows
    with a NaN (null) are the divergence warning's, not this one's, and inputs that are all one file's copies
    answer alike by right."""
    read = [r for r in records if not r.get("error") and r.get("probabilities")]
    rows = [r["probabilities"] for r in read]
    if not rows or any(v is None for row in rows for v in row.values()):
        return None
    names = list(rows[0])
    constants = constant_probabilities(torch.tensor([[row[n] for n in names] for row in rows], dtype=torch.float64))
    if constants is None or _copies_of_one_file([Path(r["path"]) for r in read]):
        return None
    return constants_text(constants, names)


def _copies_of_one_file(paths: list[Path]) -> bool:
    """Whether every file holds the same bytes (read only when the model answered all alike: rare; sizes first)."""
    first = paths[0]
    try:
        if any(p.stat().st_size != first.stat().st_size for p in paths[1:]):
            return False
        digest = file_sha256(first)
        return all(file_sha256(p) == digest for p in paths[1:])
    except OSError:  # a file gone since it was read: it says nothing about the model
        return False


def _csv_number(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}f}"  # None: predictions.json's null (a NaN, no spacing)


def _csv_rows(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        base = {"image_id": record["image_id"], "path": record["path"], "error": record.get("error", "")}
        if record.get("error"):
            yield base | {"not_an_image": record.get("not_an_image", "")}  # a spreadsheet filters them out by it
            continue
        base["class"], base["probability"] = record.get("class", ""), _csv_number(record["probability"])
        base["warning"] = "; ".join(record.get("warnings", []))
        if not record["boxes"]:
            yield base
        for k, box in enumerate(record["boxes"]):
            yield (
                base
                | {"box": k}
                | {key: f"{box[key]:.2f}" for key in ("xmin", "ymin", "xmax", "ymax")}
                | {"score": f"{box['score']:.6f}"}
                | {"size_mm": _csv_number(box.get("size_mm"), 1)}
            )
