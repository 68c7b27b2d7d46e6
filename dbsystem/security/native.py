"""Native enforcement: the access model compiled into each database's own checks (the second wall).

    acl = AccessControl(native=True)
    acl.create_role(Role("analyst", grants={"orders": Permission.SELECT},
                         policies={"orders": lambda ctx: col("tenant_id") == ctx.attrs["tenant"]}))
    acl.assign_role("ann", "analyst")
    print(acl.native_plan(db, DatabaseType.POSTGRES))   # what apply would run: reviewable
    acl.apply_native(db)                                  # converges; idempotent

The Python check (``AccessControl.check``) stays the first wall: early, clear, audited
refusals. With ``native=True`` every lease of a user session also carries a
``NativeScope`` that the database enforces by itself:

* **PostgreSQL**: one ``NOLOGIN`` role per access-control role (``dbsystem_r_<role>``),
  inheritance as role membership, a combination role per distinct set of roles a user
  holds (``dbsystem_r_u_<hash>``, member of each: ``SET ROLE`` takes one role, and a member
  gets the union of its roles' privileges and policies, as the Python check gives the
  union of the grants); GRANTs from the grants (glob patterns expanded against the
  catalog's tables when planned: re-apply after creating tables); row-level security
  policies compiled from the row policies SQL can express, reading the session's
  attributes with ``current_setting('dbsystem.attr.<name>', true)``. Each statement of the
  lease runs in a transaction that begins with ``set_config('role', ..., true)`` and the
  attributes, so nothing outlives it.
* **SQLite**: an authorizer callback (``sqlite3.Connection.set_authorizer``) for the lease:
  reads per table, writes per action, functions from an allow-list, DDL per grant, PRAGMA
  (but the library's own ``query_only``), ATTACH and DETACH denied.
* **MongoDB**: the plan only (``createRole`` documents), to review and run by hand.

``native_plan`` reads the catalog and changes nothing; ``apply_native`` runs the plan in
one transaction and touches only objects named with the prefix (roles, policies), and
the privileges of those roles on the tables.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbsystem.backends._params import string_literal
from dbsystem.errors import ConfigurationError, DBSystemError, PermissionDenied, SecurityError
from dbsystem.kernel.hooks import NativeScope
from dbsystem.kernel.types import DatabaseType
from dbsystem.query import expr as e

__all__ = [
    "DEFAULT_PREFIX",
    "NativeApplyError",
    "NativePlan",
    "SQLITE_FUNCTIONS",
    "apply_native",
    "native_plan",
    "native_scope",
    "sqlite_authorizer",
]

DEFAULT_PREFIX = "dbsystem_r_"
"""The prefix of every database object native enforcement creates (roles, policies)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMANDS = (("select", "SELECT"), ("insert", "INSERT"), ("update", "UPDATE"), ("delete", "DELETE"))


class NativeApplyError(SecurityError):
    """``apply_native`` could not run a statement of the plan: names the statement and the
    privilege the application's account needs for it."""


@dataclass
class NativePlan:
    """What ``apply_native`` would run on one backend, and what stays enforced in Python.

    ``statements``: SQL (PostgreSQL) or JSON commands (MongoDB), in order. ``notes``: what
    the database cannot enforce (``python_only``) and other remarks. Printing a plan
    shows both, for review.
    """

    backend: str
    statements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    python_only: list[str] = field(default_factory=list)
    #: Tables whose every row policy the database enforces (PostgreSQL row-level security).
    ruled: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        """True when the database already matches the model (nothing to run)."""
        return not self.statements

    def __str__(self) -> str:
        lines = [f"-- native access control plan for {self.backend}"]
        lines += [f"{statement};" for statement in self.statements] or ["-- nothing to change"]
        lines += [f"-- python-only: {item}" for item in self.python_only]
        lines += [f"-- note: {item}" for item in self.notes]
        return "\n".join(lines)


# -- reading the model ---------------------------------------------------------------------


def _role_name(prefix: str, role: str) -> str:
    name = f"{prefix}{role}"
    if not _NAME.fullmatch(name) or len(name) > 63:
        raise ConfigurationError(
            f"role {role!r} cannot be a database role ({name!r}: letters, digits and _, "
            "at most 63 characters with the prefix)"
        )
    return name


