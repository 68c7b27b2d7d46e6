"""The SQL checker of user sessions: what the final text of a statement will do.

One reader for every SQL statement a user session sends, whoever wrote it: the text a
builder compiled (SQLAlchemy's output, not the builder's own bookkeeping), the ORM's (it
runs builders) and raw SQL. ``analyse(text, dialect)`` parses the text once with sqlglot
(cached by text: a builder's text has placeholders, so it is a shape) and returns

* ``accesses``: every (action, table) it needs. Each write target takes its real actions
  (an upsert INSERT + UPDATE, REPLACE INSERT + DELETE, MERGE every action of its WHEN
  clauses, a multi-table UPDATE or DELETE each table it writes), row locks (``FOR UPDATE``,
  ``FOR SHARE``...) UPDATE, ``SELECT ... INTO t`` DDL + INSERT, and every other table it
  names SELECT, wherever it sits (subqueries, CTEs, joins, lateral joins, set operations);
  a CTE name hides a table only where that CTE is in scope;
* ``functions``: the name of every function it calls, for the allow-list;
* ``refused``: why the text is refused whatever the grants, or None. Deny what is not
  understood: statement kinds off the allow-list, text sqlglot cannot parse or reads as a
  bare command, several statements in one text, and on MySQL/MariaDB any executable
  comment (``/*!``, ``/*M!``) and any backslash (the server reads strings differently under
  ``sql_mode=NO_BACKSLASH_ESCAPES``, the parser would not follow it).

Table names are normalised as the server resolves them: SQLite folds every identifier's
case, PostgreSQL folds unquoted ones to lower case, MySQL keeps them (table names are
case-sensitive on Linux). A qualified name keeps its schema (``public.b``): it needs a
grant matching that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from dbsystem.errors import DBSystemError

# sqlglot is imported on the first analysis (``_load``), not with the package: the
# application's own statements never need it.
sqlglot: Any = None
exp: Any = None
SqlglotError: Any = None
_DML: tuple[Any, ...] = ()
_DDL: tuple[Any, ...] = ()
_NEVER: tuple[Any, ...] = ()
_CLASSES: dict[str, Any] = {}

__all__ = [
    "CACHED_TEXT",
    "SQL_DIALECTS",
    "Analysis",
    "allowed_functions",
    "analyse",
    "function_keys",
    "normalise",
    "readable",
]

SQL_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one SQL text does (see the module docstring)."""

    accesses: tuple[tuple[str, str], ...]
    functions: frozenset[str]
    refused: str | None = None
    transaction: bool = False


def _refuse(why: str) -> Analysis:
    return Analysis((), frozenset(), why)


_TRANSACTION = Analysis((), frozenset(), None, True)

_DDL_KINDS = frozenset({"TABLE", "INDEX", "VIEW"})
# Nodes refused wherever they sit (sqlglot nests some: a SET inside a CTE would be one).
_NEVER_NAMES = (
    "Command",
    "Set",
    "Pragma",
    "Attach",
    "Detach",
    "Copy",
    "Grant",
    "Revoke",
    "Comment",
    "Use",
    "Describe",
    "Kill",
    "Analyze",
    "LoadData",
    "Cache",
    "Uncache",
    "Refresh",
    "Summarize",
    "Execute",
    "Declare",
)


def _load() -> None:
    """Import sqlglot and make the node tuples, once."""
    global sqlglot, exp, SqlglotError, _DML, _DDL, _NEVER, _CLASSES
    if exp is not None:
        return
    import sqlglot as parser
    from sqlglot import expressions
    from sqlglot.errors import SqlglotError as error

    e = expressions
    # The statement kinds a user may send (the tree's root); DDL needs Permission.DDL.
    _DML = (e.Select, e.SetOperation, e.Values, e.Insert, e.Update, e.Delete, e.Merge)
    _DDL = (e.Create, e.Drop, e.Alter, e.TruncateTable)
    _NEVER = tuple(getattr(e, name) for name in _NEVER_NAMES if hasattr(e, name))
    _CLASSES = {cls.key: cls for cls in e.ALL_FUNCTIONS}
    sqlglot, SqlglotError, exp = parser, error, e


_SAVEPOINT = re.compile(
    r"\s*(?:SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?)\s+[A-Za-z_][A-Za-z0-9_]*\s*;?\s*\Z", re.I
)
_EXECUTABLE_COMMENT = re.compile(r"/\*[mM]?!")


