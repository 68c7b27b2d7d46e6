"""``retry``: run a whole unit of work again when the database says it may then succeed."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError, RetryableError

__all__ = ["retry"]

T = TypeVar("T")

logger = get_logger("dbsystem")


def retry(
    work: Callable[[], T],
    *,
    attempts: int = 5,
    backoff: float = 0.02,
    max_backoff: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (RetryableError,),
) -> T:
    """Call ``work()``; when it raises one of ``retry_on`` (a deadlock, a serialization
    failure...), wait and call it again, up to ``attempts`` calls in all.

    ``work`` must be the *whole* unit, its transaction included (``lambda:
    transfer(db, ...)`` where ``transfer`` opens ``db.transaction()``): a statement alone
    cannot be retried inside a transaction the database already rolled back. Waits grow
    exponentially from ``backoff`` up to ``max_backoff``, with full jitter, so that the
    transactions that collided do not collide again. The last error is raised as it is.
    ``CommitUnknownError`` is never retried by default: the work may have committed.
    ``attempts`` below 1 raises ``ConfigurationError``.
    """
    if attempts < 1:
        raise ConfigurationError(f"retry: attempts must be at least 1 (got {attempts!r})")
    delay = backoff
    for attempt in range(1, attempts):
        try:
            return work()
        except retry_on as exc:
            logger.log(
                logging.INFO,
                "retrying after %s (attempt %d of %d)",
                type(exc).__name__,
                attempt,
                attempts,
            )
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, max_backoff)
    return work()  # the last attempt: whatever it raises reaches the caller as it is
