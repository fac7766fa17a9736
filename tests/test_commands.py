"""The ``wsod`` dispatcher: one listing of every subcommand, and the plain subcommands start without torch."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from wsod_mammo import __version__
from wsod_mammo.commands import SUBCOMMANDS, main
from wsod_mammo.commands import TRACEBACK_VARIABLE as TRACEBACK
from wsod_mammo.logging_setup import DropAdvertisements, configure_logging

HEAVY = ("torch", "lightning", "wandb")


def _run_in_fresh_python(args: list[str]) -> tuple[int, str, set[str]]:
    """Run ``wsod ARGS`` in a new interpreter; return its exit code, stdout and which heavy modules it imported."""
    code = (
        "import sys\nfrom wsod_mammo.commands import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    code = e.code or 0\nelse:\n    code = 0\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    heavy = result.stdout.rsplit("HEAVY=", 1)[1].strip()
    return result.returncode, result.stdout, set(filter(None, heavy.split(",")))


def test_help_lists_every_subcommand_with_its_purpose_and_imports_no_torch() -> None:
    code, out, heavy = _run_in_fresh_python(["--help"])
    assert code == 0
    for name in ("fit", "validate", "test", "predict", "prepare", "synth", "report", "study"):
        assert name in SUBCOMMANDS
        first_words = " ".join(SUBCOMMANDS[name].purpose.split()[:3])
        assert f"{name} " in out and first_words in " ".join(out.split()), name
    assert "--model.help" in out and "--data.help" in out
    assert heavy == set()


@pytest.mark.parametrize("name", ["synth", "report", "prepare"])
def test_plain_subcommand_help_names_itself_without_torch(name: str) -> None:
    code, out, heavy = _run_in_fresh_python([name, "--help"])
    assert code == 0
    assert out.startswith(f"usage: wsod {name} ")
    assert heavy == set()


@pytest.mark.parametrize(
    "argv",
    [["synth", "--roo", "x"], ["prepare", "--data_root", "x", "--cache", "y"], ["report", "x", "--comp", "a"],
     ["study", "--config", "x.yaml", "--train_meth", "cam"]],
)  # fmt: skip
def test_an_abbreviated_option_is_refused_not_taken_as_the_one_it_begins(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse took `--roo` as `--root`, `--train_meth` as `--train_methods`: a misspelt option went unsaid."""
    monkeypatch.chdir(tmp_path)  # where the command would write, had it run
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


def test_version_and_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"wsod-mammo {__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["tain"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tain'" in capsys.readouterr().err


def test_no_subcommand_prints_the_listing_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "report" in capsys.readouterr().out


