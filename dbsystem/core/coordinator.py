"""Two-phase commit across the SQL pools of one manager: ``TransactionCoordinator``.

    coordinator = TransactionCoordinator(db, log="/var/lib/shop/2pc.log")
    with coordinator.transaction([DatabaseType.POSTGRES, DatabaseType.MYSQL]) as tx:
        tx.connection(DatabaseType.POSTGRES).execute("UPDATE accounts ...", {...})
        tx.connection(DatabaseType.MYSQL).execute("INSERT INTO ledger ...", {...})

The protocol, presumed abort:

1. Each participant opens a transaction under one global id (PostgreSQL ``BEGIN``, MySQL
   ``XA START``) and the block runs. An exception in the block rolls every one back.
2. Phase one: each participant prepares (``PREPARE TRANSACTION`` / ``XA END`` +
   ``XA PREPARE``); the database then keeps the transaction, durably, until told. A failure
   here rolls back every participant, prepared or not.
3. The decision to commit is appended to the coordinator log and fsynced. Until then a
   crash means abort; after it, commit.
4. Phase two: ``COMMIT PREPARED`` / ``XA COMMIT`` on each participant, then a ``done`` record.

``recover()`` (also run when a coordinator is made) finds the transactions this coordinator
left prepared in its databases (their ids carry its id) and finishes them: committed if
the log holds the decision, rolled back if not. A participant that cannot be reached in
phase two stays prepared until ``recover()`` reaches it; the transaction is committed all
the same (the decision is durable), and ``tx.pending`` names the participants left.

SQLite and Redis cannot prepare. One of them may join as the single *last resource*: it is
committed after every other participant prepared, and its commit is the decision. The risk
(documented in docs/TRANSACTIONS.md): a crash between that commit and the log record leaves
it committed while recovery rolls the others back. Redis, as the last resource, queues the
block's commands (``tx.connection(DatabaseType.REDIS).execute(...)`` returns None) and runs
them in one MULTI/EXEC, all or none: under WATCH, the commands are first played against
what their keys hold, and one that would fail inside EXEC (where Redis would still apply
the others) refuses the commit before anything changed (docs/TRANSACTIONS.md). MongoDB
cannot take part.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dbsystem._log import get_logger
from dbsystem.errors import DBSystemError, InterfaceError, NotSupportedError, OperationalError
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["DistributedTransaction", "InDoubt", "RecoveryReport", "TransactionCoordinator"]

logger = get_logger("dbsystem.coordinator")

Participant = DatabaseType | tuple[DatabaseType, str | None]


class _PostgresXA:
    """PostgreSQL: BEGIN, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED, pg_prepared_xacts."""

    @staticmethod
    def start(raw: Any, gid: str) -> None:
        raw._run("BEGIN")
        raw.tx_depth = 1

    @staticmethod
    def prepare(raw: Any, gid: str) -> None:
        raw._run(f"PREPARE TRANSACTION '{gid}'")
        raw.tx_depth = 0

    @staticmethod
    def abort_active(raw: Any, gid: str) -> None:
        raw.tx_depth = 0
        raw._run("ROLLBACK")

    @staticmethod
    def commit_prepared(raw: Any, gid: str) -> None:
        raw._run(f"COMMIT PREPARED '{gid}'")

    @staticmethod
    def rollback_prepared(raw: Any, gid: str) -> None:
        raw._run(f"ROLLBACK PREPARED '{gid}'")

    @staticmethod
    def in_doubt(raw: Any, prefix: str) -> list[str]:
        return [gid for gid, _ in _PostgresXA.prepared(raw, prefix)]

    @staticmethod
    def prepared(raw: Any, prefix: str) -> list[tuple[str, Any]]:
        """(gid, when it was prepared) of this coordinator's prepared transactions."""
        rows = raw.fetch_all(
            "SELECT gid, prepared FROM pg_prepared_xacts WHERE database = current_database() "
            "AND gid LIKE :prefix",
            {"prefix": prefix + "%"},
        )
        return [(str(row["gid"]), row["prepared"]) for row in rows]


