"""Real HA clusters on loopback for the ``-m ha`` tests: Patroni + etcd, Redis Sentinel,
PgBouncer (Debian's packages). Every process is started here, polled for readiness with a
deadline (never a blind sleep), and stopped by PID in ``stop()`` (SIGTERM, then SIGKILL,
then any postmaster named in a data directory), which the fixtures call in a finalizer.

Ports 15400-15451, data directories ``/tmp/ha-*``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ETCD_PORT = 15400  # client; peer on 15401
PG_PORTS = (15411, 15412, 15413)
REST_PORTS = (15421, 15422, 15423)
REDIS_PORTS = (15430, 15431)  # master, replica
SENTINEL_PORTS = (15435, 15436, 15437)
PGBOUNCER_PORT = 15440
SCOPE = "hacluster"


def missing_tools(*tools: str) -> str | None:
    """What is missing to run a cluster (None: all there)."""
    if os.geteuid() != 0:
        return "the HA clusters need root (their servers run as the postgres user)"
    for tool in tools:
        if shutil.which(tool) is None and not Path(tool).exists():
            return f"{tool} is not installed (apt-get install patroni etcd-server ...)"
    return None


def wait_for(predicate: Callable[[], Any], seconds: float, what: str, every: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true; raise after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # not up yet
            last = exc
        else:
            if value:
                return value
        time.sleep(every)
    raise RuntimeError(f"{what}: not within {seconds} s (last error: {last})")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def run(command: list[str], timeout: float = 60) -> str:
    """Run a client command; its output, or RuntimeError with what it said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def _logs(base: Path) -> str:
    parts = []
    for log in sorted(base.rglob("*.log")):
        parts.append(f"--- {log}\n" + log.read_text(errors="replace")[-3000:])
    return "\n".join(parts)


def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _kill_postmaster(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _fresh_dir(path: Path) -> None:
    if path.exists():
        for pid_file in path.glob("*/data/postmaster.pid"):
            _kill_postmaster(pid_file.parent)
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)


def _as_postgres(command: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
            start_new_session=True,
        )


