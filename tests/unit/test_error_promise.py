"""``dbsystem.errors`` promises that every error dbsystem raises is a ``DBSystemError``.

This test keeps the promise by reading the source: it walks the syntax tree of every
module under ``dbsystem/`` and fails on a ``raise`` of a built-in exception class
(``raise ValueError(...)``, ``raise KeyError``, ``raise builtins.RuntimeError(...)``) and on
an exception class defined outside ``dbsystem.errors`` that is not part of our tree. A few
raises are required by a Python or library protocol; they are listed in ``ALLOWED`` below,
each by module, function and exception, with the reason. Re-raising what was caught
(``raise``, ``raise exc``) is not checked: its class was decided where it was first raised.

The second half checks, by calling them, that the checks converted for issue 18 raise a
class of our tree and say what was wrong.
"""

from __future__ import annotations

import ast
import builtins
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import dbsystem
from dbsystem import DatabaseManager, errors
from dbsystem.core.retry import retry
from dbsystem.kernel.config import PoolConfig, TLSConfig
from dbsystem.monitoring.health import HealthMonitor
from dbsystem.monitoring.monitor import PerformanceMonitor
from dbsystem.security.audit import AuditEvent, AuditLog, JsonLinesAuditSink
from dbsystem.streams.postgres import PostgresListener
from dbsystem.streams.redis import RedisChannelListener

PACKAGE_DIR = Path(dbsystem.__file__).parent

BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


@dataclass(frozen=True)
class Finding:
    """A raise of a built-in exception (or a class outside our tree), where it is."""

    module: str
    function: str  # qualified inside the module: "Class.method", "outer.inner", "<module>"
    exception: str
    line: int


@dataclass(frozen=True)
class Allowed:
    module: str
    function: str
    exception: str
    reason: str


_PYDANTIC = (
    "pydantic validator: pydantic only turns ValueError/AssertionError into a "
    "ValidationError, which PoolConfig/TLSConfig.__init__ convert to ConfigurationError"
)
_ABSTRACT = "abstract method of the builder base: every builder overrides it"
_TEST_HELPER = (
    "test assertion helper (like unittest.mock's assert_called_with): pytest reports "
    "an AssertionError as a failed test"
)

ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "dbsystem",
        "__getattr__",
        "AttributeError",
        "module __getattr__ (PEP 562): a missing name must be an AttributeError "
        "for hasattr() and `from dbsystem import x`",
    ),
    Allowed(
        "dbsystem.query.expr",
        "_FuncFactory.__getattr__",
        "AttributeError",
        "__getattr__ for dunder names: copy, pickle and hasattr() probe them and expect "
        "AttributeError",
    ),
    Allowed(
        "dbsystem.kernel.url",
        "DatabaseURL.__setattr__",
        "AttributeError",
        "assigning to an immutable object is an AttributeError, as for a frozen dataclass",
    ),
    Allowed("dbsystem.query.sql", "_Query._shape", "NotImplementedError", _ABSTRACT),
    Allowed("dbsystem.query.sql", "_Query._collect_values", "NotImplementedError", _ABSTRACT),
    Allowed(
        "dbsystem.backends.mock", "MockBackend.assert_executed", "AssertionError", _TEST_HELPER
    ),
    Allowed(
        "dbsystem.backends.mock", "MockBackend.assert_not_executed", "AssertionError", _TEST_HELPER
    ),
    Allowed(
        "dbsystem.backends.mock",
        "MockBackend.assert_expectations_met",
        "AssertionError",
        _TEST_HELPER,
    ),
    Allowed("dbsystem.kernel.config", "_to_url", "ValueError", _PYDANTIC),
    Allowed("dbsystem.kernel.config", "TLSConfig._check_files", "ValueError", _PYDANTIC),
    Allowed("dbsystem.kernel.config", "PoolConfig._merge_url_options", "ValueError", _PYDANTIC),
    Allowed("dbsystem.kernel.config", "PoolConfig._check_sizes", "ValueError", _PYDANTIC),
    Allowed("dbsystem.kernel.config", "PoolConfig._check_patroni", "ValueError", _PYDANTIC),
    Allowed(
        "dbsystem.core._connection_base", "SQLLeaseBase.backend", "NotImplementedError", _ABSTRACT
    ),
    Allowed(
        "dbsystem.core._connection_base",
        "SQLLeaseBase._released_error",
        "NotImplementedError",
        _ABSTRACT,
    ),
    Allowed("dbsystem.core._pool_base", "PoolBase._start", "NotImplementedError", _ABSTRACT),
    Allowed(
        "dbsystem.core._pool_base", "PoolBase._hand_over_locked", "NotImplementedError", _ABSTRACT
    ),
    Allowed(
        "dbsystem.core._pool_base",
        "PoolBase._grant_permit_locked",
        "NotImplementedError",
        _ABSTRACT,
    ),
    Allowed(
        "dbsystem.core._flow",
        "drive",
        "RuntimeError",
        "internal invariant: a blocking flow handed an awaitable is a bug in dbsystem's own "
        "flows, never reachable from user input",
    ),
)

