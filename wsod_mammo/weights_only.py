"""The one way this package reads a torch file: ``weights_only=True``, so a foreign file never runs code."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

#: torch's advice on a failed weights-only load: re-running with weights_only=False runs whatever the file holds,
#: unsafe for a file of unknown origin, so it is not passed on.
_TORCH_ADVICE = ("Weights only load failed", "weights_only", "Please file an issue", "Check the documentation")


class WeightsOnlyLoadError(ValueError):
    """torch could not read the file with weights only; the message is its reason, without advice to load unsafely."""


def load_weights_only(path: str | Path) -> Any:
    """``torch.load`` on the CPU with weights only, memory-mapped when the file is torch's zip format (its tensors
    stay on disk); the legacy format (NYU's files) is read normally. Any failure is a WeightsOnlyLoadError."""
    if (entry := _damaged_entry(path)) is not None:
        raise WeightsOnlyLoadError(
            f"its entry {entry} does not match its checksum (damaged in a copy, a download or on disk)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # noqa: BLE001 - foreign bytes raise anything from KeyError to UnpicklingError
        raise WeightsOnlyLoadError(_why_not_loaded(path, error)) from None


def first_nonfinite(state: dict[str, Any]) -> str | None:
    """The key of the first tensor of ``state`` holding a NaN or an infinity, else None: weights of a fit that
    diverged (or damaged) gave NaN for every image, found only once a whole test or predict run had gone through."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(key)
    return None


def _damaged_entry(path: str | Path) -> str | None:
    """The first entry of a zip-format file whose bytes fail their CRC, else None: torch reads a zip's tensors
    without checking it, so a file damaged inside its data loaded as other weights without a word (0.2 s for a
    170 MB checkpoint). A file zipfile cannot open is left to torch's own reason."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, ValueError):
        return None


def _why_not_loaded(path: str | Path, error: Exception) -> str:
    """What the file is, when torch cannot have written it, else torch's reason: ``EOFError: EOFError`` alone
    said nothing of a file cut short."""
    if (what := _not_torch(path)) is not None:
        return what
    if isinstance(error, EOFError):
        return "the file ends before its data does (cut short: an interrupted download or copy?)"
    return f"{type(error).__name__}: {_reason(error)}"


def _not_torch(path: str | Path) -> str | None:
    """What a file is that torch's loaders cannot have written (empty; neither a zip nor a pickle), else None:
    torch said ``EOFError: EOFError`` for an empty file and ``KeyError: 101`` for a text file."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(16)
    except OSError:
        return None
    if not start:
        return "an empty file (0 bytes)"
    if zipfile.is_zipfile(path) or start[0] == 0x80:  # torch's zip format; its legacy one (pickle protocol 2+)
        return None
    if start.startswith(b"PK\x03\x04"):
        return "a zip archive without its end (torch's format cut short: an interrupted download or copy?)"
    return f"not a torch file, zip or legacy (it begins with {start[:8]!r})"


def _reason(error: Exception) -> str:
    """Why torch could not read the file (``Unsupported operand 120``, ``unsupported GLOBAL posix.system``...)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch bolds parts of its message for terminals
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not any(advice in line for advice in _TORCH_ADVICE)]
    kept = [re.sub(r"\s*Please use `torch\.serialization\.add_safe_globals.*$", "", line) for line in kept]
    return "; ".join(kept) or type(error).__name__
