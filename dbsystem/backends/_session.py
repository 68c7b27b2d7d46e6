"""Does a statement change its connection's session? The cheap test behind the pool's reset.

A lease returns to the pool reset (``SQLConnectionBase.reset``): PostgreSQL ``DISCARD ALL``,
MariaDB's ``COM_RESET_CONNECTION``, SQLite a fresh connection... Each costs at least one
round trip, so it runs only when the lease may have changed session state. The connection
asks ``changes_session(text)`` for each statement it runs (a set lookup once a text is
known) and remembers the answer until its next reset.

A text is *plain* (cannot change session state) when all of this holds, else it is not:

* it starts with ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``WITH``, ``VALUES`` or
  ``TABLE`` (``SET``, ``PREPARE``, ``LISTEN``, ``CREATE TEMP``, ``PRAGMA``, ``ATTACH``,
  ``USE``... are not);
* every call in it is of a function on the short list below, whose effects end with the
  statement (``set_config``, ``pg_advisory_lock``, ``nextval``, ``dblink_connect``, any
  function of the application's own... are not: unknown means not plain);
* it has no comment (MariaDB runs ``/*! ... */``), no ``@`` (MariaDB user variables), no
  ``INTO`` after a leading ``SELECT``/``WITH``/``VALUES``/``TABLE`` (``SELECT ... INTO``
  makes a table or sets variables) and no ``TEMP``/``TEMPORARY`` word.

Words inside string literals count too: a literal ``'set_config('`` makes a text not plain,
which only costs a reset. What this cannot see: triggers and the bodies of functions on the
list do not change session state in the schemas this library creates; an application whose
triggers do (``set_config`` in a trigger) marks such leases with
``conn.session_changed()``. Implicit sequence use (an ``INSERT`` into a
``serial`` column sets ``lastval()``) and MariaDB's ``LAST_INSERT_ID()`` are per-statement
results, not settings, and are not reset on the plain path.
"""

from __future__ import annotations

import re

__all__ = ["PLAIN", "changes_session"]

_LEADS = frozenset({"select", "insert", "update", "delete", "with", "values", "table"})
_READS = frozenset({"select", "with", "values", "table"})  # where INTO makes something

# Words followed by "(" that are SQL syntax, not function calls.
_SYNTAX = frozenset(
    """
    all and any as between by case cast conflict cross distinct else end except exists filter
    from full group having in inner intersect is join key lateral left like limit not offset
    on or order over partition returning right row select set some then union using values
    when where within
    """.split()
)
# Functions whose effects end with the statement (aggregates, string, math, date, JSON).
_PURE = frozenset(
    """
    abs avg ceil ceiling char_length character_length coalesce concat concat_ws count
    current_date current_time current_timestamp date date_trunc datetime dense_rank extract
    first_value floor greatest group_concat ifnull iif instr json_array json_build_object
    json_extract json_object jsonb_build_object jsonb_extract_path julianday lag last_value
    lead least length lower ltrim max min mod nullif ntile octet_length percent_rank position
    power rank replace round row_number rtrim sign sqrt strftime string_agg array_agg substr
    substring sum to_char trim upper
    """.split()
)
_LEAD = re.compile(r"[\s(]*([A-Za-z]+)")
# An identifier followed by "(", after the table name of INSERT INTO t (...) is removed.
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_$]*)\s*\(")
_INSERT_TARGET = re.compile(r"\binto\s+[A-Za-z0-9_.\"`]+\s*\(", re.IGNORECASE)
_WORD_INTO = re.compile(r"\binto\b", re.IGNORECASE)
_WORD_TEMP = re.compile(r"\btemp(?:orary)?\b", re.IGNORECASE)

# Texts known to be plain; bounded (cleared when full: texts repeat, so it refills at once).
# The statement methods test ``sql not in PLAIN`` before calling ``changes_session``: on the
# hot path that is the whole cost (a set lookup of a string whose hash is cached).
PLAIN: set[str] = set()
_PLAIN = PLAIN
_PLAIN_MAX = 4096


def _plain(sql: str) -> bool:
    lead = _LEAD.match(sql)
    if lead is None or lead.group(1).lower() not in _LEADS:
        return False
    if "--" in sql or "/*" in sql or "#" in sql or "@" in sql:
        return False
    if '"(' in sql or "`(" in sql or "](" in sql:  # a quoted function name
        return False
    if _WORD_TEMP.search(sql):
        return False
    if lead.group(1).lower() in _READS:
        if _WORD_INTO.search(sql) and not _INSERT_TARGET.search(sql):
            return False
    body = _INSERT_TARGET.sub("into (", sql)
    for name in _CALL.findall(body):
        word = name.lower()
        if word not in _SYNTAX and word not in _PURE:
            return False
    return True


def changes_session(sql: str) -> bool:
    """True if running ``sql`` may change the session state of its connection (see the
    module docstring); plain texts are remembered, so a repeated one costs a set lookup."""
    if sql in _PLAIN:
        return False
    if not _plain(sql):
        return True
    if len(_PLAIN) >= _PLAIN_MAX:
        _PLAIN.clear()  # (the same set object: the statement methods hold it)
    _PLAIN.add(sql)
    return False
