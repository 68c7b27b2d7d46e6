"""The live status page: pools and their holders, waits, health, alerts, slow shapes, topology.

    page = StatusPage(db)                      # a DatabaseManager or AsyncDatabaseManager
    page.data()                                # the JSON-ready report (``await page.adata()``)
    page.html()                                # the page: plain HTML, CSS and a small script

The page is one HTML document with no build step and nothing fetched from elsewhere: an
inline script polls the JSON report (``<page>/data``) every ``refresh`` seconds and redraws
it, so it stays live while open. It is served

* by the Prometheus exporter at ``/status`` (``PrometheusExporter``, ``make_wsgi_app_for``,
  ``make_asgi_app_for``), for the managers its monitor is attached to;
* as an app to mount anywhere: ``page.wsgi_app()``, ``page.asgi_app()``, and by the web
  framework integrations (``dbsystem.integrations.fastapi``/``flask``).

The report holds, for each manager: every pool's statistics, holders (who holds a
connection, for how long) and acquire-wait histogram; each pool's health (a check that
never queues, as ``db.health()``); the alerts firing in the monitors attached to it; the
slowest statement shapes (literals replaced by ``?``: no values) seen since the page was
made; the read replicas of each primary (those in rotation now) and the sharded pools given
as ``shards``. It names code locations and statement shapes, so serve it where the
exporter's ``/pools`` may be seen (the exporter binds 127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.kernel.stats import WAIT_BUCKETS
from dbsystem.monitoring._local import health_check as _health_local
from dbsystem.monitoring.health import amanager_health, manager_health, pool_label
from dbsystem.monitoring.monitor import PerformanceMonitor
from dbsystem.security.audit import fingerprint, statement_shape

__all__ = ["StatusPage", "asgi_path", "asgi_reply"]

_MAX_SHAPES = 1000

StartResponse = Callable[..., Any]


class _Shapes(ExecutionHook):
    """Per statement shape: how often it ran, its total and longest time, its failures.

    At most ``_MAX_SHAPES`` shapes are kept (the first seen); further new shapes are counted
    in ``dropped``.
    """

    def __init__(self) -> None:
        self._table: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def after_execute(self, statement: Statement) -> None:
        if _health_local.checking or not statement.executed:
            return
        duration = statement.duration or 0.0
        key = f"{statement.backend}:{fingerprint(statement.text)}"
        with self._lock:
            row = self._table.get(key)
            if row is None:
                if len(self._table) >= _MAX_SHAPES:
                    self.dropped += 1
                    return
                shape = statement_shape(statement.text)[:300]
                row = self._table[key] = [statement.backend, shape, 0, 0.0, 0.0, 0]
            row[2] += 1
            row[3] += duration
            if duration > row[4]:
                row[4] = duration
            if statement.error is not None:
                row[5] += 1

    def slowest(self, top: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = [list(row) for row in self._table.values()]
        rows.sort(key=lambda row: row[4], reverse=True)
        return [
            {
                "backend": backend,
                "shape": shape,
                "count": count,
                "mean": total / count if count else 0.0,
                "max": longest,
                "errors": errors,
            }
            for backend, shape, count, total, longest, errors in rows[:top]
        ]


class StatusPage:
    """The status page of ``db`` (or of the managers ``monitor`` is attached to).

    ``refresh``: seconds between the page's polls. ``top``: how many statement shapes to
    list. ``shards``: ``ShardedPool`` objects to draw. ``title``: the page's heading.
    """

    def __init__(
        self,
        db: Any = None,
        *,
        monitor: PerformanceMonitor | None = None,
        shards: Sequence[Any] = (),
        refresh: float = 2.0,
        top: int = 10,
        title: str = "dbsystem status",
    ) -> None:
        self._db = db
        self.monitor = monitor
        self.shards = list(shards)
        self.refresh = refresh
        self.top = top
        self.title = title
        self._shapes = _Shapes()
        self._watched: list[Any] = []
        self._lock = threading.Lock()
        self._watch()

    # -- what is shown ---------------------------------------------------------------------

    def managers(self) -> list[Any]:
        """The managers shown: ``db``, or the monitor's."""
        if self._db is not None:
            return [self._db]
        monitor = self.monitor or PerformanceMonitor.instance()
        return list(monitor.managers)

    def _watch(self) -> None:
        """Time statements of every manager shown (a manager attached later is added when
        the page is next read)."""
        with self._lock:
            for db in self.managers():
                if not any(db is seen for seen in self._watched):
                    db.add_hook(self._shapes)
                    self._watched.append(db)

    def close(self) -> None:
        """Stop timing statements (the page keeps answering, without new shapes)."""
        with self._lock:
            for db in self._watched:
                db.remove_hook(self._shapes)
            self._watched.clear()

    def data(self) -> dict[str, Any]:
        """The report, checking each pool's health now (blocking; never queues)."""
        self._watch()
        managers = self.managers()
        healths = [_sync_health(db) for db in managers]
        return self._report(managers, healths)

    async def adata(self) -> dict[str, Any]:
        """``data()`` for asyncio: async managers' pools checked awaited, the others on a
        worker thread."""
        self._watch()
        managers = self.managers()
        healths = []
        for db in managers:
            if hasattr(db, "sync"):  # an AsyncDatabaseManager
                healths.append(await amanager_health(db))
            else:
                healths.append(await asyncio.to_thread(_sync_health, db))
        return self._report(managers, healths)

    def json(self) -> str:
        """``data()`` as JSON text."""
        return json.dumps(self.data())

    def _report(self, managers: list[Any], healths: list[dict[str, Any]]) -> dict[str, Any]:
        pools: list[dict[str, Any]] = []
        health: list[dict[str, Any]] = []
        replicas: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        several = len(managers) > 1
        for number, (db, checked) in enumerate(zip(managers, healths, strict=True), start=1):
            suffix = f"#{number}" if several else ""
            for (db_type, name), pool in sorted(
                db.pools().items(), key=lambda item: pool_label(*item[0])
            ):
                holders = pool.holders() if hasattr(pool, "holders") else []
                pools.append(
                    {
                        "pool": pool_label(db_type, name) + suffix,
                        "backend": pool.backend_name or db_type.value,
                        "stats": asdict(pool.stats()),
                        "holders": [asdict(holder) for holder in holders],
                    }
                )
            for label, result in sorted(checked.items()):
                record = asdict(result)
                record["status"] = result.status.value
                record["pool"] = label + suffix
                health.append(record)
            for (db_type, name), replica_set in getattr(db, "_replicas", {}).items():
                available = set(replica_set.available())
                replicas.append(
                    {
                        "primary": pool_label(db_type, name) + suffix,
                        "policy": replica_set.policy,
                        "replicas": [
                            {"pool": pool_label(db_type, r), "in_rotation": r in available}
                            for r in replica_set.replicas
                        ],
                    }
                )
            for hook in _monitors(db, self.monitor):
                alerts.extend(asdict(alert) for alert in hook.firing)
        shards = [
            {
                "type": sharded.db_type.value,
                "key": sharded.key,
                "strategy": sharded.strategy if isinstance(sharded.strategy, str) else "custom",
                "shards": [pool_label(sharded.db_type, n) for n in sharded.names],
            }
            for sharded in self.shards
        ]
        return {
            "title": self.title,
            "time": time.time(),
            "refresh": self.refresh,
            "wait_buckets": list(WAIT_BUCKETS),
            "pools": pools,
            "health": health,
            "alerts": alerts,
            "slowest": self._shapes.slowest(self.top),
            "replicas": replicas,
            "shards": shards,
        }

    # -- serving ---------------------------------------------------------------------------

    def html(self, data_url: str = "status/data") -> str:
        """The page; its script polls ``data_url`` (absolute, or relative to the page)."""
        return (
            _PAGE.replace("__TITLE__", _escape(self.title))
            .replace("__DATA_URL__", json.dumps(data_url).replace("<", "\\u003c"))
            .replace("__REFRESH__", str(int(self.refresh * 1000)))
        )

    def wsgi_app(self) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        """A WSGI app: the page at its root, the report at ``data`` (mount it anywhere)."""

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            base = environ.get("SCRIPT_NAME", "")
            path = environ.get("PATH_INFO", "/")
            status, content_type, body = self.respond(base, path)
            start_response(status, [("Content-Type", content_type)])
            return [body]

        return app

    def asgi_app(self) -> Callable[..., Any]:
        """An ASGI app: the page at its root, the report at ``data`` (``app.mount(...)``)."""

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            root, path = asgi_path(scope)
            if (path.rstrip("/") or "/") == "/data":
                body = json.dumps(await self.adata()).encode()
                status, content_type = "200 OK", "application/json"
            else:
                status, content_type, body = self.respond(root, path)
            await asgi_reply(send, int(status.split()[0]), content_type, body)

        return app

    def respond(self, base: str, path: str) -> tuple[str, str, bytes]:
        """(status line, content type, body) for ``path`` under the page's mount ``base``."""
        path = path.rstrip("/") or "/"
        if path == "/data":
            return "200 OK", "application/json", self.json().encode()
        if path == "/":
            data_url = f"{base.rstrip('/')}/data"
            return "200 OK", "text/html; charset=utf-8", self.html(data_url).encode()
        return "404 Not Found", "text/plain", b"not found: the status page is at / and /data\n"


