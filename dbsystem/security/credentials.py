"""Credentials: named secrets from code, the environment or a 0600 file; password hashing.

    creds = CredentialManager.instance()
    creds.set("orders-db", username="app", password="s3cret")
    creds.load_env("reports-db", password_var="REPORTS_DB_PASSWORD")
    creds.load_file("/etc/myapp/credentials.toml")   # refused unless mode 0600
    db.create_pool(DatabaseType.POSTGRES, PoolConfig(url="postgresql://db/orders",
                                                     credential="orders-db"))

Passwords are held as pydantic ``SecretStr``: ``repr``, ``str`` and logs show ``**********``.
``hash_password``/``verify_password`` use argon2 (argon2-cffi): the verification is
constant-time and says whether the hash should be upgraded. A stored hash whose parameters ask
for more work than ``HashCostCeiling`` allows is refused before any hashing is done, so a
planted hash with huge costs cannot stall every login.
"""

from __future__ import annotations

import os
import stat
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dbsystem.errors import AuthenticationError, ConfigurationError, SecurityError
from dbsystem.kernel._singleton import ProcessWide
from dbsystem.kernel.protocols import set_credential_source

__all__ = [
    "Credential",
    "CredentialManager",
    "HashCostCeiling",
    "MAX_CONCURRENT_HASHES",
    "MAX_PASSWORD_LENGTH",
    "hash_password",
    "password_needs_rehash",
    "set_hash_cost_ceiling",
    "verify_password",
]


@dataclass(frozen=True)
class Credential:
    """A username and a password that never prints."""

    username: str | None
    password: SecretStr

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password=SecretStr('**********'))"


