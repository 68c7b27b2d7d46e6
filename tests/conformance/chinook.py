"""The Chinook sample database (tests/data/chinook, MIT licence): schema and loading.

The schema is declared once with SQLAlchemy Core and created with each dialect's DDL; the
rows go in with ``insert_many`` (COPY on PostgreSQL, multi-row INSERT on MySQL).
"""

from __future__ import annotations

import datetime
import json
import pathlib
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from dbsystem import DatabaseManager
from dbsystem.query._compile import _DIALECTS

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "chinook" / "ChinookData.json"

metadata = sa.MetaData()


def _id(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer, primary_key=True, autoincrement=False)


def _fk(name: str, target: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer, sa.ForeignKey(target), nullable=nullable)


def _s(name: str, size: int, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.String(size), nullable=nullable)


def _table(name: str, *columns: Any) -> sa.Table:
    # Binary collation on MySQL, as PostgreSQL's C collation and SQLite: text sorts and
    # compares by code point on all three, so ORDER BY agrees.
    return sa.Table(name, metadata, *columns, mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin")


TABLES = [
    _table("Genre", _id("GenreId"), _s("Name", 120)),
    _table("MediaType", _id("MediaTypeId"), _s("Name", 120)),
    _table("Artist", _id("ArtistId"), _s("Name", 120)),
    _table(
        "Album", _id("AlbumId"), _s("Title", 160, False), _fk("ArtistId", "Artist.ArtistId", False)
    ),
    _table(
        "Track",
        _id("TrackId"),
        _s("Name", 200, False),
        _fk("AlbumId", "Album.AlbumId"),
        _fk("MediaTypeId", "MediaType.MediaTypeId", False),
        _fk("GenreId", "Genre.GenreId"),
        _s("Composer", 220),
        sa.Column("Milliseconds", sa.Integer, nullable=False),
        sa.Column("Bytes", sa.Integer),
        sa.Column("UnitPrice", sa.Numeric(10, 2), nullable=False),
    ),
    _table(
        "Employee",
        _id("EmployeeId"),
        _s("LastName", 20, False),
        _s("FirstName", 20, False),
        _s("Title", 30),
        _fk("ReportsTo", "Employee.EmployeeId"),
        sa.Column("BirthDate", sa.DateTime),
        sa.Column("HireDate", sa.DateTime),
        _s("Address", 70),
        _s("City", 40),
        _s("State", 40),
        _s("Country", 40),
        _s("PostalCode", 10),
        _s("Phone", 24),
        _s("Fax", 24),
        _s("Email", 60),
    ),
    _table(
        "Customer",
        _id("CustomerId"),
        _s("FirstName", 40, False),
        _s("LastName", 20, False),
        _s("Company", 80),
        _s("Address", 70),
        _s("City", 40),
        _s("State", 40),
        _s("Country", 40),
        _s("PostalCode", 10),
        _s("Phone", 24),
        _s("Fax", 24),
        _s("Email", 60, False),
        _fk("SupportRepId", "Employee.EmployeeId"),
    ),
    _table(
        "Invoice",
        _id("InvoiceId"),
        _fk("CustomerId", "Customer.CustomerId", False),
        sa.Column("InvoiceDate", sa.DateTime, nullable=False),
        _s("BillingAddress", 70),
        _s("BillingCity", 40),
        _s("BillingState", 40),
        _s("BillingCountry", 40),
        _s("BillingPostalCode", 10),
        sa.Column("Total", sa.Numeric(10, 2), nullable=False),
    ),
    _table(
        "InvoiceLine",
        _id("InvoiceLineId"),
        _fk("InvoiceId", "Invoice.InvoiceId", False),
        _fk("TrackId", "Track.TrackId", False),
        sa.Column("UnitPrice", sa.Numeric(10, 2), nullable=False),
        sa.Column("Quantity", sa.Integer, nullable=False),
    ),
    _table("Playlist", _id("PlaylistId"), _s("Name", 120)),
    _table(
        "PlaylistTrack",
        sa.Column("PlaylistId", sa.Integer, sa.ForeignKey("Playlist.PlaylistId"), primary_key=True),
        sa.Column("TrackId", sa.Integer, sa.ForeignKey("Track.TrackId"), primary_key=True),
    ),
]
DATE_COLUMNS = {"BirthDate", "HireDate", "InvoiceDate"}


@cache
def data() -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = json.loads(DATA.read_text(encoding="utf-8"))
    return loaded


def load(manager: DatabaseManager) -> None:
    """Drop and create the Chinook tables in the manager's default database, then load."""
    dialect_name = manager.backend().dialect
    dialect = _DIALECTS[dialect_name]
    quote = dialect.identifier_preparer.quote
    with manager.connection() as conn:
        for table in reversed(TABLES):
            conn.execute(f"DROP TABLE IF EXISTS {quote(table.name)}")
        for table in TABLES:
            conn.execute(str(CreateTable(table).compile(dialect=dialect)))
        rows = data()
        for table in TABLES:
            batch = [_convert(row, dialect_name) for row in rows[table.name]]
            conn.insert_many(table.name, batch)


def _convert(row: dict[str, Any], dialect: str) -> dict[str, Any]:
    out = dict(row)
    for name in DATE_COLUMNS & out.keys():
        value = out[name]
        if value is not None:
            stamp = datetime.datetime.fromisoformat(value)
            out[name] = stamp.isoformat(" ") if dialect == "sqlite" else stamp
    return out