def _combination_name(prefix: str, roles: frozenset[str]) -> str:
    digest = hashlib.sha256("\x00".join(sorted(roles)).encode()).hexdigest()[:12]
    return f"{prefix}u_{digest}"


def user_role(acl: Any, user: str) -> str:
    """The database role ``user``'s statements run as: the role's own when the user has
    one, else the combination role of the user's set of roles (made by ``apply_native``)."""
    roles = frozenset(acl.roles_of(user))
    prefix = acl.native_prefix
    if len(roles) == 1:
        return _role_name(prefix, next(iter(roles)))
    return _combination_name(prefix, roles)


# -- symbolic evaluation of row policies ---------------------------------------------------


class _Attr:
    """A session attribute in a policy evaluated symbolically: the setting it reads."""

    __slots__ = ("setting",)

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def __repr__(self) -> str:
        return f"<session {self.setting}>"


class _SymbolicAttrs(Mapping[str, Any]):
    def __getitem__(self, key: str) -> _Attr:
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise _Unexpressible(f"attribute {key!r} is not a plain name")
        return _Attr(f"dbsystem.attr.{key}")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _SymbolicContext:
    user = _Attr("dbsystem.user")
    session_id = _Attr("dbsystem.session_id")
    attrs: Mapping[str, Any] = _SymbolicAttrs()


class _Unexpressible(ConfigurationError):
    """A row policy SQL cannot express faithfully (it stays Python-only)."""


_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str) and "\x00" not in value:
        return string_literal(value)
    raise _Unexpressible(f"the value {value!r} has no SQL literal here")


def _setting(attr: _Attr, sql_type: str | None) -> str:
    text = f"NULLIF(current_setting({_literal(attr.setting)}, true), '')"
    return f"({text})::{sql_type}" if sql_type else text


def _operand(node: Any, columns: Mapping[str, str], sql_type: str | None) -> str:
    if isinstance(node, e.Column):
        if node.table is not None or node.name not in columns:
            raise _Unexpressible(f"column {node.name!r} is not a column of the table")
        return _quote(node.name)
    if isinstance(node, e.Value):
        if isinstance(node.value, _Attr):
            return _setting(node.value, sql_type)
        return _literal(node.value)
    if node is e.NULL:
        return "NULL"
    raise _Unexpressible(f"a {type(node).__name__} in a comparison")


def _column_type(node: Any, columns: Mapping[str, str]) -> str | None:
    if isinstance(node, e.Column) and node.table is None:
        return columns.get(node.name)
    return None


def compile_predicate(node: Any, columns: Mapping[str, str]) -> str:
    """A row policy (symbolically evaluated) as a PostgreSQL boolean expression over the
    table's ``columns`` (name -> SQL type); ``_Unexpressible`` if it cannot be faithful."""
    if isinstance(node, e.Compare):
        sql_type = _column_type(node.left, columns) or _column_type(node.right, columns)
        if sql_type is None:
            raise _Unexpressible("a comparison without a column of the table")
        left = _operand(node.left, columns, sql_type)
        right = _operand(node.right, columns, sql_type)
        if node.op in ("is", "is not"):
            if right != "NULL":
                raise _Unexpressible("IS with something else than NULL")
            return f"({left} {node.op.upper()} NULL)"
        op = _OPS.get(node.op)
        if op is None:
            raise _Unexpressible(f"the operator {node.op!r}")
        return f"({left} {op} {right})"
    if isinstance(node, e.BoolOp) and node.op in ("and", "or"):
        glue = f" {node.op.upper()} "
        return "(" + glue.join(compile_predicate(item, columns) for item in node.items) + ")"
    if isinstance(node, e.Unary) and node.op == "not":
        return f"(NOT {compile_predicate(node.operand, columns)})"
    if isinstance(node, e.In) and node.subquery is None and not node.as_list:
        sql_type = _column_type(node.expr, columns)
        if sql_type is None:
            raise _Unexpressible("IN on something else than a column of the table")
        items = ", ".join(_operand(item, columns, sql_type) for item in node.items)
        negate = "NOT " if node.negate else ""
        return f"({_operand(node.expr, columns, sql_type)} {negate}IN ({items}))"
    raise _Unexpressible(f"a {type(node).__name__} node")


