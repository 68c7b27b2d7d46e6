"""ProcessWide: the process-wide ``instance()`` of the managers, access control, credentials
and the monitor."""

from __future__ import annotations

import threading
import time

from dbsystem.kernel._singleton import ProcessWide
from dbsystem.security.credentials import CredentialManager
from dbsystem.security.rbac import AccessControl


class Slow(ProcessWide):
    made = 0

    def __init__(self) -> None:
        type(self).made += 1
        time.sleep(0.01)  # widen the race between the first callers


class Other(ProcessWide):
    pass


class Configured(ProcessWide):
    def __init__(self, label: str = "plain") -> None:
        self.label = label

    @classmethod
    def _create_instance(cls) -> Configured:
        return cls("shared")


def test_racing_first_callers_get_one_instance():
    seen: list[Slow] = []
    threads = [threading.Thread(target=lambda: seen.append(Slow.instance())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 16
    assert {id(s) for s in seen} == {id(seen[0])}
    assert Slow.made == 1
    assert Slow() is not Slow.instance()


def test_each_class_has_its_own_instance():
    assert isinstance(Other.instance(), Other)
    assert Other.instance() is not Slow.instance()


def test_create_instance_decides_how_the_shared_one_is_made():
    assert Configured.instance().label == "shared"
    assert Configured().label == "plain"


def test_replace_instance_swaps_and_returns_the_previous_one():
    first = Other.instance()
    fresh = Other()
    assert Other._replace_instance(fresh) is first
    assert Other.instance() is fresh
    assert Other._replace_instance(None) is fresh
    assert Other.instance() is not fresh


def test_the_library_classes_are_process_wide():
    for cls in (CredentialManager, AccessControl):
        assert cls.instance() is cls.instance()
        assert isinstance(cls.instance(), cls)
        assert cls() is not cls.instance()
