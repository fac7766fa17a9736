"""The ``wsod`` entry point: one top-level parser that lists every subcommand and hands each to its own CLI.

Lightning, torch and wandb are imported only by the subcommands that use them: ``wsod --help``, ``--version``,
``synth``, ``report`` (and their ``--help``) start without them. ``fit|validate|test|predict`` go to the
LightningCLI in :mod:`wsod_mammo.cli`; the others to the ``main(argv)`` of their module. A new subcommand is one
entry in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from wsod_mammo import __version__
from wsod_mammo.logging_setup import PACKAGE_LOGGER, configure_logging
from wsod_mammo.matplotlib_folder import use_writable_matplotlib_folder
from wsod_mammo.sigterm import SigtermWatch, Stopped, watch_sigterm


class Subcommand(NamedTuple):
    """Where a subcommand's ``main(argv)`` lives and the one line ``wsod --help`` shows for it."""

    module: str
    purpose: str


LIGHTNING_MODULE = "wsod_mammo.cli"
#: Set (e.g. ``WSOD_TRACEBACK=1``) to see the traceback behind a one-line error: bad input to prepare, synth, report
#: or study, an option, config or checkpoint that fit, validate, test or predict refuse before running, or data
#: they cannot use (``DataError``).
TRACEBACK_VARIABLE = "WSOD_TRACEBACK"
#: A write that failed for want of space (a full disk, a quota): fit, validate, test and predict name the file.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
SUBCOMMANDS: dict[str, Subcommand] = {
    "fit": Subcommand(LIGHTNING_MODULE, "train GMIC from image-level labels (checkpoints, validated thresholds)"),
    "validate": Subcommand(LIGHTNING_MODULE, "classification metrics and detection thresholds on the validation split"),
    "test": Subcommand(LIGHTNING_MODULE, "Table I, the Table II row, FROC plots and overlays of one checkpoint"),
    "predict": Subcommand(LIGHTNING_MODULE, "boxes and scores for images, in their original DICOM frame"),
    "prepare": Subcommand("wsod_mammo.data.prepare", "decode VinDr-Mammo DICOMs once into a 16-bit image cache"),
    "synth": Subcommand("wsod_mammo.data.synthetic", "write a tiny synthetic VinDr-format dataset (real DICOMs)"),
    "report": Subcommand("wsod_mammo.detection.report_cli", "merge the Table II rows of several test runs"),
    "study": Subcommand("wsod_mammo.study", "the whole study: fit per method x seed, test, Table I/II with intervals"),
}

