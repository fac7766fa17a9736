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
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # noqa: BLE001 - foreign bytes raise anything from KeyError to UnpicklingError
        raise WeightsOnlyLoadError(f"{type(error).__name__}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """Why torch could not read the file (``Unsupported operand 120``, ``unsupported GLOBAL posix.system``...)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch bolds parts of its message for terminals
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not any(advice in line for advice in _TORCH_ADVICE)]
    return "; ".join(kept) or type(error).__name__
