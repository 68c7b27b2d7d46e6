"""Role-based access control, checked on every statement of a user-bound session.

    acl = AccessControl.instance()
    acl.create_role(Role("read_only", grants={"*": Permission.SELECT}))
    acl.create_role(Role("editor", grants={"articles": Permission.SELECT | Permission.UPDATE},
                         inherits=["read_only"]))
    acl.assign_role("analyst", "read_only")
    session = db.for_user("analyst", session_id="s-42")
    session.query(DatabaseType.POSTGRES).select("*").from_("users").execute()   # allowed
    session.query(DatabaseType.POSTGRES).delete_from("users").all_rows().execute()
    # -> PermissionDenied

Deny by default: a statement runs only if every (action, resource) it needs is granted to
one of the user's roles (directly or through inherited roles). Resources are table or
collection names or Redis keys, and grants name them with glob patterns: ``"*"``,
``"orders"``, ``"user:*"`` (a Redis key prefix). The check is an ``ExecutionHook`` on the
one execution path, so builders, raw SQL, the ORM, Redis commands and MongoDB operations
all pass through it. A session's SQL is decided from the final text the driver gets, by
one checker (``dbsystem.security._sqlcheck``): statement kinds and functions on
allow-lists, every table with its real action; what it cannot read is denied. A change to
roles or assignments applies atomically to every check that starts after it.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbsystem.errors import ConfigurationError, PermissionDenied
from dbsystem.kernel._singleton import ProcessWide
from dbsystem.kernel.hooks import ExecutionHook, Statement, _is_policed
from dbsystem.query.expr import check_identifier
from dbsystem.security._sqlcheck import (
    CACHED_TEXT,
    SQL_DIALECTS,
    allowed_functions,
    analyse,
    function_keys,
    normalise,
    readable,
)

__all__ = ["AccessControl", "Permission", "Role"]


class Permission(enum.Flag):
    """What a grant allows on a resource."""

    NONE = 0
    SELECT = enum.auto()
    INSERT = enum.auto()
    UPDATE = enum.auto()
    DELETE = enum.auto()
    DDL = enum.auto()
    EXECUTE = enum.auto()
    ADMIN = enum.auto()
    #: SQL text given by the caller (``execute``, ``fetch_*``, ``raw_sql``) rather than built:
    #: needed, besides the statement's own permissions, under ``raw_needs_grant=True``.
    RAW = enum.auto()
    ALL = SELECT | INSERT | UPDATE | DELETE | DDL | EXECUTE | ADMIN | RAW

    @classmethod
    def parse(cls, value: Permission | str | Iterable[str]) -> Permission:
        """From a member, ``"SELECT|INSERT"``, or a list of names."""
        if isinstance(value, Permission):
            return value
        names = value.replace("|", ",").split(",") if isinstance(value, str) else list(value)
        result = cls.NONE
        for name in names:
            name = name.strip().upper()
            if not name:
                continue
            try:
                result |= cls[name]
            except KeyError:
                raise ConfigurationError(f"unknown permission {name!r}") from None
        return result


# A statement's action -> the permission it needs.
_NEEDS = {
    "select": Permission.SELECT,
    "insert": Permission.INSERT,
    "update": Permission.UPDATE,
    "delete": Permission.DELETE,
    "ddl": Permission.DDL,
    "raw": Permission.RAW,
    "execute": Permission.EXECUTE,  # scripts (Redis EVAL, FCALL)
    "admin": Permission.ADMIN,  # server administration (Redis INFO, SAVE, CONFIG...)
}
# An access no grant allows: its resource says what was refused (a Redis command that
# changes the pooled connection, a command or MongoDB operator no table knows).
_REFUSED = "refused"
# Statements that need no grant at all (transaction control, Redis PING).
_FREE = ("transaction", "connection")
_GLOB = frozenset("*?[\\")


def _covers(pattern: str, resource: str) -> bool:
    """Whether the grant ``pattern`` covers ``resource``.

    A plain name matches the pattern as a glob. A resource that is itself a pattern (a
    Redis ``PSUBSCRIBE`` or ``SCAN ... MATCH`` pattern, ``SORT ... GET other:*``: every
    key or channel it can name) is covered only by the same pattern, ``"*"``, or a
    ``prefix*`` grant whose plain prefix the resource starts with (``user:*`` covers
    ``user:1:*``, never ``*`` or ``u*``).
    """
    if not _GLOB.intersection(resource):
        return fnmatch.fnmatchcase(resource, pattern)
    if pattern in ("*", resource):
        return True
    prefix = pattern[:-1]
    return (
        pattern.endswith("*")
        and not _GLOB.intersection(prefix)
        and (resource.startswith(prefix) and not _GLOB.intersection(resource[: len(prefix)]))
    )


@dataclass(frozen=True)
class Role:
    """A named set of grants (resource pattern -> permissions), and roles it inherits.

    ``policies`` maps a granted pattern to a row predicate (``dbsystem.security.policies``):
    an expression such as ``col("deleted_at").is_null()``, or a function of the session
    context returning one (``lambda ctx: col("tenant_id") == ctx.attrs["tenant"]``).
    Policies are code: ``save``/``to_dict`` keep grants and inheritance, not policies.

    ``max_connections`` caps how many connections of one pool a user holding the role may
    hold at once (the smallest cap among the user's roles, inherited ones included,
    applies); a session asking for more waits for one of its own, never for the pool.
    ``functions`` names SQL functions the role may call besides the dialect's allow-list
    (``Role("etl", grants=..., functions={"my_fn"})``; see docs/SECURITY.md).
    """

    name: str
    grants: Mapping[str, Permission] = field(default_factory=dict)
    inherits: tuple[str, ...] = ()
    policies: Mapping[str, Any] = field(default_factory=dict)
    max_connections: int | None = None
    #: Functions this role may call in SQL beyond the dialect's allow-list (names, any case).
    functions: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "functions", frozenset(f.lower() for f in self.functions))
        object.__setattr__(
            self, "grants", {k: Permission.parse(v) for k, v in dict(self.grants).items()}
        )
        object.__setattr__(self, "inherits", tuple(self.inherits))
        object.__setattr__(self, "policies", dict(self.policies))
        cap = self.max_connections
        if cap is not None and (type(cap) is not int or cap < 1):
            raise ConfigurationError(
                f"role {self.name!r}: max_connections must be a positive int, not {cap!r}"
            )
        for pattern in self.policies:
            if pattern not in self.grants:
                raise ConfigurationError(
                    f"role {self.name!r}: a policy on {pattern!r}, which it does not grant"
                )


class AccessControl(ProcessWide, ExecutionHook):
    """Roles, user assignments, and the check of every statement that carries a user.

    Installed on a manager by ``db.for_user(...)`` (or ``db.use_access_control(acl)``).
    Statements without a user (the application's own access) pass, unless
    ``require_user`` is set, which makes them an error too.

    Raw SQL of a session is read with sqlglot and needs what it does, like a built
    statement. ``raw_needs_grant=True`` also makes it need ``Permission.RAW`` on every
    table it touches (``"*"`` for none), so sessions can be held to the builders and the
    ORM, which carry row policies: the escape hatch is denied by default.

    ``AccessControl.instance()`` is the process-wide one.
    """

    def __init__(
        self,
        *,
        require_user: bool = False,
        raw_needs_grant: bool = False,
        max_sql_length: int = 64 * 1024,
    ) -> None:
        self.require_user = require_user
        self.raw_needs_grant = raw_needs_grant
        #: The longest raw SQL text (characters) a user session may send; refused before
        #: it is parsed.
        self.max_sql_length = max_sql_length
        self._lock = threading.Lock()
        # Roles, assignments and every cache derived from them, replaced whole on any
        # change: a check reads it once, so a decision is never cached from one version
        # and read under another (a revoke cannot leave an allow behind).
        self._state = _State({}, {})

    @property
    def _roles(self) -> dict[str, Role]:
        return self._state.roles

    @property
    def _assignments(self) -> dict[str, frozenset[str]]:
        return self._state.assignments

    def _swap(self, roles: dict[str, Role], assignments: dict[str, frozenset[str]]) -> None:
        self._state = _State(roles, assignments)  # (under self._lock)

    # -- administration -------------------------------------------------------------------

    def create_role(self, role: Role) -> Role:
        """Add or replace a role; a role that would inherit itself is a ``ConfigurationError``."""
        with self._lock:
            roles = {**self._state.roles, role.name: role}
            _check_no_cycle(roles, role.name)
            self._swap(roles, self._state.assignments)
        return role

    def drop_role(self, name: str) -> None:
        """Remove a role (and its assignments)."""
        with self._lock:
            roles = {k: v for k, v in self._state.roles.items() if k != name}
            assignments = {u: r - {name} for u, r in self._state.assignments.items()}
            self._swap(roles, assignments)

    def assign_role(self, user: str, role: str) -> None:
        """Give ``user`` the role ``role``."""
        with self._lock:
            if role not in self._state.roles:
                raise ConfigurationError(f"no role {role!r}")
            assignments = dict(self._state.assignments)
            assignments[user] = assignments.get(user, frozenset()) | {role}
            self._swap(self._state.roles, assignments)

    def revoke_role(self, user: str, role: str) -> None:
        """Take the role away; applies to every check that starts after this returns."""
        with self._lock:
            assignments = dict(self._state.assignments)
            assignments[user] = assignments.get(user, frozenset()) - {role}
            self._swap(self._state.roles, assignments)

    def lease_limit(self, context: Any) -> int | None:
        """The smallest ``max_connections`` among the roles of ``context``'s user, inherited
        ones included (None: no role caps it)."""
        limit: int | None = None
        state = self._state  # one version of the roles for the whole walk
        seen: set[str] = set()
        pending = list(state.assignments.get(context.user, ()))
        while pending:
            name = pending.pop()
            role = state.roles.get(name)
            if name in seen or role is None:
                continue
            seen.add(name)
            pending.extend(role.inherits)
            cap = role.max_connections
            if cap is not None and (limit is None or cap < limit):
                limit = cap
        return limit

    def roles_of(self, user: str) -> set[str]:
        """The roles assigned to ``user`` (not counting inherited ones)."""
        return set(self._state.assignments.get(user, ()))

    # -- checking -------------------------------------------------------------------------

    def allowed(self, user: str, action: str, resource: str) -> bool:
        """True if ``user`` may do ``action`` (select, insert...) on ``resource``."""
        return self._state.allowed(user, action, resource)

    def has_policies(self, user: str) -> bool:
        """True if any of the user's grants carries a row policy."""
        return self._state.has_policies(user)

    def policy_applies(self, user: str, action: str, resource: str) -> bool:
        """True if a row policy limits what ``user`` may ``action`` on ``resource``."""
        return self._state.policies(user, action, resource) is not None

    def row_filter(self, context: Any, action: str, resource: str) -> Any:
        """The row predicate for the session's ``action`` on ``resource`` (None: all rows)."""
        from dbsystem.security.policies import combine

        policies = self._state.policies(context.user, action, resource)
        if policies is None:
            return None
        predicates = []
        for policy in policies:
            if not callable(policy):
                predicates.append(policy)
                continue
            try:  # the application's code, on the session's attributes: fail closed
                predicates.append(policy(context))
            except Exception as exc:
                raise PermissionDenied(
                    f"the row policy on {resource!r} could not be evaluated for user "
                    f"{context.user!r} ({type(exc).__name__}: {exc}); is an attribute it "
                    "reads missing from db.for_user(..., attrs=...)?"
                ) from exc
        return combine(predicates)

    def check(self, user: str, statement: Statement) -> None:
        """Raise ``PermissionDenied`` unless every access the statement needs is granted.

        SQL is decided from its final text (``dbsystem.security._sqlcheck``), whoever wrote
        it; Redis and MongoDB operations from the accesses their backend states.
        """
        state = self._state  # one version of the grants for the whole check
        if statement.dialect in SQL_DIALECTS:
            if statement.raw:
                self._check_sql(state, user, statement, True)
                return
            if statement._action == "transaction":
                return  # BEGIN/COMMIT/SAVEPOINT the connection itself wrote
            if statement.operation != "insert_many":  # (its SQL is the driver's own)
                self._check_sql(state, user, statement, False)
                return
        accesses = statement.accesses
        if accesses is None:
            raise PermissionDenied(
                f"user {user!r}: the statement cannot be classified, so it is denied",
                backend=statement.backend,
            )
        if not accesses and statement.action not in _FREE:
            accesses = ((statement.action, "*"),)  # no named resource: needs a "*" grant
        for action, resource in accesses:
            if action == _REFUSED:
                raise PermissionDenied(
                    f"user {user!r} may not run {resource}: no grant allows it",
                    backend=statement.backend,
                )
            if not state.allowed(user, action, resource):
                raise PermissionDenied(
                    f"user {user!r} may not {action} on {resource!r}", backend=statement.backend
                )
        if state.has_policies(user) and not _is_policed(statement):
            for action, resource in accesses:
                if state.policies(user, action, resource) is not None:
                    raise PermissionDenied(
                        f"a row policy applies to {resource!r} for user {user!r}: use the "
                        "query builder or the ORM, which apply it (raw statements cannot)",
                        backend=statement.backend,
                    )

    def _check_sql(self, state: _State, user: str, statement: Statement, raw: bool) -> None:
        """The SQL check: one cached verdict per (user, dialect, raw, text) and version."""
        text = statement.text
        if raw and len(text) > self.max_sql_length:
            raise PermissionDenied(
                f"user {user!r}: raw SQL of {len(text)} characters is over the limit of "
                f"{self.max_sql_length} (AccessControl(max_sql_length=...))",
                backend=statement.backend,
            )
        key = (user, statement.dialect, raw, text)
        verdict = state.sql.get(key)
        if verdict is None:
            verdict = self._sql_verdict(state, user, statement.dialect, raw, text)
            if len(text) <= CACHED_TEXT:  # (bounded: at most 20,000 x 8 KiB)
                if len(state.sql) >= 20_000:
                    state.sql.clear()
                state.sql[key] = verdict
        if type(verdict) is str:
            raise PermissionDenied(verdict, backend=statement.backend)
        if not verdict:
            return
        if not _is_policed(statement):
            raise PermissionDenied(
                f"a row policy applies to {verdict[0]!r} for user {user!r}: use the query "
                "builder or the ORM, which apply it (raw statements cannot)",
                backend=statement.backend,
            )
        # The builder's restrict step applied the policies of the tables it knows about;
        # a policy table that reached the compiled text some other way did not get one.
        stated = {normalise(r, True, statement.dialect) for r in statement._resources or ()}
        for table in verdict:
            if table not in stated:
                raise PermissionDenied(
                    f"a row policy applies to {table!r} for user {user!r}, and the statement "
                    "reads it where the policy was not applied (an implicit table?)",
                    backend=statement.backend,
                )

    def _sql_verdict(
        self, state: _State, user: str, dialect: str, raw: bool, text: str
    ) -> str | tuple[str, ...]:
        """Why the statement is refused (a message), or the tables whose row policy the
        statement must have had applied (empty: allowed as it is)."""
        analysis = analyse(text, dialect)
        if analysis.refused is not None:
            return f"user {user!r} may not send {analysis.refused}"
        if analysis.transaction:
            return ()
        extra = analysis.functions - allowed_functions(dialect)
        if extra:
            extra -= function_keys(state.functions(user), dialect)
            if extra:
                names = ", ".join(sorted(f"{readable(name)}()" for name in extra))
                return (
                    f"user {user!r} may not call {names}: not on the {dialect} function "
                    "allow-list nor in any of the user's Role(functions=...)"
                )
        accesses = analysis.accesses or (("select", "*"),)  # no table: needs a "*" grant
        for action, resource in accesses:
            if not state.allowed_sql(user, action, resource, dialect):
                return f"user {user!r} may not {action} on {resource!r}"
        if self.raw_needs_grant and raw:
            for _, resource in accesses:
                if not state.allowed_sql(user, "raw", resource, dialect):
                    return (
                        f"user {user!r} may not run raw SQL on {resource!r} (it needs the RAW "
                        "permission; the query builders and the ORM do not)"
                    )
        if not state.has_policies(user):
            return ()
        return tuple(
            dict.fromkeys(
                resource
                for action, resource in accesses
                if state.policies(user, action, resource) is not None
            )
        )

    def restrict(self, query: Any, conn: Any) -> tuple[Any, bool]:
        """A user session's builder with its row policies applied (``ExecutionHook.restrict``)."""
        context = getattr(conn, "_context", None)
        if context is None or not self._state.has_policies(context.user):
            return query, False  # (the common case, on every builder call of a session)
        from dbsystem.security.policies import restrict_query

        return restrict_query(query, conn)

    def before_execute(self, statement: Statement) -> None:
        context = statement.context
        if context is None:
            if self.require_user:
                raise PermissionDenied(
                    "statement without a user: this manager requires db.for_user(...)",
                    backend=statement.backend,
                )
            return
        self.check(context.user, statement)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Roles and assignments as plain data (JSON or TOML)."""
        state = self._state
        return {
            "roles": {
                role.name: {
                    "grants": {k: _names(v) for k, v in role.grants.items()},
                    "inherits": list(role.inherits),
                    **({"functions": sorted(role.functions)} if role.functions else {}),
                    **(
                        {"max_connections": role.max_connections}
                        if role.max_connections is not None
                        else {}
                    ),
                }
                for role in state.roles.values()
            },
            "assignments": {user: sorted(roles) for user, roles in state.assignments.items()},
        }

    def save(self, path: str | Path) -> None:
        """Write roles and assignments to a JSON file."""
        Path(path).write_text(
            json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    def load(self, path: str | Path) -> None:
        """Replace roles and assignments with those of a JSON or TOML file."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read access control from {path}: {exc}") from None
        self.load_dict(data)

    def load_dict(self, data: Mapping[str, Any]) -> None:
        """Replace roles and assignments with those of ``to_dict()``-shaped data.

        Row policies are code, not data: a role that exists already keeps its policies on
        the patterns it still grants, so reloading grants never lifts a tenant filter.
        """
        roles = {}
        for name, spec in data.get("roles", {}).items():
            grants = {k: Permission.parse(v) for k, v in spec.get("grants", {}).items()}
            current = self._state.roles.get(name)
            policies = {
                k: v for k, v in (current.policies if current else {}).items() if k in grants
            }
            roles[name] = Role(
                name,
                grants=grants,
                inherits=tuple(spec.get("inherits", ())),
                policies=policies,
                max_connections=spec.get("max_connections"),
                functions=frozenset(spec.get("functions", current.functions if current else ())),
            )
        for name in roles:
            _check_no_cycle(roles, name)
        with self._lock:
            assignments = {u: frozenset(r) for u, r in data.get("assignments", {}).items()}
            self._swap(roles, assignments)

    def save_to_table(
        self, db: Any, *, db_type: Any = None, name: str | None = None, table: str = "dbsystem_acl"
    ) -> None:
        """Write roles and assignments to a SQL table (created if missing), replacing its
        rows in one transaction: a reader never sees half of a change."""
        table = check_identifier(table, "access control table name")
        data = self.to_dict()
        rows = [
            {"kind": "role", "name": role, "spec": json.dumps(spec, sort_keys=True)}
            for role, spec in data["roles"].items()
        ] + [
            {"kind": "user", "name": user, "spec": json.dumps(roles)}
            for user, roles in data["assignments"].items()
        ]
        with db.connection(db_type, name=name) as conn:
            conn.execute(_ACL_TABLE_DDL.format(table=table))
            with conn.transaction():
                conn.execute(f"DELETE FROM {table}")
                if rows:
                    conn.executemany(
                        f"INSERT INTO {table} (kind, name, spec) VALUES (:kind, :name, :spec)",
                        rows,
                    )

    def load_from_table(
        self, db: Any, *, db_type: Any = None, name: str | None = None, table: str = "dbsystem_acl"
    ) -> None:
        """Replace roles and assignments with those saved by ``save_to_table``."""
        table = check_identifier(table, "access control table name")
        with db.connection(db_type, name=name) as conn:
            rows = conn.fetch_all(f"SELECT kind, name, spec FROM {table}")
        self.load_dict(
            {
                "roles": {r["name"]: json.loads(r["spec"]) for r in rows if r["kind"] == "role"},
                "assignments": {
                    r["name"]: json.loads(r["spec"]) for r in rows if r["kind"] == "user"
                },
            }
        )


