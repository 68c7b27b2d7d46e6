"""TLS: settings mapped per driver, fail-closed against plaintext servers, and real TLS.

The fail-closed tests talk to tiny fake servers on loopback that do not offer TLS (a
PostgreSQL server answering "N" to the SSL request, a MySQL handshake without the SSL
capability): a pool that requires TLS must refuse them, and MySQL must not even send its
credentials. The real tests turn TLS on in the local PostgreSQL and MariaDB (tests/tls_support.py)
and connect with ``require`` and ``verify-full``.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from dbsystem import ConfigurationError, ConnectionFailed, DatabaseManager, DatabaseType
from dbsystem.kernel.config import PoolConfig, TLSConfig


class FakeServer:
    """Accepts one connection, plays ``script(conn)``, records what the client sent."""

    def __init__(self, script) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                self.script(self, conn)
            except OSError:
                pass

    def read(self, conn: socket.socket, n: int) -> bytes:
        data = conn.recv(n)
        self.received += data
        return data

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def _postgres_without_tls(server: FakeServer, conn: socket.socket) -> None:
    while True:
        request = server.read(conn, 8)
        if len(request) < 8:
            return
        code = struct.unpack("!I", request[4:8])[0]
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "not supported"
            conn.sendall(b"N")
            continue
        return


def _mysql_without_tls(server: FakeServer, conn: socket.socket) -> None:
    caps = 0x1 | 0x200 | 0x8000 | 0x80000  # long password, protocol 41, secure conn, plugin auth
    payload = (
        b"\x0a"
        + b"10.11.0-fake\x00"
        + struct.pack("<I", 7)
        + b"abcdefgh"
        + b"\x00"
        + struct.pack("<H", caps & 0xFFFF)
        + b"\x2d"
        + struct.pack("<H", 2)
        + struct.pack("<H", caps >> 16)
        + bytes([21])
        + b"\x00" * 10
        + b"ijklmnopqrst\x00"
        + b"mysql_native_password\x00"
    )
    conn.sendall(len(payload).to_bytes(3, "little") + b"\x00" + payload)
    server.read(conn, 4096)  # the client's next move; fail-closed means it sends nothing


@pytest.mark.parametrize(
    ("scheme", "script"), [("postgresql", _postgres_without_tls), ("mysql", _mysql_without_tls)]
)
@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_requiring_pool_refuses_a_plaintext_server(scheme, script, mode, tmp_path):
    ca = tmp_path / "ca.pem"
    from tests.tls_support import make_ca

    make_ca(tmp_path)
    server = FakeServer(script)
    try:
        url = f"{scheme}://app:Pa55word@127.0.0.1:{server.port}/db"
        tls = TLSConfig(mode=mode, ca_file=ca)
        with pytest.raises(ConnectionFailed) as info:
            DatabaseManager().create_pool(
                DatabaseType.NONE, PoolConfig(url=url, tls=tls, connect_timeout=5)
            )
        assert "Pa55word" not in str(info.value)
    finally:
        server.close()
    if scheme == "mysql":
        assert server.received == b"", "credentials were sent before TLS was refused"


def test_tls_and_libpq_ssl_options_do_not_mix():
    with pytest.raises(ConfigurationError, match="not both"):
        DatabaseManager().create_pool(
            DatabaseType.POSTGRES,
            PoolConfig(
                url="postgresql://u@127.0.0.1:1/db?sslmode=disable", tls=TLSConfig(mode="require")
            ),
        )


# -- real TLS against the local servers -----------------------------------------------------


def _can_configure_servers() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session")
def tls_dir():
    if not _can_configure_servers():
        from tests.conftest import servers_required

        if servers_required():
            pytest.fail("turning TLS on in the local servers needs root")
        pytest.skip("turning TLS on in the local servers needs root")
    from tests.tls_support import ensure_material

    return ensure_material()


@pytest.fixture(scope="session")
def postgres_tls(postgres_url, tls_dir):
    from tests.tls_support import enable_postgres_tls

    admin = DatabaseManager()
    admin.create_pool(DatabaseType.POSTGRES, postgres_url)
    try:
        enable_postgres_tls(admin)
    finally:
        admin.close_all()
    return postgres_url


@pytest.fixture(scope="session")
def mariadb_tls(mysql_url, tls_dir):
    from tests.tls_support import enable_mariadb_tls

    admin = DatabaseManager()
    admin.create_pool(DatabaseType.MYSQL, mysql_url)
    enable_mariadb_tls(admin)
    admin.close_all()
    return mysql_url


def _tls_in_use(manager: DatabaseManager, kind: str) -> bool:
    if kind == "postgres":
        return manager.fetch_value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    row = manager.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return bool(row and row["Value"])


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_real_tls_connection(kind, mode, request, tls_dir):
    url = request.getfixturevalue("postgres_tls" if kind == "postgres" else "mariadb_tls")
    manager = DatabaseManager()
    db_type = DatabaseType.POSTGRES if kind == "postgres" else DatabaseType.MYSQL
    manager.create_pool(
        db_type, PoolConfig(url=url, tls=TLSConfig(mode=mode, ca_file=tls_dir / "ca.pem"))
    )
    try:
        assert _tls_in_use(manager, kind)
    finally:
        manager.close_all()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_verification_refuses_a_certificate_from_another_ca(kind, request, tmp_path):
    url = request.getfixturevalue("postgres_tls" if kind == "postgres" else "mariadb_tls")
    from tests.tls_support import make_ca

    make_ca(tmp_path, "some other CA")
    db_type = DatabaseType.POSTGRES if kind == "postgres" else DatabaseType.MYSQL
    with pytest.raises(ConnectionFailed):
        DatabaseManager().create_pool(
            db_type,
            PoolConfig(url=url, tls=TLSConfig(mode="verify-full", ca_file=tmp_path / "ca.pem")),
        )


@pytest.mark.postgres
def test_verify_full_checks_the_host_name(postgres_tls, tls_dir):
    # Reach 127.0.0.1 while expecting the certificate of another name (libpq's hostaddr).
    url = postgres_tls.replace("127.0.0.1", "db.invalid") + "?hostaddr=127.0.0.1"
    with pytest.raises(ConnectionFailed, match="db.invalid"):
        DatabaseManager().create_pool(
            DatabaseType.POSTGRES,
            PoolConfig(url=url, tls=TLSConfig(mode="verify-full", ca_file=tls_dir / "ca.pem")),
        )
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.POSTGRES,
        PoolConfig(url=url, tls=TLSConfig(mode="verify-ca", ca_file=tls_dir / "ca.pem")),
    )
    manager.close_all()


def test_mysql_tls_contexts_follow_the_mode(tmp_path):
    import ssl

    from dbsystem.backends.mysql import _tls_arguments
    from tests.tls_support import make_ca

    make_ca(tmp_path)
    ca = tmp_path / "ca.pem"
    assert _tls_arguments(None) == {} and _tls_arguments(TLSConfig(mode="prefer")) == {}
    assert _tls_arguments(TLSConfig(mode="disable")) == {"ssl_disabled": True}
    require = _tls_arguments(TLSConfig(mode="require"))["ssl"]
    verify_ca = _tls_arguments(TLSConfig(mode="verify-ca", ca_file=ca))["ssl"]
    full = _tls_arguments(TLSConfig(mode="verify-full", ca_file=ca))["ssl"]
    assert (require.verify_mode, require.check_hostname) == (ssl.CERT_NONE, False)
    assert (verify_ca.verify_mode, verify_ca.check_hostname) == (ssl.CERT_REQUIRED, False)
    assert (full.verify_mode, full.check_hostname) == (ssl.CERT_REQUIRED, True)