EPILOG = (
    "Run `wsod SUBCOMMAND --help` for a subcommand's options. For fit/validate/test/predict, "
    "`--model.help CLASS` and `--data.help CLASS` list a model's or data module's own options, e.g. "
    "`wsod fit --model.help GMICLitModule`. Start with `wsod fit --config configs/demo.yaml` (synthetic data, CPU). "
    "`wsod predict --ckpt_path FILE --data.predict_paths DIR` needs no config."
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--help``, ``--version`` and the subcommand list (each subcommand parses the rest)."""
    parser = argparse.ArgumentParser(
        prog="wsod",
        description="Weakly supervised mass detection in mammograms: GMIC with pluggable saliency methods.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"wsod-mammo {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", title="subcommands")
    for name, command in SUBCOMMANDS.items():
        commands.add_parser(name, help=command.purpose, add_help=False)
    return parser


#: How a DDP collective fails in the processes left when another process of the run has exited (gloo's words; the
#: exception is a plain RuntimeError, and Lightning's teardown has unset WORLD_SIZE by the time it reaches ``main``).
PEER_STOPPED = ("Connection closed by peer", "Connection reset by peer")


def peer_stopped(error: BaseException) -> bool:
    """Whether ``error`` is a multi-process run's collective failing because another of its processes exited: that
    process printed the reason, and the traceback of each process left (twice, with torch's ``[rankN]:`` copy)
    buried it."""
    text = str(error)
    return "gloo" in text and any(words in text for words in PEER_STOPPED)


#: torch's words where a DataLoader worker could not put a batch into shared memory (/dev/shm: full, read-only or
#: missing), and where one was killed by SIGBUS writing past the room left there.
SHARED_MEMORY_FAILED = ("unable to allocate shared memory", "unable to open shared memory", "out of shared memory")


#: What Lightning's teardown raises for a loader whose iterator never started, over the error that stopped it (its
#: workers could not start: no writable /dev/shm for multiprocessing's locks, a process limit).
LOADER_NOT_STARTED = "Please call `iter(combined_loader)` first."


def hidden_by_teardown(error: BaseException) -> BaseException | None:
    """The error Lightning's teardown hid, where ``error`` is its ``LOADER_NOT_STARTED``; None for any other: the
    last line a read-only /dev/shm ended a fit with named Lightning's iterator, not the file system."""
    if isinstance(error, RuntimeError) and str(error) == LOADER_NOT_STARTED and error.__context__ is not None:
        return error.__context__
    return None


def _locks_failed(error: OSError) -> bool:
    """Whether ``error`` came from making a multiprocessing lock (a semaphore in /dev/shm), as a DataLoader does
    before it starts its workers."""
    lock_module = os.path.join("multiprocessing", "synchronize.py")
    return any(frame.filename.endswith(lock_module) for frame in traceback.extract_tb(error.__traceback__))


def shared_memory_failed(error: BaseException) -> str:
    """torch's line saying that a DataLoader worker could not pass its batch through shared memory, found in the
    text of ``error`` (the worker's traceback, re-raised in this process); "" for any other error."""
    lines = [line.strip() for line in str(error).splitlines() if any(w in line for w in SHARED_MEMORY_FAILED)]
    return lines[-1].removeprefix("RuntimeError: ") if lines else ""


def _shared_memory_size() -> str:
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return "no /dev/shm"
    return f"/dev/shm holds {stat.f_blocks * stat.f_frsize / 2**20:.0f} MiB"  # its free space: freed by now


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``wsod`` and ``python -m wsod_mammo``: dispatch ``argv[0]`` with the remaining arguments."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] not in SUBCOMMANDS:
        parser = build_parser()
        parser.parse_args(args)  # --help, --version and unknown subcommands exit here
        parser.print_help()
        raise SystemExit(2)
    configure_logging()
    use_writable_matplotlib_folder()  # before the subcommand's imports bring matplotlib in
    name, rest = args[0], args[1:]
    module = None
    with watch_sigterm() as watch:  # before the imports: torch and Lightning take seconds to import
        try:
            module = importlib.import_module(SUBCOMMANDS[name].module)
            if SUBCOMMANDS[name].module == LIGHTNING_MODULE:
                _run_lightning(module, name, None if argv is None else [name, *rest])
            else:
                _run_command(module, name, rest, watch)
        except BaseException as err:  # after a SIGTERM, however the command ended: one line, 143
            if not watch.received or (isinstance(err, SystemExit) and err.code in (0, 128 + signal.SIGTERM)):
                raise
            logging.getLogger(PACKAGE_LOGGER).error(
                "wsod %s: stopped by SIGTERM before it finished%s", name, _how_to_go_on(name, module)
            )
            if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0") and not isinstance(err, Stopped):
                raise
            raise SystemExit(128 + signal.SIGTERM) from None


def _how_to_go_on(name: str, module: ModuleType | None) -> str:
    """What the line of an interrupted command adds: where a fit resumes from (its own ``last.ckpt``; ``--ckpt_path
    last`` names the newest run that wrote one, another run when this one wrote none yet), how a study goes on."""
    if name == "study":
        return "; the same command again skips finished runs and resumes the others"
    if name != "fit":
        return ""
    folders = [Path(folder) for folder in getattr(module, "FIT_CHECKPOINT_DIRS", [])]
    if last := [folder / "last.ckpt" for folder in folders if (folder / "last.ckpt").is_file()]:
        return f" (it resumes from its last.ckpt: --ckpt_path {last[0]})"
    if folders:
        return " (it wrote no checkpoint yet: start it again without --ckpt_path)"
    return ""


def _run_lightning(module: ModuleType, name: str, args: list[str] | None) -> None:
    """``fit|validate|test|predict`` through the LightningCLI; the errors users meet, in one line."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from wsod_mammo.ctrl_c import ctrl_c_received
    from wsod_mammo.data.errors import DataError
    from wsod_mammo.training.divergence import TrainingDivergedError
    from wsod_mammo.training.predict import NoReadableInputError
    from wsod_mammo.training.predict_resume import ContinueRefusedError, NothingLeftToPredict
    from wsod_mammo.training.wandb_logger import WandbStartError

    try:
        try:
            module.run_lightning_cli(args)  # None: LightningCLI reads sys.argv
        except Exception as err:  # after a Ctrl-C, the DataLoader workers or DDP peers it stopped first ended the run
            if ctrl_c_received():
                raise KeyboardInterrupt from None
            if (hidden := hidden_by_teardown(err)) is not None:
                raise hidden from None
            raise
    except SIGTERMException:  # Lightning's is a SystemExit without a code: status 0, as if the run had finished
        logging.getLogger(PACKAGE_LOGGER).error(
            "wsod %s: stopped by SIGTERM before it finished%s", name, _how_to_go_on(name, module)
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    except (SystemExit, KeyboardInterrupt) as err:  # Lightning ends a Ctrl-C'd run with exit(1) in its handler
        if isinstance(err, SystemExit) and not isinstance(err.__context__, KeyboardInterrupt):
            raise
        logging.getLogger(PACKAGE_LOGGER).error(
            "wsod %s: interrupted (Ctrl-C) before it finished%s", name, _how_to_go_on(name, module)
        )
        raise SystemExit(128 + signal.SIGINT) from None
    # an opt-in to live W&B syncing that cannot reach it; a loss or probabilities gone NaN: why, in one line
    except (WandbStartError, TrainingDivergedError) as err:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        logging.getLogger(PACKAGE_LOGGER).error("wsod %s: %s", name, err)
        raise SystemExit(1) from None
    except NoReadableInputError as err:  # every reason is written: the one line to read, not a traceback
        logging.getLogger(PACKAGE_LOGGER).error("%s", err)
        raise SystemExit(1) from None
    except NothingLeftToPredict as err:  # a run continued twice: its folder is whole, nothing failed
        logging.getLogger(PACKAGE_LOGGER).info("%s", err)
        raise SystemExit(0) from None
    except ContinueRefusedError as err:  # a folder of other weights, options or inputs: which, in one line
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        logging.getLogger(PACKAGE_LOGGER).error("wsod %s: %s", name, err)
        raise SystemExit(2) from None
    except (module.ConfigurationError, DataError) as err:  # the option or data and why, in one line
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        logging.getLogger(PACKAGE_LOGGER).error("wsod %s: %s", name, getattr(err, "reason", err))
        raise SystemExit(1 if isinstance(err, DataError) else 2) from None
    except OSError as err:  # a full disk: the file and the cause, in one line (a traceback named neither)
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        if _locks_failed(err):  # a read-only or missing /dev/shm (a sandbox, a serverless runtime)
            logging.getLogger(PACKAGE_LOGGER).error(
                "wsod %s: the DataLoader workers could not start: their locks and batches live in shared memory, "
                "and making a lock there failed (%s; %s): mount a writable tmpfs at /dev/shm (docker run "
                "--shm-size=8g; Kubernetes: an emptyDir of medium Memory) or load in this process with "
                "--data.num_workers 0. %s=1 shows the traceback",
                name, err, _shared_memory_size(), TRACEBACK_VARIABLE,
            )  # fmt: skip
            raise SystemExit(1) from None
        if err.errno not in DISK_FULL:
            raise
        what = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
        logging.getLogger(PACKAGE_LOGGER).error("wsod %s: %s", name, what)
        raise SystemExit(1) from None
    except RuntimeError as err:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        if reason := shared_memory_failed(err):  # a container's 64 MiB /dev/shm: a traceback ending in torch's line
            logging.getLogger(PACKAGE_LOGGER).error(
                "wsod %s: the DataLoader workers pass their batches through shared memory, and it failed (%s; %s); "
                "a container's default is 64 MiB, a batch of six 2944 x 1920 float32 images 135 MB, and each worker "
                "holds up to prefetch_factor batches: give the container more (docker run --shm-size=8g; "
                "Kubernetes: an emptyDir of medium Memory at /dev/shm), read a `wsod prepare` npy cache's images "
                "in this process (--data.augment_on device --data.standardize_on device --data.pixel_reads main) "
                "or load in this process with --data.num_workers 0. %s=1 shows the traceback",
                name, reason, _shared_memory_size(), TRACEBACK_VARIABLE,
            )  # fmt: skip
            raise SystemExit(1) from None
        if not peer_stopped(err):
            raise
        logging.getLogger(PACKAGE_LOGGER).error(
            "wsod %s: another process of this run stopped, and this one with it; its reason is above (none if "
            "it was killed outright, e.g. for memory). %s=1 shows this process's traceback",
            name, TRACEBACK_VARIABLE,
        )  # fmt: skip
        raise SystemExit(1) from None


def _run_command(module: ModuleType, name: str, rest: list[str], watch: SigtermWatch) -> None:
    """``prepare|synth|report|study``: the module's ``main``; bad input in one line."""
    if callable(pass_on := getattr(module, "pass_on_sigterm", None)):  # a study's runs stop with it
        watch.on_sigterm.append(pass_on)
    try:
        module.main(rest)
    except KeyboardInterrupt:  # Ctrl-C (study: its runs stop with it): one line, not a traceback per thread
        logging.getLogger(PACKAGE_LOGGER).error(
            "wsod %s: interrupted (Ctrl-C) before it finished%s", name, _how_to_go_on(name, module)
        )
        raise SystemExit(128 + signal.SIGINT) from None
    except (ValueError, OSError) as err:  # bad input to a command that trains nothing: the reason, in one line
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        logging.getLogger(PACKAGE_LOGGER).error("wsod %s: %s", name, err)
        raise SystemExit(1) from None


if __name__ == "__main__":  # `python -m wsod_mammo.commands`, the entry point's module: the `wsod` command (it ran
    # nothing and exited 0); the imported module's main, so that its state is the one the subcommands import
    from wsod_mammo.commands import main as _main

    _main()
