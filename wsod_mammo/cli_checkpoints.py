"""``--ckpt_path`` for ``wsod`` commands: aliases (``best``, ``last``, ``<run id>:best``) resolved to a file, the file
checked to be a GMIC checkpoint before any model is built, a resumed fit's W&B run continued, and the checkpoint's
input frame reconciled with the config's."""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from wsod_mammo.cli_checks import checkpoint_dirs, init_args_of, logger_args_of, runs_root
from wsod_mammo.config_files import named_import_paths
from wsod_mammo.data.resume_sampling import stopped_epoch_as_unfinished
from wsod_mammo.folder_locks import holder
from wsod_mammo.training.checkpoints import (
    FRAME_KEYS,
    check_detection_thresholds,
    check_finite_weights,
    read_lightning_checkpoint,
    recorded_frame,
)
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.wandb_logger import DEFAULT_PROJECT, wandb_folder

log = logging.getLogger(__name__)

CHECKPOINT_ALIASES = {"best": "best.ckpt", "last": "last.ckpt"}


def resolve_checkpoint(ckpt_path: str, section: Any) -> Path:
    """``--ckpt_path`` -> a checkpoint file.

    ``best``/``last``: that checkpoint of the newest run (the most recently written ``RUN_DIR/checkpoints/
    {best,last}.ckpt`` under the logger's ``save_dir``, or in a configured ``dirpath``). ``RUN:best``/``RUN:last``:
    that run's, where ``RUN`` is a run folder, its ``checkpoints`` folder or a run id (the W&B id naming the
    folder). Anything else is a path, and so is a ``RUN:best`` naming a file that exists (a checkpoint saved as
    ``model:best`` was read as run ``model``'s alias: "no best.ckpt in run 'model'").
    """
    named = ckpt_path.endswith((":best", ":last")) and not Path(ckpt_path).is_file()
    run, _, alias = ckpt_path.rpartition(":") if named else ("", "", ckpt_path)
    if alias in CHECKPOINT_ALIASES:
        name = CHECKPOINT_ALIASES[alias]
        root = runs_root(section)
        written: list[Path] = []  # best/last: every run's checkpoints (the newest run's decides)
        if run and Path(run).is_dir() and not (Path(run) / "checkpoints").is_dir():
            candidates = [Path(run) / name]  # the folder holding the checkpoints (the one `wsod fit` prints)
        elif run:
            folders = [Path(run)] if Path(run).is_dir() else [p for p in _folders(root) if p.name == run]
            candidates = [f / "checkpoints" / name for f in folders]
        else:
            written = _checkpoints_not_live(root, checkpoint_dirs(section), name, ckpt_path)
            candidates = [c for c in written if c.name == name]
        found = [c for c in candidates if c.is_file()]
        if run and len({c.parent.parent.resolve() for c in found}) > 1:  # one id, several runs: never guess
            runs = ", ".join(sorted(str(c.parent.parent) for c in found))
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: the run id {run!r} names several runs ({runs}); "
                                    f"give the run folder: --ckpt_path <run folder>:{alias}")  # fmt: skip
        if not run:
            _check_the_newest_run_has(name, alias, found, written)
        if not found:
            where = f"run {run!r}" if run else f"any run under {shown_from_here(root)}"
            hint = "run `wsod fit` first"
            if run and (kept := [str(d) for d in checkpoint_dirs(section) if (d / name).is_file()]):
                # a configured dirpath (wsod study's runs) keeps checkpoints out of the run folders
                hint = f"this config writes its checkpoints to {', '.join(kept)}: --ckpt_path {alias}, or a path there"
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no {name} in {where} ({hint})")
        return max(found, key=lambda p: p.stat().st_mtime_ns)
    path = Path(ckpt_path)
    if path.is_dir():
        raise FileNotFoundError(f"--ckpt_path: {path} is a folder; a run folder's checkpoint is --ckpt_path "
                                f"{path}:best (or :last)")  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path: {path} does not exist")
    return path


def _folders(root: Path) -> list[Path]:
    """``root`` and every folder below it, through links to folders (each real folder once): a run folder moved to
    another disk with a link left in its place was passed over by ``Path.glob("**")``, which follows no link, and
    ``best`` then named an older run's checkpoint without a word."""
    found, seen = [], set()
    for top, names, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree, or a second link to one folder
            names[:] = []
            continue
        seen.add(real)
        found.append(Path(top))
    return found


