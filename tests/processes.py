"""Test helper: waiting for processes that a killed parent left behind."""

from __future__ import annotations

import time
from collections.abc import Sequence

from wsod_mammo.data.lifetime import is_running


def all_end_within(pids: Sequence[int], seconds: float) -> bool:
    """Whether every process of ``pids`` has ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(is_running(pid) for pid in pids)
