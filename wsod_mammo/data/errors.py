"""``DataError``: data a run cannot use, shown by ``wsod`` as one line, also when a DataLoader worker raised it."""

from __future__ import annotations

import errno
import glob
import os
import stat
from pathlib import Path


class DataError(ValueError):
    """The data a run was pointed at cannot be used (a CSV row, a class name, a cache, a missing or unreadable file,
    an empty split), found while the DataModule or its dataset reads it: ``wsod`` shows the reason, which names the
    file, row or option, in one line (``WSOD_TRACEBACK=1``: the traceback) and exits with status 1."""

    @property
    def reason(self) -> str:
        """The message. One raised in a DataLoader worker reaches the main process rebuilt from the worker's whole
        traceback ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): its last line's."""
        text = str(self)
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "  # how the traceback's last line names it
        if text.startswith("Caught ") and marker in text:
            return text.rsplit(f"\n{marker}", 1)[-1].strip()
        return text


def file_not_found(path: str | Path) -> str:
    """``<path>: file not found``, naming files beside it of the same name and another extension: a dataset whose
    images were renamed (``.dcm`` where VinDr's layout has ``.dicom``) otherwise gave thousands of these lines and
    no clue."""
    path = Path(path)
    others = sorted(p.name for p in path.parent.glob(f"{glob.escape(path.stem)}.*") if p.name != path.name)
    found = f" ({', '.join(others[:3])} is there: another extension)" if others else ""
    return f"{path}: file not found{found}"


#: what a path that exists but holds no file is, by its ``stat`` mode
_NOT_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def not_a_file(path: str | Path) -> str:
    """Why ``path``, which ``Path.is_file`` refused, is no file to read: ``file_not_found`` where nothing is there;
    else what is there (a named pipe, a socket, a device, a link that loops) or why it cannot be reached. Each was
    said to be "file not found" in a folder's rows, though ``ls`` lists it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{path}: a symbolic link that loops (too many levels of symbolic links), no file"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return file_not_found(path)
        return f"{path}: cannot be reached ({error.strerror})"
    kind = next((name for test, name in _NOT_FILES if test(mode)), "not a regular file")
    return f"{path}: {kind}, not an image file"
