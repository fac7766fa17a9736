"""``wsod study``: the study's matrix in one command (fit per train method x seed, test with every method, tables).

Each run is two ``wsod`` processes (fit, then test of ``best.ckpt``) in its own folder
``OUTPUT/runs/<method>_seed<seed>/``, from a config composed of the given YAML files plus the run's settings
(seed, train method, folders, W&B group = the study's folder name). A run whose test finished is not redone, a fit
interrupted midway resumes from its ``last.ckpt``. Runs go to the local devices: ``--gpus N`` runs N at a time, one
per GPU (``CUDA_VISIBLE_DEVICES``), ``--parallel N`` N at a time on the CPU. On a cluster the scheduler runs them:
``--launcher slurm`` writes a job-array script (one array task per run) instead of running anything; SLURM is the
common denominator of university clusters and needs no service of ours (W&B sweeps would need the network).
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wsod_mammo.atomic_files import write_text_atomic
from wsod_mammo.config_files import named_import_paths, read_config_file
from wsod_mammo.data.sampling import SEEDS
from wsod_mammo.data.vindr import FINDING_CSV, load_records
from wsod_mammo.detection.report import METHOD_ORDER, count
from wsod_mammo.detection.study_report import write_study_outputs
from wsod_mammo.folder_locks import hold, holder, refuse_held
from wsod_mammo.study_runs import (
    BUSY_THEN,
    FIT_DONE,
    RUN_CONFIG,
    TEST_DONE,
    allow_runs,
    finished_report,
    run_all,
    run_one,
)
from wsod_mammo.study_runs import pass_on_sigterm as pass_on_sigterm  # commands calls it on SIGTERM to `wsod study`
from wsod_mammo.yaml_text import dump_yaml

log = logging.getLogger(__name__)

LOGGER_CLASS = "wsod_mammo.training.wandb_logger.OfflineWandbLogger"


@dataclass(frozen=True)
class RunSpec:
    """One cell of the study's matrix: a train-side method and a seed."""

    train_method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.train_method}_seed{self.seed}"


