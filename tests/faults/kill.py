"""Ending server-side sessions from outside, as an operator or a crash would."""

from __future__ import annotations

from dbsystem import DatabaseManager, DatabaseType


def _admin(db_type: DatabaseType, url: str) -> DatabaseManager:
    admin = DatabaseManager()
    admin.create_pool(db_type, url)
    return admin


def pg_terminate(url: str, application_name: str) -> int:
    """``pg_terminate_backend`` every session with ``application_name``; returns how many."""
    admin = _admin(DatabaseType.POSTGRES, url)
    try:
        return int(
            admin.fetch_value(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()",
                {"name": application_name},
            )
        )
    finally:
        admin.close_all()


def pg_sessions(url: str, application_name: str) -> int:
    admin = _admin(DatabaseType.POSTGRES, url)
    try:
        return int(
            admin.fetch_value(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name",
                {"name": application_name},
            )
        )
    finally:
        admin.close_all()


def mysql_kill(url: str, connection_ids: list[int]) -> None:
    """MariaDB ``KILL`` each connection id."""
    admin = _admin(DatabaseType.MYSQL, url)
    try:
        for connection_id in connection_ids:
            admin.execute(f"KILL {int(connection_id)}")
    finally:
        admin.close_all()


def redis_kill(url: str, *args: str) -> None:
    """``CLIENT KILL`` with filters (``"TYPE", "normal"``, ``"ID", "7"``...), skipping self."""
    admin = _admin(DatabaseType.REDIS, url)
    try:
        with admin.connection(DatabaseType.REDIS) as conn:
            conn.execute("CLIENT", "KILL", *args, "SKIPME", "yes")
    finally:
        admin.close_all()


def redis_pause(url: str, milliseconds: int) -> None:
    """``CLIENT PAUSE`` every client for ``milliseconds``."""
    admin = _admin(DatabaseType.REDIS, url)
    try:
        with admin.connection(DatabaseType.REDIS) as conn:
            conn.execute("CLIENT", "PAUSE", str(milliseconds), "ALL")
    finally:
        admin.close_all()
