"""Test helper: a disk that fills up part-way through a file."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def room_for(size: int) -> Iterator[None]:
    """Within it a file cannot grow past ``size`` bytes, as on a disk that fills up mid-write: the kernel writes up
    to RLIMIT_FSIZE and fails the rest (EFBIG, its SIGXFSZ ignored), so ``write_text`` leaves a cut file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    signalled = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, signalled)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden ones too) by name."""
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
