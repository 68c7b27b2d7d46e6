"""Every sample runs and prints what it promises."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_sample(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", f"samples.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_basic_usage(tmp_path):
    out = run_sample("basic_usage", "--url", f"sqlite:///{tmp_path}/notes.db")
    assert "inserted note 1" in out
    assert "refused duplicate: UNIQUE constraint failed: notes.title" in out
    assert "{'id': 4, 'title': 'note 2'}" in out
    assert "PoolStats(" in out
