"""How often a Ctrl-C fails to stop `wsod fit`, with and without wsod's fixes, side by side.

    python tests/benchmarks/bench_ctrl_c.py --trials 20
    python tests/benchmarks/bench_ctrl_c.py --trials 20 --model toy

Each trial starts a fit of configs/demo.yaml on a tiny synthetic dataset (2 DataLoader workers, not persistent,
and epochs of 2 batches, so workers are shut down often), waits until it trains, sends SIGINT to its whole process
group at a random moment (as a terminal's Ctrl-C does) and counts the fit as lost when it still runs ``--wait``
seconds later. Python loses a KeyboardInterrupt raised inside a ``__del__``, as a DataLoader iterator's joining its
workers: wsod_mammo/ctrl_c.py raises it again at the next batch. A worker the SIGINT killed could leave its loader's
shared lock held and hang the fit's shutdown: wsod's workers ignore SIGINT (wsod_mammo/data/lifetime.py). Without the
fixes the same command runs with ``watch_ctrl_c`` and ``CtrlCAgain`` turned off in the fit's process and workers that
die of SIGINT; the two alternate, so both see the same machine load. A fit with the fixes whose Ctrl-C was lost
and raised again is named with the place the Ctrl-C had landed (CtrlCAgain's line in its log). ``--model toy``
runs a plain Lightning fit of one linear layer instead, the same loaders, whose epochs are mostly the workers' start
and stop.

``--signal TERM`` sends SIGTERM to the whole group instead, as a scheduler's ``scancel`` or pre-emption does, and runs
only the fit as shipped (the fixes above concern SIGINT): wsod ends with 143 (wsod_mammo/sigterm.py).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WITH_FIX = "from wsod_mammo.commands import main; main()"
WITHOUT_FIX = (  # the assert: a renamed part fails this side's fit, instead of leaving it the fix
    "import contextlib, functools, wsod_mammo.cli as cli, wsod_mammo.ctrl_c as ctrl_c; "
    "import wsod_mammo.data.datamodule as datamodule, wsod_mammo.data.dataset as dataset; "
    "assert cli.watch_ctrl_c and ctrl_c.CtrlCAgain._raise_if_lost and datamodule.seed_worker is dataset.seed_worker; "
    "cli.watch_ctrl_c = contextlib.nullcontext; ctrl_c.CtrlCAgain._raise_if_lost = staticmethod(lambda: None); "
    "datamodule.seed_worker = functools.partial(dataset.seed_worker, ctrl_c_to_owner=False); " + WITH_FIX
)
RAISED_AGAIN = re.compile(r"Ctrl-C: it did not stop the run where it landed \((.*)\); stopping at this batch")
TRAINING = "fit: checkpoints"  # logged once the fit's callbacks are set up, just before its first epoch
# --model toy: a plain Lightning fit of one linear layer, the same DataLoader settings and workers' start (seed_worker),
# its epochs milliseconds long, so that most of its time goes into starting and stopping workers;
# argv: fix|without, workers, persistent (true|false)
TOY_FIT = """
import contextlib, functools, logging, sys, torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
from wsod_mammo.ctrl_c import CtrlCAgain, watch_ctrl_c
from wsod_mammo.data.dataset import seed_worker
fix, workers, persistent = sys.argv[1] == "fix", int(sys.argv[2]), sys.argv[3] == "true"
logging.basicConfig(level=logging.INFO)  # CtrlCAgain's line naming where a lost Ctrl-C landed
class Toy(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, index):
        return self.layer(batch[0]).sum()
    def validation_step(self, batch, index):
        self.log("v", self.layer(batch[0]).sum())
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.1)
    def on_train_start(self):
        print("fit: checkpoints (none: a toy)", flush=True)
def loader():
    data = TensorDataset(torch.randn(400, 4))
    return DataLoader(data, batch_size=4, num_workers=workers, persistent_workers=persistent and workers > 0,
                      worker_init_fn=functools.partial(seed_worker, ctrl_c_to_owner=fix))
trainer = L.Trainer(max_epochs=100000, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, limit_train_batches=2, limit_val_batches=1,
                    callbacks=[CtrlCAgain()] if fix else [])
with watch_ctrl_c() if fix else contextlib.nullcontext():
    trainer.fit(Toy(), loader(), loader())
