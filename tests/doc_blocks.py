"""Running a documentation page's ``python`` examples: in order, in one namespace, each
printing exactly what the ``# comment`` after its ``print(`` lines promises."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re


def python_blocks(page: pathlib.Path) -> list[str]:
    """The page's fenced ``python`` blocks (``py`` blocks are shown, not run)."""
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def run_blocks(page: pathlib.Path, namespace_name: str) -> int:
    """Run every ``python`` block of ``page``; assert each printed what it says. Returns
    how many blocks ran."""
    blocks = python_blocks(page)
    namespace: dict = {"__name__": namespace_name}
    for number, block in enumerate(blocks, start=1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{page.name} block {number}", "exec"), namespace)
        promised = [
            m.group(1).strip()
            for line in block.splitlines()
            if line.lstrip().startswith("print(") and (m := re.search(r"#\s*(.+)$", line))
        ]
        printed = out.getvalue().splitlines()
        assert printed == promised, (number, printed, promised)
    return len(blocks)
