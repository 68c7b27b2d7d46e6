"""Misuses of the manager's calls that both checkers must flag."""

from __future__ import annotations

from typing import Any

import pydantic

from dbsystem import AsyncDatabaseManager, DatabaseManager


class Person(pydantic.BaseModel):
    id: int


db = DatabaseManager()
Rows = list[dict[str, Any]]
people: Rows = db.fetch_all("SELECT 1", row_type=Person)  # E: arg-type reportAssignmentType
db.fetch_all("SELECT 1", row_type=Person)[0]["id"]  # E: index reportIndexIssue
db.fetch_all("SELECT 1", {"id"})  # E: call-overload reportArgumentType
db.fetch_all("SELECT 1", row_type="Person")  # E: call-overload reportArgumentType


async def awaited() -> None:
    adb = AsyncDatabaseManager()
    rows: list[Person] = adb.fetch_all("SELECT 1", row_type=Person)  # E: assignment reportAssignmentType
