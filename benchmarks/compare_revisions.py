"""Compare two revisions of dbsystem on the hot-path benchmarks, side by side in one run.

Usage::

    python benchmarks/compare_revisions.py BASE_REV NEW_REV [--rounds N]
        [--only pool,execute,sql,async] [--quick] [--json] [--save-json PATH]
        [--threshold 0.05] [--check] [--show-output] [--timeout SECONDS]

    python benchmarks/compare_revisions.py cca4dbd HEAD --quick     # a short check
    python benchmarks/compare_revisions.py cca4dbd HEAD             # the full comparison
    python benchmarks/compare_revisions.py HEAD HEAD --quick        # the noise floor (A/A)
    python benchmarks/compare_revisions.py HEAD . --only execute    # uncommitted changes

How it works:

* Each revision is checked out in its own ``git worktree --detach`` under a temporary
  directory, removed at the end, also after a failure, Ctrl-C or SIGTERM. A revision
  spelt ``.`` is the current checkout as it is on disk (uncommitted changes included); it
  is used in place and left alone.
* The benchmark scripts always come from this directory (the one holding this file), for
  both sides: only the library under test changes, through ``PYTHONPATH`` (the revision's
  checkout first). So both sides run the same measuring code, and an older revision works
  even though its own scripts predate ``--json``. The scripts use the public ``dbsystem``
  API only, so that they import on both sides. Before the first run, and in the report of
  every run, the tool checks that ``dbsystem`` was imported from that checkout, not from an
  installed copy (an editable install of the main checkout must not shadow it).
* For N rounds, every chosen script runs once per side in its own process, BASE then NEW,
  so that drift of the machine's load hits both sides alike. A script writes every timed
  round to a JSON file (``--json PATH`` of ``benchmarks/_timing.py``); each run contributes
  its median per case and contender.
* The report gives, per case and contender, the median over the runs of each side and the
  ratio NEW/BASE of two figures. The main one is the client's CPU per call (process user
  + system time of all threads, ``time.process_time``): it leaves out the server and the
  loopback, whose latency swings between two modes on this machine and moves wall time by
  tens of percent from run to run. Wall operations per second come second. Contenders that
  run dbsystem are judged: CPU per call more than ``--threshold`` (5 %) above BASE is
  flagged ``WORSE``; wall throughput alone more than 5 % below is noted. The raw drivers,
  SQLAlchemy and the floors do not change between revisions; they are reported as
  controls, and their ratios show how much the machine itself moved during the run.

Output: a Markdown section on stdout (ready for docs/PERFORMANCE.md), or with ``--json``
the whole comparison (every run's medians too) as JSON; ``--save-json PATH`` writes that
JSON in addition to the Markdown. Progress goes to stderr. Exit status: 0; 1 with
``--check`` when a dbsystem case is flagged WORSE; 2 when a script failed on either side
(the table then shows what did run).

Length: the default is 3 rounds (an odd count, so that the median sets one disturbed
run aside). ``--quick`` runs the scripts' short variants: about 50 s per revision and
round on the 2-core development machine, so about 5 minutes. Full runs take about 5
minutes per revision and round, so about 30 minutes. The scripts use the local PostgreSQL
and MariaDB (``DBSYSTEM_TEST_POSTGRES_URL`` / ``DBSYSTEM_TEST_MYSQL_URL``, default database
``test``) and create their own tables there.

Noise: even CPU per call moves when the machine is busy (the server-bound cases most:
inserts and the async pool wake up more often per call). An A/A run (``HEAD HEAD``) of
``--quick`` with 2 rounds at load average 6 on 2 cores flagged 5 of 17 cases, each with
its controls moved as far. Quick runs are a smoke test; judge with full runs on a quiet
machine, and read each verdict next to its controls' ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SCRIPTS = {
    "pool": "bench_pool.py",
    "execute": "bench_execute.py",
    "sql": "bench_sql.py",
    "async": "bench_async.py",
}
FORMAT = "dbsystem-bench/1"
CHECK_IMPORT = "import dbsystem; print(dbsystem.__file__)"


class CompareError(Exception):
    """A problem that stops the comparison (bad revision, git failure, shadowed import)."""


@dataclass
class Side:
    """One revision under test and the checkout its library is imported from."""

    label: str  # BASE or NEW
    rev: str  # as given on the command line
    commit: str  # full hash; "" for the current checkout as it is on disk
    path: Path
    owned: bool  # a worktree this tool made, to remove at the end

    @property
    def name(self) -> str:
        if not self.commit:
            return f"{self.rev} (working tree)"
        short = self.commit[:7]
        return short if self.rev.startswith(short) else f"{self.rev} ({short})"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self.path) + (os.pathsep + old if old else "")
        return env


@dataclass
class Run:
    """One script run on one side."""

    side: str
    script: str
    round: int
    seconds: float
    ok: bool
    error: str = ""
    # "case|contender" -> case, contender, subject and the run's medians
    medians: dict[str, dict[str, Any]] = field(default_factory=dict)


# -- git worktrees ---------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompareError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def resolve(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")


@contextmanager
def checkouts(repo: Path, revs: dict[str, str], tmp: Path) -> Iterator[list[Side]]:
    """The two sides, worktrees made under ``tmp``; removed on the way out, whatever happens."""
    sides: list[Side] = []
    try:
        for label, rev in revs.items():
            if rev == ".":
                sides.append(Side(label, rev, "", repo, owned=False))
                continue
            try:
                commit = resolve(repo, rev)
            except CompareError:
                raise CompareError(f"{label}: {rev!r} is not a commit of {repo}") from None
            path = tmp / label.lower()
            sides.append(Side(label, rev, commit, path, owned=True))
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
        yield sides
    finally:
        for side in sides:
            if side.owned and side.path.exists():
                try:
                    git(repo, "worktree", "remove", "--force", str(side.path))
                except CompareError as exc:
                    print(f"warning: {exc}", file=sys.stderr)
                    shutil.rmtree(side.path, ignore_errors=True)
        if any(side.owned for side in sides):
            try:
                git(repo, "worktree", "prune")
            except CompareError as exc:
                print(f"warning: {exc}", file=sys.stderr)


def check_import(side: Side, cwd: Path) -> str:
    """Where a fresh interpreter with the side's environment imports dbsystem from."""
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORT],
        cwd=cwd,
        env=side.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CompareError(f"{side.label} {side.name}: import dbsystem failed:\n{proc.stderr}")
    where = proc.stdout.strip().splitlines()[-1]
    ensure_inside(side, where)
    return where