def shown_from_here(folder: Path) -> str:
    """``folder``, and where it lies when relative: a config's ``save_dir: runs/demo`` is read from the working
    directory, and a ``wsod test --ckpt_path best`` started in another one was told only "no best.ckpt in any run
    under runs/demo (run `wsod fit` first)" of a run that exists."""
    if folder.is_absolute():
        return str(folder)
    return f"{folder} ({Path.cwd() / folder}: a relative path is read from the working directory)"


def _checkpoints_not_live(root: Path, configured: list[Path], name: str, alias: str) -> list[Path]:
    """Every checkpoint of the runs under ``root`` and in the configured dirpaths, but those of runs a live fit is
    writing (``folder_locks``, each folder's lock looked at once): another job started in the same folder (an array
    task) is not this one's, and resuming it trained two processes into one. Each ``name`` passed over is said."""
    runs = [d for d in _folders(root) if d.name == "checkpoints"]
    written = [*(c for d in runs for c in d.glob("*.ckpt")), *(c for d in configured for c in d.glob("*.ckpt"))]
    live = {folder: who for folder in {c.parent for c in written} if (who := holder(folder))}
    for checkpoint in written:
        if checkpoint.name == name and checkpoint.parent in live:
            log.warning("--ckpt_path %s: passing over %s, which %s is writing now", alias, checkpoint,
                        live[checkpoint.parent])  # fmt: skip
    return [c for c in written if c.parent not in live]


def check_not_live(checkpoint: Path, subcommand: str) -> None:
    """A fit resumed from a run that a live fit is writing would train two processes into one run: refused. An
    evaluation of it is said to be of a run still training."""
    if not (who := holder(checkpoint.parent)):
        return
    if subcommand == "fit":
        raise ValueError(
            f"--ckpt_path {checkpoint}: {who} is writing that run now; resuming it would train two processes into "
            "one run (run this when that one has stopped)"
        )
    log.warning("--ckpt_path %s: %s is still writing that run (a checkpoint of a run in training)", checkpoint, who)


def _check_the_newest_run_has(name: str, alias: str, found: list[Path], written: list[Path]) -> None:
    """``best`` is the newest run's: a fit that validated nothing (``limit_val_batches 0``) writes ``last.ckpt``
    alone, and ``best`` then silently named an older run's best. ``written``: every run's checkpoints but the live
    runs' (``_checkpoints_not_live``)."""
    if not written:
        return
    newest = max(written, key=lambda c: c.stat().st_mtime_ns).parent  # the run that wrote the newest checkpoint
    if not (newest / name).is_file():
        older = (
            f"; {max(found, key=lambda p: p.stat().st_mtime_ns).parent}:{alias} names an older run's" if found else ""
        )
        raise FileNotFoundError(
            f"--ckpt_path {alias}: the newest run's checkpoints ({newest}) hold no {name} (a fit that validated "
            f"nothing writes last.ckpt alone): --ckpt_path {newest}:last{older}"
        )


def continue_run(
    checkpoint: Path, section: Any, recorded_id: str | None = None, recorded_folders: list[Any] | None = None
) -> None:
    """Resuming ``fit`` from a run's checkpoint continues that run: the W&B logger gets the run's id, so the run's
    id, folder, checkpoints and reports stay one (a new id would start a second run folder). ``recorded_id``: the
    id the checkpoint recorded (``wandb_run_id``), which holds where the checkpoints lie outside the run folder
    (``wsod study``'s ``runs/<method>_seed<seed>/checkpoints``); else the run folder's name, where the checkpoint lies
    in a run folder of the config's logger (``<save_dir>/<project>/<run id>/checkpoints``): in the layout of before
    2026-11-26 (``<save_dir>/checkpoints``) the save_dir's name was taken for a run id ("resuming W&B run demo").
    Each CSV or TensorBoard logger of the config goes on in its own run folder (``_continue_versioned_runs``)."""
    class_path, init_args = logger_args_of(section)
    _continue_versioned_runs(checkpoint, section, recorded_folders)
    if "Wandb" not in class_path or init_args.get("id"):
        return
    in_run_folder = (
        checkpoint.parent.name == "checkpoints"
        and len(checkpoint.parents) > 3
        and checkpoint.parents[3].resolve() == runs_root(section).resolve()
    )
    run_id = recorded_id or (checkpoint.parent.parent.name if in_run_folder else None)
    if not run_id:
        if checkpoint.parent.name == "checkpoints":
            log.warning(
                "fit: %s lies in no run folder of this config (%s/<project>/<run id>/checkpoints): training goes on "
                "in a new run, whose best.ckpt starts afresh", checkpoint, runs_root(section),
            )  # fmt: skip
        return
    init_args["id"] = run_id
    goes_on = wandb_checkpoints(section, run_id)
    kept = {d.resolve() for d in checkpoint_dirs(section)}  # wsod study's runs keep theirs in their own folder
    if checkpoint.parent.resolve() not in kept | {goes_on.resolve()}:  # a renamed run folder went on in a new one
        log.warning(
            "fit: %s is not in the folder of its run %s, %s, where training goes on (a run folder renamed or moved?): "
            "its best.ckpt there is this fit's own, whatever %s kept; rename the folder back to %s to go on in it",
            checkpoint, run_id, goes_on, checkpoint.parent, run_id,
        )  # fmt: skip
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode not in ("disabled", "online", "run") and init_args.get("offline", True) is not False:
        log.warning(
            "fit: resuming W&B run %s offline writes a second offline-run-*-%s folder under %s/wandb; upload both "
            "in one `wandb sync` (W&B syncs a resumed run's folders in order of start time; its _step counts again "
            "from 0 in the second: plot against trainer/global_step)",
            init_args["id"], init_args["id"], wandb_folder(init_args),
        )  # fmt: skip


#: Lightning's loggers whose run folder is ``<save_dir>/<name>/version_<k>``, a new ``k`` for each run unless given
VERSIONED_LOGGERS = ("CSVLogger", "TensorBoardLogger")


def _continue_versioned_runs(checkpoint: Path, section: Any, recorded: list[Any] | None) -> None:
    """Every CSV or TensorBoard logger of a resumed fit goes on in its own run folder: the first in the one its
    checkpoint lies in (``_continue_versioned_run``), else (and the others) in the one the checkpoint records
    (``logger_folders``). Lightning started ``version_<k+1>`` for each, so a second logger of a list (W&B and a
    CSVLogger, two CSVLoggers) cut its metrics.csv in two folders."""
    loggers = (section.get("trainer") or {}).get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    for index, logger in enumerate(loggers):
        if not hasattr(logger, "get"):
            continue
        class_path, init_args = str(logger.get("class_path", "")), logger.get("init_args") or {}
        if not class_path.endswith(VERSIONED_LOGGERS) or init_args.get("version") is not None:
            continue
        if not init_args.get("save_dir") or (index == 0 and _continue_versioned_run(checkpoint, init_args)):
            continue
        root = _versions_root(init_args)
        for folder in recorded or []:
            if (
                isinstance(folder, dict)
                and class_path.rpartition(".")[2] == folder.get("logger")
                and str(init_args.get("name", "lightning_logs") or "") == folder.get("name")
                and Path(str(folder.get("save_dir"))).resolve() == Path(str(init_args["save_dir"])).resolve()
                and (root / str(folder.get("version"))).is_dir()
            ):
                init_args["version"] = str(folder["version"])
                break


def _versions_root(init_args: Any) -> Path:
    """``<save_dir>/<name>``, the folder holding a CSV or TensorBoard logger's version folders."""
    name = init_args.get("name", "lightning_logs")
    return Path(str(init_args["save_dir"])) / str(name) if name else Path(str(init_args["save_dir"]))


def _continue_versioned_run(checkpoint: Path, init_args: Any) -> bool:
    """A resumed fit logging first to a CSV or TensorBoard logger goes on in the run folder its checkpoint lies in
    (``<save_dir>/<name>/<version>/checkpoints``): Lightning started ``version_<k+1>``, where the checkpoints' folder
    had changed, so best.ckpt began afresh (the resumed fit's first validation replaced it whatever it scored) and
    ``--ckpt_path best`` then took that one, the newest run's. -> whether it set the version."""
    if checkpoint.parent.name != "checkpoints":
        return False
    run = checkpoint.parent.parent
    if run.parent.resolve() != _versions_root(init_args).resolve():
        return False
    init_args["version"] = run.name
    return True


def writes_into(folder: Path, section: Any) -> bool:
    """Whether the fit ``section`` configures writes its checkpoints into ``folder``: a checkpoint callback's
    ``dirpath`` (``wsod study``'s runs), or the W&B run folder it continues (``continue_run`` set its id:
    ``<save_dir>/<project>/<run id>/checkpoints``, where Lightning puts them)."""
    folder = folder.resolve()
    if any(d.resolve() == folder for d in checkpoint_dirs(section)):
        return True
    class_path, init_args = logger_args_of(section)
    run_id = init_args.get("id")
    return "Wandb" in class_path and bool(run_id) and folder == wandb_checkpoints(section, str(run_id)).resolve()


def wandb_checkpoints(section: Any, run_id: str) -> Path:
    """``<save_dir>/<project>/<run id>/checkpoints``: where Lightning puts the checkpoints of the W&B run ``run_id``
    that the fit ``section`` configures."""
    _, init_args = logger_args_of(section)
    return runs_root(section) / str(init_args.get("project") or DEFAULT_PROJECT) / run_id / "checkpoints"