def test_logging_shows_package_info_and_drops_lightning_tips(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    configure_logging()  # idempotent: one handler, one line per record
    logging.getLogger("wsod_mammo.some_module").info("run folder: runs/x")
    assert capsys.readouterr().err.count("[wsod] run folder: runs/x") == 1
    tip = logging.LogRecord("lightning", logging.INFO, "", 0, "💡 Tip: For seamless cloud logging ...", None, None)
    other = logging.LogRecord("lightning", logging.INFO, "", 0, "GPU available: False", None, None)
    assert not DropAdvertisements().filter(tip) and DropAdvertisements().filter(other)
    assert any(
        isinstance(f, DropAdvertisements) for f in logging.getLogger("lightning.fabric.utilities.rank_zero").filters
    )


@pytest.mark.parametrize(
    ("environment", "rank_zero"),
    [({}, True), ({"RANK": "1", "LOCAL_RANK": "1"}, False), ({"SLURM_PROCID": "1", "SLURM_LOCALID": "1"}, False),
     ({"SLURM_PROCID": "0", "LOCAL_RANK": "0"}, True), ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, False),
     ({"SLURM_PROCID": "2", "LOCAL_RANK": "0"}, False)],
    ids=["alone", "torchrun-1", "srun-1", "slurm-shell-0", "slurm-shell-lightning-1", "srun-node-1"],
)  # fmt: skip
def test_only_the_process_of_global_rank_zero_logs_info_whatever_started_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], environment: dict[str, str], rank_zero: bool
) -> None:
    """In a SLURM shell (`srun --pty bash`, `salloc`: SLURM_JOB_NAME bash, not SLURM to Lightning) the process that
    Lightning started for `--trainer.devices 2` inherited SLURM_PROCID 0 and took it for its rank: every info line
    of the run (the data's, the checks') was said twice."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    package = logging.getLogger("wsod_mammo")
    level = package.level
    try:
        configure_logging()
        logging.getLogger("wsod_mammo.some_module").info("data: 11 images")
    finally:
        package.setLevel(level)
    assert capsys.readouterr().err.count("[wsod] data: 11 images") == (1 if rank_zero else 0)


def test_lightning_s_leafspec_warning_is_dropped_and_other_warnings_still_show() -> None:
    """Every ``wsod fit`` printed torch's LeafSpec FutureWarning, raised inside Lightning's pytree helper."""
    from lightning.pytorch.utilities._pytree import _tree_flatten

    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        configure_logging()
        _tree_flatten(torch.zeros(1))  # what Lightning's loops call on every batch
        warnings.warn("a warning of our own", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning of our own"]


def test_lightning_s_sync_dist_advice_is_dropped_for_every_gathered_figure_and_kept_for_others() -> None:
    """A 2-process `wsod validate` printed Lightning's `sync_dist=True` advice for 20 figures (`wsod test`: 23) that
    DetectionMetrics computes from gathered states (pointing game, (w)AFROC, breast AUROC): only the detection
    figures' advice was dropped. A figure of the user's own still gets it."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    names = ["val/detection/cam/tpr@fppi1", "val/pointing/cam/hit", "test/pointing/layercam/energy", "val/wafroc/cam",
             "test/afroc/xgradcam", "test/breast/fusion/auroc", "val/my_own_figure"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        configure_logging()
        for name in names:  # Lightning's words (logger_connector/result.py)
            warnings.warn(
                f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch level in "
                "distributed setting to accumulate the metric across devices.",
                PossibleUserWarning,
                stacklevel=1,
            )
    assert [str(w.message).split("'")[1] for w in caught] == ["val/my_own_figure"]