class _MySQLXA:
    """MySQL and MariaDB: XA START/END/PREPARE/COMMIT/ROLLBACK, XA RECOVER."""

    @staticmethod
    def start(raw: Any, gid: str) -> None:
        raw._run(f"XA START '{gid}'")
        raw.tx_depth = 1

    @staticmethod
    def prepare(raw: Any, gid: str) -> None:
        raw._run(f"XA END '{gid}'")
        raw._run(f"XA PREPARE '{gid}'")
        raw.tx_depth = 0

    @staticmethod
    def abort_active(raw: Any, gid: str) -> None:
        raw.tx_depth = 0
        try:
            raw._run(f"XA END '{gid}'")
        except DBSystemError:
            pass  # already ended (a failed prepare)
        raw._run(f"XA ROLLBACK '{gid}'")

    @staticmethod
    def commit_prepared(raw: Any, gid: str) -> None:
        raw._run(f"XA COMMIT '{gid}'")

    @staticmethod
    def rollback_prepared(raw: Any, gid: str) -> None:
        raw._run(f"XA ROLLBACK '{gid}'")

    @staticmethod
    def prepared(raw: Any, prefix: str) -> list[tuple[str, Any]]:
        """(gid, None): XA RECOVER does not say when."""
        return [(gid, None) for gid in _MySQLXA.in_doubt(raw, prefix)]

    @staticmethod
    def in_doubt(raw: Any, prefix: str) -> list[str]:
        found = []
        for row in raw.fetch_all("XA RECOVER", None):
            data = row["data"]
            text = data.decode() if isinstance(data, bytes) else str(data)
            gid = text[: int(row["gtrid_length"])]
            if gid.startswith(prefix):
                found.append(gid)
        return found


_XA: dict[str, type[_PostgresXA] | type[_MySQLXA]] = {
    "postgresql": _PostgresXA,
    "mysql": _MySQLXA,
}


class _CoordinatorLog:
    """The decisions, one JSON line each, appended and fsynced before phase two."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, gid: str, state: str, participants: list[list[Any]], sync: bool) -> None:
        line = json.dumps({"gid": gid, "state": state, "participants": participants}) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def states(self) -> dict[str, str]:
        """Each transaction's last recorded state (a torn last line is ignored)."""
        found: dict[str, str] = {}
        if not self.path.exists():
            return found
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a crash mid-write: that decision was never made
                found[str(record["gid"])] = str(record["state"])
        return found

    def compact(self, running: set[str]) -> None:
        """Rewrite the log keeping only the records of ``running`` transactions (atomically):
        recovery has finished every other one."""
        with self._lock:
            keep = [
                json.dumps({"gid": gid, "state": state, "participants": []}) + "\n"
                for gid, state in self.states().items()
                if gid in running
            ]
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, "".join(keep).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)


@dataclass(frozen=True)
class InDoubt:
    """A transaction of this coordinator left prepared in a database (``in_doubt()``)."""

    gid: str
    pool: str
    """The pool's label (``postgres``, ``mysql/ledger``...)."""
    prepared_at: Any
    """When it was prepared (PostgreSQL); None where the server does not say (MySQL)."""
    decided: bool
    """True if the log holds the commit decision (``recover()`` will commit it)."""


@dataclass
class RecoveryReport:
    """What ``recover()`` did: the global ids it committed and rolled back."""

    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)


_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_INT64 = (-(2**63), 2**63 - 1)
# The commands Redis may run as the last resource, each checked before EXEC against the
# keys it touches (their type, and the numbers the command parses): Redis does not roll a
# transaction back, so a command failing inside EXEC would leave the others applied.
_LAST_RESOURCE_COMMANDS = (
    "SET DEL UNLINK EXPIRE PEXPIRE PERSIST INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND "
    "HSET HDEL HINCRBY LPUSH RPUSH SADD SREM ZADD ZREM"
).split()
_TYPE_OF = {
    **dict.fromkeys(["INCR", "DECR", "INCRBY", "DECRBY", "INCRBYFLOAT", "APPEND"], "string"),
    **dict.fromkeys(["HSET", "HDEL", "HINCRBY"], "hash"),
    **dict.fromkeys(["LPUSH", "RPUSH"], "list"),
    **dict.fromkeys(["SADD", "SREM"], "set"),
    **dict.fromkeys(["ZADD", "ZREM"], "zset"),
}


