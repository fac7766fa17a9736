"""A ``--config`` YAML file read as users' commands read it, with an error naming the file and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_config_file(path: str | Path, option: str = "--config") -> dict[str, Any]:
    """The mapping a config file holds. ValueError naming ``<option> <path>`` for a file it cannot read, YAML it
    cannot parse (the parser's words, on one line), a file with no options (empty, or comments only: fit said
    "Unexpected config:" naming no file, while study took it as nothing) or a top level that is not a mapping:
    jsonargparse's own message for a syntax error names no file, which matters when a command stacks four.
    ``option``: the command-line option the file was given to (``--config``, or a group's: ``--trainer``)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{option} {path}: cannot read it as YAML ({' '.join(str(error).split())})") from None
    if loaded is None:
        raise ValueError(f"{option} {path}: the file holds no options (it is empty, or comments only)")
    if not isinstance(loaded, dict):
        raise ValueError(f"{option} {path}: expected a mapping at the top, found {type(loaded).__name__}")
    return loaded