"""


def fit_args(data: Path, runs: Path, workers: int, persistent: bool, worker_start: str) -> list[str]:
    """``wsod fit`` of the demo config, on ``data``, with epochs short enough that workers stop and start often."""
    return ["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.data_root", str(data),
            "--data.synthesize_if_missing", "null", "--data.num_workers", str(workers),
            "--data.persistent_workers", str(persistent).lower(), "--data.worker_start", worker_start,
            "--trainer.max_epochs", "100000",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.logger.init_args.save_dir", str(runs),
            "--trainer.default_root_dir", str(runs)]  # fmt: skip


def one_trial(
    code: str, args: list[str], log: Path, delay: float, wait: float, wandb_mode: str, signum: int = signal.SIGINT
) -> tuple[bool, int | None]:
    """(lost, exit status): ``signum`` to the fit's process group ``delay`` seconds after it trains."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while TRAINING not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the fit did not start training (log: {log}):\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    time.sleep(delay)
    os.killpg(process.pid, signum)
    try:
        return False, process.wait(timeout=wait)
    except subprocess.TimeoutExpired:  # SIGABRT first: faulthandler writes every thread's stack into the log
        os.kill(process.pid, signal.SIGABRT)
        time.sleep(2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="fits per side")
    parser.add_argument("--delay", type=float, nargs=2, default=(1.0, 5.0), metavar=("MIN", "MAX"),
                        help="seconds of training before the signal, drawn uniformly")  # fmt: skip
    parser.add_argument("--wait", type=float, default=30.0, help="seconds a stopped fit may take to exit")
    models = "wsod: `wsod fit` of configs/demo.yaml; toy: a Lightning fit of one linear layer"
    parser.add_argument("--model", choices=("wsod", "toy"), default="wsod", help=models)
    parser.add_argument("--workers", type=int, default=2, help="data.num_workers of the fits")
    parser.add_argument(
        "--persistent_workers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="data.persistent_workers (wsod's default: true; off here, so workers stop every epoch)",
    )
    parser.add_argument("--worker_start", choices=("forkserver", "fork", "spawn"), default="forkserver",
                        help="data.worker_start of `wsod fit` (the toy's workers start by fork)")  # fmt: skip
    parser.add_argument("--wandb_mode", choices=("disabled", "offline"), default="disabled",
                        help="WANDB_MODE of the fits (offline: W&B runs its service beside each fit)")  # fmt: skip
    parser.add_argument("--signal", choices=("INT", "TERM"), default="INT",
                        help="INT: a terminal's Ctrl-C, both sides; TERM: a scheduler's, wsod as shipped")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lost_logs", type=Path, default=None,
                        help="keep the log of each fit lost or ended with another status in this folder")  # fmt: skip
    args = parser.parse_args()
    # a script's `cmd &` starts this process ignoring SIGINT, and the fits would inherit that (wsod leaves it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    draw = random.Random(args.seed)
    signum = signal.Signals[f"SIG{args.signal}"]
    sides: tuple[tuple[str, str, str], ...] = (("with the fix", "fix", WITH_FIX), ("without", "without", WITHOUT_FIX))
    sides = sides if signum == signal.SIGINT else (("as shipped", "fix", WITH_FIX),)  # the fixes concern SIGINT
    sent = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    expected = {signal.SIGINT: 1 if args.model == "toy" else 130, signal.SIGTERM: None if args.model == "toy" else 143}
    with tempfile.TemporaryDirectory(prefix="bench_ctrl_c_") as folder:
        work = Path(folder)
        if args.model == "wsod":
            synth = ["synth", "--root", str(work / "data"), "--n_studies", "6"]
            subprocess.run([sys.executable, "-m", "wsod_mammo", *synth], check=True, capture_output=True, cwd=REPO)
        lost = {side: 0 for side, _, _ in sides}
        raised_again: list[str] = []  # where each Ctrl-C that the fix had to raise again had landed
        statuses: dict[str, list[int | None]] = {side: [] for side in lost}
        for trial in range(args.trials):
            delay = draw.uniform(*args.delay)
            for side, name, wsod in sides:
                if args.model == "toy":
                    code, fit = TOY_FIT, [name, str(args.workers), str(args.persistent_workers).lower()]
                else:
                    runs = work / f"runs_{trial}_{name}"
                    code = wsod
                    fit = fit_args(work / "data", runs, args.workers, args.persistent_workers, args.worker_start)
                was_lost, status = one_trial(code, fit, work / "log.txt", delay, args.wait, args.wandb_mode, signum)
                lost[side] += was_lost
                if name == "fix" and (again := RAISED_AGAIN.search((work / "log.txt").read_text(errors="replace"))):
                    raised_again.append(again.group(1))
                    print(f"  a fit with the fix lost its Ctrl-C in {again.group(1)}", flush=True)
                odd = status is not None and expected[signum] not in (None, status)  # toy: Lightning's 1 on SIGINT
                if (was_lost or odd) and args.lost_logs is not None:
                    args.lost_logs.mkdir(parents=True, exist_ok=True)
                    kept = args.lost_logs / f"trial{trial + 1}_{name}_exit{status}.txt"
                    shutil.copy(work / "log.txt", kept)
                    what = "was lost: its log, with its threads' stacks," if was_lost else f"exited {status}: its log"
                    print(f"  a fit {side} {what} is {kept}", flush=True)
                statuses[side].append(status)
            print(f"trial {trial + 1}/{args.trials} (SIG{args.signal} {delay:.1f} s into training): fits lost so far "
                  + ", ".join(f"{side} {n}" for side, n in lost.items()), flush=True)  # fmt: skip
    for side, n in lost.items():
        exits = sorted({s for s in statuses[side] if s is not None})
        print(f"{side}: {n} of {args.trials} fits still ran {args.wait:.0f} s after {sent}; exit statuses {exits}")
    if signum == signal.SIGINT:
        print(f"with the fix: {len(raised_again)} of {args.trials} fits lost their Ctrl-C and were stopped at the next "
              "batch by CtrlCAgain" + "".join(f"\n  landed in {place}" for place in raised_again))  # fmt: skip


if __name__ == "__main__":
    main()
