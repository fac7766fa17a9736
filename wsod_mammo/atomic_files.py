"""Files written whole or not at all: a temporary name beside the file, then an atomic rename.

A full disk or a kill mid-write otherwise leaves a cut file where a good one stood (a cache image, a study's
``test.done`` that every later run then trusts), and Python's own error from a write names no file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The longest file name most file systems take (ext4, XFS, btrfs, tmpfs: 255 bytes).
NAME_MAX = 255


def temporary_name(name: str, prefix: str, suffix: str) -> str:
    """The name a file ``name`` is written under before its rename: ``prefix + name + suffix``, or where that passes
    the file system's limit, a hash of ``name`` with ``suffix``. A name near the limit (a long image file name in a
    cache, a checkpoint's filename template) got the suffix past it, and its write failed as "File name too long"
    though its own name fits."""
    temporary = f"{prefix}{name}{suffix}"
    if len(os.fsencode(temporary)) <= NAME_MAX:
        return temporary
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}{suffix}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder and an atomic rename. A failure names
    the file and leaves no temporary one (a full disk's error said only ``[Errno 28] No space left on device``, the
    cut file still holding space)."""
    write_atomic_together({path: data})


def write_atomic_together(files: Mapping[Path, bytes]) -> None:
    """``write_atomic`` of several files that go together (``table2.md`` and ``table2.csv``): every one written to
    its temporary name before any replaces its older file, so a failure leaves the older ones all in place, names
    the file it failed on, and leaves no temporary one."""
    temporaries = {path: path.with_name(temporary_name(path.name, ".", f".{os.getpid()}.tmp")) for path in files}
    path = next(iter(files), None)
    try:
        for path, data in files.items():
            temporaries[path].write_bytes(data)
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
    except OSError as error:
        for tmp in temporaries.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise OSError(error.errno, f"{path}: not written ({error.strerror or error})") from None


def write_text_atomic(path: Path, text: str) -> None:
    """``write_atomic`` of ``text`` as UTF-8: a report's table, ``detection.json``, a study's ``summary.md``, which
    ``write_text`` left cut on a full disk, looking whole, in place of the earlier one."""
    write_atomic(path, text.encode())


def save_figure_atomic(figure: Figure, path: Path) -> None:
    """``figure`` as the image file ``path`` names (its suffix the format), through ``write_atomic``: ``savefig``
    straight to the file left a cut PNG on a full disk."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lstrip(".") or None)
    write_atomic(path, buffer.getvalue())