def compose_configs(paths: list[str]) -> dict[str, Any]:
    """Merge YAML files as ``--config a --config b`` does: dicts merge key by key, anything else is replaced."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged = _merge(merged, _with_files_read(read_config_file(path), Path(path).parent))
    return merged


def _with_files_read(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config`` with each group given as the path of another YAML file (``data: data.yaml``) replaced by that
    file's options, a relative path read from the folder of the file naming it, as ``wsod fit`` reads it
    (jsonargparse's): the study crashed on such a config (``'str' object has no attribute 'setdefault'``), and its
    runs, whose ``run.yaml`` lies in another folder, would not have found the file."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and value.endswith((".yaml", ".yml")) and (folder / value).is_file():
            path = folder / value  # an absolute value stays itself
            value = _with_files_read(read_config_file(path, f"{key}:"), path.parent)
        elif isinstance(value, dict):
            value = _with_files_read(value, folder)
        out[key] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: ``--select_by``: what keeps each run's ``best.ckpt`` (``config``: the configs' BestCheckpoint as they give it).
SELECTIONS = ("config", "auroc", "wafroc")


def selection_monitor(select_by: str, train_method: str) -> str | None:
    """The validation figure ``best.ckpt`` is kept by (highest): the fusion head's AUROC, or the wAFROC of the
    maps of the method that selected the run's patches; None: the configs' own."""
    return {"auroc": "val/fusion/auroc", "wafroc": f"val/wafroc/{train_method}"}.get(select_by)


def _select_best(callbacks: list[dict[str, Any]], monitor: str, spec: RunSpec, test_methods: list[str]) -> None:
    """Point the configs' monitoring checkpoint callbacks (``best.ckpt``) at ``monitor``, ``mode: max``; refuse a
    wAFROC validation does not log (no DetectionMetrics callback validates that method)."""
    best = [c for c in callbacks if str(c.get("class_path", "")).endswith("Checkpoint")
            and (c.get("init_args") or {}).get("monitor")]  # fmt: skip
    if not best:
        raise ValueError("--select_by: the configs' trainer.callbacks hold no checkpoint callback with a monitor "
                         "(BestCheckpoint, best.ckpt) to point at it")  # fmt: skip
    if monitor.startswith("val/wafroc/"):
        metrics = [c for c in callbacks if str(c.get("class_path", "")).endswith("DetectionMetrics")]
        validated = list(
            dict.fromkeys(m for c in metrics for m in (c.get("init_args") or {}).get("methods") or test_methods)
        )
        if spec.train_method not in validated:
            raise ValueError(
                f"--select_by wafroc: run {spec.name} would keep best.ckpt by {monitor}, but validation logs the "
                f"wAFROC of {', '.join(validated) or 'no method (no DetectionMetrics callback)'}: add "
                f"{spec.train_method} to --test_methods (or to DetectionMetrics' methods)"
            )
    for callback in best:
        callback["init_args"] = {**callback["init_args"], "monitor": monitor, "mode": "max"}


def run_config(
    base: dict[str, Any], spec: RunSpec, run_dir: Path, group: str, test_methods: list[str], select_by: str = "config"
) -> dict:
    """The run's config: ``base`` with the run's seed, methods, W&B group, every output inside ``run_dir`` and
    ``best.ckpt`` kept by ``select_by`` (:data:`SELECTIONS`)."""
    config = copy.deepcopy(base)
    config["seed_everything"] = spec.seed  # the new heads' initialization
    # and the augmentation draws; the split, the negatives and the order stay the config's data.seed
    data = config.setdefault("data", {}).setdefault("init_args", {})
    data["augmentation"] = {**(data.get("augmentation") or {}), "seed": spec.seed}
    model = config.setdefault("model", {}).setdefault("init_args", {})
    model.update(train_saliency=spec.train_method, test_saliency=list(test_methods))
    trainer = config.setdefault("trainer", {})
    logger = trainer.get("logger") if isinstance(trainer.get("logger"), dict) else {}
    init = {**logger.get("init_args", {}), "save_dir": str(run_dir), "group": group, "name": spec.name}
    trainer["logger"] = {"class_path": logger.get("class_path", LOGGER_CLASS), "init_args": init}
    callbacks = trainer.get("callbacks") or []
    checkpoints = [c for c in callbacks if str(c.get("class_path", "")).endswith("Checkpoint")]
    if not checkpoints:
        raise ValueError("trainer.callbacks: the study needs a ModelCheckpoint (best.ckpt, last.ckpt)")
    for callback in checkpoints:  # the study's run folder is the run's own: its checkpoints go right inside it
        callback["init_args"] = {**(callback.get("init_args") or {}), "dirpath": str(run_dir / "checkpoints")}
    if monitor := selection_monitor(select_by, spec.train_method):
        _select_best(callbacks, monitor, spec, test_methods)
    for callback in callbacks:
        args = callback.get("init_args") or {}
        if "output_dir" in args:
            args["output_dir"] = str(run_dir / "predictions")
    return config


def check_study_options(args: argparse.Namespace, output: Path) -> None:
    """Options the study cannot run with, named before anything is written (``--parallel 0`` ran one at a time,
    an ``--output`` that is a file failed at the first run folder with the OS's words)."""
    if args.gpus < 0 or args.parallel < 1:
        raise ValueError(
            f"--gpus/--parallel: expected --gpus >= 0 and --parallel >= 1, found {args.gpus}, {args.parallel}"
        )
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output}: a file, not a study folder")
    if args.aggregate_only and not (output / "runs").is_dir():
        raise ValueError(f"--output {output}: no study runs there (no runs/ folder) to aggregate")


def check_gpus_wanted(gpus: int, config: dict[str, Any]) -> None:
    """``--gpus N`` only hands each run one GPU: a config that trains on the CPU (demo.yaml) ran every run there, N
    at a time, without a word."""
    if gpus > 0 and trains_on_cpu(config):
        raise ValueError(
            f"--gpus {gpus}: the config trains on the CPU (trainer.accelerator: cpu); add --config "
            f"configs/trainer/gpu.yaml after the others, or give --parallel {gpus} for {gpus} CPU runs at a time"
        )


def trains_on_cpu(config: dict[str, Any]) -> bool:
    """The composed config's ``trainer.accelerator`` is ``cpu`` (demo.yaml's)."""
    return (config.get("trainer") or {}).get("accelerator", "auto") == "cpu"


