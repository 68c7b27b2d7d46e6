"""``:name`` parameters, rewritten for drivers that take ``%(name)s`` (psycopg, pymysql).

The rewrite is a real tokenizer, not a blind substitution: a ``:word`` inside a string
literal, a quoted identifier, a comment or a PostgreSQL dollar-quoted body stays as it is;
PostgreSQL's ``::type`` casts are kept (``:id::int`` binds ``id`` and keeps the cast); a
literal ``%`` is doubled so the driver's formatting leaves it alone. Results are cached by
statement text, so a statement seen before costs one dictionary lookup.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["is_stacked", "to_pyformat"]

_NAME = r"(?<![\w:]):(?P<name>[A-Za-z_][A-Za-z0-9_]*)"

_POSTGRES = re.compile(
    r"""
    (?P<skip>
        [eE]'(?:[^'\\]|\\.|'')*'            # E'...' strings with backslash escapes
      | '(?:[^']|'')*'                      # standard strings
      | "(?:[^"]|"")*"                      # quoted identifiers
      | \$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$   # dollar quoting
      | --[^\n]*                            # line comments
      | /\*.*?\*/                           # block comments
      | ::                                  # casts
    )
    | """
    + _NAME
    + r"""
    | %
    """,
    re.VERBOSE | re.DOTALL,
)

_MYSQL = re.compile(
    r"""
    (?P<skip>
        '(?:[^'\\]|\\.|'')*'                # strings, backslash escapes
      | "(?:[^"\\]|\\.|"")*"                # double-quoted strings
      | `(?:[^`]|``)*`                      # quoted identifiers
      | (?:\#|--\s)[^\n]*                   # line comments
      | /\*.*?\*/                           # block comments
    )
    | """
    + _NAME
    + r"""
    | %
    """,
    re.VERBOSE | re.DOTALL,
)

_PATTERNS = {"postgresql": _POSTGRES, "mysql": _MYSQL}


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