ALLOWED_CLASSES: dict[tuple[str, str], str] = {
    ("dbsystem.security.policies", "_Unknown"): (
        "private control-flow signal of the row-policy evaluator; always caught in the module"
    ),
}


# -- the scanner --------------------------------------------------------------------------


def _builtin_name(node: ast.expr) -> str | None:
    """``ValueError`` or ``builtins.ValueError`` -> ``"ValueError"``; anything else -> None."""
    if isinstance(node, ast.Name) and node.id in BUILTIN_EXCEPTIONS:
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "builtins"
        and node.attr in BUILTIN_EXCEPTIONS
    ):
        return node.attr
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.raises: list[Finding] = []
        self.classes: list[Finding] = []

    def _nested(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _nested

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [_builtin_name(base) for base in node.bases]
        # A class whose every base is a built-in exception is outside our tree.
        if bases and all(bases) and self.module != "dbsystem.errors":
            where = ".".join([*self.scope, node.name])
            self.classes.append(Finding(self.module, where, str(bases[0]), node.lineno))
        self._nested(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        if node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = _builtin_name(target)
            if name is not None:
                where = ".".join(self.scope) or "<module>"
                self.raises.append(Finding(self.module, where, name, node.lineno))
        self.generic_visit(node)


def scan(source: str, module: str) -> _Scanner:
    """The built-in raises and foreign exception classes of one module's source."""
    scanner = _Scanner(module)
    scanner.visit(ast.parse(source))
    return scanner


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _scan_package() -> list[_Scanner]:
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(paths) > 50  # the walk found the package, not an empty directory
    return [scan(path.read_text(encoding="utf-8"), _module_name(path)) for path in paths]


def not_allowed(findings: list[Finding], allowed: tuple[Allowed, ...] = ALLOWED) -> list[Finding]:
    keys = {(a.module, a.function, a.exception) for a in allowed}
    return [f for f in findings if (f.module, f.function, f.exception) not in keys]


def _report(findings: list[Finding]) -> str:
    return "\n".join(
        f"  {f.module.replace('.', '/')}.py:{f.line} in {f.function}: {f.exception}"
        for f in findings
    )


# -- the package keeps the promise -----------------------------------------------------------


def test_no_builtin_exception_is_raised_outside_the_allow_list():
    findings = [f for scanner in _scan_package() for f in scanner.raises]
    bad = not_allowed(findings)
    assert not bad, (
        "raise a dbsystem.errors class instead (or allow-list a protocol-required case "
        "with its reason):\n" + _report(bad)
    )


def test_every_exception_class_of_the_package_is_in_the_tree():
    classes = [f for scanner in _scan_package() for f in scanner.classes]
    foreign = [f for f in classes if (f.module, f.function) not in ALLOWED_CLASSES]
    assert not foreign, "derive from a dbsystem.errors class:\n" + _report(foreign)
    assert {(f.module, f.function) for f in classes} == set(ALLOWED_CLASSES)


def test_every_allow_list_entry_is_still_needed():
    findings = {(f.module, f.function, f.exception) for s in _scan_package() for f in s.raises}
    stale = [a for a in ALLOWED if (a.module, a.function, a.exception) not in findings]
    assert not stale, f"these allow-list entries match no raise any more; remove them: {stale}"


def test_allow_list_entries_name_a_builtin_and_a_reason():
    for entry in ALLOWED:
        assert entry.exception in BUILTIN_EXCEPTIONS, entry
        assert len(entry.reason) > 20, entry


# -- the scanner catches what it must, and only that ----------------------------------------

SAMPLE = """
import builtins
from dbsystem.errors import InterfaceError


def check(value):
    if value is None:
        raise ValueError("no value")
    raise InterfaceError("wrong value")


class Box:
    def get(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise
        except LookupError as exc:
            raise exc

    def run(self):
        def inner():
            raise KeyError

        raise builtins.RuntimeError("stopped") from None

    async def convert(self, exc):
        raise TypeError("bad type") from exc


def __getattr__(name):
    raise AttributeError(name)


def elsewhere():
    raise AttributeError("not in __getattr__")


class LocalError(ValueError):
    pass


class OurError(InterfaceError, ValueError):
    pass
"""


def test_the_scanner_flags_a_newly_added_builtin_raise():
    found = scan(SAMPLE, "dbsystem.sample")
    assert [(f.function, f.exception) for f in found.raises] == [
        ("check", "ValueError"),
        ("Box.run.inner", "KeyError"),
        ("Box.run", "RuntimeError"),
        ("Box.convert", "TypeError"),
        ("__getattr__", "AttributeError"),
        ("elsewhere", "AttributeError"),
    ]
    lines = SAMPLE.splitlines()
    assert [lines[f.line - 1].split()[:2] for f in found.raises][:3] == [
        ["raise", 'ValueError("no'],
        ["raise", "KeyError"],
        ["raise", 'builtins.RuntimeError("stopped")'],
    ]
    # An allow-list entry covers its own function only.
    allowed = (Allowed("dbsystem.sample", "__getattr__", "AttributeError", "PEP 562 protocol"),)
    assert [f.function for f in not_allowed(found.raises, allowed)] == [
        "check",
        "Box.run.inner",
        "Box.run",
        "Box.convert",
        "elsewhere",
    ]
    # A class deriving from built-ins only is flagged; one in our tree is not.
    assert [(f.function, f.exception) for f in found.classes] == [("LocalError", "ValueError")]


def test_the_package_scan_would_fail_on_a_new_raise():
    """The same check as the package test, on the package plus one new bare raise."""
    extra = scan("def new_feature():\n    raise RuntimeError('oops')\n", "dbsystem.newmodule")
    findings = [f for s in _scan_package() for f in s.raises] + extra.raises
    assert not_allowed(findings) == [
        Finding("dbsystem.newmodule", "new_feature", "RuntimeError", 2)
    ]


# -- the converted checks raise our classes ---------------------------------------------------


def _health_monitor() -> None:
    HealthMonitor(DatabaseManager(), interval=0)


def _alert_interval() -> None:
    monitor = PerformanceMonitor()
    try:
        monitor.set_alert_thresholds(error_rate=0.5, interval=0)
    finally:
        monitor.close()


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: retry(lambda: 1, attempts=0), errors.ConfigurationError, "attempts"),
        (lambda: PerformanceMonitor(window=0.5), errors.ConfigurationError, "window"),
        (_health_monitor, errors.ConfigurationError, "interval"),
        (_alert_interval, errors.ConfigurationError, "interval"),
        (
            lambda: AuditLog([], background=True, flush_interval=0),
            errors.ConfigurationError,
            "flush_interval",
        ),
        (
            lambda: AuditLog([], background=True, max_pending=0),
            errors.ConfigurationError,
            "max_pending",
        ),
        (
            lambda: TLSConfig(cert_file="/no/such/cert.pem"),
            errors.ConfigurationError,
            "cert_file and key_file go together",
        ),
        (lambda: TLSConfig(mode="sometimes"), errors.ConfigurationError, "mode"),
        (
            lambda: PoolConfig(url="sqlite://:memory:", tls={"ca_file": "/no/such/ca.pem"}),
            errors.ConfigurationError,
            "ca_file: no such file",
        ),
        (lambda: PostgresListener(DatabaseManager(), []), errors.InterfaceError, "channels"),
        (lambda: RedisChannelListener(DatabaseManager(), []), errors.InterfaceError, "channels"),
    ],
    ids=[
        "retry-attempts",
        "monitor-window",
        "health-interval",
        "alert-interval",
        "audit-flush-interval",
        "audit-max-pending",
        "tls-cert-without-key",
        "tls-mode",
        "pool-tls-ca-file",
        "postgres-listener-channels",
        "redis-listener-channels",
    ],
)
def test_a_bad_argument_raises_a_class_of_our_tree(call, error, text):
    with pytest.raises(error, match=text) as caught:
        call()
    assert isinstance(caught.value, errors.DBSystemError)


def test_settings_errors_stay_catchable_as_value_error(tmp_path):
    # ConfigurationError is also a ValueError: code written against the old ValueError works.
    with pytest.raises(ValueError, match="checkpoint_every"):
        JsonLinesAuditSink(tmp_path / "audit.jsonl", checkpoint_every=0)


def test_an_audit_field_of_an_unsupported_type_is_an_interface_error(tmp_path):
    sink = JsonLinesAuditSink(tmp_path / "audit.jsonl")
    event = AuditEvent(
        time="2024-01-01T00:00:00Z",
        user=uuid.uuid4(),  # type: ignore[arg-type]  # the mistake under test
        session=None,
        backend="sqlite",
        action="read",
        resources=("t",),
        fingerprint="f",
        outcome="ok",
    )
    with pytest.raises(errors.InterfaceError, match="cannot hold a UUID"):
        sink.write(event)
