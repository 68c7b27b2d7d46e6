"""Pool configuration: one frozen pydantic model, from keywords, a URL, the environment or TOML.

Validation happens here, once, at configuration time; nothing on the query path touches
pydantic. Every invalid setting raises ``ConfigurationError`` (also a ``ValueError``) whose
message names the field and never echoes the value given for the URL (it may hold a password).

Precedence: keyword arguments win over options in the URL's query string
(``?max_size=10&acquire_timeout=5``), which win over the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from dbsystem.errors import ConfigurationError
from dbsystem.kernel.types import DatabaseType
from dbsystem.kernel.url import DatabaseURL, is_secret_option

__all__ = ["PoolConfig", "TLSConfig", "TLSMode"]


def _to_url(value: Any) -> DatabaseURL:
    if isinstance(value, DatabaseURL):
        return value
    if isinstance(value, str):
        return DatabaseURL(value)
    raise ValueError("must be a URL string")


URLField = Annotated[
    DatabaseURL,
    BeforeValidator(_to_url),
    PlainSerializer(lambda url: url.render(), return_type=str),
]


def _masked_options(options: Mapping[str, str]) -> dict[str, str]:
    """The options with the values of secret ones (``?sslpassword=``...) hidden."""
    return {k: "***" if is_secret_option(k) else v for k, v in options.items()}


OptionsField = Annotated[
    dict[str, str],
    PlainSerializer(_masked_options, return_type=dict[str, str]),
]

# URL query options that are pool settings; every other option goes to the backend.
_POOL_FIELDS = (
    "min_size",
    "max_size",
    "acquire_timeout",
    "idle_timeout",
    "max_lifetime",
    "health_check_interval",
    "leak_threshold",
    "max_waiting",
    "reconnect_timeout",
    "statement_timeout",
    "connect_timeout",
    "echo",
    "log_parameters",
    "pipelining",
)
_NONE_WORDS = frozenset({"none", "null", "off", ""})


TLSMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
"""How a connection uses TLS, with libpq's names (the strictest is the default)."""


class _Settings(BaseModel):
    """A settings model whose invalid values raise ``ConfigurationError`` naming the field
    (pydantic's ``ValidationError`` is not a ``DBSystemError``)."""

    _what: ClassVar[str]  # "TLS configuration", "pool configuration"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(exc, self._what) from None


class TLSConfig(_Settings):
    """TLS settings of a pool, mapped to each driver's own options.

    ``mode``: ``disable`` (plaintext), ``prefer`` (TLS when the server offers it),
    ``require`` (TLS or no connection, certificate not checked), ``verify-ca`` (the
    certificate must chain to ``ca_file``), ``verify-full`` (that, and the host name must
    match it; the default). Without ``ca_file`` the verifying modes use the system's CAs.
    A requiring mode never falls back to plaintext. ``cert_file``/``key_file`` give a client
    certificate. Invalid settings raise ``ConfigurationError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    _what: ClassVar[str] = "TLS configuration"

    mode: TLSMode = "verify-full"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _check_files(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    @property
    def verifies(self) -> bool:
        """True for the modes that check the server's certificate."""
        return self.mode in ("verify-ca", "verify-full")


