"""MongoDB change streams, where the server has them (replica sets and sharded clusters)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dbsystem.errors import NotSupportedError
from dbsystem.kernel.types import DatabaseType
from dbsystem.streams._base import ChangeEvent, Subscription, application_backend

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["MongoChangeStream"]

# The server's "only supported on replica sets" and "not supported" error codes.
_UNSUPPORTED_CODES = {40573, 40324, 115}


class MongoChangeStream(Subscription):
    """``collection.watch(pipeline)``, resumed after the last change seen when the
    connection drops (no change is lost while the server keeps its oplog).

    A standalone server and mongomock have no change streams: ``NotSupportedError``.
    """

    source = "mongodb"

    def __init__(
        self,
        db: DatabaseManager,
        collection: str,
        *,
        name: str | None = None,
        pipeline: Sequence[Mapping[str, Any]] = (),
        callback: Callable[[ChangeEvent], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(callback=callback, **options)
        backend = application_backend(db, DatabaseType.MONGODB, name)
        if getattr(backend, "mock", False):
            raise NotSupportedError("mongomock has no change streams", backend=backend.name)
        self.collection = collection
        self._target = backend.database[collection]
        self._pipeline = [dict(stage) for stage in pipeline]
        self._stream: Any = None
        self._resume: Any = None

    def _open(self) -> None:
        from pymongo import errors

        try:
            self._stream = self._target.watch(
                self._pipeline, resume_after=self._resume, max_await_time_ms=200
            )
        except errors.OperationFailure as exc:
            if exc.code in _UNSUPPORTED_CODES or "replica set" in str(exc):
                raise NotSupportedError(
                    f"this MongoDB server has no change streams (standalone?): {exc}",
                    backend="mongodb",
                ) from exc
            raise

    def _read(self) -> None:
        stream = self._stream
        while not self._stopping.is_set():
            change = stream.try_next()
            if change is None:
                continue  # try_next waits up to max_await_time_ms
            self._resume = stream.resume_token
            self._emit(ChangeEvent("mongodb", self.collection, change, self._resume))

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
