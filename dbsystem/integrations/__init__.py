"""Integrations with the tools applications already use; each module needs its own extra.

* ``dbsystem.integrations.opentelemetry``: a client span per statement (``instrument(db)``),
  ``pip install 'dbsystem[opentelemetry]'``;
* ``dbsystem.integrations.fastapi``: a lifespan, connection and user-session dependencies,
  a transaction per request (FastAPI and Starlette), ``pip install 'dbsystem[fastapi]'``;
* ``dbsystem.integrations.flask``: the same as a Flask extension, ``pip install
  'dbsystem[flask]'``;

The live status page (``/status``) is ``dbsystem.monitoring.status``: the Prometheus
exporter serves it and the framework integrations mount it.

Importing this package imports none of the frameworks; each module imports its own.
"""
