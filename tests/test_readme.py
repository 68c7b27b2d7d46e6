"""The README's quick start runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_quick_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from dbsystem import DatabaseManager

    monkeypatch.setattr(DatabaseManager, "_instance", None)
    block = python_blocks()[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "1 1"
    assert lines[1] == "[{'id': 1, 'name': 'ada'}]"
    assert lines[2] == "sqlite UNIQUE constraint failed: users.name"
    assert lines[3] == "2"
    assert int(lines[4]) >= 2


def test_security_example():
    block = next(b for b in python_blocks() if "for_user" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == [
        "[]",
        "[sqlite] user 'analyst' may not send 2 statements in one text (send them one by one)",
        "[('analyst', 'select', 'ok'), ('analyst', 'multiple', 'denied')]",
    ]


def test_monitoring_example():
    block = next(b for b in python_blocks() if "PerformanceMonitor" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["20 0.0 ['fetch_value']", "up"]
