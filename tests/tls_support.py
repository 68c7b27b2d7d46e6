"""Throwaway TLS material for the tests, and turning TLS on in the local servers.

A CA and a server certificate (for 127.0.0.1 and localhost) are made with ``cryptography``.
PostgreSQL gets ``ssl = on`` through ALTER SYSTEM and a reload; MariaDB reads its
certificates only at start-up, so it is restarted with ``--ssl-*`` options. Both keep TLS
on afterwards (plaintext clients are still accepted), so later runs find them ready.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import pwd
import shutil
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server_control import restart_mariadb

TLS_DIR = pathlib.Path("/var/lib/dbsystem-test-tls")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(directory: pathlib.Path, common: str = "dbsystem test CA") -> tuple:
    """Write ca.pem; return (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def make_server_cert(directory: pathlib.Path, ca: tuple) -> None:
    """Write server.pem and server-key.pem, signed by ``ca``, for 127.0.0.1 and localhost."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server-key.pem").write_bytes(_pem_key(key))


def ensure_material() -> pathlib.Path:
    """The CA and server certificate in TLS_DIR (made once per machine)."""
    if not (TLS_DIR / "server.pem").exists():
        TLS_DIR.mkdir(parents=True, exist_ok=True)
        make_server_cert(TLS_DIR, make_ca(TLS_DIR))
    for server in ("postgres", "mysql"):
        target = TLS_DIR / server
        if not (target / "server-key.pem").exists():
            target.mkdir(exist_ok=True)
            for name in ("ca.pem", "server.pem", "server-key.pem"):
                shutil.copy(TLS_DIR / name, target / name)
            user = pwd.getpwnam(server)
            for path in (target, *target.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            os.chmod(target / "server-key.pem", 0o600)
    return TLS_DIR


def enable_postgres_tls(manager) -> None:
    """Point PostgreSQL at our certificate and turn ssl on (a reload is enough)."""
    directory = TLS_DIR / "postgres"
    if manager.fetch_value("SHOW ssl") == "on" and manager.fetch_value("SHOW ssl_cert_file") == str(
        directory / "server.pem"
    ):
        return
    manager.execute(f"ALTER SYSTEM SET ssl_cert_file = '{directory / 'server.pem'}'")
    manager.execute(f"ALTER SYSTEM SET ssl_key_file = '{directory / 'server-key.pem'}'")
    manager.execute("ALTER SYSTEM SET ssl = on")
    manager.fetch_value("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while manager.fetch_value("SHOW ssl") != "on":
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not turn ssl on")
        time.sleep(0.1)


def enable_mariadb_tls(manager) -> None:
    """Restart MariaDB with our certificate unless it already uses it."""
    directory = TLS_DIR / "mysql"
    have = manager.fetch_one("SHOW VARIABLES LIKE 'have_ssl'")
    cert = manager.fetch_value("SELECT @@ssl_cert")
    if have and have["Value"] == "YES" and cert == str(directory / "server.pem"):
        return
    manager.close_all()
    restart_mariadb(*mariadb_tls_args())


def mariadb_tls_args() -> list[str]:
    """The server options that make MariaDB use our certificate."""
    directory = TLS_DIR / "mysql"
    return [
        f"--ssl-ca={directory / 'ca.pem'}",
        f"--ssl-cert={directory / 'server.pem'}",
        f"--ssl-key={directory / 'server-key.pem'}",
    ]