class CredentialManager(ProcessWide):
    """Named credentials, for pools (``PoolConfig(credential=...)``) and applications.

    ``CredentialManager.instance()`` is the process-wide store; ``CredentialManager()`` an
    isolated one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: dict[str, Credential] = {}

    def set(self, name: str, *, password: str, username: str | None = None) -> None:
        """Store a credential given in code."""
        with self._lock:
            self._credentials[name] = Credential(username, SecretStr(password))

    def load_env(self, name: str, *, password_var: str, username_var: str | None = None) -> None:
        """Store a credential from environment variables.

        ``$PASSWORD_VAR`` holds the password, or ``$PASSWORD_VAR_FILE`` names a file that
        does (Docker and Kubernetes secrets); the file's content is stripped.
        """
        password = os.environ.get(password_var)
        file_var = f"{password_var}_FILE"
        if password is None and os.environ.get(file_var):
            path = Path(os.environ[file_var])
            try:
                password = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigurationError(
                    f"credential {name!r}: cannot read ${file_var} ({path}): {exc.strerror}"
                ) from None
        if password is None:
            raise ConfigurationError(
                f"credential {name!r}: neither ${password_var} nor ${file_var} is set"
            )
        username = os.environ.get(username_var) if username_var else None
        self.set(name, password=password, username=username)

    def load_file(self, path: str | Path) -> list[str]:
        """Store the credentials of a TOML file (``[name] username=... password=...``).

        The file must be readable by its owner only (mode 0600): a secret anyone on the
        machine can read is refused. Returns the names loaded.
        """
        path = Path(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"invalid TOML in {path}: {exc}") from None
        for name, entry in data.items():
            if not isinstance(entry, dict) or "password" not in entry:
                raise ConfigurationError(f"{path}: [{name}] needs a password")
            self.set(name, password=str(entry["password"]), username=entry.get("username"))
        return list(data)

    def get(self, name: str) -> Credential:
        """The credential called ``name``."""
        with self._lock:
            found = self._credentials.get(name)
        if found is None:
            raise ConfigurationError(f"no credential named {name!r}")
        return found

    def remove(self, name: str) -> None:
        """Forget a credential."""
        with self._lock:
            self._credentials.pop(name, None)


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise ConfigurationError(
            "password hashing needs argon2-cffi: pip install 'dbsystem[security]'"
        ) from None
    return PasswordHasher()


# Longer input is refused: hashing megabytes on every login attempt is a denial of service.
MAX_PASSWORD_LENGTH = 1024


# Each argon2 hash or verification takes 64 MiB for its duration: 50 logins at once would
# want 3.2 GiB. At most this many run together; the others wait their turn.
MAX_CONCURRENT_HASHES = max(2, (os.cpu_count() or 2) * 2)
_hash_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted; parameters embedded in the string).

    argon2-cffi's defaults (RFC 9106's low-memory profile: t=3, m=64 MiB, p=4) exceed
    OWASP's minimum. Passwords over ``MAX_PASSWORD_LENGTH`` characters raise
    ``SecurityError``. At most ``MAX_CONCURRENT_HASHES`` hashes and verifications run at
    once (64 MiB each), so a burst of logins cannot exhaust memory.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        raise SecurityError(f"password longer than {MAX_PASSWORD_LENGTH} characters refused")
    with _hash_slots:
        return str(_hasher().hash(password))


@dataclass(frozen=True)
class HashCostCeiling:
    """The most work a stored argon2 hash may ask of ``verify_password``.

    A hash carries its own parameters (``$argon2id$v=19$m=65536,t=3,p=4$...``), and
    verification does what they say: a hash planted with ``m=4000000000`` would make one
    login allocate 4 TiB, and ``t=100000`` would hold a hashing slot for hours. The defaults
    allow four times ``hash_password``'s memory (256 MiB), more than three times its
    passes and four times its lanes, so hashes made with stronger settings than today's
    still verify.
    """

    memory_cost: int = 262_144
    """KiB of memory (argon2's ``m``)."""
    time_cost: int = 10
    """Passes over the memory (argon2's ``t``)."""
    parallelism: int = 16
    """Lanes, each run on a thread (argon2's ``p``)."""

    def __post_init__(self) -> None:
        for name in ("memory_cost", "time_cost", "parallelism"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"HashCostCeiling.{name} must be a positive integer")


_ceiling = HashCostCeiling()


def set_hash_cost_ceiling(ceiling: HashCostCeiling) -> HashCostCeiling:
    """Make ``ceiling`` the process-wide default of ``verify_password``; returns the old one."""
    global _ceiling
    if not isinstance(ceiling, HashCostCeiling):
        raise ConfigurationError("set_hash_cost_ceiling takes a HashCostCeiling")
    previous, _ceiling = _ceiling, ceiling
    return previous


def _check_cost(hashed: str, ceiling: HashCostCeiling) -> None:
    """Refuse a hash whose parameters exceed ``ceiling`` (parsing only: no hashing)."""
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError

    try:
        parameters = extract_parameters(hashed)
    except (InvalidHashError, ValueError):
        return  # not an argon2 hash: verify() refuses it without hashing
    over = [
        f"{name}={getattr(parameters, name)} (ceiling {getattr(ceiling, name)})"
        for name in ("memory_cost", "time_cost", "parallelism")
        if getattr(parameters, name) > getattr(ceiling, name)
    ]
    if over:
        raise AuthenticationError(
            "the stored password hash asks for more work than the ceiling allows: "
            + ", ".join(over)
            + "; refused without verifying (store a hash_password() hash in its place, "
            "or raise the ceiling with HashCostCeiling)"
        )


def verify_password(hashed: str, password: str, *, ceiling: HashCostCeiling | None = None) -> bool:
    """True if ``password`` matches ``hashed``; constant-time, never raises on a mismatch.

    A stored hash whose parameters exceed ``ceiling`` (default: the process-wide
    ``set_hash_cost_ceiling``, ``HashCostCeiling()`` unless changed) raises
    ``AuthenticationError`` before any hashing is done: the login is refused, and the
    stored hash is the thing to fix.
    """
    from argon2.exceptions import InvalidHashError, VerificationError

    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    _check_cost(hashed, _ceiling if ceiling is None else ceiling)
    try:
        with _hash_slots:
            return bool(_hasher().verify(hashed, password))
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    """True if ``hashed`` was made with weaker parameters than today's: after a successful
    ``verify_password``, store ``hash_password(password)`` in its place."""
    from argon2.exceptions import InvalidHashError

    try:
        return bool(_hasher().check_needs_rehash(hashed))
    except InvalidHashError:
        return True


def _credential_source(name: str) -> tuple[str | None, str]:
    credential = CredentialManager.instance().get(name)
    return credential.username, credential.password.get_secret_value()


# ``PoolConfig(credential=name)``: the engine finds the secret here without importing us.
set_credential_source(_credential_source)