def _evaluate(policy: Any) -> Any:
    if not callable(policy):
        return policy
    try:
        return policy(_SymbolicContext())
    except _Unexpressible:
        raise
    except Exception as exc:  # the policy computes with the attribute: not SQL
        raise _Unexpressible(f"it computes with the session ({type(exc).__name__})") from exc


# -- PostgreSQL ----------------------------------------------------------------------------


@dataclass
class _Catalog:
    schema: str
    account: str
    columns: dict[str, dict[str, str]]  # table -> column -> type
    roles: set[str]
    members: set[tuple[str, str]]  # (group, member)
    table_grants: set[tuple[str, str, str]]  # (role, table, privilege)
    policies: set[tuple[str, str]]  # (table, policy)
    rls: set[str]
    schema_usage: set[str]


def _pg_catalog(conn: Any, prefix: str) -> _Catalog:
    like = {"prefix": prefix}
    columns: dict[str, dict[str, str]] = {}
    for row in conn.fetch_all(
        "SELECT c.relname AS t, a.attname AS c, format_type(a.atttypid, a.atttypmod) AS ty "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid WHERE n.nspname = current_schema() "
        "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
    ):
        columns.setdefault(row["t"], {})[row["c"]] = row["ty"]
    head = conn.fetch_one("SELECT current_schema() AS s, current_user AS u")
    roles = {
        r["rolname"]
        for r in conn.fetch_all(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, :prefix)", like
        )
    }
    members = {
        (r["g"], r["m"])
        for r in conn.fetch_all(
            "SELECT g.rolname AS g, m.rolname AS m FROM pg_auth_members am "
            "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
            "WHERE starts_with(g.rolname, :prefix)",
            like,
        )
    }
    grants = {
        (r["grantee"], r["table_name"], r["privilege_type"])
        for r in conn.fetch_all(
            "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = current_schema() AND starts_with(grantee, :prefix)",
            like,
        )
    }
    policies = {
        (r["tablename"], r["policyname"])
        for r in conn.fetch_all(
            "SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema() "
            "AND starts_with(policyname, :prefix)",
            like,
        )
    }
    rls = {
        r["relname"]
        for r in conn.fetch_all(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relrowsecurity"
        )
    }
    usage = {
        r["rolname"]
        for r in conn.fetch_all(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, :prefix) "
            "AND has_schema_privilege(rolname, current_schema(), 'USAGE')",
            like,
        )
    }
    return _Catalog(head["s"], head["u"], columns, roles, members, grants, policies, rls, usage)


def _roles(acl: Any) -> dict[str, Any]:
    return {role.name: role for role in acl.roles()}