# Texts up to this length are cached (a builder's shapes, the raw SQL an application's
# users send again and again); a longer one is analysed each time, so that the cache holds
# at most 4096 x 8 KiB whatever users send.
CACHED_TEXT = 8 * 1024


def analyse(text: str, dialect: str) -> Analysis:
    """The analysis of ``text`` on ``dialect`` (``postgresql``, ``mysql``, ``sqlite``),
    cached by (text, dialect) for texts up to ``CACHED_TEXT`` characters."""
    if len(text) <= CACHED_TEXT:
        return _cached(text, dialect)
    return _analyse(text, dialect)


@lru_cache(maxsize=4096)
def _cached(text: str, dialect: str) -> Analysis:
    return _analyse(text, dialect)


def _analyse(text: str, dialect: str) -> Analysis:
    _load()
    if dialect == "mysql":
        if _EXECUTABLE_COMMENT.search(text):
            return _refuse(
                "an executable comment (/*! ... */ or /*M! ... */): the server runs it, the "
                "checker cannot read it"
            )
        if "\\" in text:
            return _refuse(
                "a backslash: MySQL reads string literals differently under "
                "sql_mode=NO_BACKSLASH_ESCAPES, so the checker cannot know where they end "
                "(pass the value as a parameter)"
            )
    try:
        trees = [tree for tree in sqlglot.parse(text, read=SQL_DIALECTS[dialect]) if tree]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _refuse(f"text the checker cannot parse ({first[:120]})")
    if not trees:
        return _refuse("text with no statement")
    if len(trees) > 1:
        return _refuse(f"{len(trees)} statements in one text (send them one by one)")
    return _Reader(dialect).read(trees[0], text)


def normalise(name: str, quoted: bool, dialect: str) -> str:
    """A table name as the server resolves it (see the module docstring)."""
    if dialect == "sqlite" or (dialect == "postgresql" and not quoted):
        return name.lower()
    return name


