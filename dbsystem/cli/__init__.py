"""The ``dbsystem`` command line: ``demo``, ``ping``, ``sql``, ``shell``, ``load``,
``bench``, ``migrate``, ``audit verify``, ``security plan|apply``, ``metrics serve``,
``pools`` and ``version``.

Where a command takes a database, TARGET is a connection URL or the name of a pool: a
``[databases.NAME]`` table of the TOML file given by ``--config`` (or ``$DBSYSTEM_CONFIG``),
else ``$DBSYSTEM_<NAME>_URL``; the same files and variables the library reads.

Exit codes scripts can rely on: 0 success, 1 a database or connection error, 2 bad usage or
configuration. Errors print one line on stderr, never a traceback and never a password.
Commands that print rows print a table, or JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dbsystem._facade import DatabaseManager
from dbsystem._version import __version__
from dbsystem.backends import database_type_for_url
from dbsystem.core.configfile import config_path_from_env, load_toml
from dbsystem.errors import ConfigurationError, DBSystemError, InterfaceError, MigrationError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType

__all__ = ["app", "main"]

app = typer.Typer(
    name="dbsystem",
    help="One data-access layer over PostgreSQL, MySQL/MariaDB, SQLite, MongoDB and Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_out = Console(soft_wrap=True)  # a long line stays one line, for scripts that read it
_err = Console(stderr=True, soft_wrap=True)

EXIT_DATABASE = 1
EXIT_USAGE = 2

UrlArg = Annotated[
    str,
    typer.Argument(
        metavar="TARGET",
        help="A connection URL (sqlite:///app.db), or a pool name from --config or "
        "$DBSYSTEM_<NAME>_URL.",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", envvar="DBSYSTEM_CONFIG", help="TOML file of pools ([databases.NAME])."
    ),
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the server.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _pool_config(target: str, config: Path | None) -> PoolConfig:
    """A URL's config, or the pool named ``target`` in the TOML file or the environment."""
    if "://" in target:
        return PoolConfig(url=target)
    path = config or config_path_from_env()
    if path is not None:
        for spec in load_toml(path):
            names = {spec.name} if spec.name else {spec.db_type.value, "default"}
            if target in names or (target == "default" and spec.default):
                return spec.config
    try:
        return PoolConfig.from_env(target)
    except ConfigurationError:
        where = f"in {path}, " if path is not None else ""
        raise ConfigurationError(
            f"{target!r} is neither a URL nor a known pool: define [databases.{target}] "
            f"{where}in --config or $DBSYSTEM_CONFIG, or set DBSYSTEM_{target.upper()}_URL"
        ) from None


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    try:
        yield
    except (ConfigurationError, InterfaceError, MigrationError) as exc:
        _err.print(Text("error: ", style="red") + Text(str(exc)), highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except DBSystemError as exc:
        _err.print(Text("error: ", style="red") + Text(str(exc)), highlight=False)
        raise typer.Exit(EXIT_DATABASE) from None


@contextmanager
def _one_connection_manager(
    target: str, timeout: float, config_file: Path | None = None, *, size: int = 1
) -> Iterator[DatabaseManager]:
    manager = DatabaseManager()
    config = _pool_config(target, config_file).model_copy(
        update={
            "min_size": 1,
            "max_size": size,
            "connect_timeout": timeout,
            "acquire_timeout": timeout,
            "replicas": (),
        }
    )
    try:
        manager.create_pool(DatabaseType.NONE, config)
        yield manager
    finally:
        manager.close_all()


def _one_connection_command(run: Callable[[Any, bool], int | None]) -> Callable[..., None]:
    """A command on one TARGET (``url``, ``--timeout``, ``--config``, ``--json``) that runs
    ``run(manager, as_json)`` on a manager with that one pool; a status ``run`` returns
    other than 0/None exits with ``EXIT_DATABASE``. Its help is ``run``'s docstring."""

    def command(
        url: UrlArg,
        timeout: TimeoutOpt = 5.0,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        with _errors_to_exit(), _one_connection_manager(url, timeout, config) as manager:
            status = run(manager, as_json)
        if status:
            raise typer.Exit(EXIT_DATABASE)

    command.__doc__ = run.__doc__
    command.__name__ = command.__qualname__ = run.__name__
    return command


@app.command()
@_one_connection_command
def ping(manager: Any, as_json: bool) -> None:
    """Connect to TARGET and check the connection answers."""
    import time as _time

    start = _time.perf_counter()
    with manager.connection() as conn:
        conn.ping()
    elapsed = (_time.perf_counter() - start) * 1000
    label = manager.backend().url
    if as_json:
        _json_out({"ok": True, "url": str(label), "ms": round(elapsed, 3)})
    else:
        _out.print(f"ok: {label} answered in {elapsed:.2f} ms", highlight=False)


def _parse_param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


@app.command()
def sql(
    url: UrlArg,
    statement: Annotated[str, typer.Argument(help="One SQL statement; :name parameters.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="A parameter as NAME=VALUE (VALUE as JSON if it parses)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Run STATEMENT on TARGET and print the rows (or the affected row count)."""
    params = dict(_parse_param(p) for p in param or [])
    with _errors_to_exit(), _one_connection_manager(url, timeout, config) as manager:
        if getattr(manager.backend(), "kind", "sql") != "sql":
            raise InterfaceError(
                f"'dbsystem sql' runs SQL; {manager.backend().url} is not a SQL database"
            )
        with manager.connection() as conn:
            if not _returns_rows(statement):
                count = conn.execute(statement, params or None)
                _print_result({"rowcount": int(count)}, as_json)
                return
            rows = conn.fetch_all(statement, params or None)
    _print_result(rows, as_json)


def _json_out(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_json_default, indent=2) + "\n")


def _print_result(result: Any, as_json: bool) -> None:
    """Rows as a table (or JSON); a row count as ``ok: N row(s) affected``; anything else
    (a Redis reply, a count) as itself."""
    if as_json:
        _json_out(result)
        return
    if isinstance(result, dict) and set(result) == {"rowcount"}:
        count = result["rowcount"]  # -1: the driver does not count (DDL on SQLite)
        _out.print(f"ok: {count} row(s) affected" if count >= 0 else "ok")
        return
    if isinstance(result, list) and all(isinstance(row, dict) for row in result):
        if not result:
            _out.print("(no rows)")
            return
        table = Table(show_lines=False)
        columns = list(dict.fromkeys(key for row in result for key in row))
        for column in columns:
            table.add_column(str(column))
        for row in result:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        _out.print(table)
        _out.print(f"({len(result)} row{'s' if len(result) != 1 else ''})")
        return
    _out.print(Text(_cell(result)))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (dict, list, set, tuple)):
        return json.dumps(sorted(value) if isinstance(value, set) else value, default=_json_default)
    return str(value)


def _returns_rows(statement: str) -> bool:
    words = statement.split()
    first = words[0].lower() if words else ""
    return first in _ROW_KEYWORDS or "returning" in (w.lower() for w in words)


_ROW_KEYWORDS = frozenset({"select", "with", "values", "pragma", "show", "explain", "table"})


@app.command()
def demo(
    path: Annotated[
        Path | None,
        typer.Option(help="SQLite file to use (default: a new temporary file)."),
    ] = None,
    postgres_url: Annotated[
        str | None,
        typer.Option(help="Also run on this PostgreSQL server (default: $DBSYSTEM_POSTGRES_URL)."),
    ] = None,
    mysql_url: Annotated[
        str | None,
        typer.Option(help="Also run on this MySQL/MariaDB server (default: $DBSYSTEM_MYSQL_URL)."),
    ] = None,
) -> None:
    """Run the end-to-end demo: SQLite, Redis and MongoDB (embedded mocks) with no setup,
    PostgreSQL and MySQL when configured. It touches only the tables it creates."""
    from dbsystem.cli._demo import run_demo

    with _errors_to_exit():
        run_demo(path, _out, {DatabaseType.POSTGRES: postgres_url, DatabaseType.MYSQL: mysql_url})


def _group(name: str, help: str) -> typer.Typer:
    """A command group ``dbsystem NAME ...`` (help shown when called bare)."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


migrate_app = _group("migrate", "Versioned schema migrations (see dbsystem.orm.migrations).")

MigrateUrl = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="DBSYSTEM_URL",
        help="The database: a URL or a pool name (or $DBSYSTEM_URL).",
    ),
]
MigrateDir = Annotated[Path, typer.Option("--dir", help="The migrations directory.")]


@contextmanager
def _runner(url: str, directory: Path) -> Iterator[Any]:
    from dbsystem.orm.migrations import MigrationRunner

    with _errors_to_exit(), _one_connection_manager(url, 10.0, None) as manager:
        yield MigrationRunner(manager, directory)


def _entities(modules: list[str]) -> list[type[Any]]:
    import importlib

    from dbsystem.orm import Entity

    found: list[type[Any]] = []
    for name in modules:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import --models {name!r}: {exc}") from None
        finally:
            sys.path.pop(0)
        found.extend(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Entity)
            and value is not Entity
            and value.__module__ == module.__name__
        )
    return found


@migrate_app.command("new")
def migrate_new(
    message: Annotated[str, typer.Argument(help="What the migration does.")],
    url: MigrateUrl,
    directory: MigrateDir = Path("migrations"),
    auto: Annotated[
        bool,
        typer.Option("--auto", help="Write the operations the entities need beyond the history."),
    ] = False,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", help="Module(s) defining the entities, for --auto."),
    ] = None,
) -> None:
    """Write the next migration file (empty, or autogenerated with --auto)."""
    with _runner(url, directory) as runner:
        entities = _entities(models or []) if auto else []
        if auto and not entities:
            raise ConfigurationError("--auto needs --models naming modules with entities")
        path = runner.new(message, entities=entities)
        _out.print(f"wrote {path}", highlight=False)


@migrate_app.command("up")
def migrate_up(url: MigrateUrl, directory: MigrateDir = Path("migrations")) -> None:
    """Apply every pending migration."""
    with _runner(url, directory) as runner:
        applied = runner.up()
        _out.print(f"applied: {', '.join(applied) or 'nothing pending'}", highlight=False)


@migrate_app.command("down")
def migrate_down(
    url: MigrateUrl,
    directory: MigrateDir = Path("migrations"),
    steps: Annotated[int, typer.Option(help="How many migrations to revert.")] = 1,
) -> None:
    """Revert the last migration(s)."""
    with _runner(url, directory) as runner:
        reverted = runner.down(steps)
        _out.print(f"reverted: {', '.join(reverted) or 'nothing applied'}", highlight=False)


@migrate_app.command("status")
def migrate_status(
    url: MigrateUrl, directory: MigrateDir = Path("migrations"), as_json: JsonOpt = False
) -> None:
    """List the migrations and whether each is applied."""
    with _runner(url, directory) as runner:
        rows = runner.status()
    if as_json:
        _json_out([{"revision": r, "description": d, "applied": a} for r, d, a in rows])
        return
    table = Table()
    for column in ("revision", "description", "applied"):
        table.add_column(column)
    for revision, description, applied in rows:
        table.add_row(revision, description, "yes" if applied else "no")
    _out.print(table)


audit_app = _group("audit", "The tamper-evident audit log.")


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path, typer.Argument(help="A JSON-lines audit file.")],
    as_json: JsonOpt = False,
    key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the key (or VAR_FILE naming a file)."),
    ] = None,
    previous_key_env: Annotated[
        list[str] | None,
        typer.Option(help="Variable holding a key the chain rotated from (repeatable)."),
    ] = None,
    no_checkpoint: Annotated[
        bool, typer.Option("--no-checkpoint", help="The file never had a checkpoint.")
    ] = False,
) -> None:
    """Check the chain, its signatures and its checkpoint; exit 1 at the first altered,
    removed or moved record, a cut tail, a missing checkpoint or a record not signed."""
    from dbsystem.security.audit import verify_audit_file
    from dbsystem.security.credentials import CredentialManager

    if not path.is_file():
        _err.print(Text(f"error: no such file: {path}", style="red"))
        raise typer.Exit(EXIT_USAGE)
    store = CredentialManager()
    names = [key_env] if key_env else []
    names += previous_key_env or []
    try:
        for name in names:
            store.load_env(name, password_var=name)
        ok, line, reason = verify_audit_file(
            path,
            key=store.get(key_env) if key_env else None,
            previous_keys=[store.get(name) for name in previous_key_env or []],
            expect_checkpoint=not no_checkpoint,
        )
    except ConfigurationError as exc:
        _err.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        _json_out({"ok": ok, "line": line, "reason": reason})
        if not ok:
            raise typer.Exit(EXIT_DATABASE)
        return
    if ok:
        _out.print(f"ok: {path}: {reason}", highlight=False)
        return
    _err.print(Text(f"tampered: {path} line {line}: {reason}", style="red"))
    raise typer.Exit(EXIT_DATABASE)