def data_to_synthesize(config: dict[str, Any]) -> bool:
    """True when the runs' DataModule will write a synthetic dataset on first use (none at ``data_root`` yet)."""
    data = (config.get("data") or {}).get("init_args") or {}
    root = data.get("data_root")
    return bool(data.get("synthesize_if_missing")) and not (root and (Path(root).expanduser() / FINDING_CSV).is_file())


def say_data_warnings(config: dict[str, Any]) -> None:
    """The CSV's warnings (rows repeating an earlier one, findings outside the classes without a box), said once on
    the study's terminal before its runs: each run says them in its own ``fit.log`` and ``test.log`` only, one
    pair of files per run, and the study's terminal never did. Nothing where the data is still to be synthesized,
    another DataModule reads it, or it cannot be read (the first run fails saying why)."""
    data = config.get("data") or {}
    init_args = data.get("init_args") or {}
    if not init_args.get("data_root") or data_to_synthesize(config):
        return
    if not str(data.get("class_path") or "VinDrMammoDataModule").endswith("VinDrMammoDataModule"):
        return
    try:
        load_records(Path(init_args["data_root"]).expanduser(), list(init_args.get("classes") or ["Mass"]))
    except Exception:  # the runs' own DataModule says what is wrong, in the first run's log and the study's error
        return


def slurm_script(argv: list[str], n_runs: int, output: Path, gpu: bool = True) -> str:
    """A job-array script: array task i runs ``wsod study ... --run_index i`` (on one GPU when ``gpu``: a config
    that trains on the CPU asks for none), in this working directory (the command's relative paths, its configs and
    the study folder, mean what they mean here). Paths with spaces are quoted: bash's for the command, sbatch's
    double quotes for its directives."""
    command = shlex.join([sys.executable, "-m", "wsod_mammo", "study", *_without_launcher(argv)])
    gres = "#SBATCH --gres=gpu:1\n" if gpu else ""
    return (
        "#!/bin/bash\n#SBATCH --job-name=wsod-study\n"
        f"#SBATCH --array=0-{n_runs - 1}\n{gres}#SBATCH --cpus-per-task=8\n"
        f"#SBATCH --output={_directive_path(output / 'slurm-%A_%a.out')}\n"
        f"#SBATCH --chdir={_directive_path(Path.cwd())}\nset -euo pipefail\n"
        f'{command} --launcher local --gpus 0 --run_index "$SLURM_ARRAY_TASK_ID"\n'
    )


