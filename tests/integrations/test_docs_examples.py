"""docs/INTEGRATIONS.md's ``python`` examples run in order and print what their comments say."""

from __future__ import annotations

import pathlib

import pytest

from tests.doc_blocks import run_blocks

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "INTEGRATIONS.md"


def test_the_integrations_page_runs_and_prints_what_it_says():
    for module in ("opentelemetry.sdk", "fastapi", "flask", "httpx2"):
        pytest.importorskip(module)
    assert run_blocks(PAGE, "integrations_doc") == 4
