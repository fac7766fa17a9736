"""Worker processes that end with the process they work for.

A worker blocked on its queue never learns that its owner was killed (``kill -9``, the OOM killer): PyTorch's
DataLoader workers watch their parent, and a fork-server worker's parent is the server, which outlives the killed
trainer because its workers hold its alive pipe open. Each kept ~380 MB (the server ~600 MB) for good.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def exit_with(owner_pid: int, interval: float = 1.0) -> None:
    """End this process when ``owner_pid`` has ended: the kernel's parent-death signal where the owner is the
    parent (Linux), and a daemon thread that checks the owner every ``interval`` seconds (any parent; an owner
    that ended before the signal was set)."""
    if os.getppid() == owner_pid and sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

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
