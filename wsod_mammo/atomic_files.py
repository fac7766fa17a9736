"""Files written whole or not at all: a temporary name beside the file, then an atomic rename.

A full disk or a kill mid-write otherwise leaves a cut file where a good one stood (a cache image, a study's
``test.done`` that every later run then trusts), and Python's own error from a write names no file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder and an atomic rename. A failure names
    the file and leaves no temporary one (a full disk's error said only ``[Errno 28] No space left on device``, the
    cut file still holding space)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(error.errno, f"{path}: not written ({error.strerror or error})") from None
