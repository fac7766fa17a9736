"""The LightningCLI of ``wsod fit|validate|test|predict`` (dispatched from :mod:`wsod_mammo.commands`)."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from wsod_mammo.cli_help import customize_subcommand_parser, subcommand_parser_kwargs
from wsod_mammo.config_files import read_config_file
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.inference import FRAME_KEYS, recorded_frame
from wsod_mammo.models.resnet import GLOBAL_STRIDE, global_map_size
from wsod_mammo.training.checkpoints import read_lightning_checkpoint
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.predict import PredictionWriter
from wsod_mammo.training.run_dir import run_directory

log = logging.getLogger(__name__)

CHECKPOINT_ALIASES = {"best": "best.ckpt", "last": "last.ckpt"}
# Model options that say how to run, not what the checkpoint holds: the command's value stands where Lightning
# would put the checkpoint's hyperparameters over the whole model config.
RUNTIME_MODEL_OPTIONS = (
    "model.init_args.model.init_args.compile_networks",
    "model.init_args.model.init_args.global_stem",
    "model.init_args.model.init_args.compile_training_forward",
)


#: What `wsod fit --ckpt_path` itself sets on resuming a run (not the user's changes to its config).
RESUME_OPTIONS = ("ckpt_path", "weights_only", "trainer.logger.init_args.id")

#: What a run folder receives, per command (the W&B run itself lies under the logger's save_dir, in wandb/).
RUN_FOLDER_HOLDS = {"fit": "config.yaml, checkpoints", "test": "config.yaml, test reports"}


class RunConfigSaver(SaveConfigCallback):
    """Writes the resolved config into the run's own directory and into the logger's run (W&B config)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        stage = str(getattr(stage, "value", stage))  # Lightning passes a str enum (TrainerFn.FITTING)
        if stage == "predict":  # its config goes into its predictions folders
            self.already_saved = True
            return
        directory = run_directory(trainer)
        if trainer.is_global_zero:
            text = self._save_into(directory)
            for logger in trainer.loggers:
                logger.log_hyperparams({"config": text})
            log.info("%s: run folder %s (%s)", stage, directory, RUN_FOLDER_HOLDS.get(stage, "config.yaml"))
            if stage == "fit" and trainer.checkpoint_callbacks:
                # a callback's dirpath is resolved in its own setup, which may come after this one: unset, it will
                # be the run folder's checkpoints/ (Lightning's default with a logger, what run_directory names)
                dirs = {
                    str(getattr(c, "dirpath", None) or directory / "checkpoints") for c in trainer.checkpoint_callbacks
                }
                names = ", ".join(
                    f"{c.filename}.ckpt" for c in trainer.checkpoint_callbacks if getattr(c, "filename", None)
                )
                log.info("fit: checkpoints (%s) in %s", names or "*.ckpt", ", ".join(sorted(dirs)))
        self.already_saved = True

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Each predictions folder also gets the config, its resolved ``ckpt_path`` included, so that it says which
        weights and options made it. The writers make their folders in their own ``on_predict_start``, which runs
        before this one: LightningCLI appends this callback after the configured ones."""
        if not trainer.is_global_zero:
            return
        for callback in trainer.callbacks:
            if isinstance(callback, PredictionWriter):
                self._save_into(callback.run_dir)

    def _save_into(self, directory: Path) -> str:
        """``config.yaml`` in ``directory``, every option written (None ones too), and its text. A resumed fit's folder
        already holds the config its run started with: that one is kept as ``config.<k>.yaml``, with a warning naming
        the options this command changed (none but those a resume sets, ``RESUME_OPTIONS``: said at info level)."""
        target = directory / self.config_filename
        now = self.parser.dump(self.config, skip_none=False, format="yaml")
        if target.is_file():
            earlier = target.read_text()
            if earlier != now:
                kept = next(directory / f"{target.stem}.{k}{target.suffix}" for k in itertools.count(1)
                            if not (directory / f"{target.stem}.{k}{target.suffix}").exists())  # fmt: skip
                target.rename(kept)
                changed = [k for k in changed_options(yaml.safe_load(earlier), yaml.safe_load(now))
                           if k not in RESUME_OPTIONS]  # fmt: skip
                if changed:
                    log.warning("%s: this command changes %s; the run's earlier config is kept as %s", directory,
                                ", ".join(changed), kept.name)  # fmt: skip
                else:
                    log.info("%s: the run's earlier config.yaml is kept as %s", directory, kept.name)
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(now)
        return now


def changed_options(earlier: Any, now: Any, prefix: str = "") -> list[str]:
    """The dotted names of the options whose values differ between two parsed configs."""
    if isinstance(earlier, dict) and isinstance(now, dict):
        names = []
        for key in [*earlier, *(k for k in now if k not in earlier)]:
            names += changed_options(earlier.get(key), now.get(key), f"{prefix}{key}.")
        return names
    return [] if earlier == now else [prefix.rstrip(".")]


class WsodCLI(LightningCLI):
    """LightningCLI with checkpoint aliases resolved and foreign checkpoints refused before anything runs."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Keep the command line's own words: an option given there wins over a checkpoint's input frame."""
        self._command_line = [str(a) for a in (sys.argv[1:] if args is None else args) if isinstance(a, str)]
        with configuration_errors():
            for path in config_paths(self._command_line):
                read_config_file(path)
        super().parse_arguments(parser, args)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        customize_subcommand_parser(parser, subcommand)
        return parser

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            with configuration_errors():
                self._check_before_running(subcommand, self.config[subcommand])
        runtime = {key: self.config[subcommand].get(key) for key in RUNTIME_MODEL_OPTIONS} if subcommand else {}
        super()._parse_ckpt_path()  # the checkpoint's hyperparameters replace the model config
        for key, value in runtime.items():
            if value is not None and self.config[subcommand].get(key) is not None:
                self.config[subcommand][key] = value

    def _check_before_running(self, subcommand: str, section: Any) -> None:
        """Hardware, sizes and weights the command cannot run with; ``--ckpt_path`` resolved and checked."""
        check_accelerator(section)
        check_precision(section)
        check_input_size(section)
        if subcommand != "fit":  # evaluation writes into a run folder of its own, never the checkpoint's
            warnings.filterwarnings("ignore", message=CHECKPOINT_DIRPATH_WARNING, category=UserWarning)
        ckpt_path = section.get("ckpt_path")
        if subcommand != "fit" and check_weights_given(subcommand, section):
            ckpt_path = section["ckpt_path"] = None
        checkpoint = None
        if ckpt_path:
            section["ckpt_path"] = str(resolve_checkpoint(ckpt_path, section))
            checkpoint = check_checkpoint(Path(section["ckpt_path"]))
            if subcommand != "fit":
                given = getattr(self, "_command_line", [])
                reconcile_input_frame(section, checkpoint, subcommand, given, Path(section["ckpt_path"]))
            if subcommand == "fit":
                continue_run(Path(section["ckpt_path"]), section)
            if section.get("weights_only") is None:
                section["weights_only"] = True
        check_output_folders(subcommand, section)
        if subcommand == "predict":  # after resolving --ckpt_path, which looks for runs in the logger's save_dir
            without_logger(section)
        else:  # predict reads no labels: any data.classes will do
            check_heads_match_classes(section, checkpoint)

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; an option they refuse (a ValueError naming it) is a configuration error."""
        with configuration_errors():
            super().instantiate_classes()


def config_paths(words: list[str]) -> list[str]:
    """The existing files a command line gives to ``--config``/``-c`` (a value that is no file is left to
    jsonargparse: it also takes YAML text there)."""
    paths = []
    for i, word in enumerate(words):
        value = word.split("=", 1)[1] if word.startswith("--config=") else None
        if word in ("--config", "-c") and i + 1 < len(words):
            value = words[i + 1]
        if value is not None and Path(value).is_file():
            paths.append(value)
    return paths


class ConfigurationError(ValueError):
    """An option, config file or checkpoint the command cannot run with, found before anything ran: ``wsod`` shows
    the reason in one line (``WSOD_TRACEBACK=1``: the traceback) and exits with status 2."""


@contextmanager
def configuration_errors() -> Iterator[None]:
    """Our ValueErrors (and missing files) raised while the command is set up, as ConfigurationError with the
    first error's own words (jsonargparse wraps an option's error from a class's constructor in its Union report)."""
    try:
        yield
    except ConfigurationError:
        raise
    except (ValueError, OSError) as error:
        first = error
        while isinstance(first.__cause__, ValueError | OSError):
            first = first.__cause__
        raise ConfigurationError(str(first)) from error