def check_not_rewinding(checkpoint: dict[str, Any], path: Path, section: Any) -> None:
    """A fit resumed from a checkpoint older than its folder's ``last.ckpt`` (``--ckpt_path best``, an earlier
    epoch's file) that goes on in that folder (``writes_into``) trained the later epochs again there, replacing
    ``last.ckpt`` (their weights lost) and logging their steps a second time into the run's W&B history, without a
    word: refused, saying how to do it on purpose. A fit writing elsewhere (another run's config) is no rewind."""
    last = path.parent / "last.ckpt"
    if path.name == last.name or not last.is_file() or not writes_into(path.parent, section):
        return
    try:
        newer = read_lightning_checkpoint(last, "last.ckpt")
    except ValueError:  # a damaged last.ckpt is no later state to protect
        return
    step, last_step = checkpoint.get("global_step"), newer.get("global_step")
    if isinstance(step, int) and isinstance(last_step, int) and step < last_step:
        raise ValueError(
            f"--ckpt_path {path} (epoch {checkpoint.get('epoch')}, step {step}) is older than its run's {last} (epoch "
            f"{newer.get('epoch')}, step {last_step}): the fit would train those epochs again over last.ckpt and log "
            "their steps a second time into the run's W&B history; resume with --ckpt_path last, or move last.ckpt "
            "aside first to go back on purpose"
        )


def warn_if_finished(checkpoint: dict[str, Any], path: Path, section: Any) -> None:
    """A fit resumed from a checkpoint of a run that already trained its ``max_epochs`` trains nothing: Lightning
    stops at once (exit 0, 'max_epochs reached'), and the run's folder gets this command's config. A stopped fit that
    wrote no checkpoint of its own resumed so with ``--ckpt_path last``: the newest run that wrote one, finished."""
    max_epochs = (section.get("trainer") or {}).get("max_epochs")
    trained = epochs_trained(checkpoint)
    if isinstance(max_epochs, int) and max_epochs >= 0 and trained is not None and trained >= max_epochs:
        log.warning(
            "fit: --ckpt_path %s is of a run that trained its %d epoch(s): nothing is trained (raise "
            "--trainer.max_epochs to train it further; a fresh fit takes no --ckpt_path)",
            path, trained,
        )  # fmt: skip


def epochs_trained(checkpoint: dict[str, Any]) -> int | None:
    """The epochs a checkpoint's fit trained whole, as Lightning counts them to stop at ``max_epochs`` (its fit
    loop's processed epochs): one saved within its epoch (``every_n_train_steps``, a fit stopped by ``max_steps``:
    ``stopped_epoch_as_unfinished``) has not trained that one, and a fit resumed from it with ``max_epochs`` the
    epoch's number + 1 trains the rest of it, where it was said to train nothing. ``epoch`` + 1 without the loops'
    record; None without either."""
    recorded = {"loops": copy.deepcopy(checkpoint.get("loops"))}
    stopped_epoch_as_unfinished(recorded)  # changes its argument: a copy
    processed: Any = recorded
    for key in ("loops", "fit_loop", "epoch_progress", "current", "processed"):
        processed = processed.get(key) if isinstance(processed, dict) else None
    if isinstance(processed, int):
        return processed
    epoch = checkpoint.get("epoch")
    return epoch + 1 if isinstance(epoch, int) else None


def check_checkpoint(path: Path) -> dict[str, Any]:
    """Refuse files that are not safe-loadable GMICLitModule checkpoints, before any model is built; -> the read
    checkpoint."""
    checkpoint = read_lightning_checkpoint(path, "--ckpt_path")
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    expected = f"{GMICLitModule.__module__}.{GMICLitModule.__name__}"
    keys = checkpoint["state_dict"].keys()
    if (class_path and class_path != expected) or not any(k.startswith("model.global_network.") for k in keys):
        found = class_path or f"a model with keys like {sorted(keys)[:3]}"
        raise ValueError(f"--ckpt_path {path}: a checkpoint of {found}, not of {expected}")
    if "pytorch-lightning_version" not in checkpoint:  # Lightning's loading fails on it with a KeyError traceback
        raise ValueError(
            f"--ckpt_path {path}: GMIC weights without Lightning's checkpoint record (no 'pytorch-lightning_version', "
            "as a state dict saved alone); give a checkpoint that wsod fit or Trainer.save_checkpoint wrote"
        )
    check_named_modules(checkpoint.get("hyper_parameters"), path)
    recorded_frame(checkpoint, f"--ckpt_path {path}")  # a resumed fit's module reads it too: a traceback there
    check_detection_thresholds(checkpoint, f"--ckpt_path {path}")
    check_finite_weights(checkpoint, f"--ckpt_path {path}")
    return checkpoint


