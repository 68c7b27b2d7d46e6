"""PoolConfig: validation naming the field, URL options, environment and TOML."""

from __future__ import annotations

import pytest

from dbsystem import ConfigurationError, DatabaseType, PoolConfig
from dbsystem.core.configfile import load_toml


def test_defaults_and_url_query_options():
    config = PoolConfig(url="postgresql://u@h/db?max_size=7&acquire_timeout=2.5&sslmode=require")
    assert config.max_size == 7 and config.acquire_timeout == 2.5
    assert config.options == {"sslmode": "require"}
    assert "max_size" not in config.url.options
    assert config.min_size == 1 and config.health_check_interval == 1.0


def test_keyword_arguments_win_over_url_options():
    config = PoolConfig(url="sqlite:///x.db?max_size=7", max_size=3)
    assert config.max_size == 3


def test_none_words_turn_optional_limits_off():
    config = PoolConfig(url="sqlite:///x.db?idle_timeout=none&max_lifetime=off")
    assert config.idle_timeout is None and config.max_lifetime is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_size": 0}, "max_size"),
        ({"min_size": -1}, "min_size"),
        ({"acquire_timeout": -5}, "acquire_timeout"),
        ({"max_size": "lots"}, "max_size"),
        ({"pool_size": 3}, "pool_size"),
        ({"min_size": 5, "max_size": 2}, "min_size (5) must not exceed max_size (2)"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(url="sqlite:///x.db", **kwargs)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_invalid_setting_in_url_never_echoes_the_password():
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(url="postgresql://u:supersecret@h/db?max_size=-3")
    assert "max_size" in str(info.value) and "supersecret" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(url="postgresql://u:supersecret@h:port/db")
    assert "supersecret" not in str(info.value)


def test_repr_of_config_hides_password():
    config = PoolConfig(url="postgresql://u:supersecret@h/db")
    assert "supersecret" not in repr(config) and "supersecret" not in config.describe()
    assert "supersecret" not in config.model_dump_json()


def test_config_is_frozen():
    config = PoolConfig(url="sqlite:///x.db")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        config.max_size = 3  # type: ignore[misc]


def test_from_env_prefers_dbsystem_url_and_reads_fields():
    env = {"DBSYSTEM_ANALYTICS_URL": "sqlite:///a.db", "DBSYSTEM_ANALYTICS_MAX_SIZE": "4"}
    config = PoolConfig.from_env("analytics", env)
    assert config.url.database == "a.db" and config.max_size == 4


def test_from_env_classic_variables():
    env = {
        "DB_HOST": "db",
        "DB_PORT": "5433",
        "DB_NAME": "shop",
        "DB_USER": "app",
        "DB_PASSWORD": "p@ss",
    }
    config = PoolConfig.from_env(DatabaseType.POSTGRES, env)
    url = config.url
    assert (url.scheme, url.host, url.port, url.database, url.username, url.password) == (
        "postgresql",
        "db",
        5433,
        "shop",
        "app",
        "p@ss",
    )
    assert (
        PoolConfig.from_env(DatabaseType.MONGODB, {"MONGO_URI": "mongodb://m/app"}).url.host == "m"
    )
    redis = PoolConfig.from_env(DatabaseType.REDIS, {"REDIS_HOST": "r", "REDIS_PORT": "6380"})
    assert (redis.url.host, redis.url.port, redis.url.database) == ("r", 6380, "0")


def test_from_env_without_settings_says_what_to_set():
    with pytest.raises(ConfigurationError, match="DBSYSTEM_MYSQL_URL"):
        PoolConfig.from_env(DatabaseType.MYSQL, {})


def test_load_toml(tmp_path):
    path = tmp_path / "db.toml"
    path.write_text(
        '[databases.sqlite]\nurl = "sqlite:///app.db"\nmax_size = 5\ndefault = true\n\n'
        '[databases.reports]\ntype = "sqlite"\nurl = "sqlite:///reports.db"\n'
    )
    specs = {spec.name: spec for spec in load_toml(path)}
    assert specs[None].db_type is DatabaseType.SQLITE and specs[None].config.max_size == 5
    assert specs[None].default is True
    assert specs["reports"].config.url.database == "reports.db"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not toml = = =", "invalid TOML"),
        ("[other]\nx = 1\n", r"no \[databases"),
        ('[databases.a]\nurl = "sqlite:///a.db"\nmax_size = -1\n', "databases.a: invalid pool"),
        ('[databases.a]\nurl = "nope://x"\n', "unknown URL scheme"),
    ],
)
def test_load_toml_errors(tmp_path, content, message):
    path = tmp_path / "db.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_toml(path)


def test_load_toml_missing_file(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_toml(tmp_path / "missing.toml")