def test_lightning_s_advice_to_test_on_one_device_is_dropped_under_ddp() -> None:
    """A 2-process `wsod test` (and `wsod validate`) was told to run on one device lest the DistributedSampler's
    padding count images twice: every figure counts each image once (detection/image_keys.py)."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        configure_logging()
        for stage in ("validate", "test"):  # Lightning's words (trainer/connectors/data_connector.py)
            warnings.warn(
                f"Using `DistributedSampler` with the dataloaders. During `trainer.{stage}()`, it is recommended to "
                "use `Trainer(devices=1, num_nodes=1)` to ensure each sample/batch gets evaluated exactly once. "
                "Otherwise, multi-device settings use `DistributedSampler` that replicates some samples to make sure "
                "all devices have same batch size in case of uneven inputs.",
                PossibleUserWarning,
                stacklevel=1,
            )
        warnings.warn("Using `DistributedSampler` of our own", PossibleUserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["Using `DistributedSampler` of our own"]


def test_lightning_s_model_size_warning_under_mixed_precision_is_dropped() -> None:
    """Every bf16-mixed fit (the GPU configs') was told its model size "will not be accurate. Using 32 bits
    instead": mixed precision keeps the weights in float32, 32 bits is right. A true 16-bit size stays unwarned."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from wsod_mammo.models import GMIC
    from wsod_mammo.training.module import GMICLitModule

    module = GMICLitModule(GMIC(num_classes=1, crop_shape=(64, 64)))
    module.trainer = Trainer(precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
        warnings.simplefilter("always")
        configure_logging()
        summary = ModelSummary(module)  # what Lightning's ModelSummary callback makes at the start of a fit
        warnings.warn("a warning of our own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning of our own"]
    assert summary.model_size == pytest.approx(summary.total_parameters * 4e-6)  # float32 weights


def test_a_line_said_while_a_progress_bar_shows_gets_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The terminal mixes Lightning's bars (stdout) and the package's lines (stderr): a warning said while the test
    bar showed was glued to it ("Testing: ... ?it/s][wsod] cam: its threshold ..."). It is written between bars."""
    import io

    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    configure_logging()
    bar = Tqdm(total=3, file=sys.stdout, desc="Testing")
    bar.update(1)
    logging.getLogger("wsod_mammo.training.callbacks").warning("cam: a line of its own")
    bar.update(1)
    bar.close()
    logging.getLogger("wsod_mammo.training.callbacks").warning("after the bars")
    shown = terminal.getvalue()
    assert "\r[wsod] cam: a line of its own\n" in shown and "it/s][wsod]" not in shown, repr(shown)
    assert shown.endswith("\n[wsod] after the bars\n"), repr(shown)


def test_bad_input_to_a_plain_subcommand_is_one_line_naming_it_and_the_traceback_on_request(tmp_path) -> None:
    missing = tmp_path / "no_such_run"
    command = [sys.executable, "-m", "wsod_mammo", "report", str(missing), "--output", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"wsod report: {missing}: no such run directory" in result.stderr
    assert not (tmp_path / "out").exists()
    traced = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, TRACEBACK: "1"})
    assert traced.returncode == 1 and "Traceback" in traced.stderr and "ValueError: " in traced.stderr
    unset = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, TRACEBACK: "0"})
    assert unset.returncode == 1 and "Traceback" not in unset.stderr  # 0 asks for no traceback


def test_a_home_that_cannot_be_written_gets_matplotlib_a_folder_of_its_own_quietly(tmp_path, monkeypatch) -> None:
    """With a read-only home every `wsod test`/`predict` began with matplotlib's "mkdir -p failed" and "Matplotlib
    created a temporary cache directory ... MPLCONFIGDIR" lines, and rebuilt its font cache in a folder deleted at
    exit. The command sets MPLCONFIGDIR to a folder of the user's own under the temporary folder, kept between
    commands; a user's MPLCONFIGDIR stays. A home that is a file refuses every folder below it, even to root."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env |= {"HOME": str(home), "TMPDIR": str(tmp_path / "tmp")}
    code = ("from wsod_mammo.commands import main\ntry:\n    main(['test', '--help'])\nexcept SystemExit:\n"
            "    import matplotlib.font_manager")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matplotlib" not in result.stderr.lower() and "mkdir -p failed" not in result.stderr
    (folder,) = (tmp_path / "tmp").glob("*matplotlib*")
    assert folder.name == f"wsod-mammo-matplotlib-{os.getuid()}" and any(folder.glob("fontlist-*.json"))
    from wsod_mammo.matplotlib_folder import use_writable_matplotlib_folder

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    use_writable_matplotlib_folder()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")


def test_only_gloos_peer_closed_errors_count_as_another_process_stopping() -> None:
    """The one line that points to another process's reason is for a DDP collective that lost its peer (gloo's
    words); any other "Connection reset by peer" (a download, a socket of the user's) keeps its traceback."""
    from wsod_mammo.commands import peer_stopped

    assert peer_stopped(RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer"))
    assert not peer_stopped(RuntimeError("[Errno 104] Connection reset by peer"))
    assert not peer_stopped(RuntimeError("gloo: a timeout"))


#: What a fit in a container with Docker's default 64 MiB /dev/shm ended with: a DataLoader worker's traceback,
#: re-raised in the training process (torch 2.14.1, 2944 x 1920 float32 batches of 6).
WORKER_OUT_OF_SHM = """Caught RuntimeError in DataLoader worker process 0.
Original Traceback (most recent call last):
  File "torch/utils/data/_utils/collate.py", line 273, in collate_tensor_fn
    storage = elem._typed_storage()._new_shared(numel, device=elem.device)
RuntimeError: unable to allocate shared memory(shm) for file </torch_5932_4095673157_0>: No space left on device (28)
"""


def test_a_worker_out_of_shared_memory_is_one_line_saying_what_to_change(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A container's small /dev/shm (Docker's 64 MiB; a batch of six full-size images is 135 MB) ended `wsod fit`
    in a worker's traceback whose last line named neither the container's setting nor the package's option."""
    import wsod_mammo.cli

    def out_of_shm(args: list[str] | None) -> None:
        raise RuntimeError(WORKER_OUT_OF_SHM)

    monkeypatch.setattr(wsod_mammo.cli, "run_lightning_cli", out_of_shm)
    monkeypatch.delenv(TRACEBACK, raising=False)
    with caplog.at_level(logging.ERROR, logger="wsod_mammo"), pytest.raises(SystemExit) as exit_info:
        main(["fit"])
    line = caplog.records[-1].getMessage()
    assert exit_info.value.code == 1 and line.startswith("wsod fit: the DataLoader workers pass their batches through")
    assert "for file </torch_5932_4095673157_0>: No space left on device (28); /dev/shm holds " in line
    assert "--shm-size" in line and "--data.pixel_reads main" in line and "--data.num_workers 0" in line
    monkeypatch.setenv(TRACEBACK, "1")
    with pytest.raises(RuntimeError, match="unable to allocate shared memory"):
        main(["fit"])
    monkeypatch.delenv(TRACEBACK)
    monkeypatch.setattr(wsod_mammo.cli, "run_lightning_cli", lambda args: exec("raise RuntimeError('other')"))
    with pytest.raises(RuntimeError, match="other"):  # any other error keeps its traceback
        main(["fit"])


def test_workers_that_cannot_make_their_locks_in_dev_shm_are_one_line_not_lightning_s_teardown_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only /dev/shm (a sandbox; a serverless runtime has none) fails the DataLoader's first lock, and
    Lightning's teardown then raised over it: the fit's last line was "Please call `iter(combined_loader)` first."."""
    import _multiprocessing
    import errno
    import multiprocessing
    import multiprocessing.synchronize  # imported before SemLock is replaced: it reads SemLock's constants

    import wsod_mammo.cli
    from wsod_mammo.commands import LOADER_NOT_STARTED

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def starts_a_loader(args: list[str] | None) -> None:
        try:
            multiprocessing.get_context("spawn").Lock()  # the DataLoader's result queue makes one first
        finally:
            raise RuntimeError(LOADER_NOT_STARTED)  # Lightning's teardown of the fetcher, as it leaves the fit

    monkeypatch.setattr(_multiprocessing, "SemLock", read_only)
    monkeypatch.setattr(wsod_mammo.cli, "run_lightning_cli", starts_a_loader)
    monkeypatch.delenv(TRACEBACK, raising=False)
    with caplog.at_level(logging.ERROR, logger="wsod_mammo"), pytest.raises(SystemExit) as exit_info:
        main(["fit"])
    line = caplog.records[-1].getMessage()
    assert exit_info.value.code == 1 and line.startswith("wsod fit: the DataLoader workers could not start")
    assert "[Errno 30] Read-only file system" in line and "--data.num_workers 0" in line
    monkeypatch.setenv(TRACEBACK, "1")
    with pytest.raises(OSError, match="Read-only file system"):  # the error itself, not Lightning's
        main(["fit"])


def test_gitignore_covers_the_readme_s_data_paths_and_no_source() -> None:
    """The README's and configs' relative data paths hold patient images, NYU's AGPL weights and result tables:
    a `git add .` must not pick them up; the package's own `data` folder must stay visible."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    private = ["data/vindr-mammo/a.dicom", "data/vindr-mammo-cache/manifest.json", "pretrained/sample_model_1.p",
               "scans/a.dcm", "tables/table2.md"]  # fmt: skip
    paths = [*private, "wsod_mammo/data/new_module.py", "tests/data/sample.csv"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=root, capture_output=True, text=True)
    assert result.stdout.split() == private


@pytest.mark.parametrize("module", ["wsod_mammo.commands", "wsod_mammo.cli"])
def test_the_entry_points_module_and_the_cli_module_run_as_python_m_are_the_wsod_command(module: str) -> None:
    """``python -m wsod_mammo.commands`` (the console script's module) and ``python -m wsod_mammo.cli`` (the
    LightningCLI's) imported their module and exited 0, running nothing: a job script's fit "succeeded" untrained."""
    run = subprocess.run([sys.executable, "-m", module, "report", "no-such-run"], capture_output=True, text=True,
                         timeout=240)  # fmt: skip
    assert run.returncode == 1 and "wsod report: no-such-run: no such run directory" in run.stderr
    assert subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                          timeout=240).stdout.strip() == f"wsod-mammo {__version__}"  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name"),
    [("wsod_mammo.study", "study"), ("wsod_mammo.data.prepare", "prepare"), ("wsod_mammo.data.synthetic", "synth"),
     ("wsod_mammo.detection.report_cli", "report")],
)  # fmt: skip
def test_a_subcommand_s_module_run_as_python_m_is_its_wsod_subcommand(module: str, name: str) -> None:
    """``python -m`` of the module behind ``wsod study|prepare|synth|report`` imported it and exited 0, running
    nothing: a job script's ``python -m wsod_mammo.data.prepare ...`` "succeeded" with no cache written."""
    run = subprocess.run([sys.executable, "-m", module, "--no-such-option"], capture_output=True, text=True,
                         timeout=240)  # fmt: skip
    assert run.returncode != 0 and f"wsod {name}" in run.stderr
    usage = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=240)
    assert usage.returncode == 0 and usage.stdout.startswith(f"usage: wsod {name} ")


