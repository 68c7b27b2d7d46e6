"""What a Redis command touches, for access control and audit: every key, channel and
pattern, each with the action it takes on it.

Two parts:

- **generated** (``_redis_commands.py``, from the server's ``COMMAND INFO``): every
  command's key specs, read here with the algorithm Redis itself uses
  (``getKeysUsingKeySpecs``), so ``ZUNIONSTORE d 2 a b``, ``XREAD ... STREAMS a b 0 0`` or
  ``GEORADIUS ... STORE x`` give exactly the keys the server will touch. A key's flags
  give its actions: ``RO`` or ``access`` -> select (the value is read or returned),
  ``insert`` -> insert, ``update`` -> update, ``delete`` or ``RM`` -> delete, a write
  (``RW``/``OW``) without a logical flag -> update. ``SET`` reads only with ``GET``.
- **hand-written** (below), for what key specs and ``COMMAND GETKEYS`` do not say:
  channels and channel patterns (``PUBLISH`` inserts into a channel, the ``PUBSUB``
  introspection reads them), ``SORT``/``SORT_RO`` ``BY``/``GET`` patterns (each reads the
  keys it names: a pattern resource) and the ``STORE`` target, another database
  (``COPY ... DB n``, ``MOVE``, ``SWAPDB``, ``MIGRATE``: ADMIN), the keyspace-wide
  commands (``DBSIZE``, ``RANDOMKEY``, ``SCAN``: a read of ``"*"``, or of the ``MATCH``
  pattern; ``KEYS``, ``FLUSHDB``, ``FLUSHALL``: ADMIN), server administration (ADMIN),
  scripts (``EVAL``, ``FCALL``...: EXECUTE on ``"*"``, since a script may touch any key,
  plus their declared keys) and the commands that change a pooled connection's state
  (``SELECT``, ``AUTH``, ``HELLO``, ``RESET``, ``CLIENT``, ``MULTI``/``EXEC``/``WATCH``
  as single commands, ``SUBSCRIBE``...: refused to every user; the API has checked
  routes for transactions, ``optimistic()`` and ``subscribe()``).

A command the table does not know (a module's, a misspelling, a newer server's) is
refused to users: ``("refused", "redis command NAME (...)")``. The application's own
commands are not checked (they are described only when a hook, such as the audit log,
asks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from dbsystem.backends._redis_commands import COMMANDS, CONTAINERS

__all__ = ["REFUSED", "command_accesses", "word"]

#: The action of an access no grant allows (``AccessControl`` refuses it by name).
REFUSED = "refused"
#: The action of a command that needs no grant (``PING``).
CONNECTION = "connection"

# Keyless commands a session may run with no grant: they read nothing of the data.
_FREE = frozenset({"ping", "echo", "time"})
# Reads of the whole keyspace: a grant on "*" (SCAN ... MATCH p: on the pattern p).
_KEYSPACE_READ = frozenset({"dbsize", "randomkey", "scan"})
# Commands that change the state of the pooled connection they run on, or take it over:
# no grant makes them safe on a connection the next borrower inherits.
_CONNECTION_STATE = frozenset(
    {
        "select",
        "auth",
        "hello",
        "reset",
        "quit",
        "multi",
        "exec",
        "discard",
        "watch",
        "unwatch",
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
        "readonly",
        "readwrite",
        "asking",
        "monitor",
        "sync",
        "psync",
        "replconf",
    }
)
# Commands with keys that also reach another database or server, or restore raw payloads.
_ADMIN_WITH_KEYS = frozenset({"move", "migrate", "restore", "restore-asking"})
_SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
_SORT = frozenset({"sort", "sort_ro"})
# The keyspace reads and the channel commands, read by hand.
_BY_HAND = _KEYSPACE_READ | {
    "publish",
    "spublish",
    "pubsub|channels",
    "pubsub|shardchannels",
    "pubsub|numsub",
    "pubsub|shardnumsub",
    "pubsub|numpat",
}
# What a key spec's flags make of one key.
_LOGICAL = (("insert", "insert"), ("update", "update"), ("delete", "delete"))


def word(value: Any) -> str:
    """A command argument as text (bytes decoded, undecodable bytes kept as escapes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _key_actions(flags: Sequence[str]) -> tuple[str, ...]:
    actions = []
    if "RO" in flags or "access" in flags:
        actions.append("select")
    actions.extend(action for flag, action in _LOGICAL if flag in flags)
    if "RM" in flags and "delete" not in actions:
        actions.append("delete")
    if ("RW" in flags or "OW" in flags) and not any(a != "select" for a in actions):
        actions.append("update")
    return tuple(actions)


def _spec_keys(spec: Any, args: Sequence[Any]) -> list[int] | None:
    """The positions of the keys one key spec finds in ``args``; None: malformed."""
    _, begin, find = spec
    argc = len(args)
    if begin[0] == "index":
        first = begin[1]
    elif begin[0] == "keyword":
        keyword, start = begin[1], begin[2]
        positions = range(start, argc - 1) if start > 0 else range(argc + start, 0, -1)
        first = next(
            (i + 1 for i in positions if 0 < i < argc and word(args[i]).upper() == keyword), 0
        )
        if not first:
            return []  # the option is absent: no key from this spec
    else:
        return None  # "unknown": the hand-written part must cover it
    if find[0] == "range":
        lastkey, step, limit = find[1], find[2], find[3]
        if lastkey >= 0:
            last = first + lastkey
        elif not limit:
            last = argc + lastkey
        else:
            last = first + ((argc - first) // limit + lastkey)
    elif find[0] == "keynum":
        keynumidx, firstkey, step = find[1], find[2], find[3]
        if first + keynumidx >= argc:
            return None
        try:
            numkeys = int(word(args[first + keynumidx]))
        except ValueError:
            return None
        if numkeys < 0:
            return None
        first += firstkey
        last = first + (numkeys - 1) * step
    else:
        return None
    if step <= 0:
        return None
    return [i for i in range(first, last + 1, step) if 0 < i < argc]


def _malformed(name: str) -> tuple[tuple[str, str], ...]:
    return ((REFUSED, f"redis command {name.upper()} (its keys cannot be read from it)"),)


def _sort(name: str, args: Sequence[Any]) -> list[tuple[str, str]]:
    """SORT key [BY pattern] [LIMIT o c] [GET pattern ...] [ASC|DESC] [ALPHA] [STORE dest]."""
    if len(args) < 2:
        return list(_malformed(name))
    found = [("select", word(args[1]))]
    i = 2
    while i < len(args):
        option = word(args[i]).upper()
        if option == "LIMIT":
            i += 3
            continue
        if option in ("BY", "GET", "STORE") and i + 1 < len(args):
            target = word(args[i + 1])
            if option == "STORE":
                if name == "sort_ro":
                    return list(_malformed(name))
                found.append(("update", target))
            elif option == "BY" and "*" not in target:
                pass  # no pattern: Redis does not sort (nosort), reads no key
            elif not (option == "GET" and target == "#"):  # "#": the element itself
                found.append(("select", target))  # a pattern: every key it can name
            i += 2
            continue
        i += 1
    return found


def _channels(name: str, args: Sequence[Any]) -> list[tuple[str, str]] | None:
    """Channel accesses of the pub/sub commands that are not connection state."""
    if name in ("publish", "spublish"):
        return [("insert", word(args[1]))] if len(args) > 1 else list(_malformed(name))
    if name in ("pubsub|channels", "pubsub|shardchannels"):
        return [("select", word(args[2]) if len(args) > 2 else "*")]
    if name in ("pubsub|numsub", "pubsub|shardnumsub"):
        return [("select", word(a)) for a in args[2:]] or [("select", "*")]
    if name == "pubsub|numpat":
        return [("select", "*")]
    return None


def _scan(args: Sequence[Any]) -> list[tuple[str, str]]:
    upper = [word(a).upper() for a in args]
    if "MATCH" in upper[2:-1]:
        return [("select", word(args[upper.index("MATCH", 2) + 1]))]
    return [("select", "*")]


def subscribe_accesses(channels: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """What a subscription needs: a read of each channel, or of each pattern (every
    channel it can name, which only a grant covering the whole pattern allows)."""
    return tuple(("select", word(channel)) for channel in channels)


class _Plan(NamedTuple):
    """What the table and the hand-written rules say of one command name, computed once."""

    arity: int
    specs: tuple[tuple[tuple[str, ...], Any, Any], ...]  # (actions, begin, find), keys only
    lead: tuple[tuple[str, str], ...]  # ("admin", "*") or ("execute", "*"), first
    mandatory: bool  # a command with keys must name one


_PLANS: dict[str, _Plan | tuple[tuple[str, str], ...]] = {}


def _plan(name: str) -> _Plan | tuple[tuple[str, str], ...]:
    """The command's plan, or its fixed accesses (free, refused, unknown)."""
    if name in _FREE:
        return ()
    base = name.split("|", 1)[0]
    if base in _CONNECTION_STATE or base == "client":
        return ((REFUSED, f"redis command {name.upper()} (it changes the pooled connection)"),)
    known = COMMANDS.get(name)
    if known is None:
        return ((REFUSED, f"redis command {name.upper()} (not in the table of known commands)"),)
    arity, flags, specs = known
    if name in _SORT:
        specs = specs[:1]  # the first key; the rest (BY/GET/STORE) by hand
    keys = tuple(
        (_key_actions(spec[0]), spec[1], spec[2]) for spec in specs if "not_key" not in spec[0]
    )
    if name in _SCRIPTS:
        lead: tuple[tuple[str, str], ...] = (("execute", "*"),)
    elif "admin" in flags or name in _ADMIN_WITH_KEYS or name == "swapdb" or not specs:
        lead = (("admin", "*"),)  # (keyless and not handled by hand: administration)
    else:
        lead = ()
    return _Plan(arity, keys, lead, bool(specs) and "no_mandatory_keys" not in flags)


def command_accesses(args: Sequence[Any], *, watch: bool = False) -> tuple[tuple[str, str], ...]:
    """Every (action, resource) one command needs: its keys, channels and patterns, each
    with what the command does to it; ``("admin", "*")`` for server administration,
    ``("execute", "*")`` for scripts, ``("refused", why)`` for what no grant allows, and
    ``()`` for the few commands that need no grant (``PING``).

    ``watch=True`` (the ``optimistic()`` route, whose connection is its own for the
    attempt): ``WATCH`` is a read of its keys instead of connection state.
    """
    if not args:
        return ((REFUSED, "an empty redis command"),)
    first = args[0]
    name = (first if type(first) is str else word(first)).lower()
    if name in CONTAINERS and len(args) > 1:
        name = f"{name}|{word(args[1]).lower()}"
    elif watch and name == "watch":
        return tuple(("select", word(key)) for key in args[1:])
    plan = _PLANS.get(name)
    if plan is None:
        plan = _PLANS[name] = _plan(name)
    if not isinstance(plan, _Plan):
        return plan
    argc = len(args)
    if (plan.arity >= 0 and argc != plan.arity) or argc < -plan.arity:
        return _malformed(name)  # the server refuses it too; its keys are not where specs say
    if name in _BY_HAND:
        if name in _KEYSPACE_READ:
            return tuple(_scan(args)) if name == "scan" else (("select", "*"),)
        channels = _channels(name, args)
        if channels is not None:
            return tuple(dict.fromkeys(channels))
    found: list[tuple[str, str]] = list(plan.lead)
    if name in _SORT:
        found.extend(_sort(name, args))
    for actions, begin, find in plan.specs:
        if begin[0] == "index" and find[0] == "range" and find[1] == 0:  # the common case
            positions = [begin[1]] if begin[1] < argc else []
        else:
            found_at = _spec_keys((actions, begin, find), args)
            if found_at is None:
                return _malformed(name)
            positions = found_at
        if name == "set" and "GET" not in (word(a).upper() for a in args[3:]):
            actions = ("update",)  # SET reads the old value only with GET
        elif name == "xreadgroup":
            actions = ("select", "update")  # its key spec says RO; it moves the group's PEL
        for i in positions:
            key = args[i]
            key = key if type(key) is str else word(key)
            found.extend((action, key) for action in actions)
    if len(found) == len(plan.lead) and plan.mandatory:
        return _malformed(name)  # a command with keys, none where its specs say
    if name == "copy" and not plan.lead and "DB" in (word(a).upper() for a in args[3:]):
        found.insert(0, ("admin", "*"))  # into another database
    return tuple(dict.fromkeys(found)) if len(found) > 1 else tuple(found)
