"""The LightningCLI of ``wsod fit|validate|test|predict`` (dispatched from :mod:`wsod_mammo.commands`)."""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from wsod_mammo.cli_checkpoints import (
    check_checkpoint,
    check_not_live,
    check_not_rewinding,
    continue_run,
    reconcile_input_frame,
    resolve_checkpoint,
    warn_if_finished,
)
from wsod_mammo.cli_checks import (
    check_accelerator,
    check_class_index,
    check_compile,
    check_factory_classes,
    check_heads_match_classes,
    check_input_size,
    check_launched_processes,
    check_monitor_modes,
    check_no_hpc_checkpoint,
    check_nyu_weights_file,
    check_nyu_weights_load,
    check_output_folders,
    check_precision,
    check_predict_inputs,
    check_predict_paths_not_null,
    check_seeds,
    check_sync_batchnorm,
    check_weights_given,
    check_worker_sockets,
    disable_slurm_auto_requeue,
    keep_given_save_dir_for_wandb,
    name_the_wandb_job,
    slurm_task_variables,
    without_logger,
)
from wsod_mammo.cli_help import customize_subcommand_parser, subcommand_parser_kwargs
from wsod_mammo.cli_methods import check_predict_method, method_text
from wsod_mammo.config_files import read_config_file
from wsod_mammo.ctrl_c import CtrlCAgain, watch_ctrl_c
from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.folder_locks import FolderBusyError, hold, holder
from wsod_mammo.logging_setup import said_by_rank_zero
from wsod_mammo.models.gmic import RUNTIME_OPTIONS
from wsod_mammo.parse_errors import closest_options, one_line, option_without_value
from wsod_mammo.sigterm import sigterm_without_collectives
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.predict import PredictionWriter
from wsod_mammo.training.run_dir import keep_csv_metrics, report_directory, resumed_step, run_directory
from wsod_mammo.yaml_text import use_for_jsonargparse

log = logging.getLogger(__name__)

use_for_jsonargparse()  # config.yaml read back as written: a folder named 1e3 stays a string, not 1000.0

# Model options that say how to run, not what the checkpoint holds: the command's value stands where Lightning
# would put the checkpoint's hyperparameters over the whole model config.
RUNTIME_MODEL_OPTIONS = tuple(f"model.init_args.model.init_args.{option}" for option in RUNTIME_OPTIONS)

#: Model options that say how to evaluate, not what the weights are: test, validate and predict use the command's
#: value where the user set one (on the command line, or in a config as other than the default), not the fit's.
#: Not ``saliency_target``: the thresholds a checkpoint holds were validated on its fit's target's maps.
EVALUATION_MODEL_OPTIONS = ("test_saliency", "predict_saliency")

#: Model options only a fit reads: validate, test and predict step no optimizer or schedule, so a config's value the
#: checkpoint's replaces there changes nothing (the demo config's T_max 15 after a fit of T_max 30 was said at every
#: test and predict, "not used", as if the evaluation differed from the config's).
TRAINING_MODEL_OPTIONS = ("optimizer", "scheduler", "scheduler_monitor")


#: Trainer options where an int counts batches and a float is a fraction of them. Lightning annotates them
#: ``Union[float, int, None]``, so jsonargparse tried float first and read ``--trainer.limit_test_batches 1`` (or
#: ``1`` in a YAML) as 1.0: every batch of the set, not one. Parsed int first, ``1`` is one batch, ``1.0`` all.
BATCH_COUNT_OR_FRACTION = tuple(f"trainer.limit_{stage}_batches" for stage in ("train", "val", "test", "predict"))


def count_before_fraction(parser: Any) -> None:
    """Parse the ``BATCH_COUNT_OR_FRACTION`` options as an int where the value is one, as Lightning's docs mean."""
    for action in getattr(parser, "_actions", []):
        if action.dest in BATCH_COUNT_OR_FRACTION and hasattr(action, "_typehint"):
            action._typehint = int | float | None


