"""A SIGTERM ends a ``wsod`` command with one line and exit status 143, whichever of its processes it reaches first.

Schedulers (SLURM's ``scancel`` and pre-emption, Kubernetes) send SIGTERM to every process of a job. Lightning
stops a run at the next batch when its own process gets it, but the DataLoader workers, the fork server and
multiprocessing's resource tracker die of it at once: a signal landing while workers started (each epoch's start)
ended the run with "DataLoader worker ... exited unexpectedly", exit 1. Before Lightning listens for it (W&B's
start, the data's set-up) the default action killed the process without a word.

``watch_sigterm`` installs a handler for the command's whole life. Lightning calls it after its own (it keeps the
handler it finds), so it only records the signal then; installed alone, before Lightning's or after Lightning put
it back, it stops the command with :class:`Stopped`. ``commands.main`` turns whatever error ends a command after a
SIGTERM into the one line and 143.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


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
    try:
        yield watch
    finally:
        signal.signal(signal.SIGTERM, previous)


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
