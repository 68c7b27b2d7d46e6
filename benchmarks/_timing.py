"""Timing helpers shared by the server benchmarks (imported as a sibling script module).

Besides ``measure`` (a loop timed in wall and user CPU microseconds), this module gives the
benchmarks a machine-readable output: a script makes a ``Recorder``, hands it every timed
round (``Recorder.add`` / ``Recorder.timed``) and, when run with ``--json PATH``, writes
every round's calls, wall seconds and process CPU seconds to PATH. Its human output does not
change. ``benchmarks/compare_revisions.py`` reads these files to set two revisions of the
library side by side.

The CPU figure is the process's CPU time, user + system, all threads
(``time.process_time``): Linux accounts that total precisely, while its split into user and
system time is sampled at the scheduler tick, so either half alone can move by 10-20 % on a
short round even when the work is identical. The split is kept in the file for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Version of the JSON layout written by ``Recorder.write``.
FORMAT = "dbsystem-bench/1"


def cpu() -> float:
    """This process's user CPU seconds."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def measure(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Call ``fn(0..n-1)``; microseconds per call, wall and user CPU."""
    start, start_cpu = time.perf_counter(), cpu()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6, (cpu() - start_cpu) / n * 1e6


@dataclass(frozen=True)
class Lap:
    """One timed stretch, in seconds: wall, process CPU (user + system) and its two parts."""

    wall: float
    cpu: float
    user: float
    sys: float


class Stopwatch:
    """Wall clock and process CPU together: ``sw = Stopwatch()`` ... ``lap = sw.stop()``."""

    __slots__ = ("_cpu", "_sys", "_user", "_wall")

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._user, self._sys = usage.ru_utime, usage.ru_stime
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> Lap:
        wall = time.perf_counter()
        process = time.process_time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return Lap(
            wall=wall - self._wall,
            cpu=process - self._cpu,
            user=usage.ru_utime - self._user,
            sys=usage.ru_stime - self._sys,
        )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--json PATH`` option every recording benchmark takes."""
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write every timed round (calls, wall and CPU seconds) as JSON to PATH",
    )


class Recorder:
    """Every timed round of one benchmark run, per case and contender, written as JSON.

    ``subject`` marks the contenders that run dbsystem (the ones a comparison of two
    revisions is about); by default, those whose name starts with ``dbsystem``. The others
    (raw drivers, SQLAlchemy, floors) do not change between revisions and serve as a
    control for the machine's noise.
    """

    def __init__(self, script: str, path: str | None) -> None:
        self.script = script
        self.path = path
        self._cases: dict[tuple[str, str], dict[str, Any]] = {}

    def add(
        self, case: str, contender: str, calls: int, lap: Lap, *, subject: bool | None = None
    ) -> None:
        """Record one round: ``calls`` operations took ``lap``."""
        entry = self._cases.get((case, contender))
        if entry is None:
            entry = {
                "case": case,
                "contender": contender,
                "subject": contender.startswith("dbsystem") if subject is None else subject,
                "rounds": [],
            }
            self._cases[(case, contender)] = entry
        entry["rounds"].append(
            {
                "calls": calls,
                "wall_s": lap.wall,
                "cpu_s": lap.cpu,
                "user_s": lap.user,
                "sys_s": lap.sys,
            }
        )

    def timed(self, case: str, contender: str, calls: int, fn: Callable[[], object]) -> Lap:
        """Run ``fn()`` (which makes ``calls`` operations), record it and return its lap."""
        sw = Stopwatch()
        fn()
        lap = sw.stop()
        self.add(case, contender, calls, lap)
        return lap

    def document(self) -> dict[str, Any]:
        """The JSON document: run metadata, then per case the rounds and their medians."""
        cases = []
        for entry in self._cases.values():
            rounds = entry["rounds"]
            cases.append(
                {
                    **entry,
                    "median": {
                        "ops_per_s": statistics.median(r["calls"] / r["wall_s"] for r in rounds),
                        "wall_s_per_call": statistics.median(
                            r["wall_s"] / r["calls"] for r in rounds
                        ),
                        "cpu_s_per_call": statistics.median(
                            r["cpu_s"] / r["calls"] for r in rounds
                        ),
                    },
                }
            )
        dbsystem = sys.modules.get("dbsystem")
        return {
            "format": FORMAT,
            "script": self.script,
            "argv": sys.argv[1:],
            "python": platform.python_version(),
            "pid": os.getpid(),
            "dbsystem_file": getattr(dbsystem, "__file__", None),
            "dbsystem_version": getattr(dbsystem, "__version__", None),
            "cases": cases,
        }

    def write(self) -> None:
        """Write the document to the ``--json`` path; nothing when there is none."""
        if self.path is None:
            return
        with open(self.path, "w", encoding="utf-8") as out:
            json.dump(self.document(), out, indent=1)
            out.write("\n")
