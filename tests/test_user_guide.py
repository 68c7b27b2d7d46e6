"""docs/USER_GUIDE.md's ``python`` examples run in order and print what their comments say
(``py`` blocks need a server and are shown, not run)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

GUIDE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "USER_GUIDE.md"


def test_the_guide_runs_and_prints_what_it_says():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "user_guide"}
    for number, block in enumerate(blocks, start=1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"USER_GUIDE.md block {number}", "exec"), namespace)
        promised = [
            m.group(1).strip()
            for line in block.splitlines()
            if line.lstrip().startswith("print(") and (m := re.search(r"#\s*(.+)$", line))
        ]
        printed = out.getvalue().splitlines()
        assert printed == promised, (number, printed, promised)
