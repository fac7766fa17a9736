"""``PredictionWriter(resume_dir=...)``: a ``wsod predict`` run cut short, continued in its own folder.

A clinic's folder takes hours on a CPU; a run stopped by Ctrl-C, a scheduler's SIGTERM or a crash kept its finished
rows, and a rerun predicted every input again into a new folder. The continuation reads the rows the folder holds
(``predictions.json``, each process's ``predictions.rank<N>.json``, and the ``predictions*.partial.jsonl`` a process
killed outright leaves), predicts the inputs that have none, whose file could not be read or whose overlay could not be
written, and writes the files one uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wsod_mammo.training.module import settings_text


class ContinueRefusedError(ValueError):
    """``resume_dir`` names a folder this run cannot go on in (another predict run's weights, options or inputs)."""


class NothingLeftToPredict(Exception):
    """``resume_dir``'s inputs all have their rows: its files are written whole, and nothing is predicted."""


def check_resume_dir(resume_dir: str) -> Path:
    """The folder, if it holds a predict run (its ``weights.json``), else the reason (a ValueError, before any run)."""
    folder = Path(resume_dir)
    if not folder.is_dir():
        raise ValueError(f"PredictionWriter resume_dir: {folder} is no folder (the run folder of a predict run cut "
                         "short, <output_dir>/<date-time>)")  # fmt: skip
    if not (folder / "weights.json").is_file():
        raise ValueError(f"PredictionWriter resume_dir: {folder} holds no predict run (no weights.json): give the "
                         "run folder of a predict run cut short, <output_dir>/<date-time>")  # fmt: skip
    return folder


def made_alike(folder: Path, now: dict[str, Any]) -> None:
    """Refuse ``folder`` when its ``weights.json`` differs from ``now`` (this run's record) in what makes predictions:
    the weights (their sha256, not their path: a checkpoint moved is the same), the saliency method, the precision,
    the writer's and the input frame's options."""
    record = json.loads((folder / "weights.json").read_text(encoding="utf-8"))
    if "options" not in record:  # nor partial records: its inputs' rows cannot all be taken as they are
        raise ContinueRefusedError(f"resume_dir {folder}: its weights.json records no options (an earlier "
                                   "wsod-mammo made it): start a new run without resume_dir")  # fmt: skip
    earlier = _same_run_values(record)
    current = _same_run_values(json.loads(json.dumps(now)))  # tuples as the file holds them: lists
    if "predict_saliency_method" not in record:  # a folder of before the method's settings were recorded
        current.pop("predict_saliency_method", None)
    keys = [*current, *(key for key in earlier if key not in current)]
    differ = [f"{key} {earlier.get(key)} (this run: {current.get(key)})" for key in keys
              if earlier.get(key) != current.get(key)]  # fmt: skip
    if differ:
        raise ContinueRefusedError(
            f"resume_dir {folder}: its predictions were made with another {'; '.join(differ)}: continue it with the "
            "weights and options it started with, or start a new run without resume_dir"
        )


def _same_run_values(record: dict[str, Any]) -> dict[str, Any]:
    """What of a ``weights.json`` record makes the predictions, by name (each writer and data option on its own)."""
    checkpoint = record.get("checkpoint") or {}
    return {"weights": record.get("weights"), "checkpoint sha256": checkpoint.get("sha256"),
            "predict_saliency": record.get("predict_saliency"),
            **({"predict_saliency_method": _shown(record["predict_saliency_method"])}
               if "predict_saliency_method" in record else {}),
            "precision": (record.get("evaluated_under") or {}).get("precision"),
            **record["options"]}  # fmt: skip


def _shown(method: Any) -> str:
    """A recorded saliency method (``method_record``: its ``repr`` and settings) in a message: a name is not enough,
    ``LayerCAM(layers=["stage5"])`` and the default LayerCAM are both ``layercam``."""
    if not isinstance(method, dict):
        return repr(method)
    return f"{method.get('class_path')} ({settings_text(method.get('settings'))})"


def finished_records(folder: Path) -> list[dict[str, Any]]:
    """Every row ``folder`` holds, each input's once (by ``image_id`` and ``path``): ``predictions.json`` and the
    processes' ``predictions.rank<N>.json``, then the rows of finished batches in ``predictions*.partial.jsonl`` (a
    line cut short by a kill is left out: its input is predicted again). Overlays named as an earlier wsod-mammo
    named them are named relative to ``folder`` (``in_folder_form``)."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("predictions*.json")):
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ContinueRefusedError(f"resume_dir {folder}: {path.name} cannot be read ({err})") from None
        for record in rows:
            records.setdefault(record_key(record), in_folder_form(record))
    for path in sorted(folder.glob("predictions*.partial.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records.setdefault(record_key(record), in_folder_form(record))
    return list(records.values())


def read_again(record: dict[str, Any]) -> bool:
    """Whether a row is of an input that could not be read (a damaged file, a network share gone): the run
    continued tries it again, where it counted as done and its error stayed though the file was fixed. An object
    holding no image (a CAD report) is no failure: it stays as it is."""
    return bool(record.get("error")) and not record.get("not_an_image")


def drawn_again(record: dict[str, Any]) -> bool:
    """Whether a row is of an input whose overlay could not be written (a full disk at the time): the continuation
    predicts it again, overlay and all, where it counted as done and its overlay was never drawn."""
    return bool(record.get("overlay_error"))


def overlay_name(image_id: str) -> str:
    """An image's overlay in ``predictions.json``: ``overlays/<image_id>.png``, relative to the run folder (the
    file's own), so the rows stay right when the folder is moved or read from another directory. Its UTF-8 bytes,
    the name a UTF-8 locale gives it: a locale that cannot spell the image_id (LC_ALL=C) failed the run."""
    return "overlays/" + os.fsdecode(f"{image_id}.png".encode("utf-8", "surrogateescape"))


def in_folder_form(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``overlay`` relative to the run folder: an earlier wsod-mammo wrote it relative to the
    directory the command ran in, or absolute, and a folder continued from one mixed the two forms."""
    overlay, name = record.get("overlay"), overlay_name(str(record.get("image_id", "")))
    if isinstance(overlay, str) and overlay != name and Path(overlay).as_posix().endswith(f"/{name}"):
        return {**record, "overlay": name}
    return record


def record_key(record: dict[str, Any]) -> tuple[str, str]:
    """A row's input: its ``image_id`` (distinct per input) and ``path`` (as the dataset gives it)."""
    return str(record["image_id"]), str(record["path"])


def input_keys(dataset: Any) -> list[tuple[str, str]] | None:
    """``record_key`` of each of the data's predict inputs, in input order: files given (``PredictDataset``) or the
    test split (``VinDrDataset``); None for another dataset."""
    if hasattr(dataset, "paths") and hasattr(dataset, "image_ids"):
        return [(str(i), str(p)) for i, p in zip(dataset.image_ids, dataset.paths, strict=True)]
    if hasattr(dataset, "records"):
        return [(str(r.image_id), str(r.path)) for r in dataset.records]
    return None


def inputs_hint(records: list[dict[str, Any]]) -> str:
    """How to give the inputs of the folder's ``records``: a run of the data's test split (its rows' laterality from
    the annotations) was given no ``--data.predict_paths``, and the refusal said to give those it was given."""
    if any(r.get("laterality_source") == "annotations" for r in records):
        return ("it predicted the test split of its data: give the --data.data_root and data options it was given "
                "(no --data.predict_paths), from the directory it ran in")  # fmt: skip
    return "give the --data.predict_paths it was given, from the directory it ran in"


def stale_files(folder: Path) -> list[Path]:
    """The files of the interrupted run that the whole ``predictions.csv|json`` replace."""
    return [*folder.glob("predictions.rank*.csv"), *folder.glob("predictions.rank*.json"),
            *folder.glob("predictions*.partial.csv"), *folder.glob("predictions*.partial.jsonl")]  # fmt: skip