security_app = _group("security", "Native access control: the model compiled into the database.")
AclOpt = Annotated[
    str,
    typer.Option(
        "--acl",
        help="The application's AccessControl as MODULE:NAME (imported: row policies are code).",
    ),
]


def _import_acl(spec: str) -> Any:
    import importlib

    from dbsystem.security import AccessControl

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--acl takes MODULE:NAME, not {spec!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import {spec!r}: {exc}") from None
    if not isinstance(found, AccessControl):
        raise ConfigurationError(f"{spec!r} is a {type(found).__name__}, not an AccessControl")
    return found


def _security(target: str, acl: str, config: Path | None, timeout: float, apply: bool) -> None:
    with _errors_to_exit():
        control = _import_acl(acl)
        db_type = database_type_for_url(_pool_config(target, config).url)
        with _one_connection_manager(target, timeout, config) as manager:
            if apply:
                plan = control.apply_native(manager, db_type)
            else:
                plan = control.native_plan(manager, db_type)
        _out.print(str(plan), highlight=False, markup=False)


@security_app.command("plan")
def security_plan(
    url: UrlArg, acl: AclOpt, config: ConfigOpt = None, timeout: TimeoutOpt = 10.0
) -> None:
    """Print the statements that would make the database enforce the model (changes nothing)."""
    _security(url, acl, config, timeout, apply=False)


@security_app.command("apply")
def security_apply(
    url: UrlArg, acl: AclOpt, config: ConfigOpt = None, timeout: TimeoutOpt = 10.0
) -> None:
    """Make the database's roles, grants and row-level security match the model."""
    _security(url, acl, config, timeout, apply=True)


metrics_app = _group("metrics", "Prometheus metrics.")


@metrics_app.command("serve")
def metrics_serve(
    urls: Annotated[
        list[str] | None, typer.Argument(help="Connection URLs to watch (one pool each).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TOML file of pools, as DatabaseManager.configure.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 9091,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    interval: Annotated[float, typer.Option(help="Seconds between health checks.")] = 5.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: never).")
    ] = None,
) -> None:
    """Serve /metrics, /health and /pools for the pools of URLS (or --config)."""
    import time as _time

    from dbsystem.monitoring import HealthMonitor, PerformanceMonitor, PrometheusExporter

    if not urls and config is None:
        raise typer.BadParameter("give at least one URL, or --config")
    manager = DatabaseManager()
    with _errors_to_exit():
        try:
            if config is not None:
                manager.configure(config)
            seen: dict[DatabaseType, int] = {}
            for url in urls or []:
                db_type = database_type_for_url(PoolConfig(url=url).url)
                seen[db_type] = seen.get(db_type, 0) + 1
                name = None if seen[db_type] == 1 else f"{db_type.value}{seen[db_type]}"
                manager.create_pool(db_type, PoolConfig(url=url, min_size=0), name=name)
            monitor = PerformanceMonitor().attach(manager)
            health = HealthMonitor(manager, interval=interval).start()
            try:
                exporter = PrometheusExporter(port, host=host, monitor=monitor).start()
            except OSError as exc:
                raise ConfigurationError(f"cannot serve on {host}:{port}: {exc}") from None
            _out.print(f"serving {exporter.url}/metrics (and /health, /pools)", highlight=False)
            sys.stdout.flush()
            try:
                deadline = None if duration is None else _time.monotonic() + duration
                while deadline is None or _time.monotonic() < deadline:
                    _time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            finally:
                exporter.stop()
                health.stop()
                monitor.close()
        finally:
            manager.close_all()


@app.command()
def pools(
    endpoint: Annotated[
        str, typer.Argument(help="An exporter's base URL, e.g. http://127.0.0.1:9091")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show the pools behind an exporter: usage, waits, timeouts, and who holds each
    connection (longest first)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/pools", timeout=10) as reply:
            report = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _err.print(Text(f"error: cannot read {endpoint}/pools: {exc}", style="red"))
        raise typer.Exit(EXIT_DATABASE) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    # Fitted to the terminal: names fold onto more lines rather than being cut, and the
    # figures are short columns that never wrap (the legend says what each one is).
    table = Table(title="pools")
    table.add_column("pool", overflow="fold")
    table.add_column("backend", no_wrap=True)
    for column in ("used", "idle", "wait", "t/o", "leak", "slow"):
        table.add_column(column, justify="right", no_wrap=True)
    holders = Table(title="holders")
    holders.add_column("pool", overflow="fold")
    holders.add_column("held", justify="right", no_wrap=True)
    holders.add_column("label", overflow="fold")
    holders.add_column("acquired at", overflow="fold")
    for pool in report["pools"]:
        st = pool["stats"]
        bounds, counts = pool["wait_buckets"], st["wait_counts"]
        slow = sum(
            n for bound, n in zip([*bounds, float("inf")], counts, strict=False) if bound > 0.01
        )
        table.add_row(
            pool["pool"], pool["backend"], f"{st['active']}/{st['max_size']}", str(st["idle"]),
            str(st["waiting"]), str(st["timeouts"]), str(st["leaks"]),
            f"{slow}/{st['acquired']}",
        )  # fmt: skip
        for holder in pool["holders"]:
            holders.add_row(
                pool["pool"], f"{holder['held_for']:.3f} s", holder["label"] or "",
                holder["location"],
            )  # fmt: skip
    _out.print(table)
    _out.print(_POOLS_LEGEND, style="dim", highlight=False, soft_wrap=False)
    if holders.row_count:
        _out.print(holders)
    else:
        _out.print("no connection is lent out")


_POOLS_LEGEND = (
    "used: lent out/max_size; wait: callers waiting; t/o: acquire timeouts; "
    "leak: leases leaked; slow: acquires that waited over 10 ms/all acquires"
)


@app.command()
@_one_connection_command
def shell(manager: Any, as_json: bool) -> int:
    """An interactive prompt on TARGET (SQL, Redis commands or MongoDB), with history.

    Piped input runs as a script: exit code 1 if any statement failed."""
    from dbsystem.cli._shell import Shell

    return Shell(manager, _out, _err, _print_result, as_json=as_json).run(
        interactive=sys.stdin.isatty()
    )


@app.command()
def load(
    url: UrlArg,
    file: Annotated[Path, typer.Argument(help="A .json, .jsonl or .csv file of rows.")],
    table: Annotated[
        str | None,
        typer.Option(
            help="Table, collection or key prefix (default: the file's name, or "
            "one per key of a JSON object of arrays)."
        ),
    ] = None,
    create: Annotated[
        bool, typer.Option(help="Create missing SQL tables, typed from the first rows.")
    ] = True,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="SQL: empty the table first, in the load's one transaction."
        ),
    ] = False,
    upsert: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="SQL: update the rows whose KEY is already there (a unique column; the "
            "primary key of a table the load creates).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per insert.")] = 1000,
    key: Annotated[
        str | None, typer.Option(help="Redis: the field naming each hash (default: the first).")
    ] = None,
    timeout: TimeoutOpt = 10.0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bulk-load FILE into TARGET, streaming it: SQL rows (all or nothing, in one
    transaction; Ctrl-C included), MongoDB documents or Redis hashes, with progress."""
    import signal
    import time as _time

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    from dbsystem.cli._load import Outcome, load_rows, open_file

    outcome = Outcome()
    started = _time.perf_counter()  # the rate counts reading the file too
    try:
        with (
            _errors_to_exit(),
            open_file(file, table) as source,
            _one_connection_manager(url, timeout, config) as manager,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeElapsedColumn(),
                console=_err,
                transient=True,
                disable=as_json or not _err.is_terminal,
            ) as progress,
        ):
            task = progress.add_task(f"loading {file.name}", total=source.size)
            rows = 0

            def advance(n: int) -> None:
                nonlocal rows
                rows += n
                progress.update(
                    task,
                    completed=source.position,
                    description=f"loading {file.name}: {rows:,} rows",
                )

            loaded = load_rows(
                manager,
                source.tables,
                create=create,
                batch=batch,
                key=key,
                advance=advance,
                replace=replace,
                upsert=upsert,
                outcome=outcome,
                path=file,
            )
    except typer.Exit:
        _report_undone(outcome, interrupted=False)
        raise
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the report is the last thing done)
        _err.print(Text("interrupted: ", style="red"), end="", highlight=False)
        _report_undone(outcome, interrupted=True)
        raise typer.Exit(130) from None
    seconds = _time.perf_counter() - started
    total = sum(loaded.values())
    if as_json:
        _json_out({"tables": loaded, "rows": total, "seconds": round(seconds, 3)})
        return
    for name, count in loaded.items():
        _out.print(f"{name}: {count} row(s)", highlight=False)
    rate = total / seconds if seconds else 0.0
    _out.print(
        f"loaded {total} row(s) in {seconds:.2f} s ({rate:,.0f} rows/s, reading included)",
        highlight=False,
    )


def _report_undone(outcome: Any, *, interrupted: bool) -> None:
    """Say what a failed or interrupted load left behind: nothing it created."""
    if not interrupted and not outcome.created:
        return
    dropped = f"; dropped the table(s) it created: {', '.join(outcome.dropped)}"
    _err.print(
        "nothing was loaded: the rows were rolled back" + (dropped if outcome.dropped else ""),
        highlight=False,
    )


@app.command()
def bench(
    url: UrlArg,
    seconds: Annotated[float, typer.Option(help="Seconds per case.")] = 2.0,
    timeout: TimeoutOpt = 5.0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time the hot paths on TARGET (acquire, build, execute, fetch) against the raw driver
    and SQLAlchemy in the same run; the time ratio is dbsystem's over each contender's."""
    from dbsystem.cli._bench import run_bench

    # Two connections: one held for the execute cases, one for acquire+release.
    with _errors_to_exit(), _one_connection_manager(url, timeout, config, size=2) as manager:
        with _err.status("measuring…", spinner="dots"):
            results = run_bench(manager, seconds)
    if as_json:
        _json_out(results)
        return
    table = Table(title=f"dbsystem bench ({seconds:g} s per case, median of 5 rounds)")
    for column in ("case", "contender", "µs per call", "dbsystem time / this"):
        table.add_column(column, justify="right" if column[0] in "µd" else "left")
    for row in results:
        ratio = "" if row["contender"] == "dbsystem" else f"{row['time_ratio']:.2f}x"
        table.add_row(row["case"], row["contender"], f"{row['us_per_call']:.2f}", ratio)
    _out.print(table)


@app.command()
def version() -> None:
    """Print the dbsystem version."""
    _out.print(__version__)


def main() -> None:
    """Entry point of the ``dbsystem`` console script."""
    app()