class PoolConfig(_Settings):
    """Settings for one connection pool. Frozen: build a new one with ``model_copy(update=...)``.

    Timeouts are float seconds. ``None`` turns an optional limit off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    _what: ClassVar[str] = "pool configuration"

    def __init__(self, **data: Any) -> None:  # (typed loosely: a URL may be given as text)
        super().__init__(**data)

    url: URLField
    """Where to connect; its query options may set the fields below."""
    min_size: int = Field(default=1, ge=0)
    """Connections opened when the pool is created and kept open while idle."""
    max_size: int = Field(default=10, ge=1)
    """The most connections the pool will hold, in use and idle together."""
    acquire_timeout: float = Field(default=30.0, gt=0)
    """How long ``acquire`` waits for a free connection before raising ``PoolTimeout``."""
    idle_timeout: float | None = Field(default=600.0, gt=0)
    """Idle connections above ``min_size`` are closed after this long unused."""
    max_lifetime: float | None = Field(default=3600.0, gt=0)
    """Connections are replaced after this long (less up to 10% jitter), never while in use."""
    health_check_interval: float | None = Field(default=1.0, ge=0)
    """A connection idle longer than this is pinged before it is handed out (0: always)."""
    leak_threshold: float | None = Field(default=None, gt=0)
    """Log a warning, with the borrower's stack, for a connection held longer than this."""
    max_waiting: int = Field(default=0, ge=0)
    """The most callers that may wait; one more raises ``PoolExhausted`` (0: no limit)."""
    reconnect_timeout: float | None = Field(default=300.0, gt=0)
    """While the server is down the pool retries with backoff; after this long it logs an
    ERROR and calls ``pool.reconnect_failed`` (None: never)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """How long opening one connection may take."""
    statement_timeout: float | None = Field(default=None, gt=0)
    """The longest a statement may run (None: no limit). The server cancels it
    (PostgreSQL ``statement_timeout``, MariaDB ``max_statement_time``, MySQL
    ``max_execution_time``), and the client stops waiting one second later (MySQL
    ``read_timeout``/``write_timeout``; PostgreSQL: a watchdog shuts the socket; Redis
    ``socket_timeout``, at once) unless those are set."""
    echo: bool = False
    """Log every statement at INFO on the ``dbsystem.sql`` logger."""
    log_parameters: bool = False
    """Show parameter values in statement logs and in error messages."""
    tls: TLSConfig | None = None
    """TLS for the connections; None keeps the driver's default (see ``TLSConfig``)."""
    credential: str | None = None
    """The name of a ``CredentialManager`` credential supplying the password (and user)."""
    replicas: tuple[URLField, ...] = ()
    """Read replicas of the database at ``url`` (see ``dbsystem.core.replicas``)."""
    replica_policy: Literal["round_robin", "least_connections", "lowest_latency"] = "round_robin"
    """How a read picks its replica."""
    max_replica_lag: float | None = Field(default=None, gt=0)
    """A replica further behind than this many seconds gets no reads until it catches up."""
    patroni: str | None = None
    """Patroni REST API URLs, comma-separated (``http://h1:8008,http://h2:8008``): the
    replicas for reads come from its ``/cluster`` and follow the cluster's changes
    (``dbsystem.core.topology``; PostgreSQL)."""
    pipelining: bool = True
    """Async Redis: commands that tasks of one identity (the application, or one user
    session) issue in the same event-loop iteration go to the server in one write, each
    still checked, audited and answered on its own (``dbsystem.aio`` docs). False sends
    every command on its own round trip."""
    options: OptionsField = Field(default_factory=dict)
    """Backend-specific options (the URL's query options that are not pool settings).
    Secret ones (``is_secret_option``: ``sslpassword``...) show as ``***`` in ``repr``,
    ``str`` and dumps, as the URL's password does."""

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _masked_options(value) if name == "options" else value

    @model_validator(mode="before")
    @classmethod
    def _merge_url_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "url" not in data:
            return data
        try:
            url = _to_url(data["url"])
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        pool_options = {k: v for k, v in url.options.items() if k in _POOL_FIELDS}
        merged = dict(data)
        for key, value in pool_options.items():
            if key not in merged:
                merged[key] = None if value.lower() in _NONE_WORDS else value
        backend_options = {k: v for k, v in url.options.items() if k not in _POOL_FIELDS}
        merged["options"] = {**backend_options, **dict(merged.get("options") or {})}
        merged["url"] = url.without_options(pool_options) if pool_options else url
        return merged

    @model_validator(mode="after")
    def _check_patroni(self) -> PoolConfig:
        if self.patroni is None:
            return self
        urls = [u.strip() for u in self.patroni.split(",")]
        if not all(u.startswith(("http://", "https://")) and len(u) > 8 for u in urls):
            raise ValueError(
                "patroni: give Patroni REST API URLs, http://host:port, comma-separated"
            )
        if self.replicas:
            raise ValueError("patroni: the replicas come from Patroni; leave replicas empty")
        return self

    @model_validator(mode="after")
    def _check_sizes(self) -> PoolConfig:
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})"
            )
        return self

    @classmethod
    def from_url(cls, url: str | DatabaseURL, **overrides: Any) -> PoolConfig:
        """Build a config from a URL; keyword arguments override its query options."""
        return cls(url=url, **overrides)

    @classmethod
    def from_env(
        cls,
        name: DatabaseType | str,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> PoolConfig:
        """Build a config from environment variables.

        Looked up in order: ``DBSYSTEM_<NAME>_URL`` (``NAME`` is the database type or a
        pool name, upper case); then, by type, ``DB_HOST``/``DB_PORT``/``DB_NAME``/
        ``DB_USER``/``DB_PASSWORD`` (PostgreSQL, MySQL), ``DB_NAME`` as a path (SQLite),
        ``MONGO_URI`` (MongoDB), ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``/``REDIS_DB``
        (Redis). ``DBSYSTEM_<NAME>_<FIELD>`` sets any pool field (``DBSYSTEM_POSTGRES_MAX_SIZE``).
        """
        env = os.environ if environ is None else environ
        key = (name.value if isinstance(name, DatabaseType) else str(name)).upper()
        prefix = f"DBSYSTEM_{key}_"
        url = env.get(prefix + "URL") or _url_from_classic_env(key, env)
        if not url:
            raise ConfigurationError(
                f"no connection settings for {key.lower()!r} in the environment: set {prefix}URL"
            )
        fields: dict[str, Any] = {}
        for field in _POOL_FIELDS:
            value = env.get(prefix + field.upper())
            if value is not None:
                fields[field] = None if value.lower() in _NONE_WORDS else value
        fields.update(overrides)
        return cls(url=url, **fields)

    def describe(self) -> str:
        """A one-line summary with the password and secret options hidden, for logs and
        error messages (the pool's INFO "opened" line)."""
        return f"{self.url} (min_size={self.min_size}, max_size={self.max_size})"


def _url_from_classic_env(key: str, env: Mapping[str, str]) -> str | None:
    try:
        db_type = DatabaseType.parse(key)
    except ConfigurationError:
        return None
    if db_type in (DatabaseType.POSTGRES, DatabaseType.MYSQL) and env.get("DB_HOST"):
        scheme = "postgresql" if db_type is DatabaseType.POSTGRES else "mysql"
        return (
            DatabaseURL(f"{scheme}://placeholder")
            .replace(
                username=env.get("DB_USER") or None,
                password=env.get("DB_PASSWORD") or None,
                host=env["DB_HOST"],
                port=int(env["DB_PORT"]) if env.get("DB_PORT") else None,
                database=env.get("DB_NAME") or None,
            )
            .render(hide_password=False)
        )
    if db_type is DatabaseType.SQLITE and env.get("DB_NAME"):
        return f"sqlite:///{env['DB_NAME']}"
    if db_type is DatabaseType.MONGODB:
        return env.get("MONGO_URI")
    if db_type is DatabaseType.REDIS and env.get("REDIS_HOST"):
        return (
            DatabaseURL("redis://placeholder")
            .replace(
                password=env.get("REDIS_PASSWORD") or None,
                host=env["REDIS_HOST"],
                port=int(env.get("REDIS_PORT") or 6379),
                database=env.get("REDIS_DB") or "0",
            )
            .render(hide_password=False)
        )
    return None


def _configuration_error(exc: ValidationError, what: str) -> ConfigurationError:
    # Name each bad field and say why, but never echo the input: a URL may carry a password.
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)  # (a check of several)
    return ConfigurationError(f"invalid {what}: " + "; ".join(problems))