def _plan_postgres(acl: Any, catalog: _Catalog) -> NativePlan:
    prefix = acl.native_prefix
    plan = NativePlan("postgresql")
    roles = _roles(acl)
    tables = sorted(catalog.columns)
    names = {name: _role_name(prefix, name) for name in roles}
    combos = {frozenset(r) for r in acl.assignments().values() if len(r) != 1}
    combo_names = {_combination_name(prefix, c): c for c in combos}
    desired = set(names.values()) | set(combo_names)
    run = plan.statements.append

    for role in sorted(desired - catalog.roles):
        run(f"CREATE ROLE {_quote(role)} NOLOGIN")
    # memberships: inheritance, combinations, and the application's account (SET ROLE)
    edges = {
        (names[parent], names[name])
        for name, r in roles.items()
        for parent in r.inherits
        if parent in names
    }
    for combo_name, combo in combo_names.items():
        edges |= {(names[r], combo_name) for r in combo if r in names}
    edges |= {(role, catalog.account) for role in desired}
    for group, member in sorted(edges - catalog.members):
        run(f"GRANT {_quote(group)} TO {_quote(member)}")
    for group, member in sorted(catalog.members - edges):
        if group in desired:
            run(f"REVOKE {_quote(group)} FROM {_quote(member)}")
    for role in sorted(desired - catalog.schema_usage):
        run(f"GRANT USAGE ON SCHEMA {_quote(catalog.schema)} TO {_quote(role)}")

    # table privileges
    wanted: set[tuple[str, str, str]] = set()
    for name, role in roles.items():
        for pattern, permissions in role.grants.items():
            matched = [t for t in tables if fnmatch.fnmatchcase(t, pattern)]
            if not matched:
                plan.notes.append(f"role {name!r}: {pattern!r} matches no table yet")
            for action, privilege in _COMMANDS:
                if _permission(action) in permissions:
                    wanted |= {(names[name], t, privilege) for t in matched}
            for extra in ("DDL", "EXECUTE", "ADMIN", "RAW"):
                if _permission(extra.lower()) in permissions:
                    plan.python_only.append(f"role {name!r}: {extra} on {pattern!r}")
    for role, table, privilege in sorted(catalog.table_grants - wanted):
        if role in desired or role.startswith(prefix):
            run(f"REVOKE {privilege} ON TABLE {_quote(table)} FROM {_quote(role)}")
    for role, table, privilege in sorted(wanted - catalog.table_grants):
        run(f"GRANT {privilege} ON TABLE {_quote(table)} TO {_quote(role)}")

    # row-level security
    policies = _pg_policies(acl, roles, names, tables, catalog, plan)
    ruled = {table for table, *_ in policies}
    for table in sorted(ruled - catalog.rls):
        run(f"ALTER TABLE {_quote(table)} ENABLE ROW LEVEL SECURITY")
    wanted_policies = {(table, policy) for table, policy, _ in policies}
    for table, policy in sorted(catalog.policies - wanted_policies):
        run(f"DROP POLICY {_quote(policy)} ON {_quote(table)}")
    for table, policy, text in policies:
        if (table, policy) not in catalog.policies:
            run(text)
    for role in sorted(catalog.roles - desired):
        run(f"DROP OWNED BY {_quote(role)}")
        run(f"DROP ROLE {_quote(role)}")
    if ruled:
        plan.notes.append(
            "row-level security is enabled on " + ", ".join(sorted(ruled)) + ": the "
            "application's account must own these tables (owners bypass it)"
        )
    return plan


def _permission(action: str) -> Any:
    from dbsystem.security.rbac import Permission

    return Permission[action.upper()]


def _pg_policies(
    acl: Any,
    roles: Mapping[str, Any],
    names: Mapping[str, str],
    tables: list[str],
    catalog: _Catalog,
    plan: NativePlan,
) -> list[tuple[str, str, str]]:
    """(table, policy name, CREATE POLICY) for every table a compiled row policy rules:
    each role granted a command on such a table gets a permissive policy for it (its
    compiled predicate, or ``true`` when it has none or its predicate stays Python-only)."""
    compiled: dict[tuple[str, str], str | None] = {}  # (role, pattern) -> SQL or None
    for name, role in roles.items():
        for pattern, policy in role.policies.items():
            if policy is None:
                continue
            for table in tables:
                if not fnmatch.fnmatchcase(table, pattern):
                    continue
                try:
                    predicate = _evaluate(policy)
                    sql = compile_predicate(predicate, catalog.columns[table])
                except _Unexpressible as why:
                    plan.python_only.append(
                        f"role {name!r}: the row policy on {table!r} ({why}): rows are "
                        "filtered by the Python check only"
                    )
                    sql = None
                compiled[(name, table)] = sql
    ruled = {table for (_, table), sql in compiled.items() if sql is not None}
    plan.ruled = {t for t in ruled if all(sql for (_, t2), sql in compiled.items() if t2 == t)}
    out: list[tuple[str, str, str]] = []
    for table in sorted(ruled):
        for name, role in sorted(roles.items()):
            for pattern, permissions in role.grants.items():
                if not fnmatch.fnmatchcase(table, pattern):
                    continue
                predicate = compiled.get((name, table)) if pattern in role.policies else None
                predicate = predicate or "true"
                for action, command in _COMMANDS:
                    if _permission(action) not in permissions:
                        continue
                    if command == "INSERT":
                        clauses = f"WITH CHECK ({predicate})"
                    elif command == "UPDATE":
                        clauses = f"USING ({predicate}) WITH CHECK ({predicate})"
                    else:
                        clauses = f"USING ({predicate})"
                    digest = hashlib.sha256(
                        f"{names[name]}|{table}|{command}|{clauses}".encode()
                    ).hexdigest()[:8]
                    suffix = f"_{action}_{digest}"
                    policy = names[name][: 63 - len(suffix)] + suffix
                    text = (
                        f"CREATE POLICY {_quote(policy)} ON {_quote(table)} AS PERMISSIVE "
                        f"FOR {command} TO {_quote(names[name])} {clauses}"
                    )
                    out.append((table, policy, text))
    return out


