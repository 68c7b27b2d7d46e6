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


_MARIADB_PID = "/run/mysqld/mysqld.pid"


def restart_mariadb(*server_args: str) -> None:
    """Stop MariaDB, wait for the process to exit, start it with ``server_args``.

    The server is found by its pid file, not by name: other ``mariadbd`` processes (the
    replicas the HA tests start on their own ports) may be running meanwhile.
    """
    with open(_MARIADB_PID, encoding="ascii") as file:
        pid = int(file.read().strip())
    subprocess.run(
        ["mariadb-admin", "--protocol=tcp", "-h", "127.0.0.1", "-uroot", "shutdown"],
        check=True,
        timeout=60,
    )
    # mariadb-admin returns before the server has exited; start-stop-daemon would then see
    # it "already running" and do nothing.
    _wait(lambda: not os.path.exists(f"/proc/{pid}"), 60, "MariaDB did not shut down")
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--pidfile",
            _MARIADB_PID,
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


REPLICA_DIR = "/tmp/dbsystem-pg-replica"
REPLICA_PORT = 5433


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, timeout=120)


def start_postgres_replica() -> str:
    """A streaming replica of the local PostgreSQL on port 5433 (pg_basebackup); its URL.

    Allows replication connections from loopback in the primary's pg_hba.conf (trust, as
    the rest of this machine's test setup), and reloads it.
    """
    import shutil

    version, name = postgres_cluster()
    hba = f"/etc/postgresql/{version}/{name}/pg_hba.conf"
    line = "host replication all 127.0.0.1/32 trust"
    with open(hba) as fh:
        present = line in fh.read()
    if not present:
        with open(hba, "a") as fh:
            fh.write(f"\n{line}\n")
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "root",
                "-d",
                "test",
                "-c",
                "SELECT pg_reload_conf()",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    stop_postgres_replica()
    shutil.rmtree(REPLICA_DIR, ignore_errors=True)
    os.makedirs(REPLICA_DIR, mode=0o700)
    shutil.chown(REPLICA_DIR, "postgres", "postgres")
    _as_postgres(
        # (-c fast: a spread checkpoint after a busy suite can outlast the command's timeout)
        "pg_basebackup",
        *("-h", "127.0.0.1", "-U", "root", "-D", REPLICA_DIR, "-R", "-X", "stream", "-c", "fast"),
    )
    with open(f"{REPLICA_DIR}/postgresql.conf", "w") as fh:
        fh.write(
            f"port = {REPLICA_PORT}\nlisten_addresses = '127.0.0.1'\n"
            "unix_socket_directories = '/tmp'\nhot_standby = on\n"
            "max_prepared_transactions = 32\n"
            f"hba_file = '{REPLICA_DIR}/pg_hba.conf'\n"
        )
    with open(f"{REPLICA_DIR}/pg_hba.conf", "w") as fh:
        fh.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    for conf in ("postgresql.conf", "pg_hba.conf"):
        shutil.chown(f"{REPLICA_DIR}/{conf}", "postgres", "postgres")
    start_postgres_replica_process()
    return f"postgresql://root@127.0.0.1:{REPLICA_PORT}/test"


def _pg_ctl() -> str:
    version, _ = postgres_cluster()
    return f"/usr/lib/postgresql/{version}/bin/pg_ctl"


def start_postgres_replica_process() -> None:
    _as_postgres(_pg_ctl(), "-D", REPLICA_DIR, "-l", f"{REPLICA_DIR}.log", "-w", "start")


def stop_postgres_replica() -> None:
    if os.path.exists(f"{REPLICA_DIR}/postmaster.pid"):
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _pg_ctl(),
                "-D",
                REPLICA_DIR,
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )


REDIS_CLUSTER_PORTS = (7100, 7101, 7102)
REDIS_CLUSTER_DIR = "/tmp/dbsystem-redis-cluster"


def start_redis_cluster() -> str:
    """A three-master Redis Cluster of ``redis-server`` processes on loopback; its URL.

    Made with ``redis-cli --cluster create`` (no replicas), as the Redis docs' tutorial
    does; waits until every slot is served.
    """
    import shutil

    stop_redis_cluster()
    shutil.rmtree(REDIS_CLUSTER_DIR, ignore_errors=True)
    for port in REDIS_CLUSTER_PORTS:
        node_dir = f"{REDIS_CLUSTER_DIR}/{port}"
        os.makedirs(node_dir)
        subprocess.run(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"{node_dir}/nodes.conf",
                "--cluster-node-timeout", "2000",
                "--dir", node_dir,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--logfile", f"{node_dir}/redis.log",
            ],
            check=True,
            timeout=30,
        )  # fmt: skip
    for port in REDIS_CLUSTER_PORTS:
        _wait(lambda p=port: _ok("redis-cli", "-p", str(p), "ping"), 30, f"node {port} not up")
    subprocess.run(
        [
            "redis-cli", "--cluster", "create",
            *(f"127.0.0.1:{port}" for port in REDIS_CLUSTER_PORTS),
            "--cluster-replicas", "0", "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip

    def serving() -> bool:
        for port in REDIS_CLUSTER_PORTS:
            info = subprocess.run(
                ["redis-cli", "-p", str(port), "cluster", "info"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if "cluster_state:ok" not in info:
                return False
        return True

    _wait(serving, 30, "the Redis Cluster did not reach cluster_state:ok")
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in REDIS_CLUSTER_PORTS)


def stop_redis_cluster() -> None:
    for port in REDIS_CLUSTER_PORTS:
        subprocess.run(
            ["redis-cli", "-p", str(port), "shutdown", "nosave"],
            capture_output=True,
            check=False,
            timeout=30,
        )