class PatroniCluster:
    """etcd (one member) and ``nodes`` Patroni-managed PostgreSQL 15 servers."""

    def __init__(self, nodes: int = 3, base: str = "/tmp/ha-patroni") -> None:
        self.base = Path(base)
        self.names = [f"pg{i + 1}" for i in range(nodes)]
        self.etcd: subprocess.Popen[bytes] | None = None
        self.patroni: dict[str, subprocess.Popen[bytes]] = {}

    # -- addresses ---------------------------------------------------------------------------

    def port(self, name: str) -> int:
        return PG_PORTS[self.names.index(name)]

    def rest(self, name: str) -> str:
        return f"http://127.0.0.1:{REST_PORTS[self.names.index(name)]}"

    def rest_urls(self) -> str:
        return ",".join(self.rest(n) for n in self.names)

    def url(self, query: str = "target_session_attrs=read-write") -> str:
        hosts = ",".join(f"127.0.0.1:{self.port(n)}" for n in self.names)
        return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")

    def node_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port(name)}/postgres"

    def config_file(self, name: str) -> Path:
        return self.base / name / "patroni.yml"

    # -- state -------------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        for name in self.names:
            try:
                return list(http_json(self.rest(name) + "/cluster", 1.0)["members"])
            except OSError:
                continue
        return []

    def leader(self) -> str | None:
        for member in self.members():
            if member["role"] == "leader" and member["state"] == "running":
                return str(member["name"])
        return None

    def healthy(self, replicas: int) -> bool:
        """A running leader and ``replicas`` replicas streaming, one of them synchronous."""
        members = self.members()
        leader = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
        streaming = [
            m
            for m in members
            if m["role"] in ("replica", "sync_standby")
            and m["state"] in ("running", "streaming")
            and isinstance(m.get("lag"), int)
        ]
        sync = [m for m in streaming if m["role"] == "sync_standby"]
        return len(leader) == 1 and len(streaming) >= replicas and (replicas == 0 or bool(sync))

    def wait_healthy(self, seconds: float = 60, replicas: int | None = None) -> str:
        want = len(self.names) - 1 if replicas is None else replicas
        wait_for(lambda: self.healthy(want), seconds, f"Patroni: a leader and {want} replicas")
        leader = self.leader()
        assert leader is not None
        self.wait_writable(leader, seconds)
        return leader

    def wait_writable(self, name: str, seconds: float = 30) -> None:
        import psycopg

        def write() -> bool:
            with psycopg.connect(self.node_url(name), autocommit=True, connect_timeout=2) as c:
                c.execute("CREATE TABLE IF NOT EXISTS ha_probe (x int)")
            return True

        wait_for(write, seconds, f"{name} accepting writes", every=0.2)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        _fresh_dir(self.base)
        etcd_dir = self.base / "etcd"
        peer = f"http://127.0.0.1:{ETCD_PORT + 1}"
        with open(self.base / "etcd.log", "ab") as out:
            self.etcd = subprocess.Popen(
                [
                    "etcd",
                    "--name=e1",
                    f"--data-dir={etcd_dir}",
                    f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}",
                    f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=e1={peer}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: http_json(f"http://127.0.0.1:{ETCD_PORT}/health")["health"] == "true",
            30,
            "etcd",
        )
        for name in self.names:
            self.start_node(name, fresh=True)
        self.wait_healthy(90)

    def start_node(self, name: str, fresh: bool = False) -> None:
        node = self.base / name
        if fresh:
            node.mkdir(mode=0o700)
            (node / "patroni.yml").write_text(self._config(name))
            shutil.chown(node, "postgres", "postgres")
            shutil.chown(node / "patroni.yml", "postgres", "postgres")
        self.patroni[name] = _as_postgres(
            ["/usr/bin/patroni", str(node / "patroni.yml")], node, node / "patroni.log"
        )

    def _config(self, name: str) -> str:
        node = self.base / name
        index = self.names.index(name)
        return f"""scope: {SCOPE}
name: {name}
log: {{level: WARNING}}
restapi: {{listen: 127.0.0.1:{REST_PORTS[index]}, connect_address: 127.0.0.1:{REST_PORTS[index]}}}
etcd3: {{hosts: 127.0.0.1:{ETCD_PORT}}}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 3
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters: {{wal_log_hints: 'on', max_connections: 60}}
  initdb: [{{encoding: UTF8}}, {{locale: C.UTF-8}}, {{auth: trust}}]
  pg_hba: [local all all trust, host replication replicator 127.0.0.1/32 trust,
           host all all 127.0.0.1/32 trust]
postgresql:
  listen: 127.0.0.1:{PG_PORTS[index]}
  connect_address: 127.0.0.1:{PG_PORTS[index]}
  data_dir: {node}/data
  bin_dir: {PG_BIN}
  pgpass: {node}/pgpass
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: replicator}}
    rewind: {{username: postgres}}
  parameters: {{unix_socket_directories: '{node}', shared_buffers: 16MB, fsync: 'off'}}
"""

    def patronictl(self, *args: str) -> str:
        return run(["patronictl", "-c", str(self.config_file(self.names[0])), *args])

    def switchover(self, candidate: str | None = None) -> str:
        """Ask Patroni for a switchover from the current leader; return the candidate."""
        leader = self.leader()
        assert leader is not None
        sync = [m["name"] for m in self.members() if m["role"] == "sync_standby"]
        target = candidate or (sync[0] if sync else next(n for n in self.names if n != leader))
        self.patronictl("switchover", SCOPE, "--leader", leader, "--candidate", target, "--force")
        return target

    def kill_node(self, name: str) -> None:
        """Node loss: SIGKILL the node's Patroni and its postmaster together."""
        proc = self.patroni.get(name)
        postmaster = self.base / name / "data" / "postmaster.pid"
        pid = int(postmaster.read_text().split()[0])
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.kill(pid, signal.SIGKILL)
        _kill_postmaster(self.base / name / "data")  # its children exit with it

    def crash_postgres(self, name: str) -> None:
        """SIGKILL the node's postmaster only (Patroni stays, and restarts it)."""
        pid = int((self.base / name / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, 10, "the killed postmaster exits")

    def stop(self) -> None:
        for proc in self.patroni.values():
            _terminate(proc)
        for name in self.names:
            _kill_postmaster(self.base / name / "data")
        _terminate(self.etcd)
        shutil.rmtree(self.base, ignore_errors=True)

    def logs(self) -> str:
        return _logs(self.base)


class SentinelCluster:
    """A Redis master, one replica and three sentinels (quorum 2) on loopback."""

    service = "mymaster"

    def __init__(self, base: str = "/tmp/ha-sentinel") -> None:
        self.base = Path(base)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS)
        return f"redis+sentinel://{hosts}/{self.service}/0" + (f"?{query}" if query else "")

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip()

    def master_port(self) -> int | None:
        for port in SENTINEL_PORTS:
            out = self.cli(port, "SENTINEL", "get-master-addr-by-name", self.service).split()
            if len(out) == 2:
                return int(out[1])
        return None

    def _start_redis(self, port: int, replica_of: int | None) -> None:
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.base), "--dbfilename", f"{port}.rdb"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        with open(self.base / f"redis-{port}.log", "ab") as out:
            self.procs[port] = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(lambda: self.cli(port, "PING") == "PONG", 20, f"redis on {port}")

    def start(self) -> None:
        _fresh_dir(self.base)
        master, replica = REDIS_PORTS
        self._start_redis(master, None)
        self._start_redis(replica, master)
        for port in SENTINEL_PORTS:
            conf = self.base / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.base}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {self.service} 2000\n"
                f"sentinel failover-timeout {self.service} 10000\n"
            )
            with open(self.base / f"sentinel-{port}.log", "ab") as out:
                self.procs[port] = subprocess.Popen(
                    ["redis-sentinel", str(conf)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        self.wait_ready(master)

    def wait_ready(self, master: int, seconds: float = 60) -> None:
        """Every sentinel names ``master``, knows the other two and a linked replica."""

        def ready() -> bool:
            for port in SENTINEL_PORTS:
                info = self.cli(port, "SENTINEL", "master", self.service).split("\n")
                fields = dict(zip(info[::2], info[1::2], strict=False))
                if fields.get("port") != str(master) or fields.get("flags") != "master":
                    return False
                if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                    return False
                replicas = self.cli(port, "SENTINEL", "replicas", self.service)
                if "master-link-status\nok" not in replicas or "s_down" in replicas:
                    return False
            return True

        wait_for(ready, seconds, "Redis Sentinel ready", every=0.2)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``, asked until a sentinel accepts it (one may still be busy)."""
        wait_for(
            lambda: self.cli(SENTINEL_PORTS[0], "SENTINEL", "FAILOVER", self.service) == "OK",
            30,
            "SENTINEL FAILOVER accepted",
            every=0.5,
        )

    def kill(self, port: int) -> None:
        os.kill(self.procs[port].pid, signal.SIGKILL)
        self.procs[port].wait(10)

    def restart(self, port: int, replica_of: int) -> None:
        self._start_redis(port, replica_of)

    def logs(self) -> str:
        return _logs(self.base)

    def stop(self) -> None:
        for proc in self.procs.values():
            _terminate(proc, 10)
        shutil.rmtree(self.base, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction mode in front of the shared PostgreSQL server."""

    def __init__(self, target_url: str, base: str = "/tmp/ha-pgbouncer") -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(target_url)
        self.user = parts.username or "postgres"
        self.database = parts.path.lstrip("/")
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.base = Path(base)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, query: str = "pgbouncer=transaction") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{PGBOUNCER_PORT}/{self.database}" + (
            f"?{query}" if query else ""
        )

    def start(self) -> None:
        _fresh_dir(self.base)
        host, port = self.target
        (self.base / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.base / "pgbouncer.ini").write_text(
            f"[databases]\n{self.database} = host={host} port={port} dbname={self.database}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {PGBOUNCER_PORT}\n"
            f"unix_socket_dir =\nauth_type = trust\nauth_file = {self.base}/userlist.txt\n"
            "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 4\n"
            f"logfile = {self.base}/pgbouncer.log\npidfile = {self.base}/pgbouncer.pid\n"
        )
        for path in (self.base, *self.base.iterdir()):
            shutil.chown(path, "postgres", "postgres")
        self.proc = _as_postgres(
            ["pgbouncer", str(self.base / "pgbouncer.ini")], self.base, self.base / "out.log"
        )
        wait_for(lambda: port_open(PGBOUNCER_PORT), 20, "pgbouncer listening")

    def logs(self) -> str:
        return _logs(self.base)

    def stop(self) -> None:
        _terminate(self.proc, 10)
        shutil.rmtree(self.base, ignore_errors=True)