def ensure_inside(side: Side, module_file: str | None) -> None:
    if module_file is None or not Path(module_file).resolve().is_relative_to(side.path.resolve()):
        raise CompareError(
            f"{side.label} {side.name}: dbsystem was imported from {module_file}, not from "
            f"{side.path}; something shadows PYTHONPATH (an editable install's import hook?)"
        )


# -- running the scripts ---------------------------------------------------------------------


def run_script(side: Side, script: str, round_no: int, args: argparse.Namespace, tmp: Path) -> Run:
    out = tmp / f"{script}-{side.label.lower()}-{round_no}.json"
    cmd = [sys.executable, str(BENCH_DIR / SCRIPTS[script]), "--json", str(out)]
    if args.quick:
        cmd.append("--quick")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=tmp,
            env=side.env(),
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - start
        return Run(side.label, script, round_no, seconds, False, f"timed out after {seconds:.0f} s")
    seconds = time.perf_counter() - start
    if args.show_output:
        print(proc.stdout, end="", file=sys.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        return Run(side.label, script, round_no, seconds, False, f"exit {proc.returncode}: {tail}")
    if not out.exists():
        return Run(side.label, script, round_no, seconds, False, f"{script} wrote no {out.name}")
    doc = json.loads(out.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        return Run(
            side.label, script, round_no, seconds, False, f"unknown format {doc.get('format')}"
        )
    ensure_inside(side, doc.get("dbsystem_file"))
    medians = {
        f"{c['case']}|{c['contender']}": {
            "case": c["case"],
            "contender": c["contender"],
            "subject": c["subject"],
            **c["median"],
        }
        for c in doc["cases"]
    }
    return Run(side.label, script, round_no, seconds, True, medians=medians)


# -- the report ------------------------------------------------------------------------------


def summarize(runs: list[Run], sides: list[Side], threshold: float) -> list[dict[str, Any]]:
    """One row per script, case and contender, in the order the scripts report them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if not run.ok:
            continue
        for key, m in run.medians.items():
            row = rows.setdefault(
                (run.script, key),
                {
                    "bench": run.script,
                    "case": m["case"],
                    "contender": m["contender"],
                    "subject": m["subject"],
                    "runs": {side.label: [] for side in sides},
                },
            )
            row["runs"][run.side].append(
                {"cpu_s_per_call": m["cpu_s_per_call"], "ops_per_s": m["ops_per_s"]}
            )
    ordered = sorted(rows.values(), key=lambda r: list(SCRIPTS).index(r["bench"]))
    for row in ordered:
        for label, values in row["runs"].items():
            row[label] = side_figures(values) if values else None
        base, new = row["BASE"], row["NEW"]
        row["cpu_ratio"] = new["cpu_s_per_call"] / base["cpu_s_per_call"] if base and new else None
        row["ops_ratio"] = new["ops_per_s"] / base["ops_per_s"] if base and new else None
        row["verdict"] = verdict(row, threshold)
    for row in ordered:
        # The same case's controls, moved by the machine alone: the yardstick for this row.
        moved = [
            r["cpu_ratio"]
            for r in ordered
            if not r["subject"]
            and r["cpu_ratio"] is not None
            and (r["bench"], r["case"]) == (row["bench"], row["case"])
        ]
        row["controls_cpu_ratio"] = statistics.median(moved) if row["subject"] and moved else None
    return ordered


def side_figures(values: list[dict[str, float]]) -> dict[str, float]:
    """One side's medians over its runs, and how far apart its runs' CPU figures were."""
    cpu = [v["cpu_s_per_call"] for v in values]
    median_cpu = statistics.median(cpu)
    return {
        "cpu_s_per_call": median_cpu,
        "ops_per_s": statistics.median(v["ops_per_s"] for v in values),
        "cpu_spread": (max(cpu) - min(cpu)) / median_cpu,  # 0 with one run
    }


def verdict(row: dict[str, Any], threshold: float) -> str:
    if not row["subject"]:
        return "control"
    if row["cpu_ratio"] is None:
        return "missing"
    if row["cpu_ratio"] > 1 + threshold:
        return "WORSE"
    if row["ops_ratio"] < 1 - threshold:
        return "wall only"
    return "ok"


def control_noise(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """How far the controls' CPU per call moved between the sides: median and largest."""
    moves = [abs(r["cpu_ratio"] - 1) for r in rows if not r["subject"] and r["cpu_ratio"]]
    return {"median": statistics.median(moves), "max": max(moves)} if moves else None


def fmt_us(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def fmt_ops(ops: float | None) -> str:
    if ops is None:
        return "-"
    return f"{ops:.2f}" if ops < 10 else f"{ops:.1f}" if ops < 100 else f"{ops:,.0f}"


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3f}"


def markdown(report: dict[str, Any]) -> str:
    base, new = report["sides"]["BASE"], report["sides"]["NEW"]
    pct = report["threshold"] * 100
    lines = [
        f"### BASE {base['name']} against NEW {new['name']}",
        "",
        f"`python benchmarks/compare_revisions.py {base['rev']} {new['rev']}"
        + (f" --rounds {report['rounds']}" if report["rounds_given"] else "")
        + (" --quick" if report["quick"] else "")
        + (f" --only {','.join(report['scripts'])}" if report["only_given"] else "")
        + f"`: {report['started']}, {report['rounds']} round"
        + ("s" if report["rounds"] > 1 else "")
        + " of "
        + ("quick" if report["quick"] else "full")
        + f" runs, BASE and NEW alternating, {report['elapsed_s'] / 60:.1f} min"
        + f" (load average {report['load'][0]:.1f} at the start, {report['load'][1]:.1f} at"
        " the end).",
        "",
        "CPU is the client process's CPU time per call (user + system, all threads; the"
        " server and the loopback left out): the main figure. ops/s is wall-clock throughput."
        " Each side's figure is the median over its runs of each run's median. Contenders"
        f" other than dbsystem are controls. Flagged: CPU per call more than {pct:g} % above"
        f" BASE (WORSE), or only wall ops/s more than {pct:g} % below (wall only). \"controls'"
        " CPU\" is how far the same case's controls moved: a dbsystem ratio close to it is"
        " the machine's doing.",
        "",
        "| bench | case | contender | CPU us/call BASE | CPU us/call NEW | CPU NEW/BASE"
        " | controls' CPU NEW/BASE | ops/s BASE | ops/s NEW | ops/s NEW/BASE | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["rows"]:
        b, n = row["BASE"] or {}, row["NEW"] or {}
        mark = f"**{row['verdict']}**" if row["verdict"] == "WORSE" else row["verdict"]
        lines.append(
            f"| {row['bench']} | {row['case']} | {row['contender']}"
            f" | {fmt_us(b.get('cpu_s_per_call'))} | {fmt_us(n.get('cpu_s_per_call'))}"
            f" | {fmt_ratio(row['cpu_ratio'])} | {fmt_ratio(row['controls_cpu_ratio'])}"
            f" | {fmt_ops(b.get('ops_per_s'))} | {fmt_ops(n.get('ops_per_s'))}"
            f" | {fmt_ratio(row['ops_ratio'])} | {mark} |"
        )
    judged = [r for r in report["rows"] if r["subject"]]
    worse = [r for r in judged if r["verdict"] == "WORSE"]
    lines.append("")
    lines.append(
        f"{len(worse)} of {len(judged)} dbsystem cases more than {pct:g} % worse in CPU per call"
        + (
            ": " + "; ".join(f"{r['bench']} {r['case']} ({r['contender']})" for r in worse) + "."
            if worse
            else "."
        )
    )
    noise = report["control_noise"]
    if noise is not None:
        lines.append(
            f"Controls (unchanged code) moved by {noise['median'] * 100:.1f} % in CPU per call"
            f" (median), {noise['max'] * 100:.1f} % at most: differences of that size are"
            " the machine's, not the revision's."
        )
    for failure in report["failures"]:
        lines.append("")
        lines.append(
            f"Could not run `{failure['script']}` on {failure['side']} "
            f"(round {failure['round']}): {failure['error'].splitlines()[-1]}"
        )
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", metavar="BASE_REV", help="the revision before the change")
    parser.add_argument("new", metavar="NEW_REV", help="the revision after it ('.' = on disk)")
    parser.add_argument("--rounds", type=int, help="runs of each script per side (default 3)")
    parser.add_argument(
        "--only", help=f"comma-separated scripts among {','.join(SCRIPTS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="the scripts' short runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--save-json", metavar="PATH", help="also write the JSON report to PATH")
    parser.add_argument(
        "--threshold", type=float, default=0.05, help="flag worse than this (default 0.05)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a dbsystem case is flagged WORSE"
    )
    parser.add_argument(
        "--show-output", action="store_true", help="copy each run's own output to stderr"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds one run may take (default 1800)"
    )
    args = parser.parse_args(argv)
    args.rounds_given = args.rounds is not None
    if args.rounds is None:
        args.rounds = 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.only_given = args.only is not None
    args.scripts = list(SCRIPTS) if args.only is None else args.only.split(",")
    unknown = [s for s in args.scripts if s not in SCRIPTS]
    if unknown:
        parser.error(f"unknown script {', '.join(unknown)}: choose among {', '.join(SCRIPTS)}")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def compare(args: argparse.Namespace, repo: Path, tmp: Path) -> dict[str, Any]:
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()[0]
    clock = time.perf_counter()
    runs: list[Run] = []
    failures: list[dict[str, Any]] = []
    with checkouts(repo, {"BASE": args.base, "NEW": args.new}, tmp) as sides:
        for side in sides:
            where = check_import(side, tmp)
            print(f"{side.label}: {side.name}, dbsystem from {where}", file=sys.stderr)
        alive = list(args.scripts)
        for round_no in range(1, args.rounds + 1):
            for script in list(alive):
                for side in sides:
                    run = run_script(side, script, round_no, args, tmp)
                    runs.append(run)
                    state = "ok" if run.ok else "FAILED"
                    print(
                        f"round {round_no}/{args.rounds} {script:<8} {side.label:<4} "
                        f"{run.seconds:6.1f} s {state}",
                        file=sys.stderr,
                    )
                    if not run.ok:
                        print(f"  {run.error}", file=sys.stderr)
                        failures.append(
                            {
                                "script": script,
                                "side": side.label,
                                "round": round_no,
                                "error": run.error,
                            }
                        )
                        alive.remove(script)  # no comparison without both sides
                        break
    rows = summarize(runs, sides, args.threshold)
    return {
        "format": "dbsystem-compare/1",
        "sides": {
            s.label: {"rev": s.rev, "commit": s.commit or None, "name": s.name} for s in sides
        },
        "scripts": args.scripts,
        "only_given": args.only_given,
        "rounds": args.rounds,
        "rounds_given": args.rounds_given,
        "quick": args.quick,
        "threshold": args.threshold,
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": time.perf_counter() - clock,
        "load": [load_start, os.getloadavg()[0]],
        "python": sys.version.split()[0],
        "rows": rows,
        "control_noise": control_noise(rows),
        "failures": failures,
        "runs": [run.__dict__ for run in runs],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        repo = Path(git(BENCH_DIR, "rev-parse", "--show-toplevel"))
        tmp = Path(tempfile.mkdtemp(prefix="dbsystem-compare-"))
        try:
            report = compare(args, repo, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; worktrees removed", file=sys.stderr)
        return 130
    text = json.dumps(report, indent=1)
    if args.save_json:
        Path(args.save_json).write_text(text + "\n", encoding="utf-8")
    print(text if args.json else markdown(report), end="\n" if args.json else "")
    if report["failures"]:
        return 2
    if args.check and any(r["verdict"] == "WORSE" for r in report["rows"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
