"""Connection URLs: parsing, rendering with the password hidden, and scrubbing secrets from text.

``DatabaseURL`` is immutable. ``str()`` and ``repr()`` never show the password (as in
SQLAlchemy 2), nor the value of any query option whose name says it is a secret
(``?sslpassword=``, ``?token=``: see ``is_secret_option``); ``render(hide_password=False)``
gives the full URL for a driver. ``redact`` removes known secrets from any text (driver
messages, log lines) before it leaves the library. A URL that cannot be parsed is quoted in
the error with everything up to its last ``@`` (the user-info part, whatever characters the
password holds) replaced by ``***``.

Forms understood::

    postgresql://user:pw@host:5432/db?max_size=10     postgresql+psycopg://...  postgres://...
    mysql://user:pw@host:3306/db                      mysql+pymysql://...  mariadb://...
    sqlite:///relative/path.db   sqlite:////absolute/path.db   sqlite://:memory:   sqlite://
    mongodb://host:27017/app     mongodb+srv://cluster.example.com/app   mongodb+mock://
    redis://:pw@host:6379/0      rediss://...   redis+mock://
    mock://postgresql            (the host names the SQL dialect the mock stands in for)
    mongodb://h1:27017,h2:27017/app?replicaSet=rs0     redis+cluster://h1:7000,h2:7001

A comma-separated host list (replica sets, cluster seed nodes) is kept whole in ``hosts``;
``host`` and ``port`` are its first entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from dbsystem.errors import InvalidURL

__all__ = ["DatabaseURL", "is_secret_option", "redact"]

_MASK = "***"
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# user:password@ inside any URL-looking text, for scrubbing messages we did not write.
_USERINFO_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")
# name=value pairs whose name says secret (libpq conninfo, query strings in messages).
_PASSWORD_KV_RE = re.compile(
    r"(?i)(\b[\w.-]*(?:password|passwd|pwd|secret|token|passphrase)\s*=\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s&]+)"
)
# Words of an option name that make it a secret (``api_key``, ``sslPassword``, ``pwd``)...
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "passphrase"}
)
# ...and endings of a one-word name that do (``sslpassword``, ``authtoken``, ``clientsecret``).
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "passphrase", "apikey")
# Names that look secret but hold a file's path: libpq's ``sslkey`` (and pymysql's
# ``ssl_key``) name the client's private key file; its passphrase is ``sslpassword``.
_NOT_SECRET = frozenset({"sslkey", "ssl_key"})
_PATH_WORDS = frozenset({"file", "path", "dir", "filename"})
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SPLIT_RE = re.compile(r"[^a-z0-9]+")


def is_secret_option(name: str) -> bool:
    """True if a URL query option called ``name`` holds a secret, judged by its name.

    Secret: a word of the name (split at ``_``, ``-``, ``.`` and camelCase) is ``password``,
    ``passwd``, ``pass``, ``pwd``, ``secret``, ``token``, ``key``, ``apikey`` or
    ``passphrase``, or the name ends with ``password``, ``passwd``, ``secret``, ``token``,
    ``passphrase`` or ``apikey`` (``sslpassword``). Not secret: names whose last word is
    ``file``, ``path``, ``dir`` or ``filename`` (``tlsCertificateKeyFile`` is a path), and
    ``sslkey``/``ssl_key``, which name the client key's *file* (its passphrase is
    ``sslpassword``, which is secret). A false positive only hides a value from logs.
    """
    lower = name.lower()
    if lower in _NOT_SECRET:
        return False
    words = [w for w in _WORD_SPLIT_RE.split(_CAMEL_RE.sub(r"\1_\2", name).lower()) if w]
    if words and words[-1] in _PATH_WORDS:
        return False
    return any(w in _SECRET_WORDS for w in words) or lower.endswith(_SECRET_ENDINGS)


class DatabaseURL:
    """A parsed connection URL. Immutable; ``str()`` hides the password.

    >>> url = DatabaseURL("postgresql://app:s3cret@db.local:5432/shop?max_size=5")
    >>> url.scheme, url.host, url.port, url.database, url.options["max_size"]
    ('postgresql', 'db.local', 5432, 'shop', '5')
    >>> str(url)
    'postgresql://app:***@db.local:5432/shop?max_size=5'
    """

    __slots__ = (
        "_password",
        "database",
        "driver",
        "host",
        "hosts",
        "options",
        "port",
        "scheme",
        "username",
    )

    _password: str | None
    scheme: str
    driver: str | None
    username: str | None
    host: str | None
    port: int | None
    hosts: tuple[tuple[str, int | None], ...]
    database: str | None
    options: Mapping[str, str]

    def __init__(self, url: str | DatabaseURL) -> None:
        if isinstance(url, DatabaseURL):
            for name in self.__slots__:
                object.__setattr__(self, name, getattr(url, name))
            return
        if not isinstance(url, str) or not url.strip():
            raise InvalidURL("a connection URL must be a non-empty string")
        parsed = _parse(url.strip())
        for name, value in parsed.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("DatabaseURL is immutable; use replace()")

    @property
    def password(self) -> str | None:
        """The password, for handing to a driver. Never printed by ``str`` or ``repr``."""
        return self._password

    @property
    def base_scheme(self) -> str:
        """The scheme without its ``+driver`` suffix: ``postgresql`` for ``postgresql+psycopg``."""
        return self.scheme.split("+", 1)[0]

    @property
    def is_memory(self) -> bool:
        """True for an in-memory SQLite URL (``sqlite://`` or ``sqlite://:memory:``)."""
        return self.scheme == "sqlite" and self.database in (None, "", ":memory:")

    def secrets(self) -> tuple[str, ...]:
        """The secret strings in this URL (its password and the values of its secret query
        options, ``is_secret_option``), for ``redact``."""
        found = [self._password] if self._password else []
        found += [v for k, v in self.options.items() if v and is_secret_option(k)]
        return tuple(found)

    def replace(self, **changes: Any) -> DatabaseURL:
        """Return a copy with some parts changed (``host=``, ``database=``, ``options=`` ...)."""
        values = {name.lstrip("_"): getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise InvalidURL(f"unknown URL part(s): {', '.join(sorted(unknown))}")
        values.update(changes)
        if ("host" in changes or "port" in changes) and "hosts" not in changes:
            host, port = values["host"], values["port"]
            values["hosts"] = ((host, port),) if host else ()
        new = object.__new__(DatabaseURL)
        for name in self.__slots__:
            value = values[name.lstrip("_")]
            if name == "options":
                value = dict(value or {})
            object.__setattr__(new, name, value)
        return new

    def without_options(self, names: Iterable[str]) -> DatabaseURL:
        """Return a copy without the given query options."""
        drop = set(names)
        return self.replace(options={k: v for k, v in self.options.items() if k not in drop})

    def render(self, *, hide_password: bool = True) -> str:
        """Return the URL as text; the password and the values of secret query options
        (``is_secret_option``) are shown only with ``hide_password=False``."""
        if self.scheme == "sqlite":
            memory = self.database in (None, "", ":memory:")
            text = "sqlite://:memory:" if memory else f"sqlite:///{self.database}"
        else:
            netloc = ""
            if self.username is not None or self._password is not None:
                netloc = quote(self.username or "", safe="")
                if self._password is not None:
                    netloc += ":" + (_MASK if hide_password else quote(self._password, safe=""))
                netloc += "@"
            netloc += ",".join(_host_port(h, p) for h, p in self.hosts) or _host_port(
                self.host, self.port
            )
            text = f"{self.scheme}://{netloc}"
            if self.database is not None:
                text += "/" + quote(self.database, safe="")
        if self.options:
            options = dict(self.options)
            if hide_password:
                options = {k: _MASK if is_secret_option(k) else v for k, v in options.items()}
            text += "?" + urlencode(options, safe="*")
        return text

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.render()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatabaseURL):
            return NotImplemented
        return self.render(hide_password=False) == other.render(hide_password=False)

    def __hash__(self) -> int:
        return hash(self.render(hide_password=False))


def _parse(url: str) -> dict[str, Any]:
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME_RE.match(scheme):
        raise InvalidURL(f"not a connection URL (expected scheme://...): {_echo(url)!r}")
    scheme = scheme.lower()
    driver = scheme.split("+", 1)[1] if "+" in scheme else None
    if scheme == "sqlite":
        return _parse_sqlite(rest, driver)
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest[len(netloc) :]:
        # A '/', '?' or '#' in an unencoded password cuts the host part short, and the rest
        # of the password would be read as a port, a database or options (and shown).
        raise InvalidURL(
            f"invalid connection URL {_echo(url)!r}: '@' after the host; percent-encode "
            "'@', '/', '?' and '#' in the user name and password (%40, %2F, %3F, %23)"
        )
    userinfo, at, hostlist = netloc.rpartition("@")
    try:
        hosts = tuple(_split_host(h) for h in hostlist.split(",")) if "," in hostlist else ()
        # urlsplit understands one host: give it the first and keep the list aside.
        first = hostlist.split(",", 1)[0]
        parts = urlsplit(f"{scheme}://{userinfo}{at}{first}{rest[len(netloc) :]}")
        port = parts.port
    except ValueError as exc:
        # The parser's own message may quote a piece of the host part; with user-info in
        # the URL that piece can be a piece of the password, so it is not repeated then.
        reason = str(exc) if not at else "cannot parse the host part"
        if "Port" in str(exc):
            reason = "the port must be a number from 0 to 65535"
        raise InvalidURL(f"invalid connection URL {_echo(url)!r}: {reason}") from None
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else None
    return {
        "scheme": scheme,
        "driver": driver,
        "username": unquote(parts.username) if parts.username is not None else None,
        "_password": unquote(parts.password) if parts.password is not None else None,
        "host": parts.hostname,
        "port": port,
        "hosts": hosts or (((parts.hostname, port),) if parts.hostname else ()),
        "database": database or None,
        "options": _options(parts.query, url),
    }


def _parse_sqlite(rest: str, driver: str | None) -> dict[str, Any]:
    path, _, query = rest.partition("?")
    if path in ("", ":memory:", "/:memory:"):
        database: str | None = ":memory:"
    elif path.startswith("/"):
        # sqlite:///rel.db -> "rel.db"; sqlite:////abs/x.db -> "/abs/x.db" (SQLAlchemy's rule).
        database = unquote(path[1:]) or ":memory:"
    else:
        raise InvalidURL(
            f"invalid SQLite URL {_echo('sqlite://' + path)!r}: use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or sqlite://:memory:"
        )
    return {
        "scheme": "sqlite",
        "driver": driver,
        "username": None,
        "_password": None,
        "host": None,
        "port": None,
        "hosts": (),
        "database": database,
        "options": _options(query, rest),
    }


def _split_host(text: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{text}")
    host, port = parts.hostname, parts.port
    if not host:
        raise InvalidURL(f"empty host in the host list {text!r}")
    return host, port


def _host_port(host: str | None, port: int | None) -> str:
    text = (f"[{host}]" if ":" in host else host) if host else ""
    return text if port is None else f"{text}:{port}"


def _options(query: str, url: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise InvalidURL(f"invalid query string in URL {_echo(url)!r}") from None


def _echo(text: str) -> str:
    """``text`` (a URL that failed to parse, or a parser's message about it) safe to quote
    in an error: everything up to the last ``@`` is user-info and becomes ``***``, whatever
    it holds (``@``, ``:``, ``/``, ``#`` in an unencoded password), and the values of secret
    query options are masked."""
    head, at, tail = text.rpartition("@")
    if at:
        scheme, sep, _ = head.partition("://")
        prefix = f"{scheme}://" if sep and _SCHEME_RE.match(scheme) else ""
        text = f"{prefix}{_MASK}@{tail}"
    return redact(text)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every known secret and every URL password replaced by ``***``.

    Applied to driver messages before they become our errors, so a password that a driver
    echoes back (in a DSN, in ``password=...``) never reaches a log or a traceback.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, _MASK)
    text = _USERINFO_RE.sub(lambda m: m.group("pre") + _MASK, text)
    return _PASSWORD_KV_RE.sub(lambda m: m.group(1) + _MASK, text)
