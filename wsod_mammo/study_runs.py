"""The study's runs as ``wsod`` processes: each run a fit (resumed from its ``last.ckpt``) then a test of its
``best.ckpt``, several at once on their own devices, marked done as each ends, stopped together by SIGTERM or
Ctrl-C to the study (each at a batch with its checkpoints whole)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wsod_mammo.atomic_files import write_atomic
from wsod_mammo.folder_locks import FolderBusyError, hold, refuse_held
from wsod_mammo.sigterm import Stopped

log = logging.getLogger(__name__)

RUN_CONFIG, FIT_DONE, TEST_DONE = "run.yaml", "fit.done", "test.done"

#: The ``wsod`` processes running now, and whether the study was told to stop (``pass_on_sigterm``).
_RUNNING: set[subprocess.Popen] = set()
_STOPPING = threading.Event()
#: Seconds a run has after Ctrl-C before the study sends it SIGTERM (``stop_runs_still_running``)
CTRL_C_GRACE = 30.0
#: How a study refused for a run another study is running goes on
BUSY_THEN = "run this study again when it has finished (finished runs are skipped)"


def allow_runs() -> None:
    """Let runs start again: a study stopped earlier in this process (SIGTERM, Ctrl-C) does not stop the next."""
    _STOPPING.clear()


def pass_on_sigterm() -> None:
    """The study got SIGTERM (``commands`` calls this from its handler): each ``wsod`` process it runs gets it too
    and stops as a lone run would, at a batch with its checkpoints whole (a SIGTERM to the study alone left them
    running to their end, orphaned, while a rerun could start a second fit on the same folder), and no run starts."""
    _STOPPING.set()
    for process in list(_RUNNING):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)


def stop_runs_still_running(grace: float | None = None) -> None:
    """After Ctrl-C (SIGINT to the study's process group, its runs with it): no run starts, and a run still going
    ``grace`` seconds later (default :data:`CTRL_C_GRACE`) gets SIGTERM, which stops it at a batch with its
    checkpoints whole. A fit once trained on after the SIGINT (about 1 try in 20 under load), and the study waited on
    it for good. Most likely its Ctrl-C was lost where Python clears one without a word, a file object's finalizer
    in Lightning's checkpoint save: the one place ``bench_ctrl_c.py`` found a fit without workers losing it, which
    ``ctrl_c.CtrlCAgain`` raises again; the grace stays for whatever else could lose one."""
    _STOPPING.set()
    grace = CTRL_C_GRACE if grace is None else grace
    deadline = time.monotonic() + grace
    for process in list(_RUNNING):
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            log.warning("study: a run (pid %d) still runs %.0f s after Ctrl-C: sending it SIGTERM", process.pid, grace)
            process.send_signal(signal.SIGTERM)


def wsod_command(args: list[str]) -> list[str]:
    """The command line of one ``wsod`` process of the study."""
    return [sys.executable, "-m", "wsod_mammo", *args]


def _wsod(args: list[str], log_path: Path, env: dict[str, str]) -> None:
    """One ``wsod`` process, its output to ``log_path``; a failure names the command and shows the log's end. The
    study waits for it to end however it is stopped (a killed study's run would go on alone); interrupted while
    waiting (Ctrl-C in the main thread), it keeps the process listed for ``stop_runs_still_running``."""
    if _STOPPING.is_set():
        raise Stopped
    with open(log_path, "a", encoding="utf-8") as handle:
        with subprocess.Popen(wsod_command(args), stdout=handle, stderr=subprocess.STDOUT, env=env) as process:
            _RUNNING.add(process)
            try:
                code = process.wait()
            finally:
                if process.poll() is not None:
                    _RUNNING.discard(process)
    if code != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(f"`wsod {' '.join(args)}` failed (exit {code}); log {log_path}:\n{tail}")


def run_one(run_dir: Path, device: str | None) -> Path:
    """Fit (resumed from ``last.ckpt`` if interrupted) and test one run; return its ``detection.json``. The run's
    folder is held meanwhile (``folder_locks``): the same study started twice (a job submitted again) ran two fits
    into one run and tested whichever checkpoint was newest; the second is refused, naming the first."""
    with hold(run_dir, "wsod study", "run", BUSY_THEN):
        return _run_one_held(run_dir, device)


def path_argument(path: Path) -> str:
    """``path`` as a ``wsod`` process's argument: a relative path whose first name begins with a dash (``--output
    ./-study``, which ``Path`` shortens to ``-study``) is given as ``./-study/...``; as is, the run's parser read it
    as an option, and every run failed with ``--config: expected one argument``."""
    text = str(path)
    return f"./{text}" if text.startswith("-") else text


def _run_one_held(run_dir: Path, device: str | None) -> Path:
    config = path_argument(run_dir / RUN_CONFIG)
    env = dict(os.environ) if device is None else {**os.environ, "CUDA_VISIBLE_DEVICES": device}
    if not (run_dir / FIT_DONE).is_file():
        resume = ["--ckpt_path", "last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
        log.info("study: fit %s%s", run_dir.name, " (resuming from last.ckpt)" if resume else "")
        _wsod(["fit", "--config", config, *resume], run_dir / "fit.log", env)
        mark_done(run_dir / FIT_DONE, "ok\n")
    if not (run_dir / TEST_DONE).is_file():
        log.info("study: test %s (best.ckpt)", run_dir.name)
        _wsod(["test", "--config", config, "--ckpt_path", "best"], run_dir / "test.log", env)
        report = max(run_dir.glob("*/*/detection.json"), key=lambda p: p.stat().st_mtime)
        mark_done(run_dir / TEST_DONE, f"{report.relative_to(run_dir).as_posix()}\n")
    return finished_report(run_dir)


def mark_done(path: Path, text: str) -> None:
    """Write a run's ``fit.done`` or ``test.done`` whole or not at all: on a full disk ``write_text`` left an empty
    ``test.done``, and every later run of the study skipped the test it marks and failed reading the run folder as
    its report (``Is a directory``)."""
    write_atomic(path, text.encode())


def finished_report(run_dir: Path) -> Path:
    """The ``detection.json`` that ``test.done`` names, inside ``run_dir`` wherever the study folder now lies and
    whatever the working directory (older studies wrote the path as seen from the working directory then)."""
    recorded = Path((run_dir / TEST_DONE).read_text(encoding="utf-8").strip())
    parts = recorded.parts
    if run_dir.name in parts:  # an older study's path: keep what lies below the run folder
        recorded = Path(*parts[len(parts) - parts[::-1].index(run_dir.name) :])
    return run_dir / recorded


def run_all(run_dirs: list[Path], slots: list[str | None], first_alone: bool = False) -> list[Path]:
    """Run every run, ``len(slots)`` at a time, each holding one slot (a GPU index, or None on the CPU).

    ``first_alone``: the first run goes before the others start (it writes the synthetic dataset they share).
    Ctrl-C: the study waits for its runs to stop, and stops those that do not (``stop_runs_still_running``).
    A run that fails (a diverged fit, a full disk) leaves the others to run; then SystemExit names each failed run
    with its log's end (the first failure cancelled every run not started yet: a night's study stopped at its third
    run, and the runs after it waited for the researcher).
    """
    try:
        return _run_all(run_dirs, slots, first_alone)
    except KeyboardInterrupt:
        stop_runs_still_running()
        raise


def _run_all(run_dirs: list[Path], slots: list[str | None], first_alone: bool) -> list[Path]:
    for run_dir in run_dirs:  # a study refused at a run another one holds had already handed a worker the next run,
        refuse_held(run_dir, "run", BUSY_THEN)  # which it fitted and tested before exiting (the other's to run)
    failures: dict[str, str] = {}
    busy = threading.Event()  # a run taken in the meantime: no other starts

    def failed(run_dir: Path, slot: str | None) -> Path | None:
        """``run_one``, or None with its failure kept; a study told to stop stops (SIGTERM, Ctrl-C)."""
        try:
            return run_one(run_dir, slot)
        except FolderBusyError:  # the same study started twice: the second is refused, not run beside the first
            busy.set()
            raise
        except (SystemExit, Exception) as err:
            if _STOPPING.is_set():
                raise
            failures[run_dir.name] = str(err.code if isinstance(err, SystemExit) else err)
            log.error("study: run %s failed; the runs left go on (the failures are named at the end)", run_dir.name)
            return None

    if first_alone and len(slots) > 1 and run_dirs:
        first = [failed(run_dirs[0], slots[0])]
        run_dirs = run_dirs[1:]
    else:
        first = []
    free: queue.Queue[str | None] = queue.Queue()
    for slot in slots:
        free.put(slot)

    def task(run_dir: Path) -> Path | None:
        if busy.is_set():
            return None
        slot = free.get()
        try:
            return failed(run_dir, slot)
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(max_workers=len(slots))
    try:
        reports = first + list(pool.map(task, run_dirs))
    finally:  # after Ctrl-C, the caller stops the runs still going before anything waits for them
        pool.shutdown(wait=False, cancel_futures=True)
    if failures:
        raise SystemExit(
            "\n".join(failures.values()) + f"\nwsod study: {len(failures)} of {len(reports)} runs failed "
            f"({', '.join(failures)}), the others finished; no tables written: the same command again runs the "
            "failed ones only"
        )
    return [report for report in reports if report is not None]
