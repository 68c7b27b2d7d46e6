"""Stopping and starting the local database servers, for the tests that need to (TLS, restarts).

Only for this machine's layout (Debian's PostgreSQL cluster, MariaDB started by
start-stop-daemon), which is also CI's.
"""

from __future__ import annotations

import os
import subprocess
import time


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {seconds} s")
        time.sleep(0.1)


def _ok(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def mariadb_up() -> bool:
    return _ok("mariadb-admin", "--protocol=tcp", "-h", "127.0.0.1", "-uroot", "ping")


def restart_mariadb(*server_args: str) -> None:
    """Stop MariaDB, wait for the process to exit, start it with ``server_args``."""
    subprocess.run(
        ["mariadb-admin", "--protocol=tcp", "-h", "127.0.0.1", "-uroot", "shutdown"],
        check=True,
        timeout=60,
    )
    # mariadb-admin returns before the server has exited; start-stop-daemon would then see
    # it "already running" and do nothing.
    _wait(lambda: not _ok("pgrep", "-x", "mariadbd"), 60, "MariaDB did not shut down")
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
            "--",
            *server_args,
        ],
        check=True,
        timeout=60,
    )
    _wait(mariadb_up, 60, "MariaDB did not come back")


def postgres_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def restart_postgres() -> None:
    """Restart the PostgreSQL cluster (fast mode: sessions are cut, as in a real restart)."""
    version, name = postgres_cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
        check=True,
        timeout=120,
    )
    _wait(
        lambda: _ok("pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"),
        60,
        "PostgreSQL did not come back",
    )
