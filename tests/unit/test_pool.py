"""The pool, driven by a fake connector: sizes, waiting, health, lifetime, leaks, fork."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time

import pytest

from dbsystem.core.pool import ConnectionPool
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    InterfaceError,
    OperationalError,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
)
from tests.fakes import FakeConnector


def make_pool(connector: FakeConnector | None = None, **kwargs) -> ConnectionPool:
    kwargs.setdefault("name", "test")
    kwargs.setdefault("acquire_timeout", 2.0)
    return ConnectionPool(connector or FakeConnector(), **kwargs)


def wait_until(predicate, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def test_min_size_connections_open_up_front():
    connector = FakeConnector()
    with make_pool(connector, min_size=3, max_size=5) as pool:
        stats = pool.stats()
        assert (stats.total, stats.idle, stats.active, stats.created) == (3, 3, 0, 3)
        assert connector.open_count == 3


def test_first_connection_failure_fails_fast_and_leaves_no_thread():
    connector = FakeConnector()
    connector.fail = True
    before = threading.active_count()
    with pytest.raises(ConnectionFailed, match="server unavailable"):
        make_pool(connector, min_size=2)
    assert threading.active_count() == before


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigurationError, match=r"min_size \(3\) must not exceed max_size \(2\)"):
        make_pool(min_size=3, max_size=2)
    with pytest.raises(ConfigurationError, match="max_size"):
        make_pool(max_size=0)
    with pytest.raises(ConfigurationError, match="acquire_timeout"):
        make_pool(acquire_timeout=0)


def test_grows_to_max_size_then_times_out_naming_pool_and_sizes():
    connector = FakeConnector()
    with make_pool(connector, min_size=0, max_size=2, acquire_timeout=0.1) as pool:
        a, b = pool.acquire(), pool.acquire()
        assert pool.stats().total == 2
        start = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            pool.acquire()
        elapsed = time.monotonic() - start
        assert 0.09 <= elapsed < 0.5
        message = str(info.value)
        assert "'test'" in message and "max_size 2" in message and "0.1 s" in message
        assert isinstance(info.value, OperationalError)
        assert pool.stats().timeouts == 1
        a.release()
        b.release()
        # The timed-out waiter swallowed nothing: both connections are still there.
        assert pool.stats().idle == 2


def test_waiters_are_served_first_come_first_served():
    with make_pool(min_size=1, max_size=1) as pool:
        holder = pool.acquire()
        order: list[int] = []

        def waiter(n: int) -> None:
            with pool.acquire():
                order.append(n)

        threads = []
        for n in range(5):
            t = threading.Thread(target=waiter, args=(n,))
            t.start()
            threads.append(t)
            wait_until(lambda n=n: pool.stats().waiting == n + 1)
        holder.release()
        for t in threads:
            t.join()
        assert order == [0, 1, 2, 3, 4]
        stats = pool.stats()
        assert stats.wait_max > 0 and stats.wait_mean > 0


def test_returning_connection_goes_to_waiter_not_to_a_barging_caller():
    with make_pool(min_size=1, max_size=1) as pool:
        holder = pool.acquire()
        got, done = threading.Event(), threading.Event()

        def waiter() -> None:
            with pool.acquire():
                got.set()
                done.wait(2)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: pool.stats().waiting == 1)
        holder.release()
        # Handed straight to the waiter: the releasing thread cannot take it back.
        with pytest.raises(PoolTimeout):
            pool.acquire(timeout=0.05)
        assert got.wait(2)
        done.set()
        t.join()


def test_lifo_reuses_the_most_recent_connection():
    with make_pool(min_size=2, max_size=2) as pool:
        a = pool.acquire()
        b = pool.acquire()
        first, second = a.raw, b.raw
        a.release()
        b.release()
        with pool.acquire() as lease:
            assert lease.raw is second
        assert first is not second


def test_idle_timeout_closes_surplus_but_keeps_min_size():
    connector = FakeConnector()
    with make_pool(
        connector, min_size=1, max_size=4, idle_timeout=0.05, maintenance_interval=0.01
    ) as pool:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            lease.release()
        assert pool.stats().total == 4
        wait_until(lambda: pool.stats().total == 1)
        time.sleep(0.05)
        stats = pool.stats()
        assert stats.total == 1 and stats.closed == 3
        assert connector.open_count == 1


def test_max_lifetime_recycles_idle_connections_and_refills_min_size():
    connector = FakeConnector()
    with make_pool(
        connector, min_size=2, max_size=2, max_lifetime=0.1, maintenance_interval=0.01
    ) as pool:
        original = {id(c) for c in connector.opened}
        wait_until(lambda: pool.stats().closed >= 2 and pool.stats().total == 2)
        current = {id(c) for c in connector.opened if not c.closed}
        assert len(current) == 2 and not current & original


def test_expired_connection_is_replaced_on_acquire_never_closed_under_borrower():
    connector = FakeConnector()
    with make_pool(
        connector, min_size=1, max_size=1, max_lifetime=0.05, maintenance_interval=10
    ) as pool:
        lease = pool.acquire()
        conn = lease.raw
        time.sleep(0.08)
        assert not conn.closed  # in use past its lifetime: left alone
        lease.release()
        assert conn.closed  # closed on return instead of going back idle
        with pool.acquire() as fresh:
            assert fresh.raw is not conn


def test_health_check_replaces_a_dead_idle_connection_silently():
    connector = FakeConnector()
    with make_pool(connector, min_size=1, max_size=1, health_check_interval=0.01) as pool:
        with pool.acquire() as lease:
            dead = lease.raw
        dead.broken = True
        time.sleep(0.02)
        with pool.acquire() as lease:
            assert lease.raw is not dead
        assert dead.closed
        assert pool.stats().discarded == 1


def test_recently_used_connection_skips_the_ping():
    connector = FakeConnector()
    with make_pool(connector, min_size=1, max_size=1, health_check_interval=5.0) as pool:
        for _ in range(100):
            with pool.acquire():
                pass
        assert connector.opened[0].pings == 0


def test_dirty_return_is_rolled_back_and_broken_return_dropped():
    connector = FakeConnector()
    with make_pool(connector, min_size=1, max_size=1) as pool:
        with pool.acquire() as lease:
            lease.raw.in_tx = True
        assert connector.rollbacks == 1
        with pool.acquire() as lease:
            assert not lease.raw.in_tx
            broken = lease.raw
            broken.broken = True
        assert broken.closed
        stats = pool.stats()
        assert stats.discarded == 1 and stats.total == 0
        with pool.acquire() as lease:
            assert lease.raw is not broken


def test_discarded_slot_lets_a_waiter_open_a_new_connection():
    connector = FakeConnector()
    with make_pool(connector, min_size=1, max_size=1) as pool:
        lease = pool.acquire()
        result = {}

        def waiter() -> None:
            with pool.acquire(timeout=2) as got:
                result["conn"] = got.raw

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: pool.stats().waiting == 1)
        lease.raw.broken = True
        lease.release()
        t.join()
        assert result["conn"].id == 2


def test_waiter_gets_connect_error_instead_of_waiting_out_the_timeout():
    connector = FakeConnector()
    with make_pool(connector, min_size=1, max_size=1, acquire_timeout=5) as pool:
        lease = pool.acquire()
        errors = []

        def waiter() -> None:
            try:
                pool.acquire()
            except ConnectionFailed as exc:
                errors.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: pool.stats().waiting == 1)
        connector.fail = True
        lease.raw.broken = True
        start = time.monotonic()
        lease.release()
        t.join()
        assert errors and time.monotonic() - start < 1.0
        assert pool.stats().total == 0 and pool.stats().connect_errors == 1


def test_max_waiting_rejects_at_once():
    with make_pool(min_size=1, max_size=1, max_waiting=1) as pool:
        holder = pool.acquire()
        t = threading.Thread(target=lambda: pool.acquire(timeout=1).release())
        t.start()
        wait_until(lambda: pool.stats().waiting == 1)
        start = time.monotonic()
        with pytest.raises(PoolExhausted, match="max_waiting=1"):
            pool.acquire()
        assert time.monotonic() - start < 0.05
        holder.release()
        t.join()


def test_double_release_and_use_after_release_raise():
    with make_pool(min_size=1, max_size=1) as pool:
        lease = pool.acquire()
        lease.release()
        assert lease.released
        with pytest.raises(InterfaceError, match="already returned"):
            lease.release()
        with pytest.raises(InterfaceError, match="used after it was returned"):
            lease.raw  # noqa: B018
        stats = pool.stats()
        assert (stats.active, stats.idle, stats.total) == (0, 1, 1)


def test_close_wakes_waiters_and_closes_returned_connections():
    connector = FakeConnector()
    pool = make_pool(connector, min_size=1, max_size=1, acquire_timeout=5)
    lease = pool.acquire()
    errors = []

    def waiter() -> None:
        try:
            pool.acquire()
        except PoolClosed:
            errors.append(time.monotonic())

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: pool.stats().waiting == 1)
    start = time.monotonic()
    pool.close()
    t.join()
    assert errors and errors[0] - start < 0.1
    with pytest.raises(PoolClosed):
        pool.acquire()
    conn = lease.raw
    assert not conn.closed  # in use: closed on return, not under the borrower
    lease.release()
    assert conn.closed
    assert pool.stats().total == 0
    assert pool._maintenance is not None and not pool._maintenance.is_alive()


def test_close_drains_with_timeout():
    pool = make_pool(min_size=1, max_size=1)
    lease = pool.acquire()
    threading.Timer(0.05, lease.release).start()
    start = time.monotonic()
    pool.close(timeout=2.0)
    assert 0.04 < time.monotonic() - start < 1.0
    assert pool.stats().active == 0


def test_leak_warning_names_the_borrowers_code(caplog):
    with make_pool(min_size=1, max_size=1, leak_threshold=0.05, maintenance_interval=0.01) as pool:
        with caplog.at_level(logging.WARNING, logger="dbsystem.pool"):
            lease = pool.acquire()
            wait_until(lambda: "held for" in caplog.text)
            holders = pool.holders()
            lease.release()
        assert pool.stats().leaks == 1
        assert "test_leak_warning_names_the_borrowers_code" in caplog.text
        assert holders and holders[0].held_for >= 0.05 and "test_pool.py" in holders[0].location


def test_holders_name_the_label_or_the_callers_code_longest_held_first():
    with make_pool(min_size=0, max_size=3) as pool:
        first = pool.acquire(label="nightly-report")
        time.sleep(0.02)
        second = pool.acquire()  # no label: the code location names it
        holders = pool.holders()
        assert [h.label for h in holders] == ["nightly-report", None]
        assert holders[0].held_for > holders[1].held_for >= 0
        assert "test_pool.py" in holders[1].location
        assert "in test_holders_name_the_label" in holders[1].location
        first.release()
        assert [h.label for h in pool.holders()] == [None]
        second.release()
        assert pool.holders() == []


def test_wait_histogram_counts_every_acquire_by_how_long_it_waited():
    from dbsystem.kernel.stats import WAIT_BUCKETS

    with make_pool(min_size=1, max_size=1) as pool:
        lease = pool.acquire()
        lease.release()
        lease = pool.acquire()  # served at once: the first bucket
        threading.Timer(0.03, lease.release).start()
        pool.acquire(timeout=2.0).release()  # waited ~30 ms for the release
        with pytest.raises(PoolTimeout):
            held = pool.acquire()
            try:
                pool.acquire(timeout=0.01)
            finally:
                held.release()
        stats = pool.stats()
    assert len(stats.wait_counts) == len(WAIT_BUCKETS) + 1
    assert stats.wait_counts[0] >= 3
    waited = [bound for bound, n in zip(WAIT_BUCKETS, stats.wait_counts, strict=False) if n][1:]
    assert waited and 0.025 <= waited[0] <= 0.25  # the ~30 ms wait; the timeout is not counted
    assert sum(stats.wait_counts) == stats.acquired
    assert stats.wait_total >= 0.025


def test_garbage_collected_lease_is_reclaimed(caplog):
    connector = FakeConnector()
    with make_pool(connector, min_size=0, max_size=1, maintenance_interval=0.01) as pool:
        with caplog.at_level(logging.WARNING, logger="dbsystem.pool"):
            pool.acquire()  # dropped on the floor
            gc.collect()
            wait_until(lambda: "garbage-collected" in caplog.text)
        stats = pool.stats()
        assert stats.leaks == 1 and stats.total == 0
        with pool.acquire(timeout=1):
            pass


def test_many_threads_keep_the_invariants():
    connector = FakeConnector()
    violations = []
    borrowed = 0
    guard = threading.Lock()
    with make_pool(connector, min_size=0, max_size=4, acquire_timeout=10) as pool:

        def work(seed: int) -> None:
            nonlocal borrowed
            for i in range(300):
                try:
                    with pool.acquire() as lease:
                        conn = lease.raw
                        with guard:
                            borrowed += 1
                            if conn.borrowed or borrowed > 4:
                                violations.append((seed, i))
                            conn.borrowed = True
                        with guard:
                            conn.borrowed = False
                            borrowed -= 1
                        if (seed + i) % 10 == 0:
                            raise RuntimeError("boom")
                except RuntimeError:
                    pass

        threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = pool.stats()
    assert violations == []
    assert stats.active == 0 and stats.total == stats.idle <= 4
    assert stats.acquired == 12 * 300


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_after_fork_opens_its_own_connections_and_leaves_parents_alone():
    connector = FakeConnector()
    with make_pool(connector, min_size=2, max_size=2) as pool:
        with pool.acquire() as lease:
            parent_conn = lease.raw
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                with pool.acquire() as lease:
                    fresh = lease.raw is not parent_conn and lease.raw.id == 3
                untouched = not any(c.closed for c in connector.opened[:2])
                code = 0 if fresh and untouched else 2
            finally:
                os.write(write_fd, bytes([code]))
                os._exit(code)
        os.close(write_fd)
        result = os.read(read_fd, 1)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        assert result == b"\x00" and os.WEXITSTATUS(status) == 0
        for _ in range(100):  # the parent keeps working with its own connections
            with pool.acquire() as lease:
                assert lease.raw.id in (1, 2)
        assert not parent_conn.closed
