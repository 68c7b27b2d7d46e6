"""One process-wide instance of a class, made on first use: ``ProcessWide``.

The manager, the access control, the credential store and the performance monitor each
offer ``X.instance()``: the object most applications share, created by the first caller
and the same for every later one, from any thread. The pattern is a double-checked lock:
the fast path reads one class attribute without locking; only the first callers (racing
on an empty slot) take the lock, and the second check under it makes sure exactly one
instance is made.

Classes opt in by inheriting ``ProcessWide``; each subclass gets its own slot and lock
(``_instance``, ``_instance_lock``), so ``Sub.instance()`` is always a ``Sub``. A class
whose shared instance needs more than ``cls()`` overrides ``_create_instance()``. Tests
swap the instance with ``_replace_instance()`` (or reset ``_instance`` to ``None``).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Self, cast

__all__ = ["ProcessWide"]


class ProcessWide:
    """Mixin giving a class a thread-safe, lazily created process-wide ``instance()``."""

    _instance: ClassVar[ProcessWide | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instance = None
        cls._instance_lock = threading.Lock()

    @classmethod
    def instance(cls) -> Self:
        """The process-wide instance, created on first call; always the same object."""
        found = cls._instance
        if found is None:
            with cls._instance_lock:
                found = cls._instance
                if found is None:
                    found = cls._instance = cls._create_instance()
        return cast(Self, found)

    @classmethod
    def _create_instance(cls) -> Self:
        """Make the process-wide instance (called once, under the lock); ``cls()`` here."""
        return cls()

    @classmethod
    def _replace_instance(cls, new: Self | None) -> Self | None:
        """Swap the process-wide instance for ``new`` (None: make a fresh one on next use);
        return the previous one. For test isolation."""
        with cls._instance_lock:
            previous, cls._instance = cls._instance, new
        return cast("Self | None", previous)
