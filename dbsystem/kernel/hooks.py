"""The interception point on the one execution path: statements and the hooks that see them.

Every statement a connection runs (raw SQL today; builders, the ORM, MongoDB and Redis
commands as they land) is described by a ``Statement`` and, when any hook is installed,
passed through the manager's ``HookChain``:

1. each hook's ``before_execute(statement)`` runs in order; raising refuses the statement
   (access control does this);
2. the statement runs, timed;
3. each hook's ``after_execute(statement)`` runs with ``duration``, ``rowcount`` and
   ``error`` filled in (audit and metrics read them). It also runs when a ``before`` hook
   refused the statement, with ``executed`` false.

With no hook installed the connection skips all of this after one tuple test, so the hot
path pays nothing for the mechanism (see ``benchmarks/bench_execute.py``).

``Statement.action`` and ``Statement.resources`` are derived lazily: a builder states them,
raw SQL is classified with sqlglot only when a hook first asks.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from functools import lru_cache
from time import perf_counter
from typing import Any, NamedTuple, NoReturn, TypeVar

__all__ = ["Description", "ExecutionHook", "HookChain", "Statement"]

T = TypeVar("T")

# Actions from least to most privileged; a statement that does several takes the highest.
_ACTION_RANK = {
    "unknown": -1,
    "transaction": 0,
    "select": 1,
    "insert": 2,
    "update": 3,
    "delete": 4,
    "ddl": 5,
    "multiple": 6,
}


class Statement:
    """One statement on its way through the execution path, as hooks see it.

    Attributes set before execution: ``backend`` (``"sqlite"``, ``"postgresql"``...),
    ``pool`` (the pool's name), ``operation`` (the API call: ``execute``, ``fetch_all``,
    ``begin``...), ``text`` and ``params``. After execution: ``duration`` (seconds),
    ``rowcount`` (rows affected or returned, ``-1`` if unknown), ``error`` (the exception,
    or ``None``) and ``executed``. ``context`` is the user session's (``db.for_user``):
    user, session id and attributes, or None for the application's own access. ``raw`` is
    true for SQL text given by the caller (``execute``, ``fetch_*``, ``stream``,
    ``raw_sql``), false for what a builder, the ORM, Redis or MongoDB stated.
    """

    __slots__ = (
        "_accesses",
        "_action",
        "_resources",
        "backend",
        "context",
        "dialect",
        "duration",
        "error",
        "executed",
        "operation",
        "params",
        "pool",
        "raw",
        "rowcount",
        "text",
    )

    def __init__(
        self,
        backend: str,
        dialect: str,
        pool: str,
        operation: str,
        text: str,
        params: Any = None,
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
        context: Any = None,
        accesses: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        self._accesses = accesses
        self.backend = backend
        self.context = context
        self.dialect = dialect
        self.pool = pool
        self.operation = operation
        self.text = text
        self.params = params
        self._action = action
        self._resources = resources
        self.raw = action is None and accesses is None
        self.duration: float | None = None
        self.rowcount = -1
        self.error: BaseException | None = None
        self.executed = False

    @property
    def action(self) -> str:
        """What the statement does: select, insert, update, delete, ddl, transaction, other.

        ``multiple`` when the text holds several statements, ``unknown`` when it cannot be
        parsed. A statement that writes anywhere (a ``DELETE`` inside a CTE, say) takes the
        most privileged action it contains.
        """
        if self._action is None:
            self._action, self._resources = classify_sql(self.text, self.dialect)
        return self._action

    @property
    def resources(self) -> tuple[str, ...]:
        """The tables (or collections, or key prefixes) the statement touches."""
        if self._resources is None:
            self._action, self._resources = classify_sql(self.text, self.dialect)
        return self._resources

    @property
    def accesses(self) -> tuple[tuple[str, str], ...] | None:
        """Every (action, resource) the statement needs; None if it cannot be classified.

        Builders, Redis and MongoDB state their action and resources; raw SQL is read with
        sqlglot, statement by statement (``classify_accesses``).
        """
        if self._accesses is not None:  # several commands, each with its own action
            return self._accesses
        if self._action is not None and self._resources is not None:
            if self._action == "transaction":
                return ()
            return tuple((self._action, resource) for resource in self._resources)
        return classify_accesses(self.text, self.dialect)

    @property
    def outcome(self) -> str:
        """``ok``, ``error`` (it ran and failed), ``refused`` (a hook stopped it) or ``pending``."""
        if self.error is not None:
            return "error" if self.executed else "refused"
        return "ok" if self.executed else "pending"

    def __repr__(self) -> str:
        return (
            f"Statement(backend={self.backend!r}, operation={self.operation!r}, "
            f"text={self.text[:80]!r}, outcome={self.outcome!r})"
        )


class Description(NamedTuple):
    """What a driver operation touches, as a backend describes it to the engine, which
    makes the ``Statement`` from it (``dbsystem.core.execution``)."""

    text: str
    action: str
    resources: tuple[str, ...]
    accesses: tuple[tuple[str, str], ...] | None = None


class _PolicedMark:
    """One statement whose row policies the library applied: its text and parameters."""

    __slots__ = ("left", "params", "text")

    def __init__(self, text: str | None, params: Any) -> None:
        self.text = text
        self.params = params
        self.left = 1


# A context variable, not a thread-local: an asyncio task awaiting inside the block must
# not lend the mark to the tasks that run meanwhile on the same thread.
_POLICED: ContextVar[_PolicedMark | None] = ContextVar("dbsystem_policed", default=None)


@contextmanager
def _policed_for(text: str | None, params: Any = None) -> Iterator[None]:
    """The library's own: the one statement the block runs next, with ``text`` (None: any
    text, for MongoDB operations) and this very ``params`` object, had its row policies
    applied by the builder that runs it. Not exported: a mark a session could set would
    skip its row policies. The mark is used up by that statement, never covers raw SQL,
    and another text or parameter object gets nothing from it."""
    token = _POLICED.set(_PolicedMark(text, params))
    try:
        yield
    finally:
        _POLICED.reset(token)


def _is_policed(statement: Statement) -> bool:
    """True for the statement a ``_policed_for`` block marked (once): a built statement
    (never raw SQL) with the marked text and parameter object."""
    mark = _POLICED.get()
    if mark is None or mark.left <= 0 or statement.raw:
        return False
    if mark.text is not None and (
        mark.text != statement.text or mark.params is not statement.params
    ):
        return False
    mark.left -= 1
    return True


class ExecutionHook:
    """Base class for hooks: override any method. All run on the calling thread.

    ``before_execute`` and ``after_execute`` see every statement. ``restrict`` is the
    extension point for builders of a user session (row policies): a builder hands itself
    to the chain before it compiles, and gets back the builder to run instead.
    """

    def before_execute(self, statement: Statement) -> None:
        """Called before the statement runs; raise to refuse it."""

    def after_execute(self, statement: Statement) -> None:
        """Called after the statement ran, failed, or was refused."""

    def after_wait(self, pool: str, waited: float) -> None:
        """Called when an acquire from the SQL pool named ``pool`` did not find an idle
        connection and waited ``waited`` seconds (for another caller's, or for a connect),
        on the borrower's thread or task, before its statements run (tracing uses it)."""

    def restrict(self, query: Any, conn: Any) -> tuple[Any, bool]:
        """The builder ``query`` as ``conn``'s user may run it, and whether it changed.

        Called only for connections lent to a user session. Raise ``PermissionDenied`` to
        refuse it (the builder reports the refusal through ``HookChain.refuse``).
        """
        return query, False

    def lease_limit(self, context: Any) -> int | None:
        """How many connections of one pool the session ``context``'s user may hold at
        once (None: no limit from this hook). Asked when a user session borrows one."""
        return None


class HookChain:
    """An ordered, thread-safe set of hooks, shared by every pool of a manager.

    ``hooks`` is a tuple replaced (never mutated) on change, so the hot path reads it
    without a lock and a concurrent ``add`` never disturbs a statement in flight.
    """

    __slots__ = ("_after", "_before", "_lock", "_wait", "hooks")

    def __init__(self) -> None:
        self.hooks: tuple[ExecutionHook, ...] = ()
        # The bound methods of the hooks that override them: a hook with only an
        # after_execute (a monitor) costs no before call. Swapped with ``hooks``.
        self._before: tuple[Callable[[Statement], None], ...] = ()
        self._after: tuple[Callable[[Statement], None], ...] = ()
        self._wait: tuple[Callable[[str, float], None], ...] = ()
        self._lock = threading.Lock()

    def add(self, hook: ExecutionHook) -> ExecutionHook:
        """Install ``hook`` at the end of the chain and return it."""
        with self._lock:
            self._set((*self.hooks, hook))
        return hook

    def remove(self, hook: ExecutionHook) -> None:
        """Uninstall ``hook``; unknown hooks are ignored."""
        with self._lock:
            self._set(tuple(h for h in self.hooks if h is not hook))

    def _set(self, hooks: tuple[ExecutionHook, ...]) -> None:
        self._before = tuple(
            h.before_execute
            for h in hooks
            if getattr(type(h), "before_execute", None) is not ExecutionHook.before_execute
        )
        self._after = tuple(
            h.after_execute
            for h in hooks
            if getattr(type(h), "after_execute", None) is not ExecutionHook.after_execute
        )
        self._wait = tuple(
            h.after_wait
            for h in hooks
            if getattr(type(h), "after_wait", None) not in (None, ExecutionHook.after_wait)
        )
        self.hooks = hooks

    def __iter__(self) -> Iterator[ExecutionHook]:
        return iter(self.hooks)

    def __len__(self) -> int:
        return len(self.hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def lease_limit(self, context: Any) -> int | None:
        """The smallest ``lease_limit`` any hook gives ``context`` (None: no limit)."""
        limit: int | None = None
        for hook in self.hooks:
            if type(hook).lease_limit is not ExecutionHook.lease_limit:
                found = hook.lease_limit(context)
                if found is not None and (limit is None or found < limit):
                    limit = found
        return limit

    def restrict(self, query: Any, conn: Any) -> tuple[Any, bool]:
        """``query`` passed through every hook's ``restrict`` (a user session's builders)."""
        applied = False
        for hook in self.hooks:
            if type(hook).restrict is not ExecutionHook.restrict:
                query, changed = hook.restrict(query, conn)
                applied = applied or changed
        return query, applied

    def refuse(self, statement: Statement, error: BaseException) -> NoReturn:
        """Report ``statement`` as refused before it ran (``executed`` false), as a hook's
        refusal is reported, then raise ``error``: for checks made outside the hooks, such
        as a row policy's, so that the audit log and the metrics still see the statement."""
        statement.error = error
        for hook in self._after:
            hook(statement)
        raise error

    def run(self, statement: Statement, call: Callable[[], T]) -> T:
        """Run ``call`` for ``statement`` through every hook, timing it.

        The hot path of every hooked statement: the ``before`` loop and the report are
        inlined here (``arun``, awaited anyway, shares them as helpers).
        """
        after = self._after
        try:
            for before in self._before:
                before(statement)
        except BaseException as exc:
            statement.error = exc
            for hook in after:
                hook(statement)
            raise
        start = perf_counter()
        try:
            result = call()
        except BaseException as exc:
            _report(statement, after, perf_counter() - start, exc)
            raise
        statement.duration = perf_counter() - start
        statement.executed = True
        statement.rowcount = _rowcount(result)
        for hook in after:
            hook(statement)
        return result

    async def arun(self, statement: Statement, call: Callable[[], Awaitable[T]]) -> T:
        """``run`` for a coroutine (``AsyncConnection``): the same hooks, called the same way."""
        after = self._after
        self._check(statement, after)
        start = perf_counter()
        try:
            result = await call()
        except BaseException as exc:
            _report(statement, after, perf_counter() - start, exc)
            raise
        _report(statement, after, perf_counter() - start, None, result)
        return result

    def _check(self, statement: Statement, after: tuple[Callable[[Statement], None], ...]) -> None:
        """The ``before`` hooks of ``run`` and ``arun``: a refusal is reported to the
        ``after`` hooks (the statement not executed), then raised."""
        try:
            for before in self._before:
                before(statement)
        except BaseException as exc:
            statement.error = exc
            for hook in after:
                hook(statement)
            raise

    def run_stream(self, statement: Statement, rows: Iterator[T]) -> Iterator[T]:
        """Like ``run`` for a stream: ``before`` hooks now, ``after`` hooks when it ends.

        The duration covers the whole iteration; ``rowcount`` is the rows the consumer took.
        A consumer that stops early ends the stream normally.
        """
        return _observe(self._watch(statement), rows)

    def arun_stream(self, statement: Statement, rows: AsyncGenerator[T, None]) -> AsyncIterator[T]:
        """``run_stream`` for an async iterator (``AsyncConnection.stream``, async SCAN):
        ``before`` hooks now, ``after`` hooks when the iteration ends."""
        return _aobserve(self._watch(statement), rows)

    def _watch(self, statement: Statement) -> _StreamWatch:
        hooks = self.hooks
        try:
            for hook in hooks:
                hook.before_execute(statement)
        except BaseException as exc:
            statement.error = exc
            for hook in hooks:
                hook.after_execute(statement)
            raise
        return _StreamWatch(statement, hooks)


class _StreamWatch:
    """A stream's statement while it is read: counts the rows, and when the ``with`` block
    around the reading ends, fills in the statement and runs the ``after`` hooks."""

    __slots__ = ("count", "hooks", "start", "statement")

    def __init__(self, statement: Statement, hooks: tuple[ExecutionHook, ...]) -> None:
        self.statement = statement
        self.hooks = hooks
        self.count = 0
        self.start = perf_counter()

    def __enter__(self) -> _StreamWatch:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        statement = self.statement
        if exc is not None and not isinstance(exc, GeneratorExit):  # not: stopped early
            statement.error = exc
        statement.duration = perf_counter() - self.start
        statement.executed = True
        statement.rowcount = self.count
        for hook in self.hooks:
            hook.after_execute(statement)


def _observe(watch: _StreamWatch, rows: Iterator[T]) -> Iterator[T]:
    with watch:
        for row in rows:
            watch.count += 1
            yield row


async def _aobserve(watch: _StreamWatch, rows: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    # (Closed explicitly: an async generator left to the garbage collector closes late.)
    with watch:
        async with aclosing(rows):
            async for row in rows:
                watch.count += 1
                yield row


def _report(
    statement: Statement,
    after: tuple[Callable[[Statement], None], ...],
    duration: float,
    error: BaseException | None,
    result: object = None,
) -> None:
    """Fill in how ``statement`` went (``error``, or ``result``'s row count), then run the
    ``after`` hooks: the end of ``run`` and ``arun``."""
    statement.duration = duration
    statement.executed = True
    if error is None:
        statement.rowcount = _rowcount(result)
    else:
        statement.error = error
    for hook in after:
        hook(statement)


def _rowcount(result: object) -> int:
    if isinstance(result, int) and not isinstance(result, bool):
        return int(result)
    if isinstance(result, list):
        return len(result)
    if isinstance(result, Mapping):
        return 1
    if result is None:
        return 0
    return -1


_SQLGLOT_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}


@lru_cache(maxsize=1024)
def classify_sql(text: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """Classify raw SQL with sqlglot: (action, tables), cached by text.

    Every statement of a multi-statement string is read, CTEs and subqueries included; CTE
    names are not reported as tables. Text sqlglot cannot parse gives ``("unknown", ())``.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        trees = [t for t in sqlglot.parse(text, read=_SQLGLOT_DIALECTS.get(dialect)) if t]
    except SqlglotError:
        return "unknown", ()
    if not trees:
        return "unknown", ()
    kinds: list[tuple[type[exp.Expression], str]] = [
        (exp.Create, "ddl"),
        (exp.Drop, "ddl"),
        (exp.Alter, "ddl"),
        (exp.TruncateTable, "ddl"),
        (exp.Delete, "delete"),
        (exp.Update, "update"),
        (exp.Merge, "update"),
        (exp.Insert, "insert"),
        (exp.Select, "select"),
        (exp.Transaction, "transaction"),
        (exp.Commit, "transaction"),
        (exp.Rollback, "transaction"),
    ]
    actions: list[str] = []
    tables: dict[str, None] = {}
    for tree in trees:
        found = "unknown"
        for kind, action in kinds:
            if isinstance(tree, kind) or tree.find(kind) is not None:
                if _ACTION_RANK[action] > _ACTION_RANK[found]:
                    found = action
        actions.append(found)
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name
            if name and name not in ctes:
                qualified = f"{table.db}.{name}" if table.db else name
                tables.setdefault(qualified, None)
    action = actions[0] if len(actions) == 1 else "multiple"
    return action, tuple(tables)


_WRITES: tuple[tuple[str, str], ...] = (
    ("Delete", "delete"),
    ("Update", "update"),
    ("Merge", "update"),
    ("Insert", "insert"),
    ("Create", "ddl"),
    ("Drop", "ddl"),
    ("Alter", "ddl"),
    ("TruncateTable", "ddl"),
)


@lru_cache(maxsize=1024)
def classify_accesses(text: str, dialect: str) -> tuple[tuple[str, str], ...] | None:
    """Every (action, table) a SQL text needs, statement by statement; None if unparseable.

    The target of each write (INSERT, UPDATE, DELETE, MERGE, DDL), wherever it sits (a
    data-modifying CTE included), needs that action; every other table it names (joins,
    subqueries, sources of INSERT ... SELECT) needs ``select``. CTE names are not tables.
    Transaction control needs nothing.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        trees = [t for t in sqlglot.parse(text, read=_SQLGLOT_DIALECTS.get(dialect)) if t]
    except SqlglotError:
        return None
    if not trees:
        return None
    accesses: dict[tuple[str, str], None] = {}
    for tree in trees:
        if isinstance(tree, (exp.Transaction, exp.Commit, exp.Rollback)):
            continue
        if isinstance(tree, exp.Command):  # sqlglot could not read it: refuse
            return None
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        targets: set[int] = set()
        for kind_name, action in _WRITES:
            kind = getattr(exp, kind_name)
            for node in tree.find_all(kind):  # (find_all includes the tree itself)
                for target in _targets(node, exp):
                    targets.add(id(target))
                    accesses.setdefault((action, _qualified(target)), None)
        for table in tree.find_all(exp.Table):
            if id(table) in targets or not table.name or table.name in ctes:
                continue
            accesses.setdefault(("select", _qualified(table)), None)
    return tuple(accesses)


def _targets(node: Any, exp: Any) -> list[Any]:
    """The tables a write or DDL node changes (its ``this``; DROP's and TRUNCATE's lists)."""
    candidates = [node.this, *(node.args.get("tables") or [])]
    if isinstance(node, exp.TruncateTable):
        candidates += node.expressions
    found = []
    for candidate in candidates:
        if isinstance(candidate, exp.Schema):
            candidate = candidate.this
        if isinstance(candidate, exp.Table) and candidate.name:
            found.append(candidate)
    return found


def _qualified(table: Any) -> str:
    return f"{table.db}.{table.name}" if table.db else str(table.name)
