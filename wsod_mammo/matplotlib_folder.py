"""Matplotlib's config and cache folder where the home's cannot be written (a read-only home, a container run as
another user, a cluster's compute node): matplotlib then made a temporary one at every command, printed two lines
about it ("mkdir -p failed", "Matplotlib created a temporary cache directory ... MPLCONFIGDIR") and rebuilt its
font cache, deleted at exit, each time."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "wsod-mammo-matplotlib-"


def _default_folders() -> list[Path] | None:
    """The folders matplotlib uses where ``MPLCONFIGDIR`` is unset: XDG's config and cache folders on Linux,
    ``~/.matplotlib`` elsewhere but Windows (None there: its own rules, left to matplotlib); empty without a home."""
    if sys.platform == "win32":
        return None
    try:
        home = Path.home()
    except RuntimeError:  # no home to resolve: matplotlib's own fallback warns
        return []
    if not sys.platform.startswith(("linux", "freebsd")):
        return [home / ".matplotlib"]
    config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    cache = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return [Path(config, "matplotlib"), Path(cache, "matplotlib")]


def _usable(folder: Path) -> bool:
    """matplotlib's own test of its folder: made if missing, then a writable directory."""
    try:
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK)


def _own_folder() -> Path:
    """``<temp>/wsod-mammo-matplotlib-<uid>``, kept between commands (the font cache is built once), where it is this
    user's alone; else a fresh temporary folder deleted at exit, as matplotlib's own."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir(), f"{PREFIX}{uid}")
    if uid is not None:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            info = folder.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
                return folder
        except OSError:
            pass
    fresh = Path(tempfile.mkdtemp(prefix=PREFIX))
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


def use_writable_matplotlib_folder() -> None:
    """Set ``MPLCONFIGDIR`` where the user set none and matplotlib's default folders cannot be written; before
    matplotlib is imported (it reads the variable then). Nothing where no temporary folder can be made either:
    matplotlib says why itself."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    defaults = _default_folders()
    if defaults is None or (defaults and all(_usable(folder) for folder in defaults)):
        return
    try:
        folder = _own_folder()
    except OSError:
        return
    os.environ["MPLCONFIGDIR"] = str(folder)
    log.debug("matplotlib's folders %s cannot be written: MPLCONFIGDIR is %s", defaults, folder)
