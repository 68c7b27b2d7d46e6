"""Connection URLs: the forms we accept, what we refuse, and that passwords never show."""

from __future__ import annotations

import pytest

from dbsystem.errors import ConfigurationError, InvalidURL
from dbsystem.kernel.url import DatabaseURL, is_secret_option, redact


def test_full_url_parts():
    url = DatabaseURL("postgresql+psycopg://app:s%40cret@db.local:5433/shop?sslmode=require")
    assert url.scheme == "postgresql+psycopg" and url.base_scheme == "postgresql"
    assert url.driver == "psycopg"
    assert (url.username, url.password, url.host, url.port) == ("app", "s@cret", "db.local", 5433)
    assert url.database == "shop" and url.options == {"sslmode": "require"}


@pytest.mark.parametrize(
    ("text", "database", "memory"),
    [
        ("sqlite:///app.db", "app.db", False),
        ("sqlite:////tmp/abs.db", "/tmp/abs.db", False),
        ("sqlite://:memory:", ":memory:", True),
        ("sqlite:///:memory:", ":memory:", True),
        ("sqlite://", ":memory:", True),
    ],
)
def test_sqlite_forms(text, database, memory):
    url = DatabaseURL(text)
    assert url.database == database and url.is_memory is memory


def test_password_hidden_in_str_and_repr_but_available_to_render():
    url = DatabaseURL("mysql://root:hunter2@127.0.0.1:3306/test")
    assert "hunter2" not in str(url) and "hunter2" not in repr(url)
    assert str(url) == "mysql://root:***@127.0.0.1:3306/test"
    assert url.render(hide_password=False) == "mysql://root:hunter2@127.0.0.1:3306/test"


def test_replace_and_equality():
    url = DatabaseURL("redis://:pw@localhost:6379/0")
    other = url.replace(database="1")
    assert other.database == "1" and url.database == "0"
    assert other != url and DatabaseURL(url) == url
    with pytest.raises(InvalidURL):
        url.replace(colour="blue")
    with pytest.raises(AttributeError):
        url.host = "elsewhere"


@pytest.mark.parametrize(
    "text", ["", "   ", "no-scheme", "://x", "postgresql://h:notaport/db", "sqlite://relative.db"]
)
def test_invalid_urls_raise_configuration_error(text):
    with pytest.raises(ConfigurationError):
        DatabaseURL(text)


def test_invalid_url_error_never_shows_password():
    with pytest.raises(InvalidURL) as info:
        DatabaseURL("postgresql://u:topsecret@h:badport/db")
    assert "topsecret" not in str(info.value)


def test_redact_scrubs_known_secrets_userinfo_and_password_pairs():
    text = "failed: postgresql://u:abc123@h/db host=h password=abc123 pw again abc123"
    cleaned = redact(text, ["abc123"])
    assert "abc123" not in cleaned
    assert redact("dsn='user=x password=zzz host=y'") == "dsn='user=x password=*** host=y'"
    assert "p4ss" not in redact("mongodb://me:p4ss@host/db")


def test_host_list_kept_whole_for_replica_sets_and_clusters():
    url = DatabaseURL("mongodb://app:s3cret@a.local:27017,b.local:27018,[::1]/shop?replicaSet=rs0")
    assert url.hosts == (("a.local", 27017), ("b.local", 27018), ("::1", None))
    assert (url.host, url.port) == ("a.local", 27017)  # the first entry
    assert str(url) == "mongodb://app:***@a.local:27017,b.local:27018,[::1]/shop?replicaSet=rs0"
    assert "s3cret" in url.render(hide_password=False)
    assert DatabaseURL(url.render(hide_password=False)) == url
    # Changing the host replaces the list: the URL names one server again.
    assert url.replace(host="c.local").hosts == (("c.local", 27017),)


def test_empty_entry_in_a_host_list_is_refused():
    with pytest.raises(InvalidURL, match="empty host"):
        DatabaseURL("redis+cluster://a:7000,,b:7001")


SECRET_OPTIONS = [
    "password",
    "pass",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "sslpassword",
    "api_key",
    "apiKey",
    "access-token",
    "client_secret",
    "authtoken",
    "tlsCertificateKeyFilePassword",
]
NOT_SECRET_OPTIONS = [
    "sslkey",  # libpq: the client key's file path (its passphrase is sslpassword)
    "ssl_key",
    "sslcert",
    "sslrootcert",
    "passfile",  # libpq: the path of the password file, not a password
    "tlsCertificateKeyFile",
    "keepalives",
    "application_name",
    "sslmode",
]


@pytest.mark.parametrize("name", SECRET_OPTIONS)
def test_secret_options_are_hidden_in_str_repr_and_reported_as_secrets(name):
    url = DatabaseURL(f"postgresql://app@db.local/shop?{name}=Hush-7x%40&sslmode=require")
    assert is_secret_option(name)
    for text in (str(url), repr(url), url.render()):
        assert "Hush-7x" not in text and f"{name}=***" in text
    assert "sslmode=require" in str(url)
    assert "Hush-7x@" in url.secrets()
    assert url.options[name] == "Hush-7x@"  # the driver still gets it
    assert f"{name}=Hush-7x%40" in url.render(hide_password=False)


@pytest.mark.parametrize("name", NOT_SECRET_OPTIONS)
def test_options_naming_files_and_settings_are_not_secrets(name):
    assert not is_secret_option(name)
    assert "value" in str(DatabaseURL(f"postgresql://h/db?{name}=value"))


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:p@ss:w0rd@host:notaport/db",
        "postgresql://u:p@ss:w0rd@host:99999/db",
        "postgresql://u:pa/ss:w0rd@host/db",
        "postgresql://u:123/ss:w0rd@host/db",  # would parse as port 123, database 'ss:w0rd@...'
        "mysql://u:pa?ss:w0rd@host/db",
        "mysql://u:12?x=ss:w0rd@host/db",
        "postgresql://u:pa#ss:w0rd@host/db",
        "redis+cluster://u:p,ss:w0rd@a:7000,b:x",
        "sqlite://u:p@ss:w0rd@x",
        "u:p@ss:w0rd@host/db",
        "postgresql://u@h/db?password=ss:w0rd&bad",
    ],
)
def test_a_malformed_url_never_echoes_the_user_info(text):
    with pytest.raises(InvalidURL) as info:
        DatabaseURL(text)
    message = str(info.value)
    for piece in ("ss:w0rd", "w0rd", "u:p", "pa/ss", "pa?ss", "pa#ss", "123/ss"):
        assert piece not in message, message
    assert "***" in message or "scheme" in message


def test_a_malformed_url_error_still_says_where_the_problem_is():
    with pytest.raises(InvalidURL) as info:
        DatabaseURL("postgresql://u:p@ss:w0rd@host:notaport/db")
    assert str(info.value) == (
        "invalid connection URL 'postgresql://***@host:notaport/db': "
        "the port must be a number from 0 to 65535"
    )
    with pytest.raises(InvalidURL, match="percent-encode"):
        DatabaseURL("postgresql://u:pa/ss@host/db")
    # Encoded, the same password is fine.
    assert DatabaseURL("postgresql://u:pa%2Fss%40x@host/db").password == "pa/ss@x"


def test_redact_hides_secret_pairs_in_driver_messages():
    text = "connection to h failed: sslpassword=abc api_token='x y' passfile=/p host=h"
    cleaned = "connection to h failed: sslpassword=*** api_token=*** passfile=/p host=h"
    assert redact(text) == cleaned