class _Reader:
    """One reading of one statement tree."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.accesses: dict[tuple[str, str], None] = {}
        self.done: set[int] = set()  # Table nodes already given their action

    def read(self, tree: Any, text: str) -> Analysis:
        if isinstance(tree, (exp.Transaction, exp.Commit, exp.Rollback)):
            return _TRANSACTION
        if isinstance(tree, exp.Command):
            return self._command(tree, text)
        if not _is_any(tree, (*_DML, *_DDL)):
            return _refuse(f"{_first_word(text)} statements")
        for node in tree.walk():
            if isinstance(node, _NEVER):
                return _refuse(f"{_kind(node)} statements")
            if isinstance(node, exp.Into) and self.dialect == "mysql":
                return _refuse("SELECT ... INTO on MySQL (files and variables)")
        try:
            self._writes(tree)
        except _Undecidable as exc:
            return _refuse(str(exc))
        unknown = _unknown_qualifier(tree)
        if unknown is not None:
            return _refuse(
                f"a column of {unknown!r}, which the statement does not name (an implicit table)"
            )
        for table in tree.find_all(exp.Table):
            if id(table) in self.done or not isinstance(table.this, exp.Identifier):
                continue  # (a table-valued function: its name is checked as a function)
            if isinstance(table.parent, exp.Lock):
                continue  # FOR UPDATE OF x: an alias, its tables taken by _locks
            if not table.args.get("db") and _is_cte(table):
                continue
            self._add("select", table)
        return Analysis(tuple(self.accesses), _functions(tree))

    def _command(self, tree: Any, text: str) -> Analysis:
        keyword = str(tree.this).upper()
        if _SAVEPOINT.match(text):
            return _TRANSACTION
        if keyword == "REPLACE" and self.dialect in ("mysql", "sqlite"):
            # REPLACE INTO t ...: an INSERT that first deletes the rows it collides with.
            rest = tree.expression.name if isinstance(tree.expression, exp.Literal) else ""
            inner = analyse("INSERT " + rest, self.dialect)
            if inner.refused is not None or not inner.accesses:
                return inner if inner.refused else _refuse("REPLACE statements")
            target = inner.accesses[0][1]
            return Analysis((*inner.accesses, ("delete", target)), inner.functions, inner.refused)
        return _refuse(f"{keyword or 'unknown'} statements")

    # -- write targets ----------------------------------------------------------------------

    def _add(self, action: str, table: Any) -> None:
        self.done.add(id(table))
        self.accesses.setdefault((action, _name(table, self.dialect)), None)

    def _writes(self, tree: Any) -> None:
        for node in tree.find_all(exp.Insert):
            if node.parent is not None and isinstance(node.parent, exp.When):
                continue  # MERGE's WHEN ... THEN INSERT: the MERGE's target
            target = _target(node.this)
            self._add("insert", target)
            conflict = node.args.get("conflict")
            if conflict is not None and (
                conflict.args.get("duplicate") or conflict.args.get("expressions")
            ):
                self._add("update", target)
            alternative = str(node.args.get("alternative") or "").upper()
            if alternative == "REPLACE":
                self._add("delete", target)
        for update in tree.find_all(exp.Update):
            if update.parent is not None and isinstance(update.parent, exp.When):
                continue
            self._update(update)
        for delete in tree.find_all(exp.Delete):
            self._delete(delete)
        for merge in tree.find_all(exp.Merge):
            target = _target(merge.this)
            whens = merge.args.get("whens")
            for when in whens.expressions if whens is not None else ():
                then = when.args.get("then")
                if isinstance(then, exp.Insert):
                    self._add("insert", target)
                elif isinstance(then, exp.Update):
                    self._add("update", target)
                elif isinstance(then, exp.Var) and then.name.upper() == "DELETE":
                    self._add("delete", target)
                elif not (isinstance(then, exp.Var) and then.name.upper() == "DO NOTHING"):
                    raise _Undecidable(f"a MERGE action {then.sql() if then else None!r}")
        for select in tree.find_all(exp.Select):
            into = select.args.get("into")
            if into is not None:  # SELECT ... INTO t creates t and fills it
                target = _target(into.this)
                self._add("ddl", target)
                self._add("insert", target)
            if select.args.get("locks"):
                for table in _from_tables(select):
                    self._add("update", table)
        for ddl in tree.find_all(*_DDL):
            self._ddl(ddl)

    def _update(self, node: Any) -> None:
        first = _target(node.this)
        candidates = [first, *(join.this for join in first.args.get("joins") or ())]
        candidates = [t for t in candidates if isinstance(t, exp.Table)]
        if len(candidates) == 1:
            self._add("update", first)
            return
        # MySQL multi-table UPDATE: the tables whose columns are assigned.
        aliases = {_alias(t): t for t in candidates}
        for assignment in node.expressions:
            column = assignment.this if isinstance(assignment, exp.EQ) else None
            qualifier = column.table if isinstance(column, exp.Column) else ""
            if qualifier and qualifier in aliases:
                self._add("update", aliases[qualifier])
            else:  # undecidable: every table of the statement
                for table in candidates:
                    self._add("update", table)

    def _delete(self, node: Any) -> None:
        first = _target(node.this)
        sources = [first, *(join.this for join in first.args.get("joins") or ())]
        for using in node.args.get("using") or ():
            sources.append(using)
            sources.extend(join.this for join in using.args.get("joins") or ())
        named = list(node.args.get("tables") or ())
        if self.dialect == "mysql" and node.args.get("using"):
            # DELETE FROM a, b USING ...: the FROM list is the targets.
            named = [first, *(join.this for join in first.args.get("joins") or ())]
        if not named:
            self._add("delete", first)
            return
        aliases = {_alias(t): t for t in sources if isinstance(t, exp.Table)}
        for table in named:
            if not isinstance(table, exp.Table):
                raise _Undecidable("a DELETE target that is not a table")
            self.done.add(id(table))
            found = aliases.get(table.name) if not table.args.get("db") else None
            if found is not None and found is not table:
                self._add("delete", found)
            else:
                self._add("delete", table)

    def _ddl(self, node: Any) -> None:
        if isinstance(node, exp.TruncateTable):
            for table in node.expressions:
                self._add("ddl", _target(table))
            return
        if isinstance(node, exp.Alter):
            kind = str(node.args.get("kind") or "TABLE").upper()
            if kind != "TABLE":
                raise _Undecidable(f"ALTER {kind} statements")
            self._add("ddl", _target(node.this))
            return
        kind = str(node.args.get("kind") or "").upper()
        if kind not in _DDL_KINDS:
            raise _Undecidable(f"{type(node).__name__.upper()} {kind or '?'} statements")
        if isinstance(node, exp.Drop):
            tables = list(node.args.get("tables") or ([node.this] if node.this else []))
            for table in tables:
                if kind == "INDEX":  # DROP INDEX names an index: needs DDL on "*"
                    self.done.add(id(table))
                    self.accesses.setdefault(("ddl", "*"), None)
                else:
                    self._add("ddl", _target(table))
            return
        this = node.this
        if isinstance(this, exp.Index):
            table = this.args.get("table")
            if not isinstance(table, exp.Table):
                raise _Undecidable("an index on no table")
            self._add("ddl", table)
            return
        target = _target(this)
        self._add("ddl", target)
        if node.expression is not None and kind == "TABLE":
            self._add("insert", target)  # CREATE TABLE ... AS SELECT fills it


class _Undecidable(DBSystemError):
    """A statement part the checker cannot decide: the statement is refused (never raised
    out of ``analyse``)."""


def _is_any(node: Any, kinds: tuple[Any, ...]) -> bool:
    return isinstance(node, kinds)


def _first_word(text: str) -> str:
    words = re.findall(r"[A-Za-z_]+", text[:200])
    return words[0].upper() if words else "unknown"


def _kind(node: Any) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


def _target(node: Any) -> Any:
    if isinstance(node, exp.Schema):
        node = node.this
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise _Undecidable("a write whose target is not a table")
    return node


def _name(table: Any, dialect: str) -> str:
    parts = [table.args.get("catalog"), table.args.get("db"), table.this]
    names = [
        normalise(part.name, bool(part.args.get("quoted")), dialect)
        for part in parts
        if isinstance(part, exp.Identifier)
    ]
    return ".".join(names)


def _alias(table: Any) -> str:
    return str(table.alias or table.name)


def _from_tables(select: Any) -> list[Any]:
    """The tables a SELECT reads directly (its FROM and joins): what its row locks lock."""
    found = []
    source = select.args.get("from_") or select.args.get("from")
    items = [source.this] if source is not None else []
    items += [join.this for join in select.args.get("joins") or ()]
    for item in items:
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            if not _is_cte(item):
                found.append(item)
    return found


def _is_cte(table: Any) -> bool:
    """True if the unqualified ``table`` names a CTE in scope where it sits.

    A CTE is visible in its WITH's main statement and in the CTEs after it (and in itself
    when recursive); a non-recursive CTE's own body sees the real table of that name.
    """
    name = table.name.lower()
    child: Any = table
    through: Any = None  # the last CTE passed on the way up
    node: Any = table.parent
    while node is not None:
        if isinstance(node, exp.CTE):
            through = node
        with_ = (node.args.get("with_") or node.args.get("with")) if node.args else None
        if isinstance(with_, exp.With):
            ctes = list(with_.expressions)
            visible = ctes
            if child is with_:  # inside one of this WITH's CTEs
                inside = next(i for i, cte in enumerate(ctes) if cte is through)
                visible = ctes[: inside + (1 if with_.args.get("recursive") else 0)]
            if any(cte.alias_or_name.lower() == name for cte in visible):
                return True
        child = node
        node = node.parent
    return False


# Names a column may be qualified by without naming a table: the row an upsert proposes.
_PSEUDO_TABLES = frozenset({"excluded", "new", "old"})


def _unknown_qualifier(tree: Any) -> str | None:
    """A column qualifier that names no table, alias or CTE of the statement, if any: a
    builder's ``col("b.x")`` the compiler did not turn into a FROM item."""
    names = set(_PSEUDO_TABLES)
    for table in tree.find_all(exp.Table):
        names.add(table.name.lower())
    for alias in tree.find_all(exp.TableAlias):
        names.add(alias.name.lower())
    for cte in tree.find_all(exp.CTE):
        names.add(cte.alias_or_name.lower())
    for column in tree.find_all(exp.Column):
        qualifier = column.table
        if qualifier and qualifier.lower() not in names:
            return str(qualifier)
    return None


