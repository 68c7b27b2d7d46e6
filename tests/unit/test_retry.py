"""``retry``: how many calls, what is retried, and what reaches the caller."""

from __future__ import annotations

import pytest

from dbsystem import ConfigurationError, IntegrityError, RetryableError, retry


def _failing(times: int, error: Exception):
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return work, calls


def test_a_retryable_error_is_retried_until_the_work_succeeds():
    work, calls = _failing(2, RetryableError("deadlock", backend="postgresql"))
    assert retry(work, attempts=3, backoff=0) == "done"
    assert len(calls) == 3


def test_the_last_error_reaches_the_caller_as_it_is_after_the_last_attempt():
    error = RetryableError("deadlock", backend="postgresql")
    work, calls = _failing(5, error)
    with pytest.raises(RetryableError) as caught:
        retry(work, attempts=3, backoff=0)
    assert caught.value is error
    assert len(calls) == 3


def test_one_attempt_calls_once_and_other_errors_are_not_retried():
    work, calls = _failing(1, RetryableError("deadlock"))
    with pytest.raises(RetryableError):
        retry(work, attempts=1, backoff=0)
    assert len(calls) == 1
    work, calls = _failing(1, IntegrityError("duplicate key"))
    with pytest.raises(IntegrityError):
        retry(work, attempts=5, backoff=0)
    assert len(calls) == 1


def test_fewer_than_one_attempt_is_a_configuration_error():
    work, calls = _failing(0, RetryableError("unused"))
    with pytest.raises(ConfigurationError, match=r"attempts must be at least 1 \(got 0\)"):
        retry(work, attempts=0)
    assert calls == []