def _directive_path(path: Path) -> str:
    """A path as an ``#SBATCH`` value: in double quotes when it holds whitespace (sbatch splits the line there)."""
    text = str(path)
    if any(c in text for c in '"\\\n'):  # sbatch reads a backslash as an escape
        raise ValueError(
            f"--launcher slurm: {text!r}: a path with a double quote, backslash or newline cannot be an #SBATCH value"
        )
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _without_launcher(argv: list[str]) -> list[str]:
    """``argv`` less its ``--launcher X`` / ``--launcher=X``: the array task's own ``--launcher local`` would override
    it anyway, but a script line with both reads as a mistake (an abbreviated option stays, still overridden)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--launcher":
            skip = True
        elif not arg.startswith("--launcher="):
            kept.append(arg)
    return kept


def _methods(text: str, option: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHOD_ORDER]
    if unknown or not names:
        raise ValueError(f"{option}: expected a comma-separated list of {', '.join(METHOD_ORDER)}, found {text!r}")
    return names


def _test_methods(args: argparse.Namespace) -> list[str] | None:
    return None if args.test_methods is None else _methods(args.test_methods, "--test_methods")


def build_parser() -> argparse.ArgumentParser:
    description = __doc__.split("\n\n")[0].replace("``", "")
    # allow_abbrev off, as fit: a misspelt option is refused, not taken as the one it begins
    parser = argparse.ArgumentParser(prog="wsod study", description=description, allow_abbrev=False)
    add = parser.add_argument
    shown = " (default: %(default)s)"  # argparse fills it in: --help says what runs without the option
    add("--config", action="append", required=True, help="YAML config(s), composed in order (e.g. configs/demo.yaml)")
    add("--output", default="runs/study", help="the study folder: runs/, tables, FROC plots, summary.md" + shown)
    add("--train_methods", default=",".join(METHOD_ORDER), help="train-side methods, comma-separated" + shown)
    add("--test_methods", default=None,
        help="test-side methods, comma-separated (default: all five when running; with --aggregate_only, the "
             "methods the runs were tested with)")  # fmt: skip
    add("--seeds", default="42", help="seeds, comma-separated; two or more give intervals over seeds" + shown)
    add("--gpus", type=int, default=0, help="GPUs to use, one run per GPU at a time; 0: the CPU" + shown)
    add("--parallel", type=int, default=1, help="runs at a time on the CPU, with --gpus 0" + shown)
    add("--launcher", choices=("local", "slurm"), default="local", help="slurm: write a job-array script only" + shown)
    add("--run_index", type=int, default=None, help="run only this run of the matrix (a SLURM array task), no tables")
    add("--select_by", choices=SELECTIONS, default="config",
        help="what keeps each run's best.ckpt, the checkpoint tested: config (its BestCheckpoint's monitor), auroc "
             "(the fusion head's validation AUROC), wafroc (the validation wAFROC of the maps of the run's own "
             "train-side method: the epoch that localizes best)" + shown)  # fmt: skip
    add("--aggregate_only", action="store_true", help="only assemble the tables from finished runs")
    return parser


def _matrix(args: argparse.Namespace) -> list[RunSpec]:
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:  # an empty list (an unset variable in a script) would write empty tables over a finished study
        raise ValueError(f"--seeds: expected comma-separated integers, found {args.seeds!r}")
    if outside := [s for s in seeds if s not in SEEDS]:  # every run's fit would fail in seed_everything
        raise ValueError(f"--seeds: expected seeds from {SEEDS.start} to {SEEDS.stop - 1}, found {outside[0]}")
    return [RunSpec(m, s) for m in _methods(args.train_methods, "--train_methods") for s in seeds]


def run_config_texts(args: argparse.Namespace, runs: dict[RunSpec, Path]) -> dict[RunSpec, str]:
    """Each run's ``run.yaml`` text (the composed configs plus the run's settings); the W&B group is the study's
    name. Every run's first: a config no run can use is refused before any folder is made."""
    base, test_methods = compose_configs(args.config), _test_methods(args) or list(METHOD_ORDER)
    group = Path(args.output).resolve().name
    return {
        spec: dump_yaml(
            run_config(base, spec, run_dir.resolve(), group, test_methods, args.select_by), sort_keys=False
        )  # fmt: skip
        for spec, run_dir in runs.items()
    }


def write_run_configs(
    args: argparse.Namespace, runs: dict[RunSpec, Path], texts: dict[RunSpec, str] | None = None
) -> None:
    """Each run's ``run.yaml`` (``texts``, else ``run_config_texts``), but those of runs started or running."""
    texts = run_config_texts(args, runs) if texts is None else texts
    check_kept_classes(runs, texts)
    for spec, run_dir in runs.items():
        run_dir.mkdir(parents=True, exist_ok=True)
        text = texts[spec]
        kept = run_dir / RUN_CONFIG
        if kept.is_file() and (who := holder(run_dir)):  # the record of the run that process is running
            log.warning("study: run %s is being run by %s; its %s stays as it is", spec.name, who, kept)
            continue
        finished, started = (run_dir / FIT_DONE).is_file(), (run_dir / "checkpoints" / "last.ckpt").is_file()
        if (finished or started) and kept.is_file():  # its fit ran (or resumes) with that config: it stays the record
            if (moved := relocated(kept.read_text(encoding="utf-8"), run_dir.resolve())) is not None:
                log.info("study: run %s was moved here: its %s now names its folder %s", spec.name, kept, run_dir)
                write_text_atomic(kept, moved)
            if _without_group(kept.read_text(encoding="utf-8")) != _without_group(text):
                log.warning(
                    "study: run %s was %s with another config than this command composes; it is kept as it was "
                    "(its %s) and %s: for the new config, give a new --output", spec.name,
                    "fitted" if finished else "started", kept, "not refitted" if finished else "resumes with it",
                )  # fmt: skip
            continue
        write_text_atomic(kept, text)