MARIADB_PORTS = (15450, 15451)  # primary, replica


class MariaDBReplication:
    """Two ``mariadbd`` of their own: a primary (binary log on) and a replica of it."""

    def __init__(self, base: str = "/tmp/ha-mariadb") -> None:
        self.base = Path(base)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, port: int, database: str = "ha") -> str:
        return f"mysql://root@127.0.0.1:{port}/{database}"

    def sql(self, port: int, statement: str) -> str:
        client = ["mariadb", "--protocol=tcp", "-h127.0.0.1", f"-P{port}", "-uroot", "-N"]
        return run([*client, "-e", statement], 20)

    def _start(self, port: int, server_id: int) -> None:
        node = self.base / str(port)
        if not (node / "data").exists():
            node.mkdir()
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={node / 'data'}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                capture_output=True,
                timeout=120,
                check=True,
            )
        with open(node / "server.log", "ab") as out:
            self.procs[port] = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    f"--datadir={node / 'data'}",
                    "--user=root",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={node / 'sock'}",
                    f"--pid-file={node / 'pid'}",
                    f"--server-id={server_id}",
                    f"--log-bin={node / 'data' / 'bin'}",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=16M",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.sql(port, "SELECT 1") == "1", 60, f"mariadbd on {port}", 0.2)

    def start(self) -> None:
        _fresh_dir(self.base)
        primary, replica = MARIADB_PORTS
        self._start(primary, 1)
        self._start(replica, 2)
        self.sql(
            replica,
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary}, "
            "MASTER_USER='root', MASTER_USE_GTID=slave_pos; START SLAVE",
        )
        self.sql(primary, "CREATE DATABASE ha")
        wait_for(
            lambda: "ha" in self.sql(replica, "SHOW DATABASES").split(), 30, "replication running"
        )

    def stop_replica_sql(self) -> None:
        """Stop applying (the replica falls behind while the primary takes writes)."""
        self.sql(MARIADB_PORTS[1], "STOP SLAVE SQL_THREAD")

    def start_replica_sql(self) -> None:
        self.sql(MARIADB_PORTS[1], "START SLAVE SQL_THREAD")

    def kill(self, port: int) -> None:
        os.kill(self.procs[port].pid, signal.SIGKILL)
        self.procs[port].wait(10)

    def restart(self, port: int) -> None:
        self._start(port, MARIADB_PORTS.index(port) + 1)

    def logs(self) -> str:
        return _logs(self.base)

    def stop(self) -> None:
        for proc in self.procs.values():
            _terminate(proc, 30)
        shutil.rmtree(self.base, ignore_errors=True)