#: What `wsod fit --ckpt_path` itself sets on resuming a run (not the user's changes to its config); the W&B
#: job_type is the command's since 2026-12-07 (unset in an older run's config.yaml); a CSV or TensorBoard logger's
#: version is its run folder's.
RESUME_OPTIONS = ("ckpt_path", "weights_only", "trainer.logger.init_args.id", "trainer.logger.init_args.job_type",
                  "trainer.logger.init_args.version")  # fmt: skip

#: The checkpoint folders of the fit this process runs (``commands`` names its ``last.ckpt`` when it is stopped).
FIT_CHECKPOINT_DIRS: list[str] = []
#: The locks of those folders this process holds (``folder_locks``), released when its fit ends.
FIT_LOCKS: list[IO[str]] = []


#: How a fit into the checkpoint folders of a live fit goes on (``folder_locks``).
FIT_BUSY = "two fits would write one run's checkpoints: run this one when it has stopped, or give it its own"


def refuse_live_folders(folders: list[str]) -> None:
    """A fit into checkpoint folders that a live fit holds is refused before it writes anything in its run folder:
    refused only in ``on_fit_start``, it had already replaced that run's ``config.yaml`` with its own (the live
    run's moved to ``config.1.yaml``), and the run then recorded a config it was not trained with."""
    for folder in folders:
        if who := holder(folder):
            raise ConfigurationError(f"checkpoints folder {folder} is being written by {who}; {FIT_BUSY}")


