"""LedgerStore: the facade over the ledger database, one method per operation, by concern.

Each concern lives in its own module: certificates, offsets and corrections
(`certificates.py`, `offsets.py`, `corrections_ledger.py`) and API keys (`keys_store.py`)
over one audited append/get/list/revoke helper (`entities.py`); versioned documents
(`documents.py`); the audit chain (`audit_store.py`); sessions and locks (`tx.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.accounting.ledger_types import Certificate, Offset
from app.corrections.models import Correction
from app.corrections.schemas import CorrectionIn, CorrectionRecord
from app.ledgers import audit_store, documents, entities, keys_store
from app.ledgers.certificates import CERTIFICATES, add_certificate
from app.ledgers.corrections_ledger import CORRECTIONS, add_correction
from app.ledgers.documents import FACTOR_SET_KIND, REGISTRY_DOC_NAME, REGISTRY_KIND
from app.ledgers.engine import create_schema, make_engines
from app.ledgers.keys_store import KEYS
from app.ledgers.offsets import OFFSETS, add_offset
from app.ledgers.orm import AuditRow
from app.ledgers.roles import ApiRole
from app.ledgers.schemas import (
    ApiKeyCreated,
    ApiKeyInfo,
    AuditEntry,
    AuditProblem,
    CertificateIn,
    CertificateRecord,
    DocumentVersion,
    OffsetIn,
    OffsetRecord,
)
from app.ledgers.tx import SYSTEM_ACTOR, Transactions

__all__ = [
    "DB_FILENAME",
    "FACTOR_SET_KIND",
    "REGISTRY_DOC_NAME",
    "REGISTRY_KIND",
    "SYSTEM_ACTOR",
    "LedgerStore",
    "default_url",
]

DB_FILENAME = "lingtan.db"


def default_url(data_dir: str | Path) -> str:
    """`sqlite:///<data_dir>/lingtan.db` (absolute path)."""
    return f"sqlite:///{Path(data_dir).resolve() / DB_FILENAME}"


class LedgerStore:
    """The small relational store behind the ledgers, API keys and audit log.

    Synchronous and thread-safe; call it from a threadpool in async code. Every change
    writes its audit entry in the same transaction, so a change without its entry (or the
    reverse) cannot be committed.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        #: For logs: the password is masked.
        self.url = make_url(url).render_as_string(hide_password=True)
        self._engine, self._write_engine = make_engines(url, echo=echo)
        self.dialect = self._engine.dialect.name
        create_schema(self._engine)
        self._tx = Transactions(self._engine, self._write_engine)

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, url: str | None = None) -> LedgerStore:
        """Settings-friendly: `url` when configured, else SQLite in `data_dir` (created)."""
        if url:
            return cls(url)
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        return cls(default_url(data_dir))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions, for the stores that share this database (app/alarms) --------------

    @property
    def _write_sessions(self) -> sessionmaker[Session]:
        return self._tx.write_sessions

    def _read(self) -> AbstractContextManager[Session]:
        return self._tx.read()

    def _write(self) -> AbstractContextManager[Session]:
        return self._tx.write()

    def _append_audit(
        self, session: Session, actor: str, action: str, obj: str, details: Mapping[str, Any]
    ) -> AuditRow:
        return audit_store.append_audit(session, actor, action, obj, details)

    # -- certificates -------------------------------------------------------------------

    def add_certificate(
        self, park: str, cert: CertificateIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> CertificateRecord:
        """Register a certificate/trade for `park`; DuplicateIdError if the id exists anywhere."""
        return add_certificate(self._tx, park, cert, actor)

    def get_certificate(self, cert_id: str, park: str | None = None) -> CertificateRecord:
        """The certificate (revoked or not); NotFoundError if absent or in another park."""
        return entities.get(self._tx, CERTIFICATES, cert_id, park)

    def list_certificates(
        self, park: str, *, include_revoked: bool = False
    ) -> list[CertificateRecord]:
        """A park's certificates ordered by valid_from, id."""
        return entities.list_records(self._tx, CERTIFICATES, park, include_revoked=include_revoked)

    def certificates_for(self, park: str) -> list[Certificate]:
        """Active (unrevoked) certificates as accounting dataclasses (UTC datetimes)."""
        return [r.to_certificate() for r in self.list_certificates(park)]

    def revoke_certificate(
        self,
        cert_id: str,
        actor: str = SYSTEM_ACTOR,
        reason: str = "",
        *,
        park: str | None = None,
    ) -> CertificateRecord:
        """Soft-revoke: kept (and its id stays taken) but no longer applied."""
        return entities.revoke(self._tx, CERTIFICATES, cert_id, actor, reason, park)

    # -- offsets ------------------------------------------------------------------------

    def add_offset(
        self, park: str, offset: OffsetIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> OffsetRecord:
        """Register an offset for `park`; DuplicateIdError if the id exists anywhere."""
        return add_offset(self._tx, park, offset, actor)

    def get_offset(self, offset_id: str, park: str | None = None) -> OffsetRecord:
        return entities.get(self._tx, OFFSETS, offset_id, park)

    def list_offsets(self, park: str, *, include_revoked: bool = False) -> list[OffsetRecord]:
        """A park's offsets ordered by date, id."""
        return entities.list_records(self._tx, OFFSETS, park, include_revoked=include_revoked)

    def offsets_for(self, park: str) -> list[Offset]:
        """Active (unrevoked) offsets as accounting dataclasses."""
        return [r.to_offset() for r in self.list_offsets(park)]

    def revoke_offset(
        self,
        offset_id: str,
        actor: str = SYSTEM_ACTOR,
        reason: str = "",
        *,
        park: str | None = None,
    ) -> OffsetRecord:
        """Soft-revoke: kept (and its id stays taken) but no longer applied."""
        return entities.revoke(self._tx, OFFSETS, offset_id, actor, reason, park)

    # -- manual corrections -------------------------------------------------------------

    def add_correction(
        self, park: str, corr: CorrectionIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> CorrectionRecord:
        """Record a manual correction for `park` (applied on top of stored intervals, which
        are never edited); DuplicateIdError if the id exists anywhere. The caller checks the
        device and the window against the registry (`app.corrections.check_correction`)."""
        return add_correction(self._tx, park, corr, actor)

    def get_correction(self, corr_id: str, park: str | None = None) -> CorrectionRecord:
        return entities.get(self._tx, CORRECTIONS, corr_id, park)

    def list_corrections(
        self, park: str, *, include_revoked: bool = False
    ) -> list[CorrectionRecord]:
        """A park's corrections in creation (= application) order."""
        return entities.list_records(self._tx, CORRECTIONS, park, include_revoked=include_revoked)

    def corrections_for(self, park: str) -> list[Correction]:
        """Active (unrevoked) corrections as `app.corrections.Correction`, in apply order."""
        return [r.to_correction() for r in self.list_corrections(park)]

    def revoke_correction(
        self,
        corr_id: str,
        actor: str = SYSTEM_ACTOR,
        reason: str = "",
        *,
        park: str | None = None,
    ) -> CorrectionRecord:
        """Soft-revoke: kept (and its id stays taken) but no longer applied."""
        return entities.revoke(self._tx, CORRECTIONS, corr_id, actor, reason, park)

    # -- API keys -----------------------------------------------------------------------

    def create_key(
        self,
        role: ApiRole | str,
        label: str = "",
        actor: str = SYSTEM_ACTOR,
        *,
        parks: Iterable[str] | None = None,
    ) -> ApiKeyCreated:
        """New key; the returned `.key` plaintext is the only copy (only its hash is stored).

        `parks`: the park ids the key may act on (None = every park, the default). Admin
        keys create keys and so must cover every park."""
        return keys_store.create_key(self._tx, role, label, actor, parks)

    def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The active key matching `key` (its id is the audit actor), or None."""
        return keys_store.authenticate(self._tx, key)

    def verify_key(self, key: str) -> ApiRole | None:
        """The role of an active key, or None (unknown, revoked or empty)."""
        info = self.authenticate(key)
        return None if info is None else info.role

    def get_key(self, key_id: str) -> ApiKeyInfo:
        return entities.get(self._tx, KEYS, key_id)

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
        """All keys without secrets, oldest first."""
        return entities.list_records(self._tx, KEYS, None, include_revoked=include_revoked)

    def revoke_key(self, key_id: str, actor: str = SYSTEM_ACTOR) -> ApiKeyInfo:
        """Revoke a key; refuses to revoke the last active admin key (lock-out)."""
        return entities.revoke(
            self._tx, KEYS, key_id, actor, "", guard=keys_store.refuse_last_admin
        )

    def bootstrap_admin(self, key: str) -> ApiKeyInfo:
        """Make `key` (LINGTAN_BOOTSTRAP_ADMIN_KEY) an admin key under id `bootstrap`.

        Idempotent: the same key again changes nothing. A different key replaces the old
        bootstrap secret (rotation through the environment). An explicitly revoked bootstrap
        key stays revoked while the environment still holds the same key.
        """
        return keys_store.bootstrap_admin(self._tx, key)

    # -- versioned documents (factor-set overrides, registry edits) ----------------------

    def put_document(
        self,
        kind: str,
        name: str,
        body: Mapping[str, Any],
        actor: str = SYSTEM_ACTOR,
        *,
        comment: str = "",
        expected_version: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> DocumentVersion:
        """Store a new version (previous ones are kept). With `expected_version` (the
        version the caller read, 0 for "must not exist yet"), a concurrent change raises
        VersionConflictError instead of being overwritten. `details` (e.g. what changed)
        are added to the audit entry."""
        return documents.put(
            self._tx,
            kind,
            name,
            body,
            actor,
            comment=comment,
            expected_version=expected_version,
            details=details,
        )

    def get_document(
        self, kind: str, name: str, version: int | None = None
    ) -> DocumentVersion | None:
        """The latest (or given) version, or None."""
        return documents.get(self._tx, kind, name, version)

    def latest_document_version(self, kind: str, name: str) -> int:
        """The newest version number (0 when none): one cheap query, for polling."""
        return documents.latest_version(self._tx, kind, name)

    def list_document_names(self, kind: str) -> list[str]:
        """Names of every stored document of `kind`, sorted."""
        return documents.names(self._tx, kind)

    def list_document_versions(self, kind: str, name: str) -> list[DocumentVersion]:
        return documents.versions(self._tx, kind, name)

    def put_factor_set(
        self, name: str, body: Mapping[str, Any], actor: str = SYSTEM_ACTOR, **kw: Any
    ) -> DocumentVersion:
        """Store a factor-set override document (e.g. name `cn-2023`)."""
        return self.put_document(FACTOR_SET_KIND, name, body, actor, **kw)

    def get_factor_set(self, name: str, version: int | None = None) -> DocumentVersion | None:
        return self.get_document(FACTOR_SET_KIND, name, version)

    def put_registry(
        self, body: Mapping[str, Any], actor: str = SYSTEM_ACTOR, **kw: Any
    ) -> DocumentVersion:
        """Store an edited park registry (the `{"parks": [...]}` document)."""
        return self.put_document(REGISTRY_KIND, REGISTRY_DOC_NAME, body, actor, **kw)

    def get_registry(self, version: int | None = None) -> DocumentVersion | None:
        return self.get_document(REGISTRY_KIND, REGISTRY_DOC_NAME, version)

    def registry_versions(self) -> list[DocumentVersion]:
        return self.list_document_versions(REGISTRY_KIND, REGISTRY_DOC_NAME)

    def latest_registry_version(self) -> int:
        return self.latest_document_version(REGISTRY_KIND, REGISTRY_DOC_NAME)

    # -- audit log ----------------------------------------------------------------------

    def record_audit(
        self, actor: str, action: str, obj: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append an entry for a change made elsewhere (e.g. a config reload)."""
        return audit_store.record(self._tx, actor, action, obj, details or {})

    def list_audit(
        self, *, after_seq: int = 0, limit: int = 1000, parks: Iterable[str] | None = None
    ) -> list[AuditEntry]:
        """Entries with seq > after_seq, oldest first (page with the last seq seen).

        `parks` (None = all): only entries about those parks' ledgers (object
        `park/<id>/...`), for keys scoped to parks."""
        return audit_store.list_entries(self._tx, after_seq, limit, parks)

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, (0, GENESIS_HASH) when empty. Record it outside
        the database (report, log, ticket) and pass it to verify_audit later to detect a
        truncated or wholly rewritten chain."""
        return audit_store.head(self._tx)

    def verify_audit(
        self,
        anchor: tuple[int, str] | None = None,
        *,
        anchors: Iterable[tuple[int, str]] = (),
    ) -> list[AuditProblem]:
        """Re-verify the whole chain, then every ledger row against the content hash its
        latest audit entry recorded; [] when intact. Chain problems name their seq, row
        problems their table and row id (docs/security.md). `anchor`/`anchors`: heads
        recorded elsewhere earlier (signed checkpoints), which must still be in the chain."""
        return audit_store.verify(self._tx, anchor, anchors)

    def adopt_unaudited_rows(self, actor: str = SYSTEM_ACTOR, reason: str = "") -> list[str]:
        """Record, in one audit entry each (`row.adopt`), the content hash of every ledger
        row that has no audit entry at all: the one-time step for a database written before
        rows were hashed (docs/security.md). Rows whose content differs from their entry are
        never adopted (that is an edit to investigate). Returns `table/id` of each."""
        return audit_store.adopt_unaudited_rows(self._tx, actor, reason)