def check_kept_classes(runs: dict[RunSpec, Path], texts: dict[RunSpec, str]) -> None:
    """A started or fitted run resumes (or is tested) with the ``run.yaml`` its folder holds, which runs as a config:
    each ``class_path`` imported and built. A run folder is data (a colleague's study copied to finish it): one
    naming a class that this command's configs do not ran that module's code, with a warning of another config
    only. Refused, naming the run, before any run starts."""
    for spec, run_dir in runs.items():
        kept, started = run_dir / RUN_CONFIG, (run_dir / "checkpoints" / "last.ckpt").is_file()
        if not (kept.is_file() and ((run_dir / FIT_DONE).is_file() or started)):
            continue
        composed = {path for _, path in named_import_paths(yaml.safe_load(texts[spec]))}
        named = named_import_paths(yaml.safe_load(kept.read_text(encoding="utf-8")))
        if foreign := sorted({f"{path} ({entry})" for entry, path in named if path not in composed}):
            raise ValueError(
                f"run {spec.name}'s {kept} names {', '.join(foreign)}, which this command's configs do not: "
                "a run folder is data, and its run.yaml would run as a config (each class_path imported and built); "
                "give a new --output, or name the class in --config if you trust it"
            )


def _without_group(text: str) -> Any:
    """A ``run.yaml``'s config less its W&B group, the study folder's name: a study folder renamed and run again
    composes its runs as they were but for the group, and each started or finished run was said to have another
    config than the command's."""
    config = yaml.safe_load(text)
    logger = ((config.get("trainer") or {}).get("logger") or {}) if isinstance(config, dict) else {}
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        logger["init_args"].pop("group", None)
    return config


def relocated(text: str, run_dir: Path) -> str | None:
    """A run's ``run.yaml`` with the folder it was written in (its logger's ``save_dir``, as :func:`run_config` sets
    it) replaced by ``run_dir`` wherever a path names it or lies inside it; None where it names ``run_dir`` already
    or records no folder. A study folder moved (from scratch space, say) and run again resumed its interrupted fits
    from the old folder's ``last.ckpt``, trained and tested into the old folder, and the study then recorded the
    test report copied along with the folder, or failed on finding none."""
    config = yaml.safe_load(text)
    logger = ((config.get("trainer") or {}).get("logger") or {}) if isinstance(config, dict) else {}
    old = (logger.get("init_args") or {}).get("save_dir") if isinstance(logger, dict) else None
    if not isinstance(old, str) or Path(old) == run_dir:
        return None

    def moved(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: moved(item) for key, item in value.items()}
        if isinstance(value, list):
            return [moved(item) for item in value]
        if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
            return str(run_dir) + value[len(old.rstrip("/")) :]
        return value

    return dump_yaml(moved(config), sort_keys=False)


def aggregate(output: Path, runs: dict[RunSpec, Path], test_methods: list[str] | None = None) -> str:
    """Tables, FROC figures and summary from the finished runs, of ``test_methods`` (None: every method they were
    tested with); an unfinished run, or one tested without one of ``test_methods``, is an error naming it."""
    unfinished = [d.name for d in runs.values() if d.is_dir() and not (d / TEST_DONE).is_file()]
    absent = [d.name for d in runs.values() if not d.is_dir()]
    said = [f"runs without a finished test: {', '.join(unfinished)}"] if unfinished else []
    if absent:  # never started here: an --aggregate_only given other methods or seeds than the study ran (the
        # defaults: all five) named them among the unfinished, as if the study had failed them
        said.append(f"runs this folder has never held: {', '.join(absent)} (give --train_methods and --seeds as the "
                    "study ran with)")  # fmt: skip
    if said:
        raise ValueError("; ".join(said))
    reports = {(s.train_method, s.seed): finished_report(d) for s, d in runs.items()}
    left_out = finished_outside(output, runs)
    include_them = covering_options(output, runs, left_out) if left_out else ""
    if left_out:
        log.warning(
            "study: the tables hold this command's %s; finished %s of %s left out of them: %s. To include them: %s",
            count(len(runs), "run"), "run" if len(left_out) == 1 else "runs", output / "runs", ", ".join(left_out),
            include_them,
        )  # fmt: skip
    settings = differing_settings(runs)
    if settings:
        log.warning(
            "study: the runs in these tables were fitted with different settings (%s), and the tables average them "
            "together: give each setting its own --output", settings,
        )  # fmt: skip
    return write_study_outputs(
        output, reports, test_methods, left_out, include_them, checkpoint_selection(runs), settings
    )


