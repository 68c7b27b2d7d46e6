"""Periodic: the background thread under the health monitor and the alert evaluator."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dbsystem.monitoring._periodic import Periodic


def _every_10ms(task: Callable[[], object], what: str) -> Periodic:
    return Periodic(
        "test-periodic",
        task,
        lambda: 0.01,
        logger=logging.getLogger("test.periodic"),
        what=what,
        join_timeout=5.0,
    )


def test_a_failing_round_is_logged_and_the_thread_carries_on(caplog):
    rounds: list[int] = []
    third = threading.Event()

    def task() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) == 1:
            raise RuntimeError("boom")

    worker = _every_10ms(task, "the test task")
    with caplog.at_level(logging.ERROR, logger="test.periodic"):
        worker.start()
        assert worker.running
        assert third.wait(5.0)
        worker.stop()
    assert not worker.running
    assert [r.getMessage() for r in caplog.records] == ["the test task failed"]
    count = len(rounds)
    time.sleep(0.05)
    assert len(rounds) == count  # stopped: no more rounds


def test_stop_from_the_thread_itself_does_not_deadlock():
    stopped = threading.Event()
    rounds: list[None] = []
    worker: Periodic

    def task() -> None:
        rounds.append(None)
        worker.stop()  # would wait for itself forever if stop() joined its own thread
        stopped.set()

    worker = _every_10ms(task, "self stop")
    worker.start()
    assert stopped.wait(5.0)
    assert not worker.running
    time.sleep(0.05)
    assert rounds == [None]
