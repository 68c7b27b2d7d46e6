"""The kernel: what every other layer stands on, importing nothing above it.

Types and enums (``types``), URLs (``url``), one pool's settings (``config``), the
``Statement`` and the hook chain every statement passes through (``hooks``), the pool
statistics records (``stats``), and ``_singleton.ProcessWide``: the process-wide
``instance()`` of the managers and services (internal, not exported). Backends build on
the kernel; the engine (``dbsystem.core``) on the kernel and the backends; features (query,
orm, security, monitoring, streams) above.
A test (``tests/unit/test_layers.py``) fails on any import cycle between subpackages.
"""

from dbsystem.kernel.config import PoolConfig, TLSConfig, TLSMode
from dbsystem.kernel.hooks import ExecutionHook, HookChain, Statement
from dbsystem.kernel.stats import WAIT_BUCKETS, PoolHolder, PoolStats
from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row
from dbsystem.kernel.url import DatabaseURL, redact

__all__ = [
    "DatabaseType",
    "DatabaseURL",
    "ExecuteResult",
    "ExecutionHook",
    "HookChain",
    "Params",
    "PoolConfig",
    "PoolHolder",
    "PoolStats",
    "Row",
    "Statement",
    "TLSConfig",
    "TLSMode",
    "WAIT_BUCKETS",
    "redact",
]