#: the packages whose modules a checkpoint's hyperparameters may name: this one and those it runs on
TRUSTED_PACKAGES = ("wsod_mammo", "torch", "lightning")


def check_named_modules(hparams: Any, path: Path) -> None:
    """A checkpoint is data: its hyperparameters replace the model config (LightningCLI), and every module a
    ``class_path`` (or an optimizer or scheduler given as an import path) named there was imported, running its
    code, before the type was checked. Only wsod_mammo's, torch's and Lightning's are taken, and those already
    imported (by the command's config or options, which are the user's: their own saliency method)."""
    for entry, import_path in named_import_paths(hparams):
        module = import_path.rpartition(".")[0]
        if module and module not in sys.modules and module.partition(".")[0] not in TRUSTED_PACKAGES:
            option, given = entry.split("[")[0].split(".")[0], json.dumps({"class_path": import_path})
            raise ValueError(
                f"--ckpt_path {path}: its hyper_parameters' {entry} names {import_path}, of a module not imported: a "
                "checkpoint is data, and wsod imports no module it names; if you trust that module, name the class in "
                f"the command's config or options (--model.{option} '{given}'), "
                "which import it"
            )


def _frame_text(frame: dict[str, Any]) -> str:
    size = "x".join(str(v) for v in frame["input_size"]) if "input_size" in frame else "?"
    crop = {True: ", breast crop", False: ", no breast crop", None: ""}.get(frame.get("crop_breast"), "")
    return f"{size} ({frame.get('resize', 'stretch')}{crop})"


def _option_words(key: str) -> tuple[str, str]:
    return f"--data.{key}", f"--data.init_args.{key}"


def reconcile_input_frame(
    section: Any, checkpoint: dict[str, Any], subcommand: str, command_line: list[str], path: Path, quiet: bool = False
) -> None:
    """The config's ``data`` input frame against the checkpoint's.

    ``predict`` adopts the checkpoint's frame (the weights are only meaningful there, and ``Predictor.
    from_checkpoint`` uses it: the reader gives the same results either way) unless the command line itself sets
    the option; ``test``/``validate`` keep the config's (their data cache is prepared at it) and warn. ``quiet``: the
    config is no user's (the predict defaults), so adopting the checkpoint's frame is no news.
    """
    init_args = init_args_of(section, "data")
    frame = recorded_frame(checkpoint, f"--ckpt_path {path}")
    if init_args is None or not frame:
        return
    configured = {key: init_args.get(key) for key in FRAME_KEYS}
    configured["input_size"] = [int(v) for v in configured["input_size"] or []]
    differing = [key for key in FRAME_KEYS if key in frame and frame[key] != configured[key]]
    if not differing:
        return
    given = [k for k in differing if any(w.split("=")[0] in _option_words(k) for w in command_line)]
    adopted = [k for k in differing if k not in given] if subcommand == "predict" else []
    options = " ".join(f"--data.{k} {_value_text(configured[k])}" for k in differing)
    where = f"--ckpt_path {path}: made for input frame {_frame_text(frame)}, the config says {_frame_text(configured)}"
    if adopted:
        for key in adopted:
            init_args[key] = frame[key]
        if quiet and adopted == differing:
            return
        if given:  # part of the frame from the command line: say what runs, and only what it did not set
            running = _frame_text({**configured, **{k: frame[k] for k in adopted}})
            kept = " ".join(f"--data.{k} {_value_text(configured[k])}" for k in adopted)
            log.warning("%s: predicting at %s, the checkpoint's %s with the command line's %s (%s keeps the "
                        "config's)", where, running, ", ".join(adopted), ", ".join(given), kept)  # fmt: skip
            return
        log.warning("%s: predicting at the checkpoint's frame, as Predictor.from_checkpoint does (%s keeps the "
                    "config's)", where, options)  # fmt: skip
    else:
        back = " ".join(f"--data.{k} {_value_text(frame[k])}" for k in differing)
        log.warning("%s: %s at the %s frame (%s for the checkpoint's)", where, subcommand,
                    "command line's" if given else "config's", back)  # fmt: skip


def _value_text(value: Any) -> str:
    """A frame value as typed after its option (``'[2944, 1920]'``, ``false``, ``native``)."""
    if isinstance(value, list | tuple):
        return f"'[{', '.join(str(v) for v in value)}]'"
    return str(value).lower()