# Names of a dialect's system catalogs, which "*" does not reach (see _State.allowed_sql).
_SYSTEM_PREFIX = {"postgresql": "pg_", "sqlite": "sqlite_"}


class _State:
    """One version of the roles and assignments, and the caches derived from it.

    Never changed once made, but for its caches, which only ever hold what follows from
    this version: ``AccessControl`` swaps in a new one on every change, atomically.
    """

    __slots__ = ("_effective", "_functions", "_policed", "assignments", "decisions", "roles", "sql")

    def __init__(self, roles: dict[str, Role], assignments: dict[str, frozenset[str]]) -> None:
        self.roles = roles
        self.assignments = assignments
        # user -> (resource pattern, permissions, row policy or None), over inheritance
        self._effective: dict[str, list[tuple[str, Permission, Any]]] = {}
        self._policed: dict[str, bool] = {}
        self._functions: dict[str, frozenset[str]] = {}
        self.decisions: dict[tuple[str, str, str], bool] = {}
        # (user, dialect, raw, text) -> refusal message, or the tables whose row policy
        # must have been applied (see AccessControl._check_sql)
        self.sql: dict[tuple[str, str, bool, str], str | tuple[str, ...]] = {}

    def _roles_of(self, user: str) -> list[Role]:
        found: list[Role] = []
        seen: set[str] = set()
        pending = list(self.assignments.get(user, ()))
        while pending:
            name = pending.pop()
            if name in seen or name not in self.roles:
                continue
            seen.add(name)
            found.append(self.roles[name])
            pending.extend(self.roles[name].inherits)
        return found

    def grants(self, user: str) -> list[tuple[str, Permission, Any]]:
        found = self._effective.get(user)
        if found is None:
            found = [
                (k, v, role.policies.get(k))
                for role in self._roles_of(user)
                for k, v in role.grants.items()
            ]
            self._effective[user] = found
        return found

    def functions(self, user: str) -> frozenset[str]:
        found = self._functions.get(user)
        if found is None:
            found = frozenset().union(*(role.functions for role in self._roles_of(user)))
            self._functions[user] = found
        return found

    def allowed(self, user: str, action: str, resource: str) -> bool:
        key = (user, action, resource)
        decision = self.decisions.get(key)
        if decision is None:
            needed = _NEEDS.get(action, Permission.ADMIN)
            decision = action != _REFUSED and any(
                needed in permissions and _covers(pattern, resource)
                for pattern, permissions, _ in self.grants(user)
            )
            if len(self.decisions) > 100_000:
                self.decisions.clear()
            self.decisions[key] = decision
        return decision

    def allowed_sql(self, user: str, action: str, resource: str, dialect: str) -> bool:
        """``allowed`` for a table a SQL text names. A schema-qualified name (``mysql.user``,
        ``public.b``) and a system catalog's name (PostgreSQL's ``pg_*``, SQLite's
        ``sqlite_*``) need a pattern that spells them out as such (``public.*``,
        ``pg_stat*``): ``"*"`` means the tables of the application's own schema."""
        prefix = _SYSTEM_PREFIX.get(dialect)
        if "." in resource:
            explicit = "."
        elif prefix is not None and resource.startswith(prefix):
            explicit = prefix
        else:
            return self.allowed(user, action, resource)
        needed = _NEEDS.get(action, Permission.ADMIN)
        return any(
            needed in permissions
            and (explicit in pattern if explicit == "." else pattern.startswith(explicit))
            and _covers(pattern, resource)
            for pattern, permissions, _ in self.grants(user)
        )

    def has_policies(self, user: str) -> bool:
        found = self._policed.get(user)
        if found is None:
            found = any(policy is not None for _, _, policy in self.grants(user))
            self._policed[user] = found
        return found

    def policies(self, user: str, action: str, resource: str) -> list[Any] | None:
        """The row policies limiting ``action`` on ``resource``; None if unrestricted."""
        needed = _NEEDS.get(action, Permission.ADMIN)
        found = []
        for pattern, permissions, policy in self.grants(user):
            if needed in permissions and _covers(pattern, resource):
                if policy is None:
                    return None
                found.append(policy)
        return found or None


_ACL_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (kind VARCHAR(8) NOT NULL, name VARCHAR(255) NOT NULL, "
    "spec TEXT NOT NULL, PRIMARY KEY (kind, name))"
)


def _check_no_cycle(roles: Mapping[str, Role], start: str) -> None:
    pending = [(parent, [start]) for parent in roles[start].inherits]
    while pending:
        name, path = pending.pop()
        if name == start:
            chain = " -> ".join([*path, start])
            raise ConfigurationError(f"role inheritance cycle: {chain}")
        if name in roles and name not in path:
            pending.extend((parent, [*path, name]) for parent in roles[name].inherits)


def _names(permissions: Permission) -> list[str]:
    return [
        p.name
        for p in Permission
        if p.name not in ("NONE", "ALL") and p in permissions and p.name is not None
    ]
