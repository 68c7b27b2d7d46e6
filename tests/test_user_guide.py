"""docs/USER_GUIDE.md's ``python`` examples run in order and print what their comments say
(``py`` blocks need a server and are shown, not run)."""

from __future__ import annotations

import pathlib

from tests.doc_blocks import run_blocks

GUIDE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "USER_GUIDE.md"


def test_the_guide_runs_and_prints_what_it_says():
    assert run_blocks(GUIDE, "user_guide") >= 8