# ModelCheckpoint warns on restoring a checkpoint written in another folder; test/validate/predict always do (each
# run has its own folder) and never use what it says it will not reload (best_model_score, best_k_models, ...).
CHECKPOINT_DIRPATH_WARNING = "The dirpath has changed from"
FP16_PRECISIONS = {"16", "16-mixed", "16-true"}
BF16_PRECISIONS = {"bf16", "bf16-mixed", "bf16-true"}
HALF_TRUE_PRECISIONS = {"16-true", "bf16-true"}  # the whole batch cast: boxes and augmentation matrices lose pixels


UNTRAINED = "untrained"


def without_logger(section: Any) -> None:
    """``predict`` writes files, not metrics: its record is its predictions folder (with the command's
    ``config.yaml``), so it starts no W&B run and makes no run folder, which would only hold a copy of that config."""
    section["trainer"]["logger"] = False


def check_weights_given(subcommand: str, section: Any) -> bool:
    """validate/test/predict evaluate weights: a checkpoint (``--ckpt_path``) or NYU's (``init_from_nyu``). Without
    either they would run the freshly initialized network and write random figures, boxes and overlays looking like
    results, so that is an error; ``--ckpt_path untrained`` asks for it (a baseline), with a warning. Returns True
    for ``untrained``."""
    ckpt_path = section.get("ckpt_path")
    init_args = _init_args(section, "model") or {}
    if ckpt_path == UNTRAINED:
        log.warning("%s: --ckpt_path untrained: evaluating the freshly initialized network (a baseline)", subcommand)
        if init_args.get("init_from_nyu"):  # the config's NYU weights would be loaded instead of the baseline
            log.warning("%s: --ckpt_path untrained: model.init_from_nyu (%s) is not used", subcommand,
                        init_args["init_from_nyu"])  # fmt: skip
            section["model"]["init_args"]["init_from_nyu"] = None
        return True
    if not ckpt_path and not init_args.get("init_from_nyu"):
        raise ValueError(
            f"no weights to evaluate: give --ckpt_path (best, last, <run id>:best or a file), or "
            f"--model.init_from_nyu FILE for NYU's weights, or --ckpt_path {UNTRAINED} for the untrained network"
        )
    return False