class _QueuedRedis:
    """Redis as the last resource: commands queue, and run in one MULTI/EXEC at commit,
    all or none (checked first under WATCH; see ``_RedisCheck``)."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute(self, *args: Any) -> None:
        """Queue one command (its result is not known before the commit)."""
        if not args:
            raise InterfaceError("execute() needs a command")
        name = str(args[0]).upper()
        if name not in _LAST_RESOURCE_COMMANDS or len(args) < 2:
            raise NotSupportedError(
                f"Redis as the last resource runs only commands it can check before EXEC "
                f"(so that none fails inside it): {' '.join(_LAST_RESOURCE_COMMANDS)}; "
                f"not {args[0]!r}"
            )
        self.commands.append((name, *args[1:]))

    def keys(self) -> list[str]:
        """Every key the queued commands touch (each takes one, DEL and UNLINK several)."""
        found: dict[str, None] = {}
        for command in self.commands:
            touched = command[1:] if command[0] in ("DEL", "UNLINK") else command[1:2]
            found.update(dict.fromkeys(_text(k) for k in touched))
        return list(found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _RedisCheck:
    """The queued commands played against what the watched keys hold, before EXEC: a
    command that would fail there (a wrong type, INCR of a text, a bad number) refuses the
    whole transaction while nothing has changed."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.kind: dict[str, str | None] = {}
        self.value: dict[str, Any] = {}  # a string's value; None: not known
        self.fields: dict[tuple[str, str], Any] = {}
        self.fresh: set[str] = set()  # keys replaced by an earlier command: not read again

    def _type(self, key: str) -> str | None:
        if key not in self.kind:
            found = _text(self.pipe.type(key))
            self.kind[key] = None if found == "none" else found
            if found == "string":
                raw = self.pipe.get(key)
                self.value[key] = None if raw is None else _text(raw)
        return self.kind[key]

    def _fail(self, command: tuple[Any, ...], why: str) -> NoReturn:
        raise OperationalError(
            f"Redis as the last resource: {command[0]} {_text(command[1])!r} would fail "
            f"inside EXEC ({why}); nothing was changed",
            backend="redis",
        )

    def run(self, command: tuple[Any, ...]) -> None:
        name, key = command[0], _text(command[1])
        args = [_text(a) for a in command[2:]]
        if name in ("DEL", "UNLINK"):
            for each in [key, *args]:
                self.kind[each] = None
                self.value.pop(each, None)
                self.fresh.add(each)
            return
        if name == "SET":
            if not args:
                self._fail(command, "no value")
            self.kind[key] = "string"
            self.fresh.add(key)
            plain = not {a.upper() for a in args[1:]} & {"NX", "XX", "GET", "KEEPTTL"}
            self.value[key] = args[0] if plain else None
            self._expiry(command, args[1:])
            return
        if name in ("EXPIRE", "PEXPIRE"):
            if not args or not _INT.fullmatch(args[0]):
                self._fail(command, "the time is not an integer")
            return
        if name == "PERSIST":
            return
        kind = self._type(key)
        wanted = _TYPE_OF[name]
        if kind not in (None, wanted):
            self._fail(command, f"the key holds a {kind}, not a {wanted}")
        self.kind[key] = wanted
        if name in ("INCR", "DECR", "INCRBY", "DECRBY"):
            step = 1 if name in ("INCR", "DECR") else self._integer(command, args[:1])
            current = self._integer(command, [self.value.get(key) or "0"], "the value")
            result = current + (-step if name.startswith("DECR") else step)
            if not _INT64[0] <= result <= _INT64[1]:
                self._fail(command, "the result overflows a 64-bit integer")
            self.value[key] = str(result)
        elif name == "INCRBYFLOAT":
            step_f = self._float(command, args[:1], "the increment")
            base = self._float(command, [self.value.get(key) or "0"], "the value")
            self.value[key] = repr(base + step_f)
        elif name == "APPEND":
            current_text = self.value.get(key, "") if kind else ""
            self.value[key] = None if current_text is None else current_text + "".join(args[:1])
        elif name == "HINCRBY":
            if len(args) != 2:
                self._fail(command, "HINCRBY takes a field and an increment")
            step = self._integer(command, args[1:])
            slot = (key, args[0])
            if slot not in self.fields:
                read = kind and key not in self.fresh
                raw = self.pipe.hget(key, args[0]) if read else None
                self.fields[slot] = None if raw is None else _text(raw)
            current = self._integer(command, [self.fields[slot] or "0"], "the field")
            if not _INT64[0] <= current + step <= _INT64[1]:
                self._fail(command, "the result overflows a 64-bit integer")
            self.fields[slot] = str(current + step)
        elif name == "HSET":
            if not args or len(args) % 2:
                self._fail(command, "HSET takes field value pairs")
            for field_name, field_value in zip(args[::2], args[1::2], strict=True):
                self.fields[(key, field_name)] = field_value
        elif name == "HDEL":
            for field_name in args:
                self.fields[(key, field_name)] = None
        elif name == "ZADD":
            if not args or len(args) % 2 or args[0].upper() in ("NX", "XX", "GT", "LT", "CH"):
                self._fail(command, "ZADD takes score member pairs (no options here)")
            for score in args[::2]:
                self._float(command, [score], "a score")

    def _expiry(self, command: tuple[Any, ...], options: list[str]) -> None:
        for at, option in enumerate(options):
            if option.upper() in ("EX", "PX", "EXAT", "PXAT"):
                if at + 1 >= len(options) or not _INT.fullmatch(options[at + 1]):
                    self._fail(command, "the expiry is not an integer")

    def _integer(self, command: tuple[Any, ...], args: list[Any], what: str = "a number") -> int:
        text = args[0] if args else None
        if text is None or not _INT.fullmatch(text) or not (_INT64[0] <= int(text) <= _INT64[1]):
            self._fail(command, f"{what} is not an integer")
        return int(text)

    def _float(self, command: tuple[Any, ...], args: list[Any], what: str) -> float:
        try:
            number = float(args[0]) if args and args[0].strip() == args[0] else math.nan
        except ValueError:
            number = math.nan
        if math.isnan(number) or (what != "a score" and math.isinf(number)):
            self._fail(command, f"{what} is not a number")
        return number


