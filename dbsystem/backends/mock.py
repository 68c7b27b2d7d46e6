"""The mock SQL backend (``mock://DIALECT``): how users unit-test code that uses dbsystem.

A pool of any SQL type accepts a ``mock://`` URL, so the code under test keeps its types::

    db.create_pool(DatabaseType.POSTGRES, PoolConfig(url="mock://postgresql"))
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("SELECT ... FROM users ...").returns([{"id": 1, "name": "ada"}])
    mock.expect("DELETE FROM users ...").raises(IntegrityError("still referenced"))
    mock.expect("UPDATE users ...").affects(3).delay(0.05)

    code_under_test(db)

    mock.assert_executed("SELECT ... FROM users ...", params={"id": 1})
    mock.assert_expectations_met()
    mock.clear()                  # forget expectations and calls between tests

Patterns match the whole statement, case- and whitespace-insensitively, with ``...``
standing for any text; a compiled ``re.Pattern`` is searched instead. The first expectation
that matches (and has uses left) answers. It records every statement with its parameters,
transaction statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) included.

It emulates no SQL: a statement no expectation matches raises ``NotSupportedError`` rather
than pretending to succeed (``mock://postgresql?strict=false`` answers such statements with
no rows and a row count of 0 instead).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbsystem.backends.base import Backend, Capabilities, StandardSQLConnection
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    DBSystemError,
    NotSupportedError,
)
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import ExecuteResult, Row
from dbsystem.kernel.url import DatabaseURL

__all__ = ["Expectation", "MockBackend", "MockCall", "MockConnection"]

_DIALECTS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_WS = re.compile(r"\s+")


def _normalize(sql: str) -> str:
    return _WS.sub(" ", sql).strip().rstrip(";").strip().casefold()


def _compile_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    parts = [re.escape(part) for part in _normalize(pattern).split("...")]
    return re.compile(".*?".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class MockCall:
    """One statement the mock received."""

    sql: str
    params: Any
    operation: str
    """The connection method: execute, executemany, fetch_all, fetch_one, stream, transaction."""
    at: float = field(default_factory=time.monotonic)


class Expectation:
    """A scripted answer to matching statements; configure it with the chainable methods."""

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        params: Mapping[str, Any] | None = None,
        times: int | None = None,
    ) -> None:
        self.pattern = pattern
        self._regex = _compile_pattern(pattern)
        self._is_regex = isinstance(pattern, re.Pattern)
        self.params = dict(params) if params is not None else None
        self.times = times
        self.calls = 0
        self._rows: list[Row] = []
        self._rowcount: int | None = None
        self._lastrowid: int | None = None
        self._error: BaseException | type[BaseException] | None = None
        self._delay = 0.0

    def returns(self, rows: Sequence[Mapping[str, Any]]) -> Expectation:
        """Answer queries with these rows (copied on every call)."""
        self._rows = [dict(row) for row in rows]
        return self

    def affects(self, rowcount: int, lastrowid: int | None = None) -> Expectation:
        """Answer ``execute`` with this row count (and ``lastrowid``)."""
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        return self

    def raises(self, error: BaseException | type[BaseException]) -> Expectation:
        """Raise this error (an instance, or a class called with a message) instead."""
        self._error = error
        return self

    def delay(self, seconds: float) -> Expectation:
        """Sleep this long before answering (to test timeouts and slow paths)."""
        self._delay = seconds
        return self

    @property
    def exhausted(self) -> bool:
        """True once a ``times``-limited expectation was used up."""
        return self.times is not None and self.calls >= self.times

    def matches(self, sql: str, params: Any) -> bool:
        """True if this expectation answers ``sql`` with ``params``."""
        if self.exhausted:
            return False
        if self._is_regex:
            if not self._regex.search(sql):
                return False
        elif not self._regex.fullmatch(_normalize(sql)):
            return False
        return self.params is None or (params is not None and dict(params) == self.params)

    def _answer(self, dialect: str) -> tuple[list[Row], int, int | None]:
        if self._delay:
            time.sleep(self._delay)
        error = self._error
        if error is not None:
            if isinstance(error, type):
                if issubclass(error, DBSystemError):
                    raise error(f"mock error for {self.pattern!r}", backend=f"mock:{dialect}")
                raise error(f"mock error for {self.pattern!r}")
            raise error
        rows = copy.deepcopy(self._rows)
        rowcount = self._rowcount if self._rowcount is not None else len(rows)
        return rows, rowcount, self._lastrowid

    def __repr__(self) -> str:
        return f"<Expectation {self.pattern!r} calls={self.calls}>"


class MockConnection(StandardSQLConnection):
    """A connection of the mock backend: every call is recorded and answered by the backend."""

    backend_name = "mock"

    def __init__(self, backend: MockBackend) -> None:
        super().__init__()
        self._backend = backend
        self._open = True
        self._in_tx = False

    def _call(self, operation: str, sql: str, params: Any) -> tuple[list[Row], int, int | None]:
        if not self._open:
            raise ConnectionFailed("mock connection is closed", backend=self._backend.label)
        return self._backend._handle(operation, sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        _, rowcount, lastrowid = self._call("execute", sql, params)
        return ExecuteResult(rowcount, lastrowid)

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        total = 0
        for params in seq_params:
            total += self._call("executemany", sql, params)[1]
        return ExecuteResult(total, None)

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        return self._call("fetch_all", sql, params)[0]

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        rows = self._call("fetch_one", sql, params)[0]
        return rows[0] if rows else None

    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        yield from self._call("stream", sql, params)[0]

    def _reset_session(self) -> None:
        """A scripted connection has no server session to reset."""

    def _run(self, sql: str) -> None:
        if not self._open:
            raise ConnectionFailed("mock connection is closed", backend=self._backend.label)
        self._backend._record(MockCall(sql, None, "transaction"))

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        words = ["BEGIN"]
        if isolation:
            words.append(f"ISOLATION LEVEL {isolation.upper()}")
        if readonly:
            words.append("READ ONLY")
        self._run(" ".join(words))
        self._in_tx = True

    def _commit(self) -> None:
        super()._commit()
        self._in_tx = False

    def _rollback(self) -> None:
        self._run("ROLLBACK")
        self._in_tx = False

    def _rollback_to_savepoint(self, name: str) -> None:
        # Recorded as the statement alone: tests assert the sequence users wrote.
        self._run(f"ROLLBACK TO SAVEPOINT {name}")

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def ping(self) -> None:
        if not self._open:
            raise ConnectionFailed("mock connection is closed", backend=self._backend.label)
        self._backend._check_connect()

    def close(self) -> None:
        self._open = False


class MockBackend(Backend):
    """Records statements and answers them from expectations; see the module docstring."""

    name = "mock"

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        dialect = _DIALECTS.get((url.host or "sqlite").lower())
        if dialect is None:
            raise ConfigurationError(
                f"mock://{url.host}: the host names the SQL dialect to mock; use one of "
                f"{', '.join(sorted(set(_DIALECTS)))}"
            )
        self.dialect = dialect
        strict = config.options.get("strict", "true").lower()
        if strict not in ("true", "false", "1", "0"):
            raise ConfigurationError("mock option strict must be true or false")
        self.strict = strict in ("true", "1")
        self._lock = threading.Lock()
        self._expectations: list[Expectation] = []
        self._calls: list[MockCall] = []
        self._connect_error: BaseException | None = None
        self.connections_opened = 0

    @property
    def label(self) -> str:
        """``mock:postgresql``: the name errors carry."""
        return f"mock:{self.dialect}"

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return Capabilities(returning=self.dialect != "mysql")

    # -- scripting -------------------------------------------------------------------------

    def expect(
        self,
        pattern: str | re.Pattern[str],
        *,
        params: Mapping[str, Any] | None = None,
        times: int | None = None,
    ) -> Expectation:
        """Add an expectation for statements matching ``pattern`` (and ``params``, if given)."""
        expectation = Expectation(pattern, params, times)
        with self._lock:
            self._expectations.append(expectation)
        return expectation

    def fail_connections(self, error: BaseException | None = None) -> None:
        """Make new connections and pings fail with ``error`` (a ConnectionFailed by default)."""
        self._connect_error = error or ConnectionFailed(
            "mock server unavailable", backend=self.label
        )

    def allow_connections(self) -> None:
        """Undo ``fail_connections``."""
        self._connect_error = None

    def clear(self) -> None:
        """Forget every expectation and recorded call."""
        with self._lock:
            self._expectations.clear()
            self._calls.clear()

    # -- inspection ------------------------------------------------------------------------

    @property
    def calls(self) -> list[MockCall]:
        """Every statement received, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    @property
    def statements(self) -> list[str]:
        """The SQL text of every statement received, oldest first."""
        return [call.sql for call in self.calls]

    def calls_matching(
        self, pattern: str | re.Pattern[str], params: Mapping[str, Any] | None = None
    ) -> list[MockCall]:
        """The recorded calls whose statement (and params, if given) match ``pattern``."""
        probe = Expectation(pattern, params)
        return [call for call in self.calls if probe.matches(call.sql, call.params)]

    def assert_executed(
        self,
        pattern: str | re.Pattern[str],
        *,
        params: Mapping[str, Any] | None = None,
        times: int | None = None,
    ) -> None:
        """Fail (AssertionError) unless a matching statement ran (exactly ``times`` times)."""
        found = len(self.calls_matching(pattern, params))
        if (times is None and found == 0) or (times is not None and found != times):
            wanted = "at least once" if times is None else f"{times} time(s)"
            history = "\n  ".join(self.statements[-20:]) or "(none)"
            raise AssertionError(
                f"expected {pattern!r}"
                + (f" with params {dict(params)!r}" if params is not None else "")
                + f" to run {wanted}, it ran {found} time(s); last statements:\n  {history}"
            )

    def assert_not_executed(self, pattern: str | re.Pattern[str]) -> None:
        """Fail (AssertionError) if a statement matching ``pattern`` ran."""
        found = self.calls_matching(pattern)
        if found:
            raise AssertionError(f"{pattern!r} ran {len(found)} time(s): {found[0].sql!r}")

    def assert_expectations_met(self) -> None:
        """Fail unless every expectation was used (exactly ``times`` times, if given)."""
        with self._lock:
            unmet = [
                e
                for e in self._expectations
                if e.calls == 0 or (e.times is not None and e.calls != e.times)
            ]
        if unmet:
            raise AssertionError(f"expectations not met: {unmet}")

    # -- backend ---------------------------------------------------------------------------

    def _check_connect(self) -> None:
        error = self._connect_error
        if error is not None:
            raise error

    def connect(self) -> MockConnection:
        self._check_connect()
        with self._lock:
            self.connections_opened += 1
        return MockConnection(self)

    def _record(self, call: MockCall) -> None:
        with self._lock:
            self._calls.append(call)

    def _handle(self, operation: str, sql: str, params: Any) -> tuple[list[Row], int, int | None]:
        with self._lock:
            self._calls.append(MockCall(sql, dict(params) if params else params, operation))
            for expectation in self._expectations:
                if expectation.matches(sql, params):
                    expectation.calls += 1
                    break
            else:
                expectation = None
        if expectation is None:
            if self.strict:
                raise NotSupportedError(
                    f"no expectation matches {sql!r}; script it with "
                    "mock.expect(...) (the mock emulates no SQL)",
                    backend=self.label,
                )
            return [], 0, None
        return expectation._answer(self.dialect)
