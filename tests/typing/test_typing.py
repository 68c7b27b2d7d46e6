"""The typing suite: what users write must pass mypy --strict and pyright; misuses must not.

``pass/*.py`` are valid uses of the public API (the README's examples among them, copied
unchanged: ``test_readme_examples_are_copied`` keeps them so), with the types the checkers
infer asserted by ``typing.assert_type``; both checkers must report nothing there.
``fail/*.py`` are misuses: every line ending in ``# E: <mypy code> <pyright rule>`` must be
reported by mypy with that error code and by pyright with that rule, and no other line may
be reported (the pattern of typeshed's and SQLAlchemy's typing tests).

mypy runs twice, each time once over all the files: with the project's configuration
(pydantic's plugin, ``init_typed``) and with none but ``--strict`` (the README promises no
plugin is needed). pyright runs once, in strict mode (``pyrightconfig.json`` here). The
pyright package fetches its npm package on first use: where it cannot, the test skips,
except in CI (``DBSYSTEM_REQUIRE_SERVERS``), where it fails.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.conftest import skip_or_fail

# A cold mypy cache, or pyright fetching its npm package, takes a while.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PASS = sorted((HERE / "pass").glob("*.py"))
FAIL = sorted((HERE / "fail").glob("*.py"))
MARK = re.compile(r"#\s*E:\s*(?P<mypy>[a-z-]+)\s+(?P<pyright>report[A-Za-z]+)\s*$")

# file name -> line -> (checker's code) for every reported error
Found = dict[str, dict[int, set[str]]]


def _expected() -> dict[str, dict[int, tuple[str, str]]]:
    marks: dict[str, dict[int, tuple[str, str]]] = {}
    for path in FAIL:
        lines = path.read_text().splitlines()
        marks[path.name] = {
            number: (m["mypy"], m["pyright"])
            for number, line in enumerate(lines, start=1)
            if (m := MARK.search(line))
        }
    return marks


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=600)


def _mypy(*options: str) -> Found:
    result = _run(
        [sys.executable, "-m", "mypy", *options, "--no-error-summary", "--show-error-codes"]
        + [str(p.relative_to(HERE)) for p in PASS + FAIL]
    )
    if "No module named mypy" in result.stderr:
        skip_or_fail("mypy is not installed: pip install -e '.[test]'")
    if result.returncode not in (0, 1) or result.stderr.strip():
        pytest.fail(f"mypy did not run: {result.stderr or result.stdout}")
    found: Found = defaultdict(lambda: defaultdict(set))
    for line in result.stdout.splitlines():
        match = re.match(r"(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$", line)
        if match is None:
            assert ": note:" in line, f"unreadable mypy output: {line}"
            continue
        found[pathlib.Path(match["file"]).name][int(match["line"])].add(match["code"])
    return found


@pytest.fixture(scope="module")
def mypy_project() -> Found:
    """mypy --strict with the project's configuration (pydantic's plugin, init_typed)."""
    return _mypy("--strict", "--config-file", str(ROOT / "pyproject.toml"))


@pytest.fixture(scope="module")
def mypy_plain() -> Found:
    """mypy --strict with no configuration at all: no plugin."""
    return _mypy("--strict", "--config-file", str(HERE / "mypy-plain.ini"))


@pytest.fixture(scope="module")
def pyright() -> Found:
    try:
        result = _run(
            [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
            + [str(p.relative_to(HERE)) for p in PASS + FAIL]
        )
    except (OSError, subprocess.TimeoutExpired) as exc:  # pragma: no cover - environment
        skip_or_fail(f"pyright could not run: {exc}")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        skip_or_fail(f"pyright could not run (its npm package?): {result.stderr[-2000:]}")
    found: Found = defaultdict(lambda: defaultdict(set))
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] != "error":
            continue
        line = diagnostic["range"]["start"]["line"] + 1
        rule = diagnostic.get("rule", "unknown")
        found[pathlib.Path(diagnostic["file"]).name][line].add(rule)
    return found


def _clean(found: Found) -> dict[str, dict[int, set[str]]]:
    return {name: dict(lines) for name, lines in found.items() if name in {p.name for p in PASS}}


def test_there_are_typing_files():
    assert len(PASS) >= 3
    assert all(_expected()[p.name] for p in FAIL), "a fail/ file without '# E:' marks"


def test_valid_uses_pass_mypy_with_the_project_config(mypy_project):
    assert _clean(mypy_project) == {}


def test_valid_uses_pass_mypy_without_plugin(mypy_plain):
    assert _clean(mypy_plain) == {}


def test_valid_uses_pass_pyright(pyright):
    assert _clean(pyright) == {}


@pytest.mark.parametrize("checker", ["mypy_project", "mypy_plain", "pyright"])
def test_misuses_are_flagged(checker, request):
    found: Found = request.getfixturevalue(checker)
    index = 1 if checker == "pyright" else 0
    for name, marks in _expected().items():
        reported = dict(found.get(name, {}))
        missed = {
            line: code[index]
            for line, code in marks.items()
            if code[index] not in reported.get(line, set())
        }
        assert missed == {}, f"{checker} did not flag {name} at these lines (expected code)"
        unexpected = {line: codes for line, codes in reported.items() if line not in marks}
        assert unexpected == {}, f"{checker} flagged unmarked lines of {name}"


README = ROOT / "README.md"


def test_readme_examples_are_copied():
    """Every Python example of the README is in a pass/readme_*.py file, unchanged (the
    async one indented into a coroutine), except the pytest plugin's test function and the
    two-phase commit's, whose statement and parameters are elided (``{...}``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    copies = "\n".join(p.read_text() for p in PASS if p.name.startswith("readme_"))
    wanted = [b for b in blocks if "def test_signup" not in b and "{...}" not in b]
    assert len(wanted) >= 9
    for block in wanted:
        indented = "".join(
            f"    {line}" if line.strip() else line for line in block.splitlines(True)
        )
        assert block in copies or indented in copies, f"README block not in pass/:\n{block}"