def _functions(tree: Any) -> frozenset[str]:
    names = set()
    for node in tree.find_all(exp.Func):
        if not isinstance(node, exp.Connector):  # (AND, OR: sqlglot's operators)
            names.add(_function_name(node))
    return frozenset(names)


def _function_name(node: Any) -> str:
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        parent = node.parent
        if isinstance(parent, exp.Dot) and parent.expression is node:
            return f"{parent.this.sql().lower()}.{name}"  # schema.fn(): not on any list
        return name
    return f"<{node.key}>"  # a function sqlglot knows by its own class


def readable(name: str) -> str:
    """A function name of an analysis as SQL spells it (``<currentversion>`` ->
    ``current_version``)."""
    _load()
    if name.startswith("<"):
        cls = _CLASSES.get(name[1:-1])
        return cls.sql_names()[0].lower() if cls is not None else name[1:-1]
    return name


@lru_cache(maxsize=1024)
def function_keys(names: frozenset[str], dialect: str) -> frozenset[str]:
    """What the function names a role grants (``Role(functions=...)``) are in an analysis
    on ``dialect``: the name, and sqlglot's class for it when it has one."""
    _load()
    keys = set(names)
    for name in names:
        if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            try:
                keys |= _functions(
                    sqlglot.parse_one(f"SELECT {name}()", read=SQL_DIALECTS[dialect])
                )
            except SqlglotError:
                pass  # (a function sqlglot reads only with arguments: its name stands)
    return frozenset(keys)


