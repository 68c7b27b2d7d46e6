"""Sans-I/O flows: the decisions the sync and the async engine share, written once.

httpx's approach (``_auth.py``): the logic that decides *what* to do next is plain code
with no I/O, and a thin sync driver and a thin async driver carry out each step, the one
calling, the other awaiting. The transaction block's steps live here; the pool's
bookkeeping, replica choice (``core.replicas``) and the hooks (``kernel.hooks``) follow the
same rule. docs/ARCHITECTURE.md ("Sync and async") says why this, and not code generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from dbsystem.errors import InterfaceError

__all__ = ["Step", "TransactionFlow"]


class Step(NamedTuple):
    """One step to carry out: its hook operation, its text, and the backend call."""

    operation: str
    text: str
    call: Callable[[], Any]


class TransactionFlow:
    """The steps of one ``transaction()`` block on a backend connection ``raw``.

    ``begin()`` gives the step that opens it (BEGIN, or a savepoint when one is open);
    the driver runs it and passes its result (the savepoint's name, or None) to
    ``begun()``. ``end(failed)`` gives the step that closes it (COMMIT or RELEASE, or on
    failure ROLLBACK / ROLLBACK TO), or None when there is nothing to do: the connection
    is broken (a lost server, a cancelled statement) and the pool will drop it.
    """

    __slots__ = ("_active", "_isolation", "_raw", "_readonly", "_savepoint")

    def __init__(self, raw: Any, isolation: str | None, readonly: bool) -> None:
        self._raw = raw
        self._isolation = isolation
        self._readonly = readonly
        self._savepoint: str | None = None
        self._active = False

    def begin(self) -> Step:
        if self._active:
            raise InterfaceError("this transaction block is already open")
        raw = self._raw
        text = "BEGIN" if raw.tx_depth == 0 else f"SAVEPOINT dbsystem_sp_{raw.tx_depth}"
        return Step("begin", text, lambda: raw.begin(self._isolation, self._readonly))

    def begun(self, savepoint: str | None) -> None:
        self._savepoint = savepoint
        self._active = True

    def end(self, failed: bool) -> Step | None:
        self._active = False
        raw = self._raw
        savepoint = self._savepoint
        if not failed:
            text = "COMMIT" if savepoint is None else f"RELEASE SAVEPOINT {savepoint}"
            return Step("commit", text, lambda: raw.commit(savepoint))
        if raw.broken:
            return None
        text = "ROLLBACK" if savepoint is None else f"ROLLBACK TO SAVEPOINT {savepoint}"
        return Step("rollback", text, lambda: raw.rollback(savepoint))
