"""Timing helpers shared by the server benchmarks (imported as a sibling script module)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable


def cpu() -> float:
    """This process's user CPU seconds."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def measure(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Call ``fn(0..n-1)``; microseconds per call, wall and user CPU."""
    start, start_cpu = time.perf_counter(), cpu()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6, (cpu() - start_cpu) / n * 1e6
