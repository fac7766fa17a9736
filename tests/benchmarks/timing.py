"""Shared timing helper of the benchmark scripts (run them as `python tests/benchmarks/bench_*.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], device: str, iters: int) -> float:
    """Median seconds of `iters` calls after one warm-up (CUDA work is synchronized around each call)."""
    fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