class DistributedTransaction:
    """The participants of one ``coordinator.transaction(...)`` block."""

    def __init__(self, gid: str) -> None:
        self.gid = gid
        """The global transaction id (PostgreSQL gid, MySQL XA gtrid)."""
        self.pending: list[tuple[DatabaseType, str | None]] = []
        """Participants whose phase two failed: committed by ``recover()`` later."""
        self._connections: dict[tuple[DatabaseType, str | None], Any] = {}

    def connection(self, db_type: DatabaseType, name: str | None = None) -> Any:
        """The connection of a participant (for Redis as the last resource, a command queue)."""
        try:
            return self._connections[(db_type, name)]
        except KeyError:
            raise InterfaceError(
                f"{db_type.value}{'/' + name if name else ''} is not a participant"
            ) from None


class TransactionCoordinator:
    """Runs transactions across several SQL pools of ``db`` with two-phase commit.

    ``log`` is the coordinator's durable log (default ``$DBSYSTEM_2PC_LOG`` or
    ``~/.dbsystem/2pc.log``). One coordinator process per log: the id in every global
    transaction id it makes (``coordinator_id``, by default derived from the host name and
    the log's path) is how ``recover()`` tells its transactions from others'.
    """

    def __init__(
        self,
        db: DatabaseManager,
        *,
        log: str | Path | None = None,
        coordinator_id: str | None = None,
        recover: bool = True,
    ) -> None:
        path = Path(log or os.environ.get("DBSYSTEM_2PC_LOG") or Path.home() / ".dbsystem/2pc.log")
        self.db = db
        self.log_path = path.absolute()
        self._log = _CoordinatorLog(self.log_path)
        if coordinator_id is None:
            seed = f"{socket.gethostname()}:{self.log_path}".encode()
            coordinator_id = hashlib.sha256(seed).hexdigest()[:8]
        if not coordinator_id.isalnum() or len(coordinator_id) > 16:
            raise InterfaceError("coordinator_id must be at most 16 letters and digits")
        self.coordinator_id = coordinator_id
        self._prefix = f"dbsys_{coordinator_id}_"
        # Transactions of this process still in their block or commit: recover() leaves them.
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        if recover:
            try:
                self.recover()
            except DBSystemError as exc:
                logger.warning("2PC recovery at start-up failed, run recover() later: %s", exc)

    # -- the protocol ----------------------------------------------------------------------

    def _step(self, name: str) -> None:
        """Called at each step of a commit: ``preparing`` (before each participant's
        prepare), ``prepared``, ``decided``, ``committed-one`` (after each participant's
        commit), ``committed-all``. The crash tests make a process die at one."""

    @contextmanager
    def transaction(self, participants: Sequence[Participant]) -> Iterator[DistributedTransaction]:
        """One transaction across ``participants`` (types, or ``(type, name)`` pairs)."""
        keys = [p if isinstance(p, tuple) else (p, None) for p in participants]
        if not keys or len(set(keys)) != len(keys):
            raise InterfaceError("name each participant once")
        gid = f"{self._prefix}{uuid.uuid4().hex[:24]}"
        with self._running_lock:
            self._running.add(gid)
        try:
            with self._run(gid, keys) as tx:
                yield tx
        finally:
            with self._running_lock:
                self._running.discard(gid)

    @contextmanager
    def _run(
        self, gid: str, keys: list[tuple[DatabaseType, str | None]]
    ) -> Iterator[DistributedTransaction]:
        from dbsystem.core._calls import BOUND as _BOUND

        tx = DistributedTransaction(gid)
        xa: list[tuple[tuple[DatabaseType, str | None], Any, Any]] = []
        last: tuple[tuple[DatabaseType, str | None], Any] | None = None
        with ExitStack() as stack:
            for key in keys:
                adapter, kind = self._classify(key)
                if adapter is None:
                    if last is not None:
                        raise NotSupportedError(
                            f"{key[0].value} and {last[0][0].value} cannot prepare: at most one "
                            "participant that cannot may join, as the last resource"
                        )
                    if kind == "kv":
                        queued = _QueuedRedis()
                        last = (key, queued)
                        tx._connections[key] = queued
                        continue
                    conn = stack.enter_context(self.db.connection(key[0], name=key[1]))
                    conn._lease_raw().begin()
                    last = (key, conn)
                    tx._connections[key] = conn
                    continue
                conn = stack.enter_context(self.db.connection(key[0], name=key[1]))
                xa.append((key, conn, adapter))
                tx._connections[key] = conn
            started: list[tuple[Any, Any]] = []
            try:
                for _, conn, adapter in xa:
                    adapter.start(conn._lease_raw(), gid)
                    started.append((conn, adapter))
                bound = _BOUND.get()
                sql_bound = {
                    (id(self.db), k[0], k[1]): c
                    for k, c in tx._connections.items()
                    if not isinstance(c, _QueuedRedis)
                }
                token = _BOUND.set({**bound, **sql_bound})
                try:
                    yield tx
                finally:
                    _BOUND.reset(token)
            except BaseException:
                self._abort(gid, started, [], last)
                raise
            self._commit(tx, xa, last, keys)

    def _classify(self, key: tuple[DatabaseType, str | None]) -> tuple[Any, str]:
        backend = self.db.backend(key[0], key[1])
        kind = backend.kind
        if kind == "document":
            raise NotSupportedError(
                "MongoDB cannot take part in a two-phase commit", backend=backend.name
            )
        if kind == "kv":
            return None, kind
        return _XA.get(getattr(backend, "dialect", "")), kind

    def _abort(
        self,
        gid: str,
        active: list[tuple[Any, Any]],
        prepared: list[tuple[Any, Any]],
        last: tuple[tuple[DatabaseType, str | None], Any] | None,
    ) -> None:
        """Roll every participant back; a participant that fails is marked broken (its
        server ends the transaction with the session, or recover() rolls it back)."""
        for conn, adapter in active:
            try:
                adapter.abort_active(conn._lease_raw(), gid)
            except DBSystemError:
                conn._lease_raw().broken = True
        for conn, adapter in prepared:
            try:
                adapter.rollback_prepared(conn._lease_raw(), gid)
            except DBSystemError as exc:
                conn._lease_raw().broken = True
                logger.warning("2PC %s: rollback of a prepared participant failed: %s", gid, exc)
        if last is not None and not isinstance(last[1], _QueuedRedis):
            try:
                last[1]._lease_raw().rollback()
            except DBSystemError:
                last[1]._lease_raw().broken = True

    def _commit(
        self,
        tx: DistributedTransaction,
        xa: list[tuple[tuple[DatabaseType, str | None], Any, Any]],
        last: tuple[tuple[DatabaseType, str | None], Any] | None,
        keys: list[tuple[DatabaseType, str | None]],
    ) -> None:
        gid = tx.gid
        prepared: list[tuple[Any, Any]] = []
        active = [(conn, adapter) for _, conn, adapter in xa]
        try:
            for conn, adapter in list(active):
                self._step("preparing")
                adapter.prepare(conn._lease_raw(), gid)
                active.remove((conn, adapter))
                prepared.append((conn, adapter))
            self._step("prepared")
            if last is not None:
                self._commit_last(last)
        except BaseException:
            self._abort(gid, active, prepared, None if last is None else last)
            raise
        names = [[k[0].value, k[1]] for k in keys]
        self._log.append(gid, "commit", names, sync=True)
        self._step("decided")
        for (key, conn, adapter), _ in zip(xa, prepared, strict=True):
            try:
                adapter.commit_prepared(conn._lease_raw(), gid)
            except DBSystemError as exc:
                conn._lease_raw().broken = True
                tx.pending.append(key)
                logger.warning(
                    "2PC %s: phase two failed on %s; recover() will commit it: %s",
                    gid,
                    key[0].value,
                    exc,
                )
                continue
            self._step("committed-one")
        if not tx.pending:
            self._step("committed-all")
            self._log.append(gid, "done", [], sync=False)

    def _commit_last(self, last: tuple[tuple[DatabaseType, str | None], Any]) -> None:
        key, resource = last
        if isinstance(resource, _QueuedRedis):
            if resource.commands:
                commands = resource.commands

                def checked(pipe: Any) -> None:
                    # Under WATCH: read what the keys hold, play the commands against it,
                    # then queue them; a key changed meanwhile makes EXEC retry from here.
                    check = _RedisCheck(pipe)
                    for command in commands:
                        check.run(command)
                    pipe.multi()
                    for command in commands:
                        pipe.execute_command(*command)

                redis: Any = self.db.connection(key[0], name=key[1])
                with redis as conn:
                    conn.optimistic(checked, *resource.keys())
            return
        resource._lease_raw().commit()

    # -- recovery --------------------------------------------------------------------------

    def in_doubt(self) -> list[InDoubt]:
        """This coordinator's transactions prepared in its databases and not finished: each
        holds its locks until ``recover()`` (or the running commit) ends it. Watch it: an
        old entry means a participant was unreachable or the coordinator died."""
        states = self._log.states()
        found = []
        for (db_type, name), pool in self.db.pools().items():
            adapter = _XA.get(getattr(pool.connector, "dialect", ""))
            if adapter is None:
                continue
            with self.db.connection(db_type, name=name) as conn:
                for gid, when in adapter.prepared(conn._lease_raw(), self._prefix):
                    decided = states.get(gid) in ("commit", "done")
                    label = db_type.value if name is None else f"{db_type.value}/{name}"
                    found.append(InDoubt(gid, label, when, decided))
        return found

    def recover(self) -> RecoveryReport:
        """Finish the transactions this coordinator left prepared: commit those the log
        decided, roll back the rest. Returns what it did."""
        states = self._log.states()
        with self._running_lock:
            running = set(self._running)
        report = RecoveryReport()
        reached_all = True
        for (db_type, name), pool in self.db.pools().items():
            adapter = _XA.get(getattr(pool.connector, "dialect", ""))
            if adapter is None:
                continue
            try:
                with self.db.connection(db_type, name=name) as conn:
                    for gid in adapter.in_doubt(conn._lease_raw(), self._prefix):
                        if gid in running:
                            continue
                        if states.get(gid) in ("commit", "done"):
                            adapter.commit_prepared(conn._lease_raw(), gid)
                            report.committed.append(gid)
                        else:
                            adapter.rollback_prepared(conn._lease_raw(), gid)
                            report.rolled_back.append(gid)
            except DBSystemError as exc:
                reached_all = False
                logger.warning("2PC recovery could not reach %s: %s", pool.name, exc)
        if reached_all:
            self._log.compact(running)
        return report