def asgi_path(scope: dict[str, Any]) -> tuple[str, str]:
    """(mount prefix, path below it) of an ASGI request (Starlette keeps the full path in
    ``path`` and the prefix in ``root_path``; other servers give the path below it)."""
    root = str(scope.get("root_path", ""))
    path = str(scope.get("path", "/"))
    if root and path.startswith(root):
        path = path[len(root) :]
    return root, path


async def asgi_reply(send: Any, status: int, content_type: str, body: bytes) -> None:
    """Send one whole HTTP response on an ASGI channel (the exporter's and the page's)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _sync_health(db: Any) -> dict[str, Any]:
    if hasattr(db, "sync"):  # an AsyncDatabaseManager read from a thread: its sync pools
        return manager_health(db.sync)
    return manager_health(db)


def _monitors(db: Any, given: PerformanceMonitor | None) -> list[PerformanceMonitor]:
    found = [h for h in db.hooks if isinstance(h, PerformanceMonitor)]
    if given is not None and not any(given is h for h in found):
        found.append(given)
    return found


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
  #meta { color: #5b6475; }
  #meta.stale { color: #b3261e; font-weight: 600; }
  table { border-collapse: collapse; background: #fff; min-width: 40em; }
  th, td { border-bottom: 1px solid #e3e6eb; padding: .3em .7em; text-align: left;
           vertical-align: top; }
  th { background: #eef1f5; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .badge { display: inline-block; padding: 0 .5em; border-radius: .6em; color: #fff;
           font-weight: 600; }
  .up { background: #2e7d32; } .degraded { background: #ed8b00; } .down { background: #b3261e; }
  .hist { display: flex; align-items: flex-end; gap: 2px; height: 28px; }
  .hist span { width: 7px; background: #4a6fa5; min-height: 1px; }
  .holders { font-size: .9em; color: #39414f; margin: 0; padding-left: 1.1em; }
  .empty { color: #5b6475; font-style: italic; }
  code { font-size: .92em; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div id="meta">loading...</div>
<h2>Health</h2><div id="health"></div>
<h2>Alerts</h2><div id="alerts"></div>
<h2>Pools</h2><div id="pools"></div>
<h2>Slowest statement shapes</h2><div id="slowest"></div>
<h2>Replicas and shards</h2><div id="topology"></div>
<script>
"use strict";
const DATA_URL = __DATA_URL__;
const REFRESH = __REFRESH__;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function ms(seconds) {
  if (seconds == null) return "";
  if (seconds >= 1) return seconds.toFixed(1) + " s";
  return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms";
}
function table(headers, rows, emptyText) {
  if (!rows.length) return el("p", {class: "empty"}, emptyText);
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}
function histogram(counts, bounds) {
  const box = el("div", {class: "hist"});
  const top = Math.max(1, ...counts);
  counts.forEach((count, i) => {
    const bar = el("span", {title: (i < bounds.length ? "<= " + ms(bounds[i]) : "more")
      + ": " + count});
    bar.style.height = Math.round((count / top) * 100) + "%";
    box.append(bar);
  });
  return box;
}
function render(data) {
  const health = data.health.map((h) => el("tr", {"data-pool": h.pool, "data-status": h.status},
    el("td", {}, h.pool), el("td", {}, h.backend),
    el("td", {}, el("span", {class: "badge " + h.status}, h.status)),
    el("td", {}, h.detail), el("td", {}, h.last_error || "")));
  document.getElementById("health").replaceChildren(
    table(["pool", "backend", "status", "detail", "last error"], health, "no pools"));

  const alerts = data.alerts.map((a) => el("tr", {"data-alert": a.name},
    el("td", {}, a.name), el("td", {}, a.pool || ""), el("td", {}, a.message)));
  document.getElementById("alerts").replaceChildren(
    table(["alert", "pool", "message"], alerts, "no alert firing"));

  const pools = data.pools.map((p) => {
    const s = p.stats;
    const holders = el("ul", {class: "holders"}, ...p.holders.map((h) =>
      el("li", {}, ms(h.held_for) + " \\u2014 " + (h.label || h.location))));
    return el("tr", {"data-pool": p.pool},
      el("td", {}, p.pool), el("td", {}, p.backend),
      el("td", {class: "num", "data-field": "active"}, s.active),
      el("td", {class: "num"}, s.idle), el("td", {class: "num"}, s.total + " / " + s.max_size),
      el("td", {class: "num", "data-field": "waiting"}, s.waiting),
      el("td", {class: "num"}, s.acquired), el("td", {class: "num"}, ms(s.wait_max)),
      el("td", {}, histogram(s.wait_counts, data.wait_buckets)),
      el("td", {"data-field": "holders"}, p.holders.length ? holders : ""));
  });
  document.getElementById("pools").replaceChildren(table(["pool", "backend", "active", "idle",
    "open / max", "waiting", "acquired", "longest wait", "wait histogram", "holders"],
    pools, "no pools"));

  const slow = data.slowest.map((q) => el("tr", {},
    el("td", {}, q.backend), el("td", {}, el("code", {}, q.shape)),
    el("td", {class: "num"}, q.count), el("td", {class: "num"}, ms(q.mean)),
    el("td", {class: "num"}, ms(q.max)), el("td", {class: "num"}, q.errors)));
  document.getElementById("slowest").replaceChildren(table(["backend", "statement shape",
    "count", "mean", "max", "errors"], slow, "no statement yet"));

  const topology = [];
  for (const r of data.replicas) {
    topology.push(el("tr", {}, el("td", {}, "replicas of " + r.primary),
      el("td", {}, r.replicas.map((x) => x.pool + (x.in_rotation ? "" : " (out)")).join(", ")),
      el("td", {}, "policy " + r.policy)));
  }
  for (const s of data.shards) {
    topology.push(el("tr", {}, el("td", {}, s.type + " sharded by " + s.key),
      el("td", {}, s.shards.join(", ")), el("td", {}, "strategy " + s.strategy)));
  }
  document.getElementById("topology").replaceChildren(
    table(["", "pools", ""], topology, "no replicas or shards"));

  const meta = document.getElementById("meta");
  meta.className = "";
  meta.textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString()
    + " \\u00b7 refreshing every " + (REFRESH / 1000) + " s";
}
async function poll() {
  try {
    const response = await fetch(DATA_URL, {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (error) {
    const meta = document.getElementById("meta");
    meta.className = "stale";
    meta.textContent = "cannot reach the status data (" + error.message + "); retrying";
  }
  setTimeout(poll, REFRESH);
}
poll();
</script>
</body>
</html>
"""
