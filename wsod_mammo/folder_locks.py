"""Which folders a live ``wsod`` process is writing: a fit its checkpoints, ``wsod prepare`` its cache.

Cluster users start many commands in one working directory (array jobs, a job submitted again while its first
attempt still runs). A second ``wsod prepare`` into the same cache deleted the first's files in flight and mixed two
frames in one cache; ``--ckpt_path last`` took another task's run that was still training, and two processes then
trained into one folder. The writer holds an advisory ``flock`` on ``<folder>/.wsod.lock`` (released by the kernel
when the process ends, however it ends) whose text says who it is; the others look before they write or choose.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

LOCK_NAME = ".wsod.lock"


class FolderBusyError(ValueError):
    """Another live process is writing the folder."""


def holder(folder: str | Path) -> str | None:
    """Who is writing ``folder`` (``"wsod fit, pid 123 on node7"``), or None when no live process holds its lock."""
    path = Path(folder) / LOCK_NAME
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        except OSError:  # a file system without locks: nothing to go by
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def refuse_held(folder: str | Path, name: str = "", then: str = "") -> None:
    """The FolderBusyError ``hold`` raises where a live process holds ``folder``'s lock, without taking it."""
    if who := holder(folder):
        raise FolderBusyError(_busy(Path(folder), who, name, then))


def _busy(folder: Path, who: str, name: str, then: str) -> str:
    where = f"{name} {folder}" if name else str(folder)
    return f"{where} is being written by {who}" + (f"; {then}" if then else "")


def hold(folder: str | Path, what: str, name: str = "", then: str = "") -> IO[str]:
    """Take ``folder``'s lock for this process (``what``: the command, for the others' messages) and return the open
    file that holds it: closing it (or the process ending) releases it. When another process has it, FolderBusyError
    ``"<name> <folder> is being written by <holder>; <then>"`` (``name``: what the folder is to the user, e.g. the
    option; ``then``: how to go on)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        who = handle.read().strip() or "another process"
        handle.close()
        raise FolderBusyError(_busy(folder, who, name, then)) from None
    except OSError:  # a file system without locks: go on unguarded, as before
        return handle
    handle.seek(0)
    handle.truncate()
    handle.write(f"{what}, pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle
