"""Logic written once for the blocking and the asyncio side: sans-I/O flows and their driver.

A *flow* is a generator holding a piece of decision logic that needs I/O on the way (open a
connection, ping it, roll back to a savepoint...). Where it needs I/O it yields a request,
``("method", *args)``, naming a method of the object it runs against, and receives that
call's result, or its exception thrown in at the ``yield`` to handle or let through. The
flow itself never blocks and never awaits, so the same flow serves ``ConnectionPool`` and
``AsyncConnectionPool``, ``Connection`` and ``AsyncConnection``: ``drive(target, flow)``
runs it with blocking calls, ``await adrive(target, flow)`` with awaited ones. httpx writes
its authentication the same way (``Auth.auth_flow``, advanced by its sync and async client).

There is one driver loop, ``_drive``, written as a coroutine: the blocking side runs it
with ``send(None)`` and a wrapper that never suspends, so it finishes in that one step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Flow", "adrive", "drive"]

T = TypeVar("T")

Flow = Generator[tuple[Any, ...], Any, T]
"""A flow returning ``T``: it yields ``(method, *args)`` requests and is sent their results."""


async def _drive(target: Any, flow: Flow[T], settle: Callable[[Any], Awaitable[Any]]) -> T:
    send: Callable[[Any], tuple[Any, ...]] = flow.send
    value: Any = None
    while True:
        try:
            name, *args = send(value)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            send, value = flow.send, await settle(getattr(target, name)(*args))
        except BaseException as exc:  # the flow decides: handle it, or let it through
            send, value = flow.throw, exc


async def _ready(value: Any) -> Any:
    return value  # a blocking call's result, already there: awaiting this never suspends


async def _awaited(call: Awaitable[Any]) -> Any:
    return await call


def drive(target: Any, flow: Flow[T]) -> T:
    """Run ``flow``, each request a blocking call of a method of ``target``."""
    step = _drive(target, flow, _ready)
    try:
        step.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    step.close()  # pragma: no cover - only an awaitable returned by a request gets here
    raise RuntimeError("a blocking flow was given an awaitable to wait for")


async def adrive(target: Any, flow: Flow[T]) -> T:
    """Run ``flow``, each request an awaited call of a coroutine method of ``target``."""
    return await _drive(target, flow, _awaited)
