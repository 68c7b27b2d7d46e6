"""The benchmark tooling the "no speed lost" checks rely on: ``benchmarks/_timing.py``'s JSON
record and ``benchmarks/compare_revisions.py`` (its verdicts, its import check and the
clean-up of its git worktrees). The benchmarks themselves are not run here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building a class
    spec.loader.exec_module(module)
    return module


timing = _load("_timing")
compare = _load("compare_revisions")


def test_recorder_writes_every_round_and_the_medians(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    rec = timing.Recorder("bench_x", str(out))
    for wall, cpu in ((0.010, 0.004), (0.020, 0.005), (0.030, 0.009)):
        rec.add("pk select", "dbsystem", 100, timing.Lap(wall=wall, cpu=cpu, user=cpu, sys=0.0))
    rec.add("pk select", "raw", 100, timing.Lap(wall=0.01, cpu=0.002, user=0.002, sys=0.0))
    rec.write()

    doc = json.loads(out.read_text())
    assert doc["format"] == "dbsystem-bench/1"
    assert doc["script"] == "bench_x"
    ours, raw = doc["cases"]
    assert (ours["contender"], ours["subject"]) == ("dbsystem", True)
    assert (raw["contender"], raw["subject"]) == ("raw", False)
    assert len(ours["rounds"]) == 3
    assert ours["median"]["cpu_s_per_call"] == pytest.approx(0.005 / 100)
    assert ours["median"]["ops_per_s"] == pytest.approx(100 / 0.020)


def test_recorder_without_a_path_writes_nothing(tmp_path: Path) -> None:
    rec = timing.Recorder("bench_x", None)
    rec.timed("case", "dbsystem", 1, lambda: None)
    rec.write()
    assert list(tmp_path.iterdir()) == []
    assert rec.document()["cases"][0]["rounds"][0]["calls"] == 1


def _run(side: str, cases: dict[str, tuple[float, float, bool]]) -> Any:
    """A successful run of one script; ``cases`` maps "case/contender" to (cpu, ops, subject)."""
    medians = {}
    for key, (cpu, ops, subject) in cases.items():
        case, who = key.split("/")
        medians[f"{case}|{who}"] = {
            "case": case,
            "contender": who,
            "subject": subject,
            "cpu_s_per_call": cpu,
            "ops_per_s": ops,
        }
    return compare.Run(side, "execute", 1, 1.0, True, medians=medians)


def test_summarize_flags_cpu_first_then_wall_and_leaves_controls_alone(tmp_path: Path) -> None:
    sides = [
        compare.Side("BASE", "a", "a" * 40, tmp_path, owned=False),
        compare.Side("NEW", "b", "b" * 40, tmp_path, owned=False),
    ]
    base = {
        "slower/dbsystem": (10e-6, 1000.0, True),
        "wall/dbsystem": (10e-6, 1000.0, True),
        "same/dbsystem": (10e-6, 1000.0, True),
        "same/raw": (5e-6, 2000.0, False),
    }
    new = {
        "slower/dbsystem": (10.6e-6, 1000.0, True),  # +6 % CPU
        "wall/dbsystem": (10.2e-6, 940.0, True),  # CPU within 5 %, wall -6 %
        "same/dbsystem": (10.4e-6, 980.0, True),
        "same/raw": (9e-6, 500.0, False),  # a control is never judged
    }
    # Three runs a side: the middle one of each decides, the outliers do not.
    outlier_new = {k: (v[0] * 3, v[1] / 3, v[2]) for k, v in new.items()}
    runs = [
        _run("BASE", base),
        _run("NEW", new),
        _run("BASE", base),
        _run("NEW", outlier_new),
        _run("BASE", {k: (v[0] / 2, v[1], v[2]) for k, v in base.items()}),
        _run("NEW", new),
    ]
    rows = {r["case"]: r for r in compare.summarize(runs, sides, 0.05) if r["subject"]}
    assert rows["slower"]["verdict"] == "WORSE"
    assert rows["slower"]["cpu_ratio"] == pytest.approx(1.06)
    assert rows["wall"]["verdict"] == "wall only"
    assert rows["same"]["verdict"] == "ok"
    # The controls of the same case are set beside it; a case without any has none.
    assert rows["same"]["controls_cpu_ratio"] == pytest.approx(1.8)
    assert rows["slower"]["controls_cpu_ratio"] is None
    control = next(r for r in compare.summarize(runs, sides, 0.05) if not r["subject"])
    assert control["verdict"] == "control"
    assert compare.control_noise([control]) == pytest.approx({"median": 0.8, "max": 0.8})


def test_a_dbsystem_imported_from_elsewhere_is_refused(tmp_path: Path) -> None:
    side = compare.Side("BASE", "a", "a" * 40, tmp_path / "base", owned=True)
    compare.ensure_inside(side, str(tmp_path / "base" / "dbsystem" / "__init__.py"))
    with pytest.raises(compare.CompareError, match="imported from /elsewhere"):
        compare.ensure_inside(side, "/elsewhere/dbsystem/__init__.py")


def _repo() -> Path:
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=BENCH,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return Path(top)


def _worktrees(repo: Path) -> str:
    return subprocess.run(
        ["git", "worktree", "list"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_worktrees_import_their_own_dbsystem_and_are_removed_on_failure(tmp_path: Path) -> None:
    repo = _repo()
    with pytest.raises(RuntimeError, match="stop"):
        with compare.checkouts(repo, {"BASE": "HEAD", "NEW": "HEAD"}, tmp_path) as sides:
            for side in sides:
                where = compare.check_import(side, tmp_path)
                assert Path(where).is_relative_to(tmp_path / side.label.lower())
            assert str(tmp_path) in _worktrees(repo)
            raise RuntimeError("stop")
    assert str(tmp_path) not in _worktrees(repo)
    assert not (tmp_path / "base").exists()
    assert not (tmp_path / "new").exists()


def test_an_unknown_revision_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    repo = _repo()
    with pytest.raises(compare.CompareError, match="not a commit"):
        with compare.checkouts(repo, {"BASE": "HEAD", "NEW": "no-such-rev"}, tmp_path):
            pass
    assert str(tmp_path) not in _worktrees(repo)