def differing_settings(runs: dict[RunSpec, Path]) -> str:
    """The settings the runs' ``run.yaml`` differ in beyond each run's own (seed, train method, folders, names, a
    ``--select_by wafroc`` monitor of its own method's maps): ``trainer.max_epochs: 2 (cam_seed42), 3
    (gradcam_seed42)``; empty where they agree. A rerun into the same ``--output`` with an edited config keeps its
    finished and started runs as they were and fits the others with the new one, and the tables averaged both
    without a word (with ``--aggregate_only``, not even the rerun's warning)."""
    values: dict[str, dict[str, list[str]]] = {}
    names = []
    for spec, run_dir in runs.items():
        try:
            config = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8"))
            shared = run_config(config, RunSpec("<train method>", 0), Path("<run>"), "<study>", [])
        except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError):  # no record, or not a run's config
            continue
        for callback in (shared.get("trainer") or {}).get("callbacks") or []:
            args = (callback.get("init_args") or {}) if isinstance(callback, dict) else {}
            if args.get("monitor") == selection_monitor("wafroc", spec.train_method):
                args["monitor"] = selection_monitor("wafroc", "<train method>")
        names.append(spec.name)
        for key, value in _flat(shared).items():
            values.setdefault(key, {}).setdefault(value, []).append(spec.name)
    differ = []
    for key, by_value in values.items():
        unset = [name for name in names if not any(name in runs_ for runs_ in by_value.values())]
        if len(by_value) > 1 or unset:
            groups = [*by_value.items(), *([("unset", unset)] if unset else [])]
            differ.append(f"{key}: " + ", ".join(f"{value} ({', '.join(group)})" for value, group in groups))
    return "; ".join(differ)


def _flat(value: Any, key: str = "") -> dict[str, str]:
    """A config as dotted keys (list items by index) and their values as YAML writes them."""
    if isinstance(value, dict) and value:
        return {
            k: v for name, item in value.items() for k, v in _flat(item, f"{key}.{name}" if key else str(name)).items()
        }
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{key}.{i}").items()}
    return {key: yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()}


def _kept_by(run_dir: Path) -> str | None:
    """What kept the run's ``best.ckpt`` as its ``run.yaml`` records it (``val/fusion/auroc, highest``); None: no
    record, or no checkpoint kept by a figure."""
    try:
        config = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        args = (callback.get("init_args") or {}) if isinstance(callback, dict) else {}
        if args.get("monitor"):
            return f"{args['monitor']}, {'highest' if args.get('mode', 'min') == 'max' else 'lowest'}"
    return None


def checkpoint_selection(runs: dict[RunSpec, Path]) -> str:
    """What kept the tested ``best.ckpt`` of the runs, for the summary: one figure, each run's own train-side
    method's wAFROC, or the runs' figures one by one where they differ (runs fitted by other commands)."""
    kept = {spec: _kept_by(run_dir) for spec, run_dir in runs.items()}
    if kept and all(m == f"{selection_monitor('wafroc', spec.train_method)}, highest" for spec, m in kept.items()):
        return "each run's validation wAFROC of its own train-side method's maps (val/wafroc/<train method>), highest"
    if len(set(kept.values())) == 1:
        (only,) = set(kept.values())
        return f"validation {only}" if only else "no record (the runs' run.yaml)"
    return "; ".join(f"{spec.name}: {m or 'no record'}" for spec, m in kept.items())


def finished_outside(output: Path, runs: dict[RunSpec, Path]) -> list[str]:
    """The finished runs in ``OUTPUT/runs/`` outside this command's matrix (an earlier, wider command's): the tables
    leave them out, and a researcher who narrowed ``--train_methods`` or ``--seeds`` must hear of it."""
    inside = {d.resolve() for d in runs.values()}
    folders = (output / "runs").glob("*") if (output / "runs").is_dir() else []
    return sorted(d.name for d in folders if (d / TEST_DONE).is_file() and d.resolve() not in inside)