_PRIVILEGE_NEEDED = (
    ("CREATE ROLE", "CREATEROLE"),
    ("DROP ROLE", "CREATEROLE (and ADMIN OPTION on the role)"),
    ("DROP OWNED", "membership in the role"),
    ("GRANT USAGE", "ownership of the schema (or USAGE WITH GRANT OPTION)"),
    ('GRANT "', "CREATEROLE (and ADMIN OPTION on the role)"),
    ('REVOKE "', "CREATEROLE (and ADMIN OPTION on the role)"),
    ("GRANT", "ownership of the table (or the privilege WITH GRANT OPTION)"),
    ("REVOKE", "ownership of the table (or the privilege WITH GRANT OPTION)"),
    ("ALTER TABLE", "ownership of the table"),
    ("CREATE POLICY", "ownership of the table"),
    ("DROP POLICY", "ownership of the table"),
)


def _needed(statement: str) -> str:
    for start, privilege in _PRIVILEGE_NEEDED:
        if statement.startswith(start) and (start[-1] != '"' or " ON " not in statement):
            return privilege
    return "the privilege for this statement"


# -- SQLite --------------------------------------------------------------------------------

SQLITE_FUNCTIONS = frozenset(
    """abs avg changes char coalesce count cume_dist date datetime dense_rank first_value
    format glob group_concat hex ifnull iif instr json json_array json_array_length
    json_extract json_group_array json_group_object json_object json_quote json_type
    json_valid julianday lag last_insert_rowid last_value lead length like likelihood
    likely lower ltrim max min nth_value ntile nullif percent_rank printf quote random
    randomblob rank replace round row_number rtrim sign soundex strftime string_agg substr
    substring sum time timediff total trim typeof unicode unixepoch unlikely upper
    zeroblob -> ->> ceil ceiling floor trunc exp ln log log10 log2 mod pi pow power sqrt
    sin cos tan""".split()
)
"""Functions a user session may call on SQLite (the authorizer's allow-list), besides
those a role names (``Role(functions=...)``, when roles have them)."""

_ALLOWED = sqlite3.SQLITE_OK
_DENIED = sqlite3.SQLITE_DENY
_CREATE_DROP = {
    getattr(sqlite3, f"SQLITE_{verb}_{kind}")
    for verb in ("CREATE", "DROP")
    for kind in (
        "INDEX",
        "TABLE",
        "TRIGGER",
        "VIEW",
        "TEMP_INDEX",
        "TEMP_TABLE",
        "TEMP_TRIGGER",
        "TEMP_VIEW",
    )
}

_ON_TABLE = {
    getattr(sqlite3, f"SQLITE_{verb}_{kind}")
    for verb in ("CREATE", "DROP")
    for kind in ("INDEX", "TRIGGER", "TEMP_INDEX", "TEMP_TRIGGER")
}


def _role_functions(acl: Any, user: str) -> frozenset[str]:
    roles = _roles(acl)
    found: set[str] = set()
    pending, seen = list(acl.roles_of(user)), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in roles:
            continue
        seen.add(name)
        found |= {f.lower() for f in getattr(roles[name], "functions", ()) or ()}
        pending.extend(roles[name].inherits)
    return frozenset(found)


