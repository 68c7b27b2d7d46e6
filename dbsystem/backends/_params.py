"""``:name`` parameters, rewritten for drivers that take ``%(name)s`` (psycopg, pymysql).

The rewrite is a real tokenizer, not a blind substitution: a ``:word`` inside a string
literal, a quoted identifier, a comment or a PostgreSQL dollar-quoted body stays as it is;
PostgreSQL's ``::type`` casts are kept (``:id::int`` binds ``id`` and keeps the cast); a
literal ``%`` is doubled so the driver's formatting leaves it alone. Results are cached by
statement text, so a statement seen before costs one dictionary lookup.

``expand_lists`` is the one place where a list or tuple value meets the statement text, for
every SQL backend: ``x IN :ids``, ``x IN (:ids)`` and their ``NOT IN`` forms take a list.
SQLite and MySQL get one placeholder per item (``:ids_0, :ids_1, ...``; on SQLite a list
of more than 256 numbers or strings is bound as one JSON text read by ``json_each``, since
SQLite's parser finds named parameters by a linear search, quadratic over 100,000 of them);
PostgreSQL gets ``x = ANY(:ids)`` / ``x <> ALL(:ids)`` with the list bound as one array, so the
statement text is the same for every length and the 65,535-parameter limit does not apply.
An empty list answers as SQL does for an empty set (``IN``: no row; ``NOT IN``: every row).
A list where a scalar is compared (``x = :ids``, ``LIKE``, ``BETWEEN``...) is refused with
``InterfaceError`` instead of being bound as text or an array; assignments (``SET x = :v``),
``VALUES (:v)``, function arguments and ``= ANY(:v)`` keep the value as the driver binds it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from dbsystem.errors import InterfaceError

__all__ = ["expand_lists", "is_stacked", "to_pyformat"]

_NAME = r"(?<![\w:]):(?P<name>[A-Za-z_][A-Za-z0-9_]*)"


def _tokenizer(skip: str) -> re.Pattern[str]:
    """A dialect's pattern: what to ``skip`` (strings, quoted names, comments), else a
    ``:name`` placeholder, else a literal ``%``."""
    return re.compile(
        rf"(?P<skip>{skip}) | {_NAME} | %",
        re.VERBOSE | re.DOTALL,
    )


_POSTGRES = _tokenizer(
    r"""
        [eE]'(?:[^'\\]|\\.|'')*'            # E'...' strings with backslash escapes
      | '(?:[^']|'')*'                      # standard strings
      | "(?:[^"]|"")*"                      # quoted identifiers
      | \$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$   # dollar quoting
      | --[^\n]*                            # line comments
      | /\*.*?\*/                           # block comments
      | ::                                  # casts
    """
)

_MYSQL = _tokenizer(
    r"""
        '(?:[^'\\]|\\.|'')*'                # strings, backslash escapes
      | "(?:[^"\\]|\\.|"")*"                # double-quoted strings
      | `(?:[^`]|``)*`                      # quoted identifiers
      | (?:\#|--\s)[^\n]*                   # line comments
      | /\*.*?\*/                           # block comments
    """
)

_SQLITE = _tokenizer(
    r"""
        '(?:[^']|'')*'                      # strings
      | "(?:[^"]|"")*"                      # quoted identifiers
      | `(?:[^`]|``)*`                      # quoted identifiers (MySQL style)
      | \[[^\]]*\]                           # quoted identifiers (Access style)
      | --[^\n]*                            # line comments
      | /\*.*?\*/                           # block comments
    """
)

_PATTERNS = {"postgresql": _POSTGRES, "mysql": _MYSQL, "sqlite": _SQLITE}

# What comes right before a list placeholder, read backwards over a short window.
_IN_BEFORE = re.compile(r"(?i)\b(?P<not>NOT\s+)?IN\s*(?P<paren>\(\s*)?$")
_CLOSE_AFTER = re.compile(r"\s*\)")
_COMPARED = re.compile(
    r"(?i)(?:[=<>]|!=|\bLIKE|\bILIKE|\bBETWEEN|\bIS(?:\s+NOT)?|\bIN\s*\(\s*)\s*$"
)
# The clause a compared placeholder belongs to: an assignment after SET/UPDATE is allowed.
_CLAUSE = re.compile(
    r"(?i)\b(SET|UPDATE|WHERE|AND|OR|NOT|ON|HAVING|WHEN|THEN|ELSE|SELECT|VALUES|IN|RETURNING)\b"
)
_WINDOW = 48
# An empty set, per dialect, for ``x IN <empty>`` (SQLite takes ``()``; PostgreSQL binds '{}').
_EMPTY = {"sqlite": "", "mysql": "SELECT 1 FROM DUAL WHERE 1 = 0"}


_SQLITE_INLINE = 256
_JSON_SCALARS = frozenset({int, float, str, type(None)})


def _json_scalars(items: Any) -> bool:
    """True if every item reads back from ``json_each`` as the value it is."""
    return all(type(item) in _JSON_SCALARS for item in items)


def _is_list(value: Any) -> bool:
    return type(value) is list or type(value) is tuple


def expand_lists(
    sql: str, params: Mapping[str, Any], dialect: str
) -> tuple[str, Mapping[str, Any]]:
    """``sql`` and ``params`` with every list or tuple value after ``IN`` made portable
    (see the module docstring); unchanged (the same objects) when no value is a list."""
    for value in params.values():
        if type(value) is list or type(value) is tuple:
            break
    else:
        return sql, params
    return _expand(sql, params, dialect)


def _refuse(name: str, sql: str, dialect: str) -> InterfaceError:
    return InterfaceError(
        f"parameter :{name} is a list where one value is compared; write "
        f"'IN (:{name})' to match any item of the list",
        backend=dialect,
        statement=sql,
    )


def _compared(before: str, prefix: str) -> bool:
    """True if the placeholder ending ``prefix`` stands where one value is compared: after a
    comparison operator outside an assignment (``SET a = :v``), or in an ``IN (...)`` list
    of several items."""
    comma = before.rstrip().endswith(",")
    if not comma and _COMPARED.search(before) is None:
        return False
    keywords = _CLAUSE.findall(prefix)
    keyword = keywords[-1].upper() if keywords else ""
    if comma:
        return keyword == "IN"
    return keyword not in ("SET", "UPDATE")


def _expand(sql: str, params: Mapping[str, Any], dialect: str) -> tuple[str, dict[str, Any]]:
    pattern = _PATTERNS[dialect]
    out: list[str] = []
    new: dict[str, Any] = dict(params)
    last = 0
    for match in pattern.finditer(sql):
        name = match.group("name")
        if name is None or not _is_list(params.get(name)):
            continue
        start, end = match.span()
        before = sql[max(last, start - _WINDOW) : start]
        found = _IN_BEFORE.search(before)
        closing = _CLOSE_AFTER.match(sql, end) if found and found.group("paren") else None
        if found is None or (found.group("paren") and closing is None):
            if _compared(before, sql[:start]):
                raise _refuse(name, sql, dialect)
            continue  # VALUES (:v), f(:v), ANY(:v), SET a = :v: bound as the driver does
        items = params[name]
        negated = found.group("not") is not None
        if dialect == "postgresql":
            # x = ANY(array) / x <> ALL(array): one parameter whatever the length.
            keyword_at = start - len(before) + found.start()
            out.append(sql[last:keyword_at])
            out.append(f"{'<> ALL' if negated else '= ANY'}(:{name})")
            last = closing.end() if closing is not None else end
            new[name] = list(items)
            continue
        if dialect == "sqlite" and len(items) > _SQLITE_INLINE and _json_scalars(items):
            # SQLite looks a named parameter up by a linear search of those seen before, so
            # 100,000 placeholders cost minutes: a long list is bound as one JSON array.
            key = f"{name}_json"
            while key in params:
                key = "_" + key
            new[key] = json.dumps(list(items), separators=(",", ":"))
            out.append(sql[last:start])
            body = f"SELECT value FROM json_each(:{key})"
            out.append(body if closing is not None else f"({body})")
            last = end
            continue
        names = []
        for index, item in enumerate(items):
            key = f"{name}_{index}"
            while key in params:
                key = "_" + key
            new[key] = item
            names.append(":" + key)
        body = ", ".join(names) if names else _EMPTY[dialect]
        out.append(sql[last:start])
        out.append(body if closing is not None else f"({body})")
        last = end
    if not out:
        return sql, new
    out.append(sql[last:])
    return "".join(out), new


@lru_cache(maxsize=2048)
def to_pyformat(sql: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """Rewrite ``:name`` placeholders as ``%(name)s``; return the text and the names used."""
    names: dict[str, None] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is not None:
            names.setdefault(name, None)
            return f"%({name})s"
        # The driver formats the whole text, literals and comments included: double every %.
        return match.group(0).replace("%", "%%")

    return _PATTERNS[dialect].sub(replace, sql), tuple(names)


@lru_cache(maxsize=512)
def is_stacked(sql: str, dialect: str) -> bool:
    """True if ``sql`` holds more than one statement (semicolons in literals, quoted names
    and comments do not count; a trailing one does not either)."""
    pattern = _PATTERNS[dialect]
    bare = pattern.sub(lambda m: " " if m.group("skip") else m.group(0), sql)
    return sum(1 for part in bare.split(";") if part.strip()) > 1
