"""Query builders: SQL today, compiled per dialect with SQLAlchemy Core.

``db.query(DatabaseType.X)`` gives builders bound to a pool; the module-level ``select``,
``insert_into``, ``update``, ``delete_from`` and ``raw_sql`` give unbound ones (subqueries,
or ``build(dialect=...)``). The expressions (``col``, ``func``, ``count``...) are
backend-neutral: the same objects will filter MongoDB collections.
"""

from dbsystem.query.expr import (
    Expr,
    avg,
    case,
    cast,
    col,
    count,
    escape_like,
    exists,
    extract,
    func,
    literal,
    max_,
    min_,
    not_,
    sum_,
)
from dbsystem.query.sql import (
    DeleteQuery,
    InsertQuery,
    QueryFactory,
    RawQuery,
    SelectQuery,
    SetQuery,
    UpdateQuery,
    delete_from,
    insert_into,
    raw_sql,
    select,
    update,
)

__all__ = [
    "DeleteQuery",
    "Expr",
    "InsertQuery",
    "QueryFactory",
    "RawQuery",
    "SelectQuery",
    "SetQuery",
    "UpdateQuery",
    "avg",
    "case",
    "cast",
    "col",
    "count",
    "delete_from",
    "escape_like",
    "exists",
    "extract",
    "func",
    "insert_into",
    "literal",
    "max_",
    "min_",
    "not_",
    "raw_sql",
    "select",
    "sum_",
    "update",
]
