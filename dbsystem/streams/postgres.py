"""PostgreSQL LISTEN/NOTIFY, and a trigger that notifies each row change as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dbsystem.errors import InterfaceError
from dbsystem.kernel.types import DatabaseType
from dbsystem.query.expr import check_identifier
from dbsystem.streams._base import ChangeEvent, Subscription, application_backend

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["PostgresListener", "install_change_trigger"]


class PostgresListener(Subscription):
    """``LISTEN`` on channels over a connection of its own (outside the pool: it is held for
    as long as the subscription lives). ``json=True`` decodes each payload as JSON.

    NOTIFY is at most once: notifications sent while the listener is reconnecting are lost
    (use Redis Streams, or a table the listener reads, where that matters).
    """

    source = "postgres"

    def __init__(
        self,
        db: DatabaseManager,
        channels: Sequence[str],
        *,
        name: str | None = None,
        json: bool = False,
        callback: Callable[[ChangeEvent], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(callback=callback, **options)
        if not channels:
            raise InterfaceError("PostgresListener: channels is empty; LISTEN needs at least one")
        self.channels = [check_identifier(c, "channel") for c in channels]
        self._backend = application_backend(db, DatabaseType.POSTGRES, name)
        self._json = json
        self._conn: Any = None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None while disconnected)."""
        conn = self._conn
        return None if conn is None else conn.backend_pid

    def _open(self) -> None:
        conn: Any = self._backend.connect()
        try:
            for channel in self.channels:
                conn._run(f"LISTEN {channel}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _read(self) -> None:
        driver = self._conn.driver_connection
        decode = json.loads if self._json else None
        while not self._stopping.is_set():
            for note in driver.notifies(timeout=0.2):
                payload = decode(note.payload) if decode is not None else note.payload
                self._emit(ChangeEvent("postgres", note.channel, payload))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def install_change_trigger(
    db: DatabaseManager, table: str, *, channel: str | None = None, name: str | None = None
) -> str:
    """Make every INSERT, UPDATE and DELETE on ``table`` notify ``channel`` (default
    ``<table>_changes``) with ``{"op", "table", "row"}`` as JSON; returns the channel.

    ``row`` is the new row (the old one for DELETE). NOTIFY payloads are limited to 8000
    bytes: a bigger row is sent as ``{"op", "table", "truncated": true}``. Idempotent.
    """
    table = check_identifier(table, "table")
    channel = check_identifier(channel or f"{table.replace('.', '_')}_changes", "channel")
    function = f"dbsystem_notify_{table.replace('.', '_')}"
    with db.connection(DatabaseType.POSTGRES, name=name) as conn:
        conn.execute(
            f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
DECLARE payload text;
BEGIN
  payload := json_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'row',
    row_to_json(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END))::text;
  IF octet_length(payload) > 7900 THEN
    payload := json_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'truncated', true)::text;
  END IF;
  PERFORM pg_notify('{channel}', payload);
  RETURN NULL;
END $$ LANGUAGE plpgsql"""
        )
        conn.execute(f"DROP TRIGGER IF EXISTS dbsystem_notify ON {table}")
        conn.execute(
            f"CREATE TRIGGER dbsystem_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
    return channel
