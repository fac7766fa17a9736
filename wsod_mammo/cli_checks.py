"""Checks of a parsed ``wsod`` command config before anything runs: hardware, precision, sizes, weights, output
folders and class counts, each an error naming the option (raised as ValueError; the CLI shows it in one line)."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import connection
from pathlib import Path
from typing import Any

import torch

from wsod_mammo.data.predict_data import expand_predict_paths
from wsod_mammo.data.sampling import SEEDS
from wsod_mammo.data.vindr_selection import check_distinct_classes
from wsod_mammo.models.gmic import COMPILE_OPTIONS, GMIC
from wsod_mammo.models.nyu import NYU_CLASS_NAMES, check_nyu_state_dict, load_nyu_checkpoint
from wsod_mammo.models.resnet import GLOBAL_STRIDE, global_map_size
from wsod_mammo.models.roi import window_size
from wsod_mammo.training.monitors import check_logged, check_mode

log = logging.getLogger(__name__)

FP16_PRECISIONS = {"16", "16-mixed", "16-true"}
BF16_PRECISIONS = {"bf16", "bf16-mixed", "bf16-true"}
HALF_TRUE_PRECISIONS = {"16-true", "bf16-true"}  # the whole batch cast: boxes and augmentation matrices lose pixels
DOUBLE_PRECISIONS = {"64", "64-true", "double"}  # float64 weights on float32 batches: the first step raised
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
    init_args = init_args_of(section, "model") or {}
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


def nyu_weights_to_load(section: Any) -> str | None:
    """``model.init_from_nyu`` when the command reads it: NYU's weights are read when no checkpoint is (a fresh fit
    starts from them; evaluation runs them as they are)."""
    path = (init_args_of(section, "model") or {}).get("init_from_nyu")
    return None if not path or section.get("ckpt_path") else str(path)


def check_nyu_weights_file(section: Any) -> None:
    """A missing ``nyu_weights_to_load`` file failed after the data was indexed and a run folder made, in a 40-line
    traceback."""
    path = nyu_weights_to_load(section)
    if path and not Path(path).is_file():
        raise ValueError(
            f"model.init_from_nyu: {path}: no such file (NYU's GMIC weights, e.g. models/sample_model_1.p of "
            "nyukat/GMIC; nothing is downloaded: put the file there, or give its path)"
        )


def check_nyu_weights_load(module: Any, section: Any, subcommand: str = "fit") -> None:
    """NYU's weights as the model will load them, once it is built and before anything runs: a file that is no
    weights-only state dict (a pickle, another network's, a torch object) or whose keys are not GMIC's failed in the
    model's ``setup``, in a 46-line traceback after the run folder was made. Evaluated as they are (validate, test,
    predict without ``--ckpt_path``), they must fill every layer: with another class count than the file's (the
    study config's one class, NYU's two) the saliency head, classifier and fusion started random, and the maps,
    probabilities and tables they gave were reported as "NYU weights"."""
    path, gmic = nyu_weights_to_load(section), getattr(module, "model", None)
    if not path or not isinstance(gmic, GMIC):
        return
    option = "model.init_from_nyu"
    state = load_nyu_checkpoint(path, option=option)
    fresh = check_nyu_state_dict(gmic, state, source=f"{option}: {path}")
    if fresh and subcommand != "fit":  # a fit trains the new layers: fine-tuning from NYU's weights
        classes = int(state["classifier_linear.weight"].shape[0])
        raise ValueError(
            f"{option}: {path}: evaluated as they are (no --ckpt_path), NYU's weights would run with {fresh} freshly "
            f"initialized (random): the file has {classes} classes, the model {gmic.num_classes}; give --ckpt_path "
            f"(best, last, <run id>:best or a file) to evaluate a fit, or --model.model.init_args.num_classes "
            f"{classes} (and as many data.classes) for NYU's own heads"
        )


def check_sync_batchnorm(module: Any, datamodule: Any, section: Any) -> None:
    """``trainer.sync_batchnorm: true`` in a fit whose patches a gradient method selects: in training the images of
    a batch move each other's scores through BatchNorm, so GMIC differentiates each image's score alone, batched over
    images (``target_gradients``'s ``per_image``), and SyncBatchNorm's backward all-reduces, which torch cannot batch
    ("Batching rule not implemented for c10d::allreduce_"): the fit failed at its first step, on every GPU."""
    method, batch = getattr(module, "train_saliency", None), getattr(datamodule, "batch_size", 1)
    if method is not None and method.needs_gradients and batch > 1 and section.get("trainer", {}).get("sync_batchnorm"):
        raise ValueError(
            f"trainer.sync_batchnorm: true, with model.train_saliency {method.name} (a gradient method) and batches "
            f"of {batch}: SyncBatchNorm's backward all-reduces, and the per-image gradients that select the patches "
            "cannot run through it; use trainer.sync_batchnorm false (the study's: each GPU's batch normalizes itself)"
        )


#: What ``model.optimizer`` / ``model.scheduler`` build: the classes their ``class_path`` may name.
FACTORY_BASES: dict[str, tuple[type, ...]] = {
    "optimizer": (torch.optim.Optimizer,),
    "scheduler": (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
}


def check_factory_classes(section: Any) -> None:
    """``model.optimizer`` and ``model.scheduler`` are called with the model's parameters (or the optimizer) and
    their ``init_args``: a ``class_path`` naming another callable (``os.system``) was called with the config's
    arguments as the model was built, and the fit then failed in a raw TypeError. Only classes of the expected kind
    pass; a config still names Python classes that are imported, so run configs you trust, as scripts."""
    init_args = init_args_of(section, "model") or {}
    for option, bases in FACTORY_BASES.items():
        value = init_args.get(option)
        class_path = value.get("class_path") if value is not None and hasattr(value, "get") else None
        if not isinstance(class_path, str):
            continue
        module_name, _, name = class_path.rpartition(".")
        try:
            target = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError):
            continue  # the option parser has named what it could not import
        if not (isinstance(target, type) and issubclass(target, bases)):
            kinds = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
            raise ValueError(f"model.{option}: class_path {class_path} is not a subclass of {kinds}")


def check_input_size(section: Any, patches: bool = True, checkpoint: str | None = None) -> None:
    """``data.input_size`` that GMIC cannot take (a side not a multiple of its global network's stride, or smaller
    than the patches it crops): an error naming the options before any run folder exists (the model's own error
    came at the first batch, naming neither). ``patches=False`` checks the size alone: with ``--ckpt_path`` the
    checkpoint's ``crop_shape`` and ``num_patches`` replace the config's (the config's were checked, not used: a
    crop that fit failed at the first batch, one that did not refused a frame the checkpoint's fits), so they are
    checked once they have, ``checkpoint`` naming that file."""
    data = init_args_of(section, "data") or {}
    size = data.get("input_size")
    if not size:
        return
    height, width = (int(v) for v in size)
    try:
        map_size = global_map_size(height, width)  # the model's own rule
    except ValueError:
        raise ValueError(
            f"data.input_size: expected [height, width], each a positive multiple of {GLOBAL_STRIDE} (the cells of "
            f"GMIC's saliency map), found {list(size)}"
        ) from None
    if not patches:
        return
    gmic = gmic_args_of(section)
    crop = gmic.get("crop_shape")
    if crop and (int(crop[0]) > height or int(crop[1]) > width) and checkpoint:
        raise ValueError(
            f"--ckpt_path {checkpoint}: its model.model.crop_shape {list(crop)} does not fit in the data.input_size "
            f"{list(size)}; give a data.input_size it fits in (a checkpoint's crop_shape is its own)"
        )
    if crop and (int(crop[0]) > height or int(crop[1]) > width):
        raise ValueError(
            f"model.model.crop_shape: {list(crop)} does not fit in the data.input_size {list(size)}; use a smaller "
            "crop_shape (the demo's [64, 64] at 384 x 256) or a larger input_size"
        )
    patches = gmic.get("num_patches")
    if crop and patches:
        window = window_size((int(crop[0]), int(crop[1])), map_size, (height, width))
        room = (map_size[0] // window[0]) * (map_size[1] // window[1])  # identical windows, none rotated
        if int(patches) > room:  # greedy selection then overlaps earlier patches, and once the map is used up
            log.warning(  # repeats the first window (NYU's selection does the same): a patch counts several times
                "model.model.num_patches: %s patches, but a %dx%d saliency map (data.input_size %s) holds at most %d "
                "windows of crop_shape %s without overlap: the others overlap or repeat patches",
                patches, *map_size, list(size), room, list(crop),
            )  # fmt: skip


def check_accelerator(section: Any) -> None:
    """``accelerator: gpu`` (configs/gmic_vindr.yaml's) on a machine without CUDA: say which option and what to add,
    before Lightning's MisconfigurationException traceback."""
    accelerator = str(section.get("trainer", {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not _cuda():
        raise ValueError(
            f"trainer.accelerator: {accelerator}, but this machine has no CUDA GPU; on a CPU add "
            "--config configs/trainer/cpu.yaml after the other configs (or --trainer.accelerator cpu)"
        )


def check_seeds(section: Any) -> None:
    """Seeds outside :data:`SEEDS`: a negative or too large ``seed_everything`` ended in Lightning's traceback, and a
    negative ``data.seed`` or ``data.augmentation.seed`` in numpy's "expected non-negative integer", naming neither
    option (``wsod study --seeds -1`` wrote run folders whose every fit failed so)."""
    data = init_args_of(section, "data") or {}
    augmentation = data.get("augmentation") or {}
    seeds = {
        "seed_everything": section.get("seed_everything"),  # True: Lightning draws one; False: none
        "data.seed": data.get("seed"),
        "data.augmentation.seed": augmentation.get("seed") if hasattr(augmentation, "get") else None,
    }
    for option, seed in seeds.items():
        if isinstance(seed, int) and not isinstance(seed, bool) and seed not in SEEDS:
            raise ValueError(f"{option}: expected a seed from {SEEDS.start} to {SEEDS.stop - 1}, found {seed}")


def check_precision(section: Any) -> None:
    """fp16 needs CUDA; Lightning would silently switch it to bf16 on a CPU, so refuse it here instead. The
    ``-true`` half precisions are refused everywhere: they cast the batch's boxes and augmentation matrices; so is
    float64, whose networks the float32 batches do not fit.

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
    if precision in DOUBLE_PRECISIONS:  # torch's "expected scalar type Float but found Double" at the first step
        raise ValueError(
            f"trainer.precision: {precision} makes the networks float64, but the batches and the device augmentation "
            "are float32 (the first step fails on the mismatch); use 32"
        )
    on_cpu = _runs_on_cpu(accelerator)
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


#: The options that give a compiled GMIC (configs/trainer/gpu.yaml's) back its eager networks.
EAGER_NETWORKS = " ".join(f"--model.init_args.model.init_args.{option} false" for option in COMPILE_OPTIONS)


def check_compile(section: Any) -> None:
    """``model.model.compile_networks`` (on in configs/trainer/gpu.yaml): on a GPU, torch.compile's code generator
    needs Triton, so a torch without it is refused here by name instead of failing at the first batch; on a CPU
    (gpu.yaml composed with cpu.yaml, say) CUDA graphs do not apply and compiling takes minutes: a warning."""
    mode = gmic_args_of(section).get("compile_networks")
    if not mode:
        return
    if _runs_on_cpu(str(section.get("trainer", {}).get("accelerator", "auto"))):
        log.warning(
            "model.model.compile_networks: %s on the CPU: CUDA graphs need a GPU, and torch.compile spends minutes "
            "on the first batches for little gain here; to run eagerly add %s",
            mode,
            EAGER_NETWORKS,
        )
    elif not _triton():
        raise ValueError(
            f"model.model.compile_networks: {mode} compiles GMIC with torch.compile, whose GPU code needs Triton, "
            f"which this Python cannot import; install the triton that matches torch {torch.__version__} or run "
            f"eagerly: add {EAGER_NETWORKS}"
        )


#: The longest Unix socket address (``sun_path``, its closing NUL included): 104 bytes on macOS and the BSDs.
SOCKET_PATH_MAX = 108 if sys.platform.startswith("linux") else 104


def check_worker_sockets(section: Any) -> None:
    """DataLoader workers under a long ``TMPDIR`` (a cluster job's scratch folder): the workers hand their batches'
    shared memory over through a Unix socket (multiprocessing's resource sharer; ``forkserver``, the default, also
    listens on one), which Python names under the temporary folder, and a name longer than a socket address takes
    failed the first loader with "OSError: AF_UNIX path too long" (``fork``: printed by each worker, and the run
    hung), naming neither TMPDIR nor an option. The address is the one Python would use, so a Python that shortens
    it passes."""
    data = init_args_of(section, "data") or {}
    if not data.get("num_workers", 4) or sys.platform == "win32":  # Windows' workers use named pipes
        return
    address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]  # untyped, public since 2.6
    if len(os.fsencode(address)) < SOCKET_PATH_MAX:
        return
    raise ValueError(
        f"data.num_workers: the DataLoader workers pass their batches through Unix sockets in the temporary folder, "
        f"and an address there ({address}, {len(os.fsencode(address))} bytes) is longer than a socket address "
        f"takes ({SOCKET_PATH_MAX - 1}): set a shorter TMPDIR (now {tempfile.gettempdir()}), e.g. TMPDIR=/tmp, or "
        f"load in this process with --data.num_workers 0"
    )


def check_no_hpc_checkpoint(section: Any) -> None:
    """Under SLURM, Lightning loads the newest ``hpc_ckpt_<k>.ckpt`` of ``default_root_dir`` (the working directory
    by default) into any run given no checkpoint, without a word: one its auto-requeue saved for another run (a
    study's array tasks share a working directory) became this fit's start, or this test's weights. wsod turns the
    auto-requeue off (``disable_slurm_auto_requeue``); a file left from before is refused, naming how to use it."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if section.get("ckpt_path") or not SLURMEnvironment.detect():
        return
    root = Path(str((section.get("trainer") or {}).get("default_root_dir") or os.getcwd()))
    found = sorted(root.glob("hpc_ckpt_*.ckpt"), key=_version)  # the one Lightning takes: the highest number
    if found:
        raise ValueError(
            f"{found[-1]}: under SLURM Lightning would load this checkpoint of its auto-requeue into this run without "
            f"a word (whichever run saved it); resume it on purpose with --ckpt_path {found[-1]}, or move it out of "
            f"{root}"
        )


def _version(path: Path) -> int:
    """``hpc_ckpt_<k>.ckpt`` -> k (-1 for another name that matched the pattern)."""
    number = path.stem.rpartition("_")[2]
    return int(number) if number.isdigit() else -1


def disable_slurm_auto_requeue(trainer: Any) -> None:
    """Lightning's SLURM auto-requeue (SIGUSR1: save ``hpc_ckpt_<k>.ckpt`` into the working directory, ``scontrol
    requeue``) is off: that file was loaded by any later run there (``check_no_hpc_checkpoint``). A pre-empted fit
    resumes from its own ``last.ckpt`` instead (SIGTERM: it names the file)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    environment = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    if isinstance(environment, SLURMEnvironment):
        environment.auto_requeue = False


def check_launched_processes(trainer: Any) -> None:
    """A launcher that starts the processes itself (``torchrun``, SLURM's ``srun``) must start the trainer's
    ``devices`` x ``num_nodes``. Otherwise, without a word: SLURM's one task (``--ntasks 1``) with ``devices 2`` ran
    alone, sharded as one of two, and trained, validated and tested on half the images; two tasks with ``devices 1``
    each ran the whole command, the second into ``<project>/None`` and ``version_None`` (no W&B run off rank 0).
    Lightning's own check (of torchrun's count, of SLURM's per node) was a traceback.
    A SLURM task 0 alone with ``devices 1`` runs (a batch script's command, ``--ntasks`` asked for CPUs)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
    from lightning.pytorch.utilities import rank_zero_only

    environment = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    if environment is None or not environment.creates_processes_externally:
        return
    slurm = isinstance(environment, SLURMEnvironment)
    launcher = "SLURM" if slurm else "torchrun" if isinstance(environment, TorchElasticEnvironment) else "the launcher"
    count = "SLURM_NTASKS" if slurm else "WORLD_SIZE"
    expected = trainer.num_nodes * trainer.num_devices
    runs = f"trainer.devices {trainer.num_devices} x trainer.num_nodes {trainer.num_nodes}"
    launched = environment.world_size()
    if expected == 1:  # the rank Lightning's rank_zero_only read from the environment: a second copy's is not 0
        if launched > 1 and (getattr(rank_zero_only, "rank", 0) != 0 or not slurm):
            raise ValueError(
                f"{launcher} started {launched} processes ({count}={launched}) but the trainer runs one ({runs}): "
                "each would run the whole command on its own; for DDP over them add --config configs/trainer/ddp.yaml "
                f"with trainer.devices x trainer.num_nodes = {launched}, or start one process"
            )
        return
    if launched != expected:
        hint = (
            f"start {expected} tasks (--ntasks-per-node {trainer.num_devices} --nodes {trainer.num_nodes}, `srun "
            "wsod ...`)"
            if slurm
            else f"give torchrun --nproc_per_node {trainer.num_devices} --nnodes {trainer.num_nodes}"
        )
        lost = (
            f": each would take 1/{expected} of the images, the rest left out" if slurm and launched < expected else ""
        )
        raise ValueError(
            f"{launcher} started {launched} process{'es' if launched != 1 else ''} ({count}={launched}) but the "
            f"trainer runs {expected} ({runs}){lost}; {hint}, or set --trainer.devices and --trainer.num_nodes to match"
        )
    environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)


#: what `srun` sets for each task it starts, and Lightning's SLURM environment reads for the task's ranks
SLURM_TASK_VARIABLES = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID")


@contextmanager
def slurm_task_variables() -> Iterator[None]:
    """The trainer built in a SLURM allocation's shell that ``srun`` did not start (``salloc`` with a job name other
    than ``bash``): Lightning takes SLURM for the launcher (``SLURM_NTASKS`` set), and a DDP trainer read the task's
    ranks that only ``srun`` sets, ending in Lightning's ``KeyError: 'SLURM_NODEID'`` traceback. A ValueError naming
    the variables missing and what to do. ``SLURM_NTASKS`` over 1 without ``SLURM_NTASKS_PER_NODE`` (``salloc -n
    2``, ``srun -n 2``) Lightning's SLURM environment refused as it was built, whatever the devices, in a traceback
    (a RuntimeError): a ValueError saying so."""
    tasks = os.environ.get("SLURM_NTASKS", "")
    try:
        yield
    except RuntimeError as error:
        per_node = "SLURM_NTASKS_PER_NODE" in os.environ
        if "--ntasks" not in str(error) or per_node or not (tasks.isdigit() and int(tasks) > 1):
            raise
        raise ValueError(
            f"SLURM: SLURM_NTASKS={tasks} without SLURM_NTASKS_PER_NODE (--ntasks without --ntasks-per-node), which "
            "Lightning does not take: ask for --ntasks-per-node trainer.devices (--nodes trainer.num_nodes) and run "
            "the command under srun, or in an salloc shell let Lightning start its own processes: `unset "
            "SLURM_NTASKS` or `export SLURM_JOB_NAME=bash` first"
        ) from None
    except KeyError as error:
        missing = [name for name in SLURM_TASK_VARIABLES if name not in os.environ]
        if not (error.args and error.args[0] in missing):
            raise
        job, name = os.environ.get("SLURM_JOB_ID", "?"), os.environ.get("SLURM_JOB_NAME", "")
        raise ValueError(
            f"SLURM: this shell is in SLURM job {job} (SLURM_NTASKS={tasks}, SLURM_JOB_NAME={name}), so Lightning "
            f"takes SLURM to start the processes, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            "set (srun sets them for each task it starts): run the command under srun (`srun wsod ...`, "
            "--ntasks-per-node trainer.devices), or for Lightning to start its own processes `unset SLURM_NTASKS` or "
            "`export SLURM_JOB_NAME=bash` first"
        ) from None


#: the words YAML reads as no value: ``--data.predict_paths null`` is the data's test split, not a folder ``null``
YAML_NULLS = ("null", "Null", "NULL", "~")


def check_predict_paths_not_null(section: Any, command_line: Sequence[str]) -> None:
    """``--data.predict_paths null`` (or ``~``, a ``#``...: what YAML reads as no value) where a file or folder of
    that name exists: predict read the data's test split instead, and refused with "data_root: . has no
    finding_annotations.csv ... predict reads it only without --data.predict_paths", which it had been given."""
    if (init_args_of(section, "data") or {}).get("predict_paths") is not None:
        return
    given = [value for option, value in zip(command_line, command_line[1:], strict=False)
             if option == "--data.predict_paths"]  # fmt: skip
    given += [word.partition("=")[2] for word in command_line if word.startswith("--data.predict_paths=")]
    for value in given:
        if (value in YAML_NULLS or value.startswith("#")) and Path(value).exists():
            raise ValueError(
                f"--data.predict_paths {value}: YAML reads {value!r} as no value (predict the data's test split), "
                f"not as the name of the {'folder' if Path(value).is_dir() else 'file'} here: give it as ./{value}"
            )


def check_predict_inputs(section: Any) -> None:
    """``predict`` on more processes than inputs: each process needs one. The DataModule says so too, but from
    every process once they have started; here it is one line, before any starts (``devices: auto`` is left to it)."""
    paths = (init_args_of(section, "data") or {}).get("predict_paths")
    processes = _process_count(section.get("trainer", {}))
    if not paths or processes is None or processes < 2:
        return
    inputs = len(expand_predict_paths([paths] if isinstance(paths, str) else paths))
    if inputs < processes:
        raise ValueError(
            f"trainer.devices: {inputs} predict input(s) for {processes} processes (trainer.devices x "
            f"trainer.num_nodes): each process needs one; run it with --trainer.devices {inputs}"
        )


def _process_count(trainer: Any) -> int | None:
    """How many processes ``devices`` x ``num_nodes`` start: None where Lightning decides (``auto``, ``-1``)."""
    devices = trainer.get("devices", "auto")
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif str(devices).strip().isdigit():
        count = int(devices)
    else:
        return None
    return count * int(trainer.get("num_nodes") or 1)


def _cuda() -> bool:
    return torch.cuda.is_available()


def _runs_on_cpu(accelerator: str) -> bool:
    """``trainer.accelerator`` ``cpu``, or ``auto`` on a machine without CUDA."""
    return accelerator == "cpu" or (accelerator == "auto" and not _cuda())


def _triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _cpu_has_bf16_kernels() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_output_folders(subcommand: str, section: Any) -> None:
    """The folders the command will write into must be creatable: a path under a file, or on a read-only mount, failed
    after the model and data were loaded, in a traceback naming no option. predict writes its predictions folders
    only; the others their run folders (the logger's ``save_dir``), and fit any checkpoint ``dirpath`` (evaluation
    saves no checkpoint: a training config's dirpath absent on the machine that tests is no reason to refuse)."""
    if subcommand == "predict":
        option = "trainer.callbacks PredictionWriter output_dir"
        folders = [(option, Path(args.get("output_dir") or "predictions")) for args in _writer_args(section)]
    else:
        _, init_args = logger_args_of(section)
        option = "trainer.logger.init_args.save_dir" if init_args.get("save_dir") else "trainer.default_root_dir"
        folders = [(option, runs_root(section))]
        if subcommand == "fit":
            folders += [("trainer.callbacks ModelCheckpoint dirpath", path) for path in checkpoint_dirs(section)]
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
    """``(class_path, init_args)`` of each callback in the parsed trainer config (a list, or one callback)."""
    callbacks = section.get("trainer", {}).get("callbacks") or []
    if hasattr(callbacks, "get"):  # Lightning also takes a single callback
        callbacks = [callbacks]
    return [(str(c.get("class_path", "")), c.get("init_args") or {}) for c in callbacks if hasattr(c, "get")]


def _writer_args(section: Any) -> list[Any]:
    """The ``init_args`` of the config's PredictionWriter callbacks."""
    return [args for class_path, args in _callback_args(section) if class_path.endswith("PredictionWriter")]


def checkpoint_dirs(section: Any) -> list[Path]:
    """The ``dirpath`` of every checkpoint callback in the parsed trainer config (set only to opt out of run
    folders: by default Lightning puts checkpoints in the logger's run folder, ``RUN_DIR/checkpoints``)."""
    return [Path(args["dirpath"]) for class_path, args in _callback_args(section)
            if class_path.endswith("Checkpoint") and args.get("dirpath")]  # fmt: skip


def init_args_of(section: Any, key: str) -> Any:
    """The ``init_args`` of the config's ``key`` class (``model``, ``data``); None where it gives none."""
    part = section.get(key, {})
    return part.get("init_args") if hasattr(part, "get") else None


def gmic_args_of(section: Any) -> Any:
    """The ``init_args`` of the GMIC inside the model (``model.model.init_args``); empty where the config gives
    none."""
    return ((init_args_of(section, "model") or {}).get("model") or {}).get("init_args") or {}


def logger_args_of(section: Any) -> tuple[str, Any]:
    """``(class_path, init_args)`` of the configured logger (``("", {})`` for none or ``True``)."""
    logger = section.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if not hasattr(logger, "get"):
        return "", {}
    return str(logger.get("class_path", "")), logger.get("init_args") or {}


def name_the_wandb_job(subcommand: str, section: Any) -> None:
    """A W&B logger's ``job_type`` is the command (fit, validate, test) unless the config gives one: a fit's run and
    the test of its checkpoint share a W&B group (and in ``wsod study`` a name, ``cam_seed42``), and nothing told
    the training run from the test's but which metrics each held."""
    class_path, init_args = logger_args_of(section)
    if "Wandb" in class_path and hasattr(init_args, "get") and not init_args.get("job_type"):
        init_args["job_type"] = subcommand


#: The command-line options that set a W&B logger's ``save_dir`` (jsonargparse takes ``init_args`` as optional)
SAVE_DIR_OPTIONS = frozenset({"--trainer.logger.save_dir", "--trainer.logger.init_args.save_dir"})


def keep_given_save_dir_for_wandb(section: Any, typed: set[str] | frozenset[str]) -> None:
    """A W&B logger's ``save_dir`` given on the command line (``typed``: its options) also holds its ``wandb/``
    folder, whatever ``WANDB_DIR`` says: the logger otherwise puts it in ``WANDB_DIR`` (W&B's variable for it),
    over the config file's ``save_dir``, which always outranked it."""
    class_path, init_args = logger_args_of(section)
    if "Wandb" in class_path and hasattr(init_args, "get") and not init_args.get("dir") and typed & SAVE_DIR_OPTIONS:
        init_args["dir"] = init_args.get("save_dir")


def runs_root(section: Any) -> Path:
    """The folder holding the run folders: the logger's ``save_dir`` (``runs`` for W&B), else the root dir."""
    class_path, init_args = logger_args_of(section)
    save_dir = init_args.get("save_dir") if hasattr(init_args, "get") else None
    if save_dir:
        return Path(save_dir)
    if "Wandb" in class_path:
        return Path("runs")
    return Path(section.get("trainer", {}).get("default_root_dir") or ".")


def check_heads_match_classes(section: Any, checkpoint: dict[str, Any] | None) -> None:
    """fit/validate/test compare each of the model's heads with a label of ``data.classes``: a count that differs
    (NYU's two heads against the default ``[Mass]``) failed at the first batch with a traceback about tensor sizes.
    The model's count is the checkpoint's when one is given (its hyperparameters replace the config's). A checkpoint
    trained on other classes (the ``class_names`` it records; NYU's heads, benign and malignant, are rated against
    VinDr's classes on purpose) was evaluated against this run's labels without a word."""
    data = init_args_of(section, "data")
    if data is None or "classes" not in data:
        return
    classes = list(data.get("classes") or ["Mass"])
    check_distinct_classes(classes)  # before their count: "[Mass, Mass]" is two names of one class, not two heads
    heads, source = _model_heads(section, checkpoint)
    if heads is not None and int(heads) != len(classes):
        raise ValueError(
            f"{source} has {heads} output class(es), data.classes has {len(classes)} ({', '.join(classes)}): give "
            f"one class per output (NYU's two: --data.classes '[Mass, Suspicious Calcification]')"
        )
    trained_on = [str(name) for name in (checkpoint or {}).get("class_names") or []]
    if trained_on and tuple(trained_on) != NYU_CLASS_NAMES and trained_on != [str(name) for name in classes]:
        raise ValueError(
            f"--ckpt_path's model was trained on data.classes [{', '.join(trained_on)}], this run's data.classes is "
            f"[{', '.join(map(str, classes))}]: each output would be rated against another class's labels; give "
            f"--data.classes '[{', '.join(trained_on)}]'"
        )


def _model_heads(section: Any, checkpoint: dict[str, Any] | None) -> tuple[Any, str]:
    """The model's count of output classes and the option that sets it: the checkpoint's when one is given (its
    hyperparameters replace the config's), else the config's (GMIC's default: one)."""
    heads, source = gmic_args_of(section).get("num_classes", 1), "model.model.init_args.num_classes"
    if checkpoint is not None:
        recorded = ((checkpoint.get("hyper_parameters") or {}).get("model") or {}).get("init_args") or {}
        if "num_classes" in recorded:
            heads, source = recorded["num_classes"], "--ckpt_path's model"
    return heads, source


#: the callbacks that evaluate, draw or write one class's maps and boxes (their ``class_index``)
CLASS_INDEX_CALLBACKS = ("PredictionWriter", "DetectionMetrics", "SaliencyOverlays")


#: Lightning's callbacks that watch a logged figure, each with ``mode: min`` unless told.
MONITORING_CALLBACKS = ("ModelCheckpoint", "BestCheckpoint", "WholeCheckpoint", "EarlyStopping")


def check_monitor_modes(section: Any) -> None:
    """A checkpoint callback or an ``EarlyStopping`` left at Lightning's ``mode: min`` on an AUROC, a TPR or a
    figure of merit keeps the worst epoch as ``best.ckpt``, or stops a fit that is improving; one watching a figure
    no fit logs (``val/fusion/aurco``) stopped it after its first epoch: both refused before it trains."""
    for class_path, args in _callback_args(section):
        name = class_path.rpartition(".")[2]
        if name in MONITORING_CALLBACKS:
            check_mode(f"trainer.callbacks {name}:", str(args.get("mode", "min")), "monitor", args.get("monitor"),
                       "mode: max in its init_args")  # fmt: skip
            check_logged(f"trainer.callbacks {name}:", "monitor", args.get("monitor"))


def check_class_index(section: Any, checkpoint: dict[str, Any] | None) -> None:
    """The PredictionWriter, DetectionMetrics and SaliencyOverlays each read one class's maps (``class_index``): an
    index the model has no output for failed after the model and every input were loaded (predict), after a whole
    training epoch (validation) or at the end of a test, in a Lightning traceback."""
    heads, source = _model_heads(section, checkpoint)
    for class_path, args in _callback_args(section):
        name = class_path.rpartition(".")[2]
        index = args.get("class_index", 0)
        if name in CLASS_INDEX_CALLBACKS and heads is not None and not 0 <= int(index) < int(heads):
            raise ValueError(
                f"trainer.callbacks {name} class_index: {index}, but {source} has {heads} output "
                f"class(es): expected 0..{int(heads) - 1}"
            )
