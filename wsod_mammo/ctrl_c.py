"""Ctrl-C stops a ``wsod`` run even where Python loses the KeyboardInterrupt it raises for it.

Python raises KeyboardInterrupt in whatever the main thread runs when SIGINT arrives. Raised inside a ``__del__`` or an
at-fork hook, it is printed as "Exception ignored in ..." and lost, and the code goes on: a Ctrl-C landing while a
DataLoader forks its workers (``worker_start: fork``; logging's hook runs in the parent right after each fork) or
joins them in its iterator's ``__del__`` (after the sanity check, after every epoch a batch limit cuts short, with
workers that do not persist) was lost, and the fit trained on (``tests/benchmarks/bench_ctrl_c.py``). Without any
worker too: ``io.IOBase``'s finalizer reads a file's ``closed`` and clears whatever that raises without a word, and a
Ctrl-C landing there, as Lightning's checkpoint save dropped an fsspec file, was lost and nothing printed.
``watch_ctrl_c`` records each Ctrl-C as it raises it, and where it landed; :class:`CtrlCAgain` raises a recorded one
again at the next batch's start, where Lightning's graceful shutdown takes it, and its line names that place.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback

log = logging.getLogger(__name__)

_received = False
_landed_in = ""  # where the last Ctrl-C was raised: innermost calls first


def ctrl_c_received() -> bool:
    """Whether the run ``watch_ctrl_c`` watches (or watched last) got a Ctrl-C, raised or lost: whatever ends it after
    that (a DataLoader worker or a DDP peer the same Ctrl-C stopped first) is the Ctrl-C's doing."""
    return _received


def _innermost_calls(frame: FrameType | None, depth: int = 4) -> str:
    """``file:line function`` of ``frame`` and its callers, innermost first; source lines are not read (a signal
    handler's work)."""
    calls = traceback.StackSummary.extract(traceback.walk_stack(frame), limit=depth, lookup_lines=False)
    return " < ".join(f"{Path(call.filename).name}:{call.lineno} {call.name}" for call in calls)


def _record_and_raise(signum: int, frame: FrameType | None) -> None:
    global _received, _landed_in
    _received = True
    _landed_in = _innermost_calls(frame)
    raise KeyboardInterrupt


@contextmanager
def watch_ctrl_c() -> Iterator[None]:
    """While a run lasts, SIGINT raises KeyboardInterrupt as Python's own handler does, and is recorded. Only where
    Python's own handler is the one found, in the main thread: a SIGINT the process was started ignoring (a job a
    non-interactive shell started with ``&``) stays ignored. The handler found is put back after, also where
    Lightning's shutdown set SIGINT to be ignored (a notebook's next cell can be interrupted again)."""
    global _received, _landed_in
    _received, _landed_in = False, ""  # an earlier run's (a notebook's, a test's) is not this one's
    found = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or found is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, found)


class CtrlCAgain(Callback):
    """Raises at the next batch's start a Ctrl-C that Python lost (the module's docstring), saying where it landed."""

    @staticmethod
    def _raise_if_lost() -> None:
        if _received:
            log.info("Ctrl-C: it did not stop the run where it landed (%s); stopping at this batch", _landed_in)
            raise KeyboardInterrupt

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._raise_if_lost()

    def on_validation_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._raise_if_lost()

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._raise_if_lost()

    def on_predict_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._raise_if_lost()