def release_fit_locks() -> None:
    """Let the folders of this process's last fit go (a notebook's or a test's next command may resume it)."""
    for handle in FIT_LOCKS:
        handle.close()
    FIT_LOCKS.clear()


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
        directory = report_directory(trainer) if stage == "test" else run_directory(trainer)
        if trainer.is_global_zero:
            # a callback's dirpath is resolved in its own setup, which may come after this one: unset, it will be the
            # run folder's checkpoints/ (Lightning's default with a logger, what run_directory names)
            dirs = {str(getattr(c, "dirpath", None) or directory / "checkpoints") for c in trainer.checkpoint_callbacks}
            if stage == "fit":
                refuse_live_folders(sorted(dirs))
            text = self._save_into(directory)
            for logger in trainer.loggers:
                logger.log_hyperparams({"config": text})
            log.info("%s: run folder %s (%s)", stage, directory, RUN_FOLDER_HOLDS.get(stage, "config.yaml"))
            if stage == "fit" and trainer.checkpoint_callbacks:
                names = ", ".join(
                    f"{c.filename}.ckpt"
                    for c in trainer.checkpoint_callbacks
                    if isinstance(c, ModelCheckpoint) and c.filename
                )
                log.info("fit: checkpoints (%s) in %s", names or "*.ckpt", ", ".join(sorted(dirs)))
                FIT_CHECKPOINT_DIRS[:] = sorted(dirs)  # where a stopped fit says it resumes from
        self.already_saved = True

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Hold the fit's checkpoint folders (``folder_locks``) until it ends: ``--ckpt_path last`` of a job started
        beside it then takes its own run, not this live one, and a second fit into them (a study's run started
        twice) is refused. After the callbacks' setup, where ModelCheckpoint warns of a folder not empty."""
        if not trainer.is_global_zero:
            return
        for folder in FIT_CHECKPOINT_DIRS:
            try:
                FIT_LOCKS.append(hold(folder, "wsod fit", "checkpoints folder", FIT_BUSY))
            except FolderBusyError as busy:  # one line, exit 2, as the other refusals
                raise ConfigurationError(str(busy)) from None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Each predictions folder also gets the config, its resolved ``ckpt_path`` included, so that it says which
        weights and options made it. The writers make their folders in their own ``on_predict_start``, which runs
        before this one: LightningCLI appends this callback after the configured ones."""
        if not trainer.is_global_zero:
            return
        for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets it in __init__, undeclared
            if isinstance(callback, PredictionWriter):
                self._save_into(callback.run_dir)

    def _save_into(self, directory: Path) -> str:
        """``config.yaml`` in ``directory``, every option written (None ones too), and its text. A resumed fit's folder
        already holds the config its run started with: that one is kept as ``config.<k>.yaml``, with a warning naming
        the options this command changed (none but those a resume sets, ``RESUME_OPTIONS``: said at info level)."""
        target = directory / self.config_filename
        now = self.parser.dump(self.config, skip_unset=False, format="yaml")  # skip_none: deprecated in 4.49
        if target.is_file():
            earlier = target.read_text(encoding="utf-8")
            if earlier != now:
                kept = next(directory / f"{target.stem}.{k}{target.suffix}" for k in itertools.count(1)
                            if not (directory / f"{target.stem}.{k}{target.suffix}").exists())  # fmt: skip
                target.rename(kept)
                changed = [k for k in changed_options(_resume_dir_unset(yaml.safe_load(earlier)),
                                                      _resume_dir_unset(yaml.safe_load(now)))
                           if k not in RESUME_OPTIONS]  # fmt: skip
                if changed:
                    log.warning("%s: this command changes %s; the run's earlier config is kept as %s", directory,
                                ", ".join(changed), kept.name)  # fmt: skip
                else:
                    log.info("%s: the run's earlier config.yaml is kept as %s", directory, kept.name)
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(now, encoding="utf-8")
        return now


def _resume_dir_unset(config: Any) -> Any:
    """A parsed config with ``resume_dir`` (``PredictionWriter``'s) unset: a predict run continued in its folder
    sets it, and the warning named ``trainer.callbacks`` as changed when nothing else was (as ``RESUME_OPTIONS``:
    what going on sets, not the user's change to the run)."""
    if isinstance(config, dict):
        return {key: None if key == "resume_dir" else _resume_dir_unset(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_resume_dir_unset(value) for value in config]
    return config


def changed_options(earlier: Any, now: Any, prefix: str = "") -> list[str]:
    """The dotted names of the options whose values differ between two parsed configs. A list's items (a list of
    loggers, of callbacks) are compared one by one, under the list's name: a resumed fit's second CSV logger, given
    its run folder's version (``RESUME_OPTIONS``), made the warning say the command changed ``trainer.logger``."""
    if isinstance(earlier, dict) and isinstance(now, dict):
        names = []
        for key in [*earlier, *(k for k in now if k not in earlier)]:
            names += changed_options(earlier.get(key), now.get(key), f"{prefix}{key}.")
        return names
    if isinstance(earlier, list) and isinstance(now, list) and len(earlier) == len(now):
        found = [
            name
            for before, after in zip(earlier, now, strict=True)
            for name in (changed_options(before, after, prefix) if _same_class(before, after) else [prefix.rstrip(".")])
        ]
        return list(dict.fromkeys(found))
    return [] if earlier == now else [prefix.rstrip(".")]


def _same_class(earlier: Any, now: Any) -> bool:
    """Whether two list items are of one class (``class_path``): another class is a change of the list itself."""
    return not (isinstance(earlier, dict) and isinstance(now, dict)) or earlier.get("class_path") == now.get(
        "class_path"
    )


#: The options that name a file or folder, in whichever group (the logger's, a callback's, the data's, the model's)
PATH_OPTIONS = frozenset(
    {"save_dir", "dirpath", "default_root_dir", "output_dir", "resume_dir", "data_root", "cache_dir",
     "synthesize_if_missing", "predict_paths", "init_from_nyu", "ckpt_path"}
)  # fmt: skip


def expand_home(config: Any) -> None:
    """A ``~`` that begins a path option read as the home folder, as the shell reads it: YAML and ``--opt=~/x`` leave
    it to the program, and ``save_dir: ~/runs`` made a folder named ``~`` in the working directory (the log said
    "run folder ~/runs/..."), ``data_root: ~/vindr`` "does not exist" of a dataset that does."""
    for key, value in list(config.items()):
        name = key.rpartition(".")[2]
        if isinstance(value, list):
            for item in value:
                if hasattr(item, "items") and not isinstance(item, dict):  # a callback's Namespace
                    expand_home(item)
            if name in PATH_OPTIONS:
                config[key] = [os.path.expanduser(v) if isinstance(v, str) else v for v in value]
        elif name in PATH_OPTIONS and isinstance(value, str) and value.startswith("~"):
            config[key] = os.path.expanduser(value)


class WsodCLI(LightningCLI):
    """LightningCLI with checkpoint aliases resolved and foreign checkpoints refused before anything runs."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Keep the command line's own words: an option given there wins over a checkpoint's input frame."""
        self._command_line = [str(a) for a in (sys.argv[1:] if args is None else args) if isinstance(a, str)]
        # the predict defaults alone (no config of the user's): their values give way to a checkpoint's unannounced
        self._defaults_only = self._command_line[1:3] == ["--config", str(PREDICT_DEFAULTS)]
        with configuration_errors(), said_by_rank_zero():
            for option, path in config_files(self._command_line):
                read_config_file(path, option)
        with (
            parse_errors_in_one_line(parser, self._subcommand_parsers, command_line=self._command_line),
            said_by_rank_zero(),
        ):
            super().parse_arguments(parser, args)
        expand_home(self.config)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        customize_subcommand_parser(parser, subcommand)
        count_before_fraction(parser)
        return parser

    def _parse_ckpt_path(self) -> None:
        """The checks before the run, said once (every DDP process Lightning launches runs them again)."""
        with said_by_rank_zero():
            self._check_and_parse_ckpt_path()

    def _check_and_parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            with configuration_errors():
                self._check_before_running(subcommand, self.config[subcommand])
        runtime = {key: self.config[subcommand].get(key) for key in RUNTIME_MODEL_OPTIONS} if subcommand else {}
        evaluation = self._evaluation_options_set(subcommand) if subcommand and subcommand != "fit" else {}
        given = self._model_options_given(subcommand) if subcommand else {}
        configured = self._model_options(subcommand) if subcommand else {}
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        with parse_errors_in_one_line(
            self.parser, self._subcommand_parsers, f"--ckpt_path {ckpt_path}: its recorded hyperparameters: "
        ):
            super()._parse_ckpt_path()  # the checkpoint's hyperparameters replace the model config
        if ckpt_path:  # its crop_shape in the frame the command runs at (a config's crop was checked, not used)
            with configuration_errors():
                check_input_size(self.config[subcommand], checkpoint=str(ckpt_path))
        for key, value in given.items():
            kept = self.config[subcommand].get(key)
            if key not in runtime and key not in evaluation and kept != value:
                log.warning("%s: --%s %s is not used: the checkpoint's %s is (its weights were made with it)",
                            subcommand, key, value, kept)  # fmt: skip
        replaced = self._replaced_in_config(subcommand, configured, given, runtime, evaluation) if ckpt_path else []
        if replaced and not self._defaults_only:
            log.warning("%s: the config's %s not used; the checkpoint's value is (its weights were made with it)",
                        subcommand, "; ".join(replaced))  # fmt: skip
        for key, value in runtime.items():
            if value is not None and self.config[subcommand].get(key) is not None:
                self.config[subcommand][key] = value
        for key, value in evaluation.items():
            fitted = self.config[subcommand].get(key)
            if fitted != value:
                log.info("%s: --%s %s, where the checkpoint's fit had %s", subcommand, key, method_text(value),
                         method_text(fitted))  # fmt: skip
                self.config[subcommand][key] = value
        if subcommand == "predict" and "--model.test_saliency" not in self._options_typed():
            section = self.config[subcommand]
            held_by = "the config's model.test_saliency" if "model.init_args.test_saliency" in evaluation else (
                "the checkpoint's model.test_saliency")  # fmt: skip
            with configuration_errors():  # the test methods the predict was not given, beside the one it uses
                check_predict_method(section.get("model.init_args.predict_saliency"),
                                     section.get("model.init_args.test_saliency"), held_by)  # fmt: skip

    def _model_options(self, subcommand: str) -> dict[str, Any]:
        """Every model option of the command's config, by dotted key (class paths too)."""
        return {key: value for key, value in self.config[subcommand].items() if key.startswith("model.")}

    def _replaced_in_config(self, subcommand: str, configured: dict[str, Any], *said: dict[str, Any]) -> list[str]:
        """``"<key> <config's value> (checkpoint: <its value>)"`` for each model option a config file set that the
        checkpoint's hyperparameters replaced: only those typed on the command line were said (a resumed fit with an
        edited config trained on with the checkpoint's beta, and its config.yaml said so, nothing else did). Those
        ``said`` (typed, runtime, evaluation options set) and the evaluation options left unset are left out."""
        now = self._model_options(subcommand)
        evaluation = {f"model.init_args.{name}" for name in EVALUATION_MODEL_OPTIONS}  # unset: the checkpoint's
        unread = () if subcommand == "fit" else tuple(f"model.init_args.{name}" for name in TRAINING_MODEL_OPTIONS)
        return [
            f"{key} {value} (checkpoint: {now.get(key)})"
            for key, value in configured.items()
            if key in now and now[key] != value and key not in evaluation and not any(key in s for s in said)
            and not key.startswith(unread)  # scheduler, scheduler.init_args.T_max, scheduler_monitor, ...
        ]  # fmt: skip

    def _model_options_given(self, subcommand: str) -> dict[str, Any]:
        """The model options the command line itself sets, by dotted key, with their values: those a checkpoint's
        hyperparameters replace get a warning, not silence. jsonargparse takes each ``init_args`` of the key as
        optional (``--model.model.x``, ``--model.model.init_args.x``, ...), so they are compared without them."""
        words = self._options_typed()
        return {key: value for key, value in self._model_options(subcommand).items()
                if not key.endswith(".class_path") and f"--{_without_init_args(key)}" in words}  # fmt: skip

    def _options_typed(self) -> set[str]:
        """The options on the command line, each without its ``init_args`` (``_without_init_args``)."""
        return {_without_init_args(word.split("=")[0]) for word in getattr(self, "_command_line", [])}

    def _evaluation_options_set(self, subcommand: str) -> dict[str, Any]:
        """The ``EVALUATION_MODEL_OPTIONS`` the user set for this command, by their dotted config keys."""
        defaults = inspect.signature(GMICLitModule.__init__).parameters
        words = self._options_typed()
        chosen = {}
        for name in EVALUATION_MODEL_OPTIONS:
            key = f"model.init_args.{name}"
            value = self.config[subcommand].get(key)
            if value != defaults[name].default or f"--model.{name}" in words:
                chosen[key] = value
        return chosen

    def _check_before_running(self, subcommand: str, section: Any) -> None:
        """Hardware, sizes and weights the command cannot run with; ``--ckpt_path`` resolved and checked."""
        check_accelerator(section)
        check_precision(section)
        check_seeds(section)
        check_compile(section)
        check_worker_sockets(section)
        check_factory_classes(section)
        keep_given_save_dir_for_wandb(section, self._options_typed())  # before continue_run says where W&B writes
        if subcommand != "fit":  # evaluation writes into a run folder of its own, never the checkpoint's
            warnings.filterwarnings("ignore", message=CHECKPOINT_DIRPATH_WARNING, category=UserWarning)
            warnings.filterwarnings("ignore", message=CHECKPOINT_CALLBACKS_WARNING, category=UserWarning)
        ckpt_path = section.get("ckpt_path")
        if subcommand != "fit" and check_weights_given(subcommand, section):
            ckpt_path = section["ckpt_path"] = None
        checkpoint = None
        if ckpt_path:
            section["ckpt_path"] = str(resolve_checkpoint(ckpt_path, section))
            check_not_live(Path(section["ckpt_path"]), subcommand)
            checkpoint = check_checkpoint(Path(section["ckpt_path"]))
            if subcommand != "fit":
                given = getattr(self, "_command_line", [])
                quiet = getattr(self, "_defaults_only", False)
                reconcile_input_frame(section, checkpoint, subcommand, given, Path(section["ckpt_path"]), quiet)
            if subcommand == "fit":
                self._resumed_step = resumed_step(checkpoint)  # its metrics.csv rows from there on are logged again
                continue_run(Path(section["ckpt_path"]), section, checkpoint.get("wandb_run_id"),
                             checkpoint.get("logger_folders"))  # fmt: skip
                check_not_rewinding(checkpoint, Path(section["ckpt_path"]), section)  # where continue_run writes
                warnings.filterwarnings("ignore", message=RESUMED_DIRPATH_WARNING, category=UserWarning)
                warn_if_finished(checkpoint, Path(section["ckpt_path"]), section)
            if section.get("weights_only") is None:
                section["weights_only"] = True
        # the frame the command runs at (predict's may be the checkpoint's); with a checkpoint, its crop_shape replaces
        # the config's, so the crop is checked once it has (_check_and_parse_ckpt_path)
        check_input_size(section, patches=not ckpt_path)
        check_no_hpc_checkpoint(section)
        check_nyu_weights_file(section)
        check_output_folders(subcommand, section)
        if subcommand == "predict":  # after resolving --ckpt_path, which looks for runs in the logger's save_dir
            without_logger(section)
            if section.get("return_predictions") is None:  # the writer saves each batch as it comes: Lightning
                section["return_predictions"] = False  # kept every batch's maps until the end (~5.5 kB an image)
            check_predict_paths_not_null(section, getattr(self, "_command_line", []))
            check_predict_inputs(section)
        else:  # predict reads no labels: any data.classes will do
            check_heads_match_classes(section, checkpoint)
            name_the_wandb_job(subcommand, section)
        check_class_index(section, checkpoint)
        if subcommand == "fit":
            check_monitor_modes(section)

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; an option they refuse (a ValueError naming it) is a configuration error."""
        with configuration_errors(), said_by_rank_zero():
            super().instantiate_classes()
            check_launched_processes(self.trainer)
            if subcommand := self.config.get("subcommand"):
                check_nyu_weights_load(self.model, self.config[subcommand], subcommand)
                if subcommand == "fit":
                    check_sync_batchnorm(self.model, self.datamodule, self.config[subcommand])
                    if self.config[subcommand].get("ckpt_path"):  # a resumed fit goes on in its loggers' folders
                        keep_csv_metrics(self.trainer, getattr(self, "_resumed_step", None))
        disable_slurm_auto_requeue(self.trainer)
        sigterm_without_collectives(self.trainer)
        self.trainer.callbacks.insert(0, CtrlCAgain())  # type: ignore[attr-defined]  # set in __init__, undeclared

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer; in a SLURM shell that ``srun`` did not start, the task variables missing are one line."""
        with slurm_task_variables():
            return super().instantiate_trainer(**kwargs)


#: The options that take a config file of their own besides ``--config``: LightningCLI's groups.
GROUP_OPTIONS = ("--trainer", "--model", "--data", "--optimizer", "--lr_scheduler")


def config_files(words: list[str]) -> list[tuple[str, str]]:
    """``(option, path)`` for each existing file a command line gives to ``--config``/``-c`` (``--config=F``, ``-c=F``
    and ``-cF`` too) or to a group (``--trainer F``, ``--data=F``). A value that is no file is left to jsonargparse,
    which also takes YAML text there (``--config "$(cat f.yaml)"``: ``os.path.isfile`` is False for text too long to
    be a file name, where ``Path.is_file`` raises), and a class name for a group (``--data MyDataModule``)."""
    found = []
    for i, word in enumerate(words):
        option, value = None, None
        name, _, given = word.partition("=")
        if word in ("--config", "-c", *GROUP_OPTIONS) and i + 1 < len(words):
            option, value = word, words[i + 1]
        elif name in ("--config", "-c", *GROUP_OPTIONS) and given:
            option, value = name, given
        elif word.startswith("-c") and not word.startswith("--"):
            option, value = "-c", word[2:]
        if option and value and os.path.isfile(value):
            found.append(("--config" if option == "-c" else option, value))
    return found


class ConfigurationError(ValueError):
    """An option, config file or checkpoint the command cannot run with, found before anything ran: ``wsod`` shows
    the reason in one line (``WSOD_TRACEBACK=1``: the traceback) and exits with status 2."""


@contextmanager
def parse_errors_in_one_line(
    parser: Any, subcommand_parsers: dict[str, Any], prefix: str = "", command_line: Sequence[str] = ()
) -> Iterator[None]:
    """What jsonargparse cannot parse (the command line, ``command_line``'s words; a checkpoint's recorded model,
    ``prefix`` naming it) as one line, the option and why (``parse_errors.one_line``), instead of the usage (a hundred
    lines) and a nested report."""
    parsers = [parser, *subcommand_parsers.values()]
    exit_on_error = [p.exit_on_error for p in parsers]
    for each in parsers:  # a subcommand's option is refused by the subcommand's parser
        each.exit_on_error = False
    try:
        yield
    except ArgumentError as error:
        line = option_without_value(one_line(str(error)), command_line)
        if "unrecognized arguments" in line:
            line += closest_options(line, (o for p in parsers for a in p._actions for o in a.option_strings))
        if "not accepted" in line or "unrecognized arguments" in line:
            line += " (--help lists the options)"
        raise ConfigurationError(prefix + line) from error
    finally:
        for each, value in zip(parsers, exit_on_error, strict=True):
            each.exit_on_error = value


def _without_init_args(option: str) -> str:
    """``--model.init_args.model.init_args.x`` and its shorter spellings, as one: ``--model.model.x``."""
    return ".".join(part for part in option.split(".") if part != "init_args")


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
# Lightning asks for the callbacks a checkpoint was written with (its BestCheckpoint): only a resumed fit uses their
# state, and a config without them (the predict defaults) got the warning on every test/validate/predict.
CHECKPOINT_CALLBACKS_WARNING = "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"
# ModelCheckpoint warns of a checkpoint folder that holds files when a fit starts: a resumed fit writes on in its run's
# own folder, which holds the checkpoint it resumes from (a fresh fit's folder is new and empty).
RESUMED_DIRPATH_WARNING = r"Checkpoint directory .* exists and is not empty"
ARGS_AND_ARGV_WARNING = "LightningCLI's args parameter is intended to run from within Python"
#: What ``wsod predict`` reads first when given no config file (see ``with_predict_defaults``).
PREDICT_DEFAULTS = Path(__file__).with_name("predict_defaults.yaml")


def _names_a_config_file(word: str) -> bool:
    return word == "--config" or word.startswith(("--config=", "-c"))  # -c, -cFILE, -c=FILE


def with_predict_defaults(args: list[str]) -> list[str]:
    """``predict`` given no ``--config``/``-c``: ``--config PREDICT_DEFAULTS`` first, so that a checkpoint and the
    inputs are enough (a wheel carries no ``configs/``) and every option given still overrides it."""
    if args[:1] != ["predict"] or any(_names_a_config_file(word) for word in args[1:]):
        return args
    log.info(
        "predict: no --config given: the package's predict defaults (%s), then the options given", PREDICT_DEFAULTS
    )
    return [args[0], "--config", str(PREDICT_DEFAULTS), *args[1:]]


def run_lightning_cli(args: list[str] | None) -> None:
    """``wsod fit|validate|test|predict ...``: ``args`` starts with the subcommand (None: ``sys.argv[1:]``).

    Warning filters the run sets (see ``CHECKPOINT_DIRPATH_WARNING``) end with it: a notebook's next command starts
    from its own."""
    FIT_CHECKPOINT_DIRS.clear()  # a notebook's or a test's earlier fit is not this one
    try:
        with warnings.catch_warnings(), watch_ctrl_c():
            # the command line is given as args (sys.argv's, with the predict defaults put in): by design, not a mix-up
            warnings.filterwarnings("ignore", message=ARGS_AND_ARGV_WARNING, category=UserWarning)
            WsodCLI(
                GMICLitModule,
                VinDrMammoDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=RunConfigSaver,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=subcommand_parser_kwargs(),
                args=with_predict_defaults(sys.argv[1:] if args is None else args),
            )
    finally:
        release_fit_locks()


def main(argv: list[str] | None = None) -> None:
    """Kept for callers of ``wsod_mammo.cli.main``: the same as the ``wsod`` command (every subcommand)."""
    from wsod_mammo.commands import main as dispatch

    dispatch(argv)


if __name__ == "__main__":  # `python -m wsod_mammo.cli fit ...`: the `wsod` command (it ran nothing and exited 0)
    from wsod_mammo.commands import main as _main

    _main()
