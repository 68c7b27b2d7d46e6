"""The ORM: typed entities (pydantic) persisting to SQLite, PostgreSQL, MySQL and MongoDB.

See ``dbsystem.orm.entity`` for the model and ``dbsystem.orm.schema`` for table creation.
"""

from dbsystem.orm.entity import Entity, EntityPage, EntityQuery
from dbsystem.orm.fields import NOT_LOADED, Field, Relation
from dbsystem.orm.schema import create_tables, drop_tables

__all__ = [
    "Entity",
    "EntityPage",
    "EntityQuery",
    "Field",
    "NOT_LOADED",
    "Relation",
    "create_tables",
    "drop_tables",
]
