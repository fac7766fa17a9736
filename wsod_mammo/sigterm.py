"""A SIGTERM ends a ``wsod`` command with one line and exit status 143, whichever of its processes it reaches first.

Schedulers (SLURM's ``scancel`` and pre-emption, Kubernetes) send SIGTERM to every process of a job. Lightning
stops a run at the next batch when its own process gets it, but the DataLoader workers, the fork server and
multiprocessing's resource tracker die of it at once: a signal landing while workers started (each epoch's start)
ended the run with "DataLoader worker ... exited unexpectedly", exit 1. Before Lightning listens for it (W&B's
start, the data's set-up) the default action killed the process without a word.

SIGUSR1 is a scheduler's warning that the time limit is near (SLURM's ``--signal=USR1@90``, which Lightning's docs
suggest for its auto-requeue, off here: ``cli_checks.disable_slurm_auto_requeue``). Its default action ended every
process of the job without a word, the fit's unsaved epoch with it. ``watch_sigterm`` blocks it in the command's
process, a mask every thread and child process inherits (DataLoader workers, the fork server, the resource
tracker, DDP ranks, a study's runs, through exec too), and a thread of each ``wsod`` process waits for it and sends
the process SIGTERM: the command stops in order, seconds before the time limit's SIGKILL; the other processes
leave it pending, as their ``wsod`` process stops them.

``watch_sigterm`` installs a handler for the command's whole life. Lightning calls it after its own (it keeps the
handler it finds), so it only records the signal then; installed alone, before Lightning's or after Lightning put
it back, it stops the command with :class:`Stopped`. ``commands.main`` turns whatever error ends a command after a
SIGTERM into the one line and 143.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from wsod_mammo.logging_setup import PACKAGE_LOGGER


class Stopped(BaseException):
    """SIGTERM reached the command where nothing else would stop it in order (not an ``Exception``: no ``except
    Exception`` on the way swallows it)."""


@dataclass
class SigtermWatch:
    """Whether the command got SIGTERM, and what to do first when it does (``on_sigterm``: e.g. pass it on to the
    processes a study started)."""

    received: bool = False
    on_sigterm: list[Callable[[], None]] = field(default_factory=list)


@contextmanager
def watch_sigterm() -> Iterator[SigtermWatch]:
    """Listen for SIGTERM while the command runs (main thread only; elsewhere the watch stays unset)."""
    watch = SigtermWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return

    def handler(signum: int, frame: object) -> None:
        first = not watch.received
        watch.received = True
        if first:
            for action in watch.on_sigterm:
                action()
        if first and signal.getsignal(signal.SIGTERM) is handler:  # nobody else will stop the command in order
            raise Stopped

    previous = signal.signal(signal.SIGTERM, handler)
    sigusr1_as_sigterm()
    try:
        yield watch
    finally:
        signal.signal(signal.SIGTERM, previous)


_sigusr1_waiter: threading.Thread | None = None


def sigusr1_as_sigterm() -> None:
    """From now on SIGUSR1 (the time limit is near) stops this process as SIGTERM does, by whichever SIGTERM handler
    is current (ours, or Lightning's once a run started: a fit stops at the next batch). Main thread, before other
    threads start (one that does not block SIGUSR1 would take its default action); once per process. A handler
    someone installed for it (faulthandler's dump...) is left as it is."""
    global _sigusr1_waiter
    if _sigusr1_waiter is not None or signal.getsignal(signal.SIGUSR1) != signal.SIG_DFL:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    def wait() -> None:
        while True:
            signal.sigwait({signal.SIGUSR1})
            logging.getLogger(PACKAGE_LOGGER).warning(
                "SIGUSR1 (a scheduler's warning that the time limit is near): stopping as for SIGTERM"
            )
            os.kill(os.getpid(), signal.SIGTERM)

    _sigusr1_waiter = threading.Thread(target=wait, name="wsod-sigusr1", daemon=True)
    _sigusr1_waiter.start()


def sigterm_without_collectives(trainer: Any) -> None:
    """Lightning 2.6's SIGTERM handler broadcasts from inside the signal handler, and a rank signalled twice (by the
    scheduler, then by rank 0 passing it on) broadcasts twice: under DDP the ranks' collectives stopped pairing up and
    both hung for good in the backward's all-reduce. Its training loop already broadcasts rank 0's flag before each
    batch and stops every rank together; the handler here only records the signal and passes it on, as Lightning's
    does otherwise."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None:
        return
    from lightning.pytorch.utilities.rank_zero import rank_prefixed_message

    lightning_log = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")

    def notify(signum: int, frame: object) -> None:
        lightning_log.info(rank_prefixed_message(f"Received SIGTERM: {signum}", trainer.local_rank))
        if not connector.received_sigterm and (launcher := trainer.strategy.launcher) is not None:
            launcher.kill(signum)
        connector.received_sigterm = True

    connector._sigterm_notifier_fn = notify
