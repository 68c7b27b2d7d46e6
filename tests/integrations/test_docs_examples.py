"""docs/INTEGRATIONS.md's ``python`` examples run in order and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "INTEGRATIONS.md"


def test_the_integrations_page_runs_and_prints_what_it_says():
    for module in ("opentelemetry.sdk", "fastapi", "flask", "httpx2"):
        pytest.importorskip(module)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict = {"__name__": "integrations_doc"}
    for number, block in enumerate(blocks, start=1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"INTEGRATIONS.md block {number}", "exec"), namespace)
        promised = [
            m.group(1).strip()
            for line in block.splitlines()
            if line.lstrip().startswith("print(") and (m := re.search(r"#\s*(.+)$", line))
        ]
        printed = out.getvalue().splitlines()
        assert printed == promised, (number, printed, promised)