def covering_options(output: Path, runs: dict[RunSpec, Path], left_out: list[str]) -> str:
    """The options of the smallest matrix holding ``runs`` and the run folders ``left_out`` (train methods x seeds),
    and what giving them does: only assemble the tables when all its runs are finished, else run the others."""
    methods, seeds = {s.train_method for s in runs}, {s.seed for s in runs}
    for name in left_out:
        if match := re.fullmatch(r"(.+)_seed(-?\d+)", name):
            methods.add(match[1])
            seeds.add(int(match[2]))
    ordered = [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))
    options = f"--train_methods {','.join(ordered)} --seeds {','.join(map(str, sorted(seeds)))}"
    cells = [RunSpec(m, s).name for m in ordered for s in sorted(seeds)]
    unfinished = [name for name in cells if not (output / "runs" / name / TEST_DONE).is_file()]
    if not unfinished:
        return f"{options} --aggregate_only"
    return f"{options} (it also runs {', '.join(unfinished)}, not finished yet)"


def main(argv: list[str] | None = None) -> None:
    """``wsod study --config C [--train_methods ...] [--seeds ...] [--gpus N | --parallel N] [--launcher slurm]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    # a ~ the shell left (`--output=~/x`) is the home folder: it made a folder named ~ in the working directory
    args.output, args.config = str(Path(args.output).expanduser()), [str(Path(c).expanduser()) for c in args.config]
    allow_runs()  # a study stopped earlier in this process (a notebook, a test) does not stop this one
    output = Path(args.output)
    check_study_options(args, output)
    runs = {spec: output / "runs" / spec.name for spec in _matrix(args)}
    if args.run_index is not None:  # one SLURM array task: this run only (its config alone, no race on the rest)
        if not 0 <= args.run_index < len(runs):
            raise ValueError(f"--run_index: expected 0..{len(runs) - 1}, found {args.run_index}")
        spec = list(runs)[args.run_index]
        texts = run_config_texts(args, {spec: runs[spec]})
        refuse_held(output, "--output", BUSY_THEN)  # the array's tasks run side by side, but not beside a study
        write_run_configs(args, {spec: runs[spec]}, texts)
        run_one(runs[spec], None)
        return
    base = compose_configs(args.config) if not args.aggregate_only else {}
    texts = {} if args.aggregate_only else run_config_texts(args, runs)
    if not args.aggregate_only:
        check_gpus_wanted(args.gpus, base)
    # the study's folder held from here to its tables: its runs' own locks left a second study (a job submitted
    # again) free to start between two of them, and it ran the runs its workers had taken before it stopped
    lock = hold(output, "wsod study", "--output", BUSY_THEN)
    try:
        _run_study(args, argv, output, runs, base, texts)
    finally:
        lock.close()


def _run_study(
    args: argparse.Namespace,
    argv: list[str],
    output: Path,
    runs: dict[RunSpec, Path],
    base: dict[str, Any],
    texts: dict[RunSpec, str],
) -> None:
    """``main``'s work once it holds the study folder: the runs' configs, the runs (or the SLURM script), the
    tables."""
    if not args.aggregate_only:
        write_run_configs(args, runs, texts)
    if args.launcher == "slurm" and not args.aggregate_only:  # the tables after the array: nothing to launch
        script = output / "study.sbatch"
        write_text_atomic(script, slurm_script(argv, len(runs), output.resolve(), gpu=not trains_on_cpu(base)))
        log.info("study: %s; `sbatch %s`, then the same command with --aggregate_only", count(len(runs), "run"),
                 shlex.quote(str(script)))  # fmt: skip
        return
    if not args.aggregate_only:
        gpus: list[str | None] = [str(i) for i in range(args.gpus)]
        slots = gpus or [None] * args.parallel  # >= 1: check_study_options
        say_data_warnings(base)
        run_all(list(runs.values()), slots, first_alone=data_to_synthesize(base))
    print(aggregate(output, runs, _test_methods(args)), end="")
    log.info("study tables, FROC plots and summary.md written to %s", output)


if __name__ == "__main__":  # `python -m wsod_mammo.study`: `wsod study` (it ran nothing and exited 0)
    from wsod_mammo.commands import main as _main

    _main(["study", *sys.argv[1:]])
