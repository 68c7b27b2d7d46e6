"""Security: access control on every statement, the audit log, credentials.

See ``dbsystem.security.rbac``, ``dbsystem.security.audit`` and
``dbsystem.security.credentials``; ``db.for_user(...)`` gives a checked, audited session.
"""

from dbsystem.security.audit import (
    AuditEvent,
    AuditKey,
    AuditLog,
    AuditSink,
    DatabaseAuditSink,
    JsonLinesAuditSink,
    LoggingAuditSink,
    MemoryAuditSink,
    verify_audit_file,
)
from dbsystem.security.credentials import (
    MAX_CONCURRENT_HASHES,
    MAX_PASSWORD_LENGTH,
    Credential,
    CredentialManager,
    HashCostCeiling,
    hash_password,
    password_needs_rehash,
    set_hash_cost_ceiling,
    verify_password,
)
from dbsystem.security.rbac import AccessControl, Permission, Role

__all__ = [
    "AccessControl",
    "AuditEvent",
    "AuditKey",
    "AuditLog",
    "AuditSink",
    "Credential",
    "CredentialManager",
    "DatabaseAuditSink",
    "HashCostCeiling",
    "JsonLinesAuditSink",
    "LoggingAuditSink",
    "MAX_CONCURRENT_HASHES",
    "MAX_PASSWORD_LENGTH",
    "MemoryAuditSink",
    "Permission",
    "Role",
    "hash_password",
    "password_needs_rehash",
    "set_hash_cost_ceiling",
    "verify_audit_file",
    "verify_password",
]
