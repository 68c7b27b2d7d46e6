"""Entities on Redis hashes: get, save and delete by primary key (fakeredis and Redis)."""

from __future__ import annotations

import datetime

import pytest

from dbsystem import DatabaseManager, DatabaseType, NotSupportedError
from dbsystem.orm import Entity, Field


class Session(Entity, table="sessions"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    user: str
    data: dict = Field(default_factory=dict)
    expires: datetime.datetime = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


class Counter(Entity, table="counters"):
    id: int = Field(primary_key=True)
    n: int = Field(default=0, version=True)


@pytest.fixture(
    params=[
        pytest.param("redis+mock://", id="fakeredis"),
        pytest.param("real", id="redis", marks=pytest.mark.redis),
    ]
)
def db(request):
    url = request.param if request.param != "real" else request.getfixturevalue("redis_url")
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.REDIS, url)
    manager.connection(DatabaseType.REDIS).execute("FLUSHDB")
    yield manager
    manager.connection(DatabaseType.REDIS).execute("FLUSHDB")
    manager.close_all()


def test_get_save_delete_by_key(db):
    first = Session(user="ada", data={"cart": [1, 2]}).save(db)
    second = Session(user="bob").save(db)
    assert (first.id, second.id) == (1, 2)
    back = Session.get(db, 1)
    assert back == first and back.data == {"cart": [1, 2]}
    assert db.connection(DatabaseType.REDIS).execute("HGET", "sessions:1", "user") == '"ada"'
    back.user = "ada lovelace"
    back.save(db)
    assert Session.get(db, 1).user == "ada lovelace"
    back.delete(db)
    assert Session.get(db, 1) is None and Session.get(db, 2) is not None


def test_what_redis_cannot_do_is_refused(db):
    with pytest.raises(NotSupportedError, match="get, save and delete"):
        Session.query(db)
    with pytest.raises(NotSupportedError, match="version"):
        Counter(id=1).save(db)
