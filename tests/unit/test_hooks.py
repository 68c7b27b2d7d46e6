"""The hook chain and the lazy classification of raw SQL."""

from __future__ import annotations

import pytest

from dbsystem.errors import PermissionDenied
from dbsystem.kernel.hooks import ExecutionHook, HookChain, Statement, classify_sql


class Recorder(ExecutionHook):
    def __init__(self, name: str, log: list, refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def before_execute(self, statement: Statement) -> None:
        self.log.append(("before", self.name))
        if self.refuse:
            raise PermissionDenied("no")

    def after_execute(self, statement: Statement) -> None:
        self.log.append(("after", self.name, statement.outcome))


def make_statement(text: str = "SELECT 1") -> Statement:
    return Statement(backend="sqlite", dialect="sqlite", pool="p", operation="fetch_all", text=text)


def test_hooks_run_in_order_around_the_call_and_see_the_outcome():
    log: list = []
    chain = HookChain()
    chain.add(Recorder("a", log))
    chain.add(Recorder("b", log))
    statement = make_statement()
    assert chain.run(statement, lambda: [1, 2, 3]) == [1, 2, 3]
    assert log == [("before", "a"), ("before", "b"), ("after", "a", "ok"), ("after", "b", "ok")]
    assert statement.rowcount == 3 and statement.duration is not None and statement.executed


def test_a_refusing_hook_stops_the_call_and_after_hooks_see_refused():
    log: list = []
    chain = HookChain()
    chain.add(Recorder("audit", log))
    chain.add(Recorder("acl", log, refuse=True))
    called = []
    with pytest.raises(PermissionDenied):
        chain.run(make_statement(), lambda: called.append(1))
    assert called == []
    assert ("after", "audit", "refused") in log


def test_errors_reach_after_hooks_then_propagate():
    log: list = []
    chain = HookChain()
    chain.add(Recorder("a", log))

    def boom() -> None:
        raise ValueError("x")

    statement = make_statement()
    with pytest.raises(ValueError):
        chain.run(statement, boom)
    assert log[-1] == ("after", "a", "error") and isinstance(statement.error, ValueError)


def test_remove_and_truthiness():
    chain = HookChain()
    assert not chain
    hook = chain.add(ExecutionHook())
    assert chain and len(chain) == 1
    chain.remove(hook)
    assert not chain.hooks


@pytest.mark.parametrize(
    ("sql", "action", "tables"),
    [
        ("SELECT * FROM users WHERE id = :id", "select", ("users",)),
        ("INSERT INTO orders (a) VALUES (1)", "insert", ("orders",)),
        ("UPDATE users SET a = 1", "update", ("users",)),
        ("DELETE FROM users", "delete", ("users",)),
        ("CREATE TABLE t (id INT)", "ddl", ("t",)),
        ("DROP TABLE t", "ddl", ("t",)),
        (
            "WITH x AS (SELECT id FROM a) SELECT * FROM x JOIN b ON b.id = x.id",
            "select",
            ("a", "b"),
        ),
        ("SELECT 1; DROP TABLE canary", "multiple", ("canary",)),
        ("SELECT * FROM a WHERE id IN (SELECT id FROM b)", "select", ("a", "b")),
        ("this is not sql at all ((", "unknown", ()),
    ],
)
def test_classify_sql(sql, action, tables):
    found_action, found_tables = classify_sql(sql, "sqlite")
    assert found_action == action
    assert set(found_tables) == set(tables)


def test_writing_cte_takes_the_most_privileged_action():
    action, tables = classify_sql(
        "WITH gone AS (DELETE FROM users RETURNING id) SELECT * FROM gone", "postgresql"
    )
    assert action == "delete" and tables == ("users",)