def _save_dir(root: Path, words: list[str]) -> str | None:
    """The W&B logger's ``save_dir`` that a command's ``--config`` files compose to (the last one setting it)."""
    import yaml

    save_dir = None
    for option, value in zip(words, words[1:], strict=False):
        if option == "--config":
            config = yaml.safe_load((root / value).read_text()) or {}
            logger = (config.get("trainer") or {}).get("logger") or {}
            save_dir = (logger.get("init_args") or {}).get("save_dir", save_dir)
    return save_dir


def test_the_readme_s_real_vindr_commands_test_every_run_their_report_merges() -> None:
    """The README's real VinDr-Mammo block fitted the cam and the xgradcam configs but tested only the second, then
    gave ``wsod report`` a run folder of each: the cam one, a fit's, holds no table2_row.csv, and the report, run as
    written, failed ("expected table2_row.csv (written by `wsod test`), found none"). Each save_dir it merges from
    must be one a ``wsod test`` of the block writes its report into."""
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```bash\n")[1:]]
    (block,) = [b for b in blocks if "\nwsod report runs/" in b]
    lines = block.splitlines()
    tested = {_save_dir(root, line.split()) for line in lines if line.split()[:2] == ["wsod", "test"]}
    (report,) = [line for line in lines if line.startswith("wsod report ")]
    merged = re.findall(r"(runs/[^/\s]+)/", report)
    assert len(merged) == 2 and [folder for folder in merged if folder not in tested] == []


def test_a_sigterm_while_the_command_imports_torch_and_lightning_is_one_line_and_143() -> None:
    """The SIGTERM handler was installed after the subcommand's imports (torch and Lightning: seconds): a scheduler's
    SIGTERM then killed the process without a word (-15; a study child's fit.log was empty)."""
    code = (
        "import importlib, os, signal, types\n"
        "import wsod_mammo.commands as commands\n"
        "def signalled(name):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return importlib.import_module(name)\n"
        "commands.importlib = types.SimpleNamespace(import_module=signalled)\n"
        "commands.main(['fit', '--help'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 143, (run.returncode, run.stderr[-2000:])
    assert run.stderr.strip().endswith("wsod fit: stopped by SIGTERM before it finished")
    assert "Traceback" not in run.stderr