def sqlite_authorizer(acl: Any, user: str) -> Callable[..., int]:
    """The ``sqlite3`` authorizer for ``user``'s leases, compiled from the user's roles.

    Grants are read through ``acl.allowed`` on every call (its cache is cleared on any
    change), so a revoked role stops the next statement prepared.
    """
    allowed = acl.allowed
    functions = SQLITE_FUNCTIONS | _role_functions(acl, user)
    read, insert, update, delete = (
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_UPDATE,
        sqlite3.SQLITE_DELETE,
    )
    free = {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_RECURSIVE,
    }

    def authorize(action: int, arg1: str | None, arg2: str | None, db: Any, source: Any) -> int:
        if action == read:
            return _ALLOWED if allowed(user, "select", arg1 or "") else _DENIED
        if action in free:
            return _ALLOWED
        if action == sqlite3.SQLITE_FUNCTION:
            return _ALLOWED if (arg2 or "").lower() in functions else _DENIED
        if action == insert:
            return _ALLOWED if allowed(user, "insert", arg1 or "") else _DENIED
        if action == update:
            return _ALLOWED if allowed(user, "update", arg1 or "") else _DENIED
        if action == delete:
            return _ALLOWED if allowed(user, "delete", arg1 or "") else _DENIED
        if action == sqlite3.SQLITE_PRAGMA:  # the library's read-only transactions only
            return _ALLOWED if arg1 == "query_only" and source is None else _DENIED
        if action in _CREATE_DROP:
            table = arg2 if action in _ON_TABLE else arg1  # an index's or trigger's table
            return _ALLOWED if allowed(user, "ddl", table or "") else _DENIED
        if action == sqlite3.SQLITE_ALTER_TABLE:
            return _ALLOWED if allowed(user, "ddl", arg2 or "") else _DENIED
        return _DENIED  # ATTACH, DETACH, ANALYZE, REINDEX, virtual tables, anything else

    return authorize


# -- Redis ---------------------------------------------------------------------------------

_WRITES = ("insert", "update", "delete")