def check_input_size(section: Any) -> None:
    """``data.input_size`` that GMIC cannot take (a side not a multiple of its global network's stride, or smaller
    than the patches it crops): an error naming the options before any run folder exists (the model's own error
    came at the first batch, naming neither)."""
    data = _init_args(section, "data") or {}
    size = data.get("input_size")
    if not size:
        return
    height, width = (int(v) for v in size)
    try:
        global_map_size(height, width)  # the model's own rule
    except ValueError:
        raise ValueError(
            f"data.input_size: expected [height, width], each a positive multiple of {GLOBAL_STRIDE} (the cells of "
            f"GMIC's saliency map), found {list(size)}"
        ) from None
    crop = _gmic_args(section).get("crop_shape")
    if crop and (int(crop[0]) > height or int(crop[1]) > width):
        raise ValueError(
            f"model.model.crop_shape: {list(crop)} does not fit in the data.input_size {list(size)}; use a smaller "
            "crop_shape (the demo's [64, 64] at 384 x 256) or a larger input_size"
        )


def check_accelerator(section: Any) -> None:
    """``accelerator: gpu`` (configs/gmic_vindr.yaml's) on a machine without CUDA: say which option and what to add,
    before Lightning's MisconfigurationException traceback."""
    accelerator = str(section.get("trainer", {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not _cuda():
        raise ValueError(
            f"trainer.accelerator: {accelerator}, but this machine has no CUDA GPU; on a CPU add "
            "--config configs/trainer/cpu.yaml after the other configs (or --trainer.accelerator cpu)"
        )


def check_precision(section: Any) -> None:
    """fp16 needs CUDA; Lightning would silently switch it to bf16 on a CPU, so refuse it here instead. The
    ``-true`` half precisions are refused everywhere: they cast the batch's boxes and augmentation matrices.

    bf16 on a CPU without oneDNN's bf16 kernels (AVX-512 BF16 or AMX) runs every convolution through torch's
    reference path: it works (the tests use it to prove the mixed-precision paths) but a GMIC step is ~16x slower
    than in float32 (384 x 256 on an AVX2 EPYC, torch 2.14.1), so it is worth a warning.
    """
    trainer = section.get("trainer", {})
    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator", "auto"))
    if precision in HALF_TRUE_PRECISIONS:
        raise ValueError(
            f"trainer.precision: {precision} casts every floating tensor of each batch to half precision, the boxes "
            "too (a coordinate of 2200.5 becomes 2208 in bf16) and the device augmentation's matrices; use "
            f"{precision.replace('-true', '-mixed')} (the study's bf16-mixed on a GPU)"
        )
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not _cuda())
    if precision in FP16_PRECISIONS and on_cpu:
        raise ValueError(
            f"trainer.precision: {precision} needs a CUDA GPU, but the accelerator is {accelerator} "
            "(no GPU); use bf16-mixed or 32 on a CPU"
        )
    if precision in BF16_PRECISIONS and on_cpu and not _cpu_has_bf16_kernels():
        log.warning(
            "trainer.precision: %s on this CPU, which has no bf16 convolution kernels (oneDNN needs AVX-512 BF16 "
            "or AMX): torch falls back to its reference convolutions (a GMIC step ~16x slower than with precision 32)",
            precision,
        )


def _cuda() -> bool:
    return torch.cuda.is_available()


def _cpu_has_bf16_kernels() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_output_folders(subcommand: str, section: Any) -> None:
    """The folders the command will write into must be creatable: a path under a file, or on a read-only mount, failed
    after the model and data were loaded, in a traceback naming no option. predict writes its predictions folders
    only; the others their run folders (the logger's ``save_dir``) and any checkpoint ``dirpath``."""
    if subcommand == "predict":
        writers = [args for class_path, args in _callback_args(section) if class_path.endswith("PredictionWriter")]
        option = "trainer.callbacks PredictionWriter output_dir"
        folders = [(option, Path(args.get("output_dir") or "predictions")) for args in writers]
    else:
        _, init_args = _logger_args(section)
        option = "trainer.logger.init_args.save_dir" if init_args.get("save_dir") else "trainer.default_root_dir"
        folders = [(option, runs_root(section))]
        folders += [("trainer.callbacks ModelCheckpoint dirpath", path) for path in _checkpoint_dirs(section)]
    for option, folder in folders:
        if problem := _why_not_creatable(folder):
            raise ValueError(f"{option}: {folder} cannot be written: {problem}")


def _why_not_creatable(folder: Path) -> str | None:
    """Why ``folder`` could not be made and written into, else None: its nearest existing ancestor decides."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def _callback_args(section: Any) -> list[tuple[str, Any]]:
    """``(class_path, init_args)`` of each callback in the parsed trainer config."""
    callbacks = section.get("trainer", {}).get("callbacks") or []
    return [(str(c.get("class_path", "")), c.get("init_args") or {}) for c in callbacks if hasattr(c, "get")]


def _checkpoint_dirs(section: Any) -> list[Path]:
    """The ``dirpath`` of every checkpoint callback in the parsed trainer config (set only to opt out of run
    folders: by default Lightning puts checkpoints in the logger's run folder, ``RUN_DIR/checkpoints``)."""
    return [Path(args["dirpath"]) for class_path, args in _callback_args(section)
            if class_path.endswith("Checkpoint") and args.get("dirpath")]  # fmt: skip


def _init_args(section: Any, key: str) -> Any:
    """The ``init_args`` of the config's ``key`` class (``model``, ``data``); None where it gives none."""
    part = section.get(key, {})
    return part.get("init_args") if hasattr(part, "get") else None


def _gmic_args(section: Any) -> Any:
    """The ``init_args`` of the GMIC inside the model (``model.model.init_args``); empty where the config gives
    none."""
    return ((_init_args(section, "model") or {}).get("model") or {}).get("init_args") or {}


def _logger_args(section: Any) -> tuple[str, Any]:
    """``(class_path, init_args)`` of the configured logger (``("", {})`` for none or ``True``)."""
    logger = section.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if not hasattr(logger, "get"):
        return "", {}
    return str(logger.get("class_path", "")), logger.get("init_args") or {}


def runs_root(section: Any) -> Path:
    """The folder holding the run folders: the logger's ``save_dir`` (``runs`` for W&B), else the root dir."""
    class_path, init_args = _logger_args(section)
    save_dir = init_args.get("save_dir") if hasattr(init_args, "get") else None
    if save_dir:
        return Path(save_dir)
    if "Wandb" in class_path:
        return Path("runs")
    return Path(section.get("trainer", {}).get("default_root_dir") or ".")


def resolve_checkpoint(ckpt_path: str, section: Any) -> Path:
    """``--ckpt_path`` -> a checkpoint file.

    ``best``/``last``: that checkpoint of the newest run (the most recently written ``RUN_DIR/checkpoints/
    {best,last}.ckpt`` under the logger's ``save_dir``, or in a configured ``dirpath``). ``RUN:best``/``RUN:last``:
    that run's, where ``RUN`` is a run folder or a run id (the W&B id naming the folder). Anything else is a path.
    """
    run, _, alias = ckpt_path.rpartition(":") if ckpt_path.endswith((":best", ":last")) else ("", "", ckpt_path)
    if alias in CHECKPOINT_ALIASES:
        name = CHECKPOINT_ALIASES[alias]
        root = runs_root(section)
        if run:
            folders = [Path(run)] if Path(run).is_dir() else [p for p in root.glob(f"**/{run}") if p.is_dir()]
            candidates = [f / "checkpoints" / name for f in folders]
        else:
            candidates = list(root.glob(f"**/checkpoints/{name}")) + [d / name for d in _checkpoint_dirs(section)]
        found = [c for c in candidates if c.is_file()]
        if run and len({c.parent.parent.resolve() for c in found}) > 1:  # one id, several runs: never guess
            runs = ", ".join(sorted(str(c.parent.parent) for c in found))
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: the run id {run!r} names several runs ({runs}); "
                                    f"give the run folder: --ckpt_path <run folder>:{alias}")  # fmt: skip
        if not found:
            where = f"run {run!r}" if run else f"any run under {root}"
            hint = "run `wsod fit` first"
            if run and (kept := [str(d) for d in _checkpoint_dirs(section) if (d / name).is_file()]):
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


def continue_run(checkpoint: Path, section: Any) -> None:
    """Resuming ``fit`` from a run folder's checkpoint continues that run: the W&B logger gets the folder's run id,
    so the run's id, folder, checkpoints and reports stay one (a new id would start a second run folder)."""
    class_path, init_args = _logger_args(section)
    if "Wandb" not in class_path or checkpoint.parent.name != "checkpoints" or init_args.get("id"):
        return
    init_args["id"] = checkpoint.parent.parent.name
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode not in ("disabled", "online", "run") and init_args.get("offline", True) is not False:
        log.warning(
            "fit: resuming W&B run %s offline writes a second offline-run-*-%s folder under %s/wandb; upload both "
            "in one `wandb sync` (W&B syncs a resumed run's folders in order of start time; its _step counts again "
            "from 0 in the second: plot against trainer/global_step)",
            init_args["id"], init_args["id"], init_args.get("save_dir", "."),
        )  # fmt: skip


def check_heads_match_classes(section: Any, checkpoint: dict[str, Any] | None) -> None:
    """fit/validate/test compare each of the model's heads with a label of ``data.classes``: a count that differs
    (NYU's two heads against the default ``[Mass]``) failed at the first batch with a traceback about tensor sizes.
    The model's count is the checkpoint's when one is given (its hyperparameters replace the config's)."""
    data = _init_args(section, "data")
    if data is None or "classes" not in data:
        return
    classes = list(data.get("classes") or ["Mass"])
    heads = _gmic_args(section).get("num_classes", 1)
    source = "model.model.init_args.num_classes"
    if checkpoint is not None:
        recorded = ((checkpoint.get("hyper_parameters") or {}).get("model") or {}).get("init_args") or {}
        if "num_classes" in recorded:
            heads, source = recorded["num_classes"], "--ckpt_path's model"
    if heads is not None and int(heads) != len(classes):
        raise ValueError(
            f"{source} has {heads} output class(es), data.classes has {len(classes)} ({', '.join(classes)}): give "
            f"one class per output (NYU's two: --data.classes '[Mass, Suspicious Calcification]')"
        )


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
    return checkpoint


def _frame_text(frame: dict[str, Any]) -> str:
    size = "x".join(str(v) for v in frame["input_size"]) if "input_size" in frame else "?"
    crop = {True: ", breast crop", False: ", no breast crop"}.get(frame.get("crop_breast"), "")
    return f"{size} ({frame.get('resize', 'stretch')}{crop})"


def _option_words(key: str) -> tuple[str, str]:
    return f"--data.{key}", f"--data.init_args.{key}"


def reconcile_input_frame(
    section: Any, checkpoint: dict[str, Any], subcommand: str, command_line: list[str], path: Path
) -> None:
    """The config's ``data`` input frame against the checkpoint's.

    ``predict`` adopts the checkpoint's frame (the weights are only meaningful there, and ``Predictor.
    from_checkpoint`` uses it: the reader gives the same results either way) unless the command line itself sets
    the option; ``test``/``validate`` keep the config's (their data cache is prepared at it) and warn.
    """
    init_args = _init_args(section, "data")
    frame = recorded_frame(checkpoint)
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


def run_lightning_cli(args: list[str] | None) -> None:
    """``wsod fit|validate|test|predict ...``: ``args`` starts with the subcommand (None: ``sys.argv[1:]``).

    Warning filters the run sets (see ``CHECKPOINT_DIRPATH_WARNING``) end with it: a notebook's next command starts
    from its own."""
    with warnings.catch_warnings():
        WsodCLI(
            GMICLitModule,
            VinDrMammoDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=subcommand_parser_kwargs(),
            args=args,
        )


def main(argv: list[str] | None = None) -> None:
    """Kept for callers of ``wsod_mammo.cli.main``: the same as the ``wsod`` command (every subcommand)."""
    from wsod_mammo.commands import main as dispatch

    dispatch(argv)