# -- the function allow-lists ---------------------------------------------------------------

# What a normal query calls, per dialect, written as calls: the allow-list is what sqlglot
# makes of them (its own class for the functions it knows, the name for the others).
_COMMON_CALLS = (
    "count(*)", "count(DISTINCT x)", "sum(x)", "avg(x)", "min(x)", "max(x)",
    "stddev(x)", "stddev_pop(x)", "stddev_samp(x)", "variance(x)", "var_pop(x)",
    "var_samp(x)", "coalesce(x, 1)", "nullif(x, 1)", "greatest(x, 1)", "least(x, 1)",
    "CASE WHEN x THEN 1 ELSE 2 END", "CAST(x AS INTEGER)", "CAST(x AS TEXT)",
    "lower(x)", "upper(x)", "length(x)", "trim(x)", "ltrim(x)", "rtrim(x)",
    "substr(x, 1, 2)", "substring(x, 1, 2)", "replace(x, 'a', 'b')", "abs(x)",
    "round(x)", "round(x, 2)", "floor(x)", "ceil(x)", "sign(x)", "mod(x, 2)",
    "power(x, 2)", "sqrt(x)", "exp(x)", "ln(x)", "log(10, x)", "instr(x, 'a')",
    "row_number() OVER (ORDER BY x)", "rank() OVER (ORDER BY x)",
    "dense_rank() OVER (ORDER BY x)", "lag(x) OVER (ORDER BY x)",
    "lead(x) OVER (ORDER BY x)", "first_value(x) OVER (ORDER BY x)",
    "last_value(x) OVER (ORDER BY x)", "ntile(2) OVER (ORDER BY x)",
    "percent_rank() OVER (ORDER BY x)", "cume_dist() OVER (ORDER BY x)",
    "nth_value(x, 2) OVER (ORDER BY x)", "CURRENT_TIMESTAMP", "CURRENT_DATE",
    "CURRENT_TIME", "EXTRACT(YEAR FROM x)", "concat(x, 'a')", "x || 'a'",
)  # fmt: skip
_DIALECT_CALLS = {
    "postgresql": (
        "now()",
        "date_part('year', x)",
        "date_trunc('day', x)",
        "age(x)",
        "to_char(x, 'YYYY')",
        "to_date(x, 'YYYY')",
        "to_timestamp(x)",
        "make_date(2020, 1, 2)",
        "x::int",
        "x::date",
        "x->'k'",
        "x->>'k'",
        "x#>'{a}'",
        "x#>>'{a}'",
        "x @> '{}'",
        "jsonb_extract_path(x, 'a')",
        "jsonb_extract_path_text(x, 'a')",
        "json_extract_path(x, 'a')",
        "json_extract_path_text(x, 'a')",
        "jsonb_array_length(x)",
        "json_array_length(x)",
        "jsonb_typeof(x)",
        "json_typeof(x)",
        "jsonb_build_object('a', x)",
        "json_build_object('a', x)",
        "jsonb_agg(x)",
        "json_agg(x)",
        "to_jsonb(x)",
        "to_json(x)",
        "array_agg(x)",
        "string_agg(x, ',')",
        "bool_and(x)",
        "bool_or(x)",
        "array_length(x, 1)",
        "cardinality(x)",
        "unnest(x)",
        "generate_series(1, 3)",
        "strpos(x, 'a')",
        "position('a' IN x)",
        "left(x, 1)",
        "right(x, 1)",
        "lpad(x, 2)",
        "rpad(x, 2)",
        "split_part(x, ',', 1)",
        "regexp_replace(x, 'a', 'b')",
        "initcap(x)",
        "md5(x)",
        "char_length(x)",
        "octet_length(x)",
        "trunc(x)",
        "random()",
        "gen_random_uuid()",
        "ceiling(x)",
        "x ILIKE 'a'",
        "format('%s', x)",
        "justify_days(x)",
        "localtimestamp",
        "clock_timestamp()",
        "statement_timestamp()",
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY x)",
        "mode() WITHIN GROUP (ORDER BY x)",
        "every(x)",
        "corr(x, x)",
        "covar_pop(x, x)",
        "x AT TIME ZONE 'UTC'",
        "date(x)",
    ),
    "mysql": (
        "now()",
        "curdate()",
        "curtime()",
        "sysdate()",
        "utc_timestamp()",
        "date(x)",
        "year(x)",
        "month(x)",
        "day(x)",
        "dayofmonth(x)",
        "hour(x)",
        "minute(x)",
        "second(x)",
        "week(x)",
        "dayofweek(x)",
        "dayofyear(x)",
        "weekday(x)",
        "date_format(x, '%Y')",
        "str_to_date(x, '%Y')",
        "date_add(x, INTERVAL 1 DAY)",
        "date_sub(x, INTERVAL 1 DAY)",
        "datediff(x, x)",
        "timestampdiff(SECOND, x, x)",
        "timestampadd(SECOND, 1, x)",
        "unix_timestamp(x)",
        "from_unixtime(x)",
        "last_day(x)",
        "ifnull(x, 1)",
        "if(x, 1, 2)",
        "concat_ws(',', x)",
        "group_concat(x)",
        "char_length(x)",
        "locate('a', x)",
        "left(x, 1)",
        "right(x, 1)",
        "lpad(x, 2, ' ')",
        "rpad(x, 2, ' ')",
        "reverse(x)",
        "repeat(x, 2)",
        "md5(x)",
        "sha2(x, 256)",
        "truncate(x, 1)",
        "rand()",
        "ceiling(x)",
        "uuid()",
        "json_extract(x, '$.a')",
        "json_unquote(x)",
        "json_object('a', x)",
        "json_array(x)",
        "json_contains(x, '1')",
        "json_length(x)",
        "json_keys(x)",
        "json_value(x, '$.a')",
        "json_arrayagg(x)",
        "json_objectagg('a', x)",
        "x->'$.a'",
        "x->>'$.a'",
        "bit_and(x)",
        "bit_or(x)",
        "x COLLATE utf8mb4_bin",
        "std(x)",
        "field(x, 1, 2)",
        "elt(1, x)",
        "format(x, 2)",
        "from_days(x)",
        "to_days(x)",
        "makedate(2020, 1)",
        "convert_tz(x, '+00:00', '+01:00')",
        "extract(YEAR FROM x)",
        "regexp_replace(x, 'a', 'b')",
        "x REGEXP 'a'",
    ),
    "sqlite": (
        "date(x)",
        "time(x)",
        "datetime(x)",
        "julianday(x)",
        "unixepoch(x)",
        "strftime('%Y', x)",
        "ifnull(x, 1)",
        "iif(x, 1, 2)",
        "instr(x, 'a')",
        "group_concat(x)",
        "total(x)",
        "random()",
        "hex(x)",
        "quote(x)",
        "typeof(x)",
        "printf('%d', x)",
        "format('%d', x)",
        "char(65)",
        "unicode(x)",
        "likely(x)",
        "unlikely(x)",
        "json(x)",
        "json_extract(x, '$.a')",
        "x->'$.a'",
        "x->>'$.a'",
        "json_array(x)",
        "json_object('a', x)",
        "json_type(x)",
        "json_valid(x)",
        "json_array_length(x)",
        "json_group_array(x)",
        "json_group_object('a', x)",
        "json_each(x)",
        "json_tree(x)",
        "json_quote(x)",
        "zeroblob(1)",
        "trunc(x)",
        "x GLOB 'a*'",
        "x LIKE 'a' ESCAPE '\\'",
        "x REGEXP 'a'",
        "ceiling(x)",
        "pi()",
    ),
}


# Allowed names no sample call above spells: MySQL's VALUES(col) in ON DUPLICATE KEY UPDATE.
_EXTRA_NAMES = {"mysql": {"values"}}


@cache
def allowed_functions(dialect: str) -> frozenset[str]:
    """The functions any user session may call on ``dialect``: what sqlglot makes of the
    calls listed above (``<key>`` for the functions it knows by class, else the name)."""
    _load()
    names: set[str] = set()
    for call in (*_COMMON_CALLS, *_DIALECT_CALLS.get(dialect, ())):
        try:
            tree = sqlglot.parse_one(f"SELECT {call}", read=SQL_DIALECTS[dialect])
        except SqlglotError:
            continue  # (a spelling this dialect's parser does not read)
        names |= _functions(tree)
    return frozenset(names | _EXTRA_NAMES.get(dialect, set()))
