"""The login cost ceiling: a stored argon2 hash asking for more work than allowed is refused
before any hashing is done (issue 19: a planted hash with huge costs stalled every login)."""

from __future__ import annotations

import time

import argon2
import pytest

from dbsystem.errors import AuthenticationError, ConfigurationError
from dbsystem.security import (
    HashCostCeiling,
    credentials,
    hash_password,
    set_hash_cost_ceiling,
    verify_password,
)

PASSWORD = "correct horse battery staple"


def _forged(m: int = 65536, t: int = 3, p: int = 4) -> str:
    """A well-formed argon2id hash string with the given costs (its digest is junk)."""
    salt, digest = "c29tZXNhbHRzb21lc2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
    return f"$argon2id$v=19$m={m},t={t},p={p}${salt}${digest}"


@pytest.fixture
def no_hashing(monkeypatch):
    """Fail the test if argon2 is asked to hash anything."""

    def refuse():
        raise AssertionError("argon2 was run")

    monkeypatch.setattr(credentials, "_hasher", refuse)


@pytest.mark.parametrize(
    ("costs", "named"),
    [
        ({"m": 4_000_000_000}, "memory_cost=4000000000 (ceiling 262144)"),
        ({"t": 100_000}, "time_cost=100000 (ceiling 10)"),
        ({"p": 255}, "parallelism=255 (ceiling 16)"),
    ],
)
def test_a_hash_over_the_ceiling_is_refused_before_hashing(no_hashing, costs, named):
    began = time.perf_counter()
    with pytest.raises(AuthenticationError) as info:
        verify_password(_forged(**costs), PASSWORD)
    assert time.perf_counter() - began < 0.5
    assert named in str(info.value) and "refused without verifying" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_a_hash_within_the_ceiling_verifies():
    stored = hash_password(PASSWORD)
    assert verify_password(stored, PASSWORD)
    # Stronger than today's hash_password, still under the default ceiling.
    strong = argon2.PasswordHasher(time_cost=4, memory_cost=131_072, parallelism=8).hash(PASSWORD)
    assert verify_password(strong, PASSWORD)
    assert not verify_password(strong, PASSWORD + "x")
    # Strings that are not argon2 hashes are still a plain mismatch, not an error.
    assert not verify_password("not a hash", PASSWORD)


def test_the_ceiling_is_configurable_per_call_and_per_process(no_hashing):
    low = HashCostCeiling(memory_cost=32_768, time_cost=2, parallelism=2)
    with pytest.raises(AuthenticationError, match=r"memory_cost=65536 \(ceiling 32768\)"):
        verify_password(_forged(), PASSWORD, ceiling=low)
    previous = set_hash_cost_ceiling(low)
    try:
        assert previous == HashCostCeiling()
        with pytest.raises(AuthenticationError, match=r"time_cost=3 \(ceiling 2\)"):
            verify_password(_forged(), PASSWORD)
    finally:
        assert set_hash_cost_ceiling(previous) is low


def test_a_raised_ceiling_lets_a_costlier_hash_verify():
    costly = argon2.PasswordHasher(time_cost=12, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with pytest.raises(AuthenticationError):
        verify_password(costly, PASSWORD)
    assert verify_password(costly, PASSWORD, ceiling=HashCostCeiling(time_cost=12))


@pytest.mark.parametrize("bad", [{"memory_cost": 0}, {"time_cost": -1}, {"parallelism": 1.5}])
def test_a_bad_ceiling_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError, match="must be a positive integer"):
        HashCostCeiling(**bad)
    with pytest.raises(ConfigurationError):
        set_hash_cost_ceiling("high")  # type: ignore[arg-type]
