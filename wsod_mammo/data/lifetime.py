"""Worker processes that end with the process they work for, and are stopped by it.

A worker blocked on its queue never learns that its owner was killed (``kill -9``, the OOM killer): PyTorch's
DataLoader workers watch their parent, and a fork-server worker's parent is the server, which outlives the killed
trainer because its workers hold its alive pipe open. Each kept ~380 MB (the server ~600 MB) for good.

The other way round, a worker must not die of the Ctrl-C its owner stops it for: a terminal sends SIGINT to every
process of the job, and a DataLoader worker it killed while the worker checked the loader's shared "done" event
left that event's lock held; its owner then hung for good in the shutdown the Ctrl-C had started
(``_workers_done_event.set()`` in torch's ``_shutdown_workers``, whose comment names the hazard), deaf to a second
Ctrl-C, which Lightning ignores while it shuts down (``tests/benchmarks/bench_ctrl_c.py``: 1 fit of 40 with the
suite running beside it). Workers ignore SIGINT, as Python's fork server and resource tracker do. SIGTERM keeps its
default, since torch's shutdown and multiprocessing's exit send it to a worker that does not stop when asked (and
no fit of 40 hung after a SIGTERM to every process of the job).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def leave_ctrl_c_to_owner() -> None:
    """Ignore SIGINT in this worker: its owner stops it in order on Ctrl-C, and :func:`exit_with` ends it when the
    owner dies without doing so."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_with(owner_pid: int, interval: float = 1.0) -> None:
    """End this process when ``owner_pid`` has ended: the kernel's parent-death signal where the owner is the
    parent (Linux), and a daemon thread that checks the owner every ``interval`` seconds (any parent; an owner
    that ended before the signal was set)."""
    if os.getppid() == owner_pid and sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if not is_running(owner_pid):
        os._exit(1)

    def watch() -> None:
        while is_running(owner_pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-owner").start()


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, ended but not yet reaped by its parent, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
