"""Ledgers store: certificates, offsets, API keys, versioned documents, tamper-evident audit."""

from app.ledgers.audit import GENESIS_HASH, canonical_json, entry_hash
from app.ledgers.errors import (
    AlreadyRevokedError,
    DuplicateIdError,
    LedgerError,
    NotFoundError,
    VersionConflictError,
)
from app.ledgers.roles import ApiRole, role_allows
from app.ledgers.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    ApiKeyList,
    AuditEntry,
    AuditList,
    AuditProblem,
    CertificateIn,
    CertificateList,
    CertificateRecord,
    DocumentVersion,
    OffsetIn,
    OffsetList,
    OffsetRecord,
    RevokeIn,
)
from app.ledgers.store import (
    FACTOR_SET_KIND,
    REGISTRY_KIND,
    SYSTEM_ACTOR,
    LedgerStore,
    default_url,
)

__all__ = [
    "FACTOR_SET_KIND",
    "GENESIS_HASH",
    "REGISTRY_KIND",
    "SYSTEM_ACTOR",
    "AlreadyRevokedError",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyInfo",
    "ApiKeyList",
    "ApiRole",
    "AuditEntry",
    "AuditList",
    "AuditProblem",
    "CertificateIn",
    "CertificateList",
    "CertificateRecord",
    "DocumentVersion",
    "DuplicateIdError",
    "LedgerError",
    "LedgerStore",
    "NotFoundError",
    "OffsetIn",
    "OffsetList",
    "OffsetRecord",
    "RevokeIn",
    "VersionConflictError",
    "canonical_json",
    "default_url",
    "entry_hash",
    "role_allows",
]