def _effective(roles: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """pattern -> permissions granted by ``names`` and the roles they inherit (a union)."""
    grants: dict[str, Any] = {}
    pending, seen = list(names), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in roles:
            continue
        seen.add(name)
        for pattern, permissions in roles[name].grants.items():
            grants[pattern] = grants.get(pattern, _permission("none")) | permissions
        pending.extend(roles[name].inherits)
    return grants


def _credentials(acl: Any) -> Any:
    from dbsystem.security.credentials import CredentialManager

    return acl.native_credentials or CredentialManager.instance()


def _redis_users(acl: Any) -> dict[str, frozenset[str]]:
    """ACL user name -> the roles it holds: one per role, one per set of roles users hold."""
    prefix = acl.native_prefix
    users = {_role_name(prefix, name): frozenset({name}) for name in _roles(acl)}
    for roles in acl.assignments().values():
        if len(roles) != 1:
            users[_combination_name(prefix, frozenset(roles))] = frozenset(roles)
    return users


def _redis_rules(grants: Mapping[str, Any], plan: NativePlan, user: str) -> list[str]:
    keys: list[str] = []
    categories: set[str] = set()
    for pattern, permissions in sorted(grants.items()):
        read = _permission("select") in permissions
        write = any(_permission(a) in permissions for a in _WRITES)
        if read or write:
            keys.append(("~" if read and write else "%R~" if read else "%W~") + pattern)
            keys.append("&" + pattern)  # channels share the resource names
            categories |= {"+@read"} if read else set()
            categories |= {"+@write"} if write else set()
            categories.add("+@pubsub")
        for extra in ("DDL", "EXECUTE", "ADMIN"):
            if _permission(extra.lower()) in permissions:
                plan.python_only.append(f"user {user!r}: {extra} on {pattern!r}")
    return [
        "reset", "on", "resetkeys", "resetchannels", "-@all", "+@connection", "+select",
        "+multi", "+exec", "+discard", "+watch",
        "+unwatch", *sorted(categories), "-@dangerous", "-@admin", "-@scripting", *keys,
    ]  # fmt: skip


def _plan_redis(acl: Any, conn: Any, *, create_passwords: bool) -> NativePlan:
    plan = NativePlan("redis")
    roles = _roles(acl)
    existing = {u for u in conn.execute("ACL", "USERS") if u.startswith(acl.native_prefix)}
    credentials = _credentials(acl)
    wanted = _redis_users(acl)
    for user, names in sorted(wanted.items()):
        try:
            secret = credentials.get(user).password.get_secret_value()
        except ConfigurationError:
            if not create_passwords:
                plan.notes.append(f"{user}: a password is made and stored by apply_native")
                secret = ""
            else:
                import secrets

                secret = secrets.token_urlsafe(32)
                credentials.set(user, username=user, password=secret)
        digest = "#" + hashlib.sha256(secret.encode()).hexdigest()
        rules = _redis_rules(_effective(roles, names), plan, user)
        plan.statements.append(" ".join(["ACL", "SETUSER", user, *rules[:2], digest, *rules[2:]]))
    for user in sorted(existing - set(wanted)):
        plan.statements.append(f"ACL DELUSER {user}")
    plan.notes.append(
        "Redis has no role inheritance: each user gets its roles' grants flattened; the "
        "password digest is shown, never the password (kept in the credential manager)"
    )
    return plan


# -- MongoDB -------------------------------------------------------------------------------

_MONGO_ACTIONS = (
    ("select", ["find"]),
    ("insert", ["insert"]),
    ("update", ["update"]),
    ("delete", ["remove"]),
    ("ddl", ["createCollection", "createIndex", "dropCollection", "dropIndex"]),
)


def _plan_mongo(acl: Any, database: str) -> NativePlan:
    prefix = acl.native_prefix
    plan = NativePlan("mongodb")
    for name, role in sorted(_roles(acl).items()):
        privileges = []
        for pattern, permissions in sorted(role.grants.items()):
            if pattern == "*":
                collection = ""
            elif any(ch in pattern for ch in "*?["):
                plan.python_only.append(
                    f"role {name!r}: {pattern!r} (MongoDB roles name whole collections)"
                )
                continue
            else:
                collection = pattern
            actions = [
                a
                for action, names in _MONGO_ACTIONS
                if _permission(action) in permissions
                for a in names
            ]
            if actions:
                privileges.append(
                    {"resource": {"db": database, "collection": collection}, "actions": actions}
                )
            if pattern in role.policies:
                plan.python_only.append(f"role {name!r}: the row policy on {pattern!r}")
        command = {
            "createRole": _role_name(prefix, name),
            "privileges": privileges,
            "roles": [{"role": _role_name(prefix, p), "db": database} for p in role.inherits],
        }
        plan.statements.append(json.dumps(command, sort_keys=True))
    plan.notes.append(
        "run each command with db.command(...) (updateRole for roles that exist); users "
        "authenticate as a user holding the role: per-lease role switching is not done"
    )
    return plan


# -- the entry points (AccessControl.native_plan / apply_native / native_scope) -----------


def native_plan(acl: Any, db: Any, db_type: DatabaseType, *, name: str | None = None) -> NativePlan:
    """The plan for ``db_type``'s pool of ``db``: pure (reads the catalog, changes nothing)."""
    if db_type is DatabaseType.POSTGRES:
        with db.connection(db_type, name=name) as conn:
            return _plan_postgres(acl, _pg_catalog(conn, acl.native_prefix))
    if db_type is DatabaseType.REDIS:
        with db.connection(db_type, name=name) as conn:
            return _plan_redis(acl, conn, create_passwords=False)
    if db_type is DatabaseType.MONGODB:
        database = getattr(getattr(db.backend(db_type, name), "url", None), "database", None)
        return _plan_mongo(acl, database or "admin")
    if db_type is DatabaseType.SQLITE:
        plan = NativePlan("sqlite")
        plan.notes.append(
            "nothing to apply: each user-session lease installs an authorizer compiled from "
            "the user's roles (reads, writes, functions, DDL; PRAGMA, ATTACH, DETACH denied); "
            "row policies stay Python-only"
        )
        return plan
    raise ConfigurationError(f"native access control is not available for {db_type.value}")


def apply_native(
    acl: Any, db: Any, db_type: DatabaseType = DatabaseType.POSTGRES, *, name: str | None = None
) -> NativePlan:
    """Make the database match the model: plan and run it in one transaction; the plan run."""
    if db_type is DatabaseType.REDIS:
        with db.connection(db_type, name=name) as conn:
            plan = _plan_redis(acl, conn, create_passwords=True)
            for statement in plan.statements:
                try:
                    conn.execute(*statement.split())
                except DBSystemError as exc:
                    if "NOPERM" not in str(exc) and "no permissions" not in str(exc):
                        raise
                    raise NativeApplyError(
                        f"the application's Redis user cannot run {statement.split()[:3]}: "
                        f"it needs the ACL command (+acl) ({type(exc).__name__})",
                        backend="redis",
                    ) from exc
        return plan
    if db_type is not DatabaseType.POSTGRES:
        return native_plan(acl, db, db_type, name=name)  # nothing to run there
    with db.connection(db_type, name=name) as conn, conn.transaction():
        plan = _plan_postgres(acl, _pg_catalog(conn, acl.native_prefix))
        for statement in plan.statements:
            try:
                conn.execute(statement)
            except DBSystemError as exc:
                if "permission denied" in str(exc) or "must be" in str(exc):
                    raise NativeApplyError(
                        f"the application's account cannot run {statement!r}: it needs "
                        f"{_needed(statement)} ({exc.message if hasattr(exc, 'message') else exc})",
                        backend="postgresql",
                    ) from exc
                raise
        _remember_ruled(acl, conn._pool.name, plan.ruled)
    return plan


def _fingerprint(acl: Any) -> tuple[int, ...]:
    return tuple(sorted(id(role) for role in acl.roles()))


def _remember_ruled(acl: Any, pool: str, tables: set[str]) -> None:
    acl.__dict__.setdefault("_native_ruled", {})[pool] = (_fingerprint(acl), frozenset(tables))


def natively_ruled(acl: Any, pool: str, table: str) -> bool:
    """True if ``apply_native`` made PostgreSQL pool ``pool`` enforce every row policy on
    ``table``, for the roles as they are now (any change of a role forgets it)."""
    found = acl.__dict__.get("_native_ruled", {}).get(pool)
    return found is not None and table in found[1] and found[0] == _fingerprint(acl)


def native_scope(acl: Any, context: Any, dialect: str) -> NativeScope | None:
    """The ``NativeScope`` of a lease of ``context``'s session on a ``dialect`` backend.

    Made once per session context and backend, and again after any change of the user's
    grants (the flattened grants ``acl._grants`` gives are rebuilt on every change): the
    same scope object lets SQLite keep the statements it prepared under it.
    """
    cache: dict[int, tuple[Any, str, Any, NativeScope | None]] | None = getattr(
        acl, "_native_scopes", None
    )
    if cache is None:
        cache = acl._native_scopes = {}
    token = acl._state  # (replaced whole on any change of roles or assignments)
    key = id(context)
    found = cache.get(key)
    if found is not None and found[0] is context and found[1] == dialect and found[2] is token:
        return found[3]
    scope = _make_scope(acl, context, dialect)
    if len(cache) > 4096:
        cache.clear()
    cache[key] = (context, dialect, token, scope)
    return scope


def _make_scope(acl: Any, context: Any, dialect: str) -> NativeScope | None:
    user = context.user
    if dialect == "sqlite":
        return NativeScope(authorizer=sqlite_authorizer(acl, user))
    if dialect == "postgresql":
        settings = [("dbsystem.user", str(user))]
        if context.session_id is not None:
            settings.append(("dbsystem.session_id", str(context.session_id)))
        for key, value in context.attrs.items():
            if value is None or not isinstance(key, str) or not _NAME.fullmatch(key):
                continue  # a policy reading it sees NULL: no row
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            settings.append((f"dbsystem.attr.{key}", text))
        return NativeScope(role=user_role(acl, user), settings=tuple(settings))
    if dialect == "redis":
        role = user_role(acl, user)
        try:
            credential = _credentials(acl).get(role)
        except ConfigurationError:
            raise PermissionDenied(
                f"user {user!r}: no credential for the Redis ACL user {role!r} (run "
                "apply_native, or load the credential into the credential manager)",
                backend="redis",
            ) from None
        return NativeScope(role=role, password=credential.password)
    return None  # MariaDB/MySQL and others: the Python check alone (see docs/SECURITY.md)
