"""Per-second buckets of query figures, merged over a sliding window.

Latencies go into a log-scale histogram whose buckets are 2% wide, so a percentile read
from it is within 1% of the exact value while a bucket costs one dict entry whatever the
query rate: the window's memory is bounded by (seconds x backends x operations x latency
buckets seen), never by the number of queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

GROWTH = 1.02
LOG_GROWTH = math.log(GROWTH)
FLOOR = 1e-7  # 0.1 us: anything faster is counted here


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a duration."""
    return math.floor(math.log(seconds if seconds > FLOOR else FLOOR) / LOG_GROWTH)


def bucket_value(bucket: int) -> float:
    """The duration a bucket stands for: its geometric middle."""
    return float(GROWTH ** (bucket + 0.5))


class Group:
    """Count, errors, total duration and latency histogram of one (backend, operation)."""

    __slots__ = ("count", "errors", "hist", "total")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.hist: dict[int, int] = {}

    def add(self, duration: float, failed: bool) -> None:
        self.count += 1
        self.total += duration
        if failed:
            self.errors += 1
        bucket = latency_bucket(duration)
        hist = self.hist
        hist[bucket] = hist.get(bucket, 0) + 1

    def merge(self, other: Group) -> None:
        self.count += other.count
        self.errors += other.errors
        self.total += other.total
        hist = self.hist
        for bucket, n in other.hist.items():
            hist[bucket] = hist.get(bucket, 0) + n

    def percentiles(self, quantiles: Iterable[float]) -> list[float]:
        """The durations at each quantile (0..1), read from the histogram."""
        wanted = list(quantiles)
        if not self.count:
            return [0.0 for _ in wanted]
        ordered = sorted(self.hist.items())
        out = []
        for q in wanted:
            rank = max(1, math.ceil(q * self.count))
            seen = 0
            for bucket, n in ordered:
                seen += n
                if seen >= rank:
                    out.append(bucket_value(bucket))
                    break
        return out


class Second:
    """The groups of one second of wall-clock time."""

    __slots__ = ("groups", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.groups: dict[tuple[str, str], Group] = {}
