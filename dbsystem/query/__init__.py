"""Query builders: SQL today, compiled per dialect with SQLAlchemy Core.

``db.query(DatabaseType.X)`` gives builders bound to a pool; the module-level ``select``,
``insert_into``, ``update``, ``delete_from`` and ``raw_sql`` give unbound ones (subqueries,
or ``build(dialect=...)``). The expressions (``col``, ``func``, ``count``...) are
backend-neutral: the same objects will filter MongoDB collections.
"""

from dbsystem.query import expr as _expr
from dbsystem.query import sql as _sql
from dbsystem.query.expr import *  # noqa: F403  (the expressions: expr.__all__)
from dbsystem.query.sql import *  # noqa: F403  (the builders: sql.__all__)

# What each module lists as public (one list each to keep), sorted.
__all__ = sorted([*_expr.__all__, *_sql.__all__])
