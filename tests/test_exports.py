"""The public API surface: every name in ``__all__`` exists, is sorted, and nothing leaks."""

from __future__ import annotations

import importlib

import pytest

import dbsystem

PUBLIC_MODULES = [
    "dbsystem",
    "dbsystem.errors",
    "dbsystem.extend",
    "dbsystem.kernel",
    "dbsystem.core",
    "dbsystem.scaling",
    "dbsystem.backends",
    "dbsystem.testing",
    "dbsystem.query",
    "dbsystem.orm",
    "dbsystem.security",
    "dbsystem.monitoring",
    "dbsystem.streams",
    "dbsystem.aio",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert sorted(exported, key=str) == list(exported) or sorted(exported) == list(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.{item}"


def test_top_level_exports_the_documented_entry_points():
    for item in (
        "DatabaseManager",
        "DatabaseType",
        "PoolConfig",
        "Connection",
        "PoolStats",
        "DBSystemError",
        "errors",
        "__version__",
    ):
        assert item in dbsystem.__all__


def test_public_names_are_exported():
    # (pytest adds "@py_builtins" names to modules of a plugin's distribution)
    public = {n for n in vars(dbsystem) if not n.startswith(("_", "@"))}
    submodules = {
        "backends",
        "kernel",
        "core",
        "scaling",
        "errors",
        "extend",
        "testing",
        "cli",
        "logging",
        "query",
        "orm",
        "security",
        "monitoring",
        "streams",
        "aio",
        "integrations",
    }
    assert public - submodules <= set(dbsystem.__all__)


def test_package_ships_type_information():
    import pathlib

    assert (pathlib.Path(dbsystem.__file__).parent / "py.typed").exists()
