# Long module: one transaction-and-audit discipline over six entities (split by concern planned).
"""LedgerStore: certificates, offsets, corrections, API keys, documents and the audit chain."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import false, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.accounting.ledger_types import Certificate, Offset
from app.corrections.models import Correction
from app.corrections.schemas import CorrectionIn, CorrectionRecord
from app.ledgers import keys as keylib
from app.ledgers.audit import GENESIS_HASH, StoredEntry, canonical_json, entry_hash, verify_chain
from app.ledgers.engine import create_schema, lock_for_write, make_engines
from app.ledgers.errors import (
    AlreadyRevokedError,
    DuplicateIdError,
    LedgerError,
    NotFoundError,
    VersionConflictError,
)
from app.ledgers.orm import (
    LEDGER_TABLES,
    ApiKeyRow,
    AuditRow,
    CertificateRow,
    CorrectionRow,
    DocumentRow,
    OffsetRow,
)
from app.ledgers.roles import ApiRole
from app.ledgers.rows import RowRefs, collect_row_ref, compare_rows, row_digest, row_id, row_ref
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
from app.registry.models import ID_PATTERN

DB_FILENAME = "lingtan.db"
SYSTEM_ACTOR = "system"
#: Document kinds the service uses; others are allowed (same `[a-z_]` form).
FACTOR_SET_KIND = "factor_set"
REGISTRY_KIND = "registry"
REGISTRY_DOC_NAME = "parks"

_PARK_RE = re.compile(ID_PATTERN)
_DOC_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DOC_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_M = TypeVar("_M", bound=BaseModel)
_RevocableRow = TypeVar("_RevocableRow", CertificateRow, OffsetRow, CorrectionRow)


def default_url(data_dir: str | Path) -> str:
    """`sqlite:///<data_dir>/lingtan.db` (absolute path)."""
    return f"sqlite:///{Path(data_dir).resolve() / DB_FILENAME}"


def _now() -> datetime:
    return datetime.now(UTC)


def _check_park(park: str) -> str:
    if not isinstance(park, str) or not _PARK_RE.fullmatch(park):
        raise ValueError(f"invalid park id {park!r}")
    return park


def _check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not 0 < len(actor) <= 128:
        raise ValueError("actor must be a non-empty string of at most 128 characters")
    return actor


def _coerce(model: type[_M], value: _M | Mapping[str, Any]) -> _M:
    return value if isinstance(value, model) else model.model_validate(value)


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
        self._read_sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        # Also serialises writers within this process (cheap, and needed for in-memory SQLite).
        self._write_lock = threading.Lock()

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

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock, self._write_sessions() as session, session.begin():
            lock_for_write(session.connection())
            yield session

    def _append_audit(
        self, session: Session, actor: str, action: str, obj: str, details: Mapping[str, Any]
    ) -> AuditRow:
        tail = session.execute(
            select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (tail[0] + 1, tail[1]) if tail else (1, GENESIS_HASH)
        ts = _now()
        details_text = canonical_json(dict(details))
        details_obj = json.loads(details_text)
        row = AuditRow(
            seq=seq,
            ts=ts,
            actor=_check_actor(actor),
            action=action,
            object=obj,
            details=details_text,
            prev_hash=prev_hash,
            hash=entry_hash(
                seq=seq,
                ts=ts,
                actor=actor,
                action=action,
                obj=obj,
                details=details_obj,
                prev_hash=prev_hash,
            ),
        )
        session.add(row)
        session.flush()
        return row

    # -- certificates -------------------------------------------------------------------

    def add_certificate(
        self, park: str, cert: CertificateIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> CertificateRecord:
        """Register a certificate/trade for `park`; DuplicateIdError if the id exists anywhere."""
        _check_park(park)
        body = _coerce(CertificateIn, cert)
        with self._write() as session:
            existing = session.get(CertificateRow, body.id)
            if existing is not None:
                raise DuplicateIdError("certificate", body.id, existing.park)
            row = CertificateRow(
                id=body.id,
                park=park,
                kind=body.kind,
                mwh=body.mwh,
                valid_from=body.valid_from,
                valid_to=body.valid_to,
                source=body.source,
                created_at=_now(),
                created_by=_check_actor(actor),
            )
            session.add(row)
            session.flush()
            self._append_audit(
                session,
                actor,
                "certificate.add",
                f"park/{park}/certificate/{body.id}",
                {"park": park, **body.model_dump(mode="json"), "row": row_ref(row)},
            )
            return CertificateRecord.model_validate(row)

    def get_certificate(self, cert_id: str, park: str | None = None) -> CertificateRecord:
        """The certificate (revoked or not); NotFoundError if absent or in another park."""
        with self._read() as session:
            row = session.get(CertificateRow, cert_id)
            if row is None or (park is not None and row.park != park):
                raise NotFoundError(
                    f"no certificate {cert_id!r}" + (f" in park {park!r}" if park else "")
                )
            return CertificateRecord.model_validate(row)

    def list_certificates(
        self, park: str, *, include_revoked: bool = False
    ) -> list[CertificateRecord]:
        """A park's certificates ordered by valid_from, id."""
        stmt = select(CertificateRow).where(CertificateRow.park == park)
        if not include_revoked:
            stmt = stmt.where(CertificateRow.revoked_at.is_(None))
        stmt = stmt.order_by(CertificateRow.valid_from, CertificateRow.id)
        with self._read() as session:
            return [CertificateRecord.model_validate(r) for r in session.scalars(stmt)]

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
        row = self._revoke(CertificateRow, "certificate", cert_id, actor, reason, park)
        return CertificateRecord.model_validate(row)

    # -- offsets ------------------------------------------------------------------------

    def add_offset(
        self, park: str, offset: OffsetIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> OffsetRecord:
        """Register an offset for `park`; DuplicateIdError if the id exists anywhere."""
        _check_park(park)
        body = _coerce(OffsetIn, offset)
        with self._write() as session:
            existing = session.get(OffsetRow, body.id)
            if existing is not None:
                raise DuplicateIdError("offset", body.id, existing.park)
            row = OffsetRow(
                id=body.id,
                park=park,
                kind=body.kind,
                tco2=body.tco2,
                date=body.date,
                source=body.source,
                created_at=_now(),
                created_by=_check_actor(actor),
            )
            session.add(row)
            session.flush()
            self._append_audit(
                session,
                actor,
                "offset.add",
                f"park/{park}/offset/{body.id}",
                {"park": park, **body.model_dump(mode="json"), "row": row_ref(row)},
            )
            return OffsetRecord.model_validate(row)

    def get_offset(self, offset_id: str, park: str | None = None) -> OffsetRecord:
        with self._read() as session:
            row = session.get(OffsetRow, offset_id)
            if row is None or (park is not None and row.park != park):
                raise NotFoundError(f"no offset {offset_id!r}")
            return OffsetRecord.model_validate(row)

    def list_offsets(self, park: str, *, include_revoked: bool = False) -> list[OffsetRecord]:
        """A park's offsets ordered by date, id."""
        stmt = select(OffsetRow).where(OffsetRow.park == park)
        if not include_revoked:
            stmt = stmt.where(OffsetRow.revoked_at.is_(None))
        stmt = stmt.order_by(OffsetRow.date, OffsetRow.id)
        with self._read() as session:
            return [OffsetRecord.model_validate(r) for r in session.scalars(stmt)]

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
        row = self._revoke(OffsetRow, "offset", offset_id, actor, reason, park)
        return OffsetRecord.model_validate(row)

    # -- manual corrections -------------------------------------------------------------

    def add_correction(
        self, park: str, corr: CorrectionIn | Mapping[str, Any], actor: str = SYSTEM_ACTOR
    ) -> CorrectionRecord:
        """Record a manual correction for `park` (applied on top of stored intervals, which
        are never edited); DuplicateIdError if the id exists anywhere. The caller checks the
        device and the window against the registry (`app.corrections.check_correction`)."""
        _check_park(park)
        body = _coerce(CorrectionIn, corr)
        with self._write() as session:
            existing = session.get(CorrectionRow, body.id)
            if existing is not None:
                raise DuplicateIdError("correction", body.id, existing.park)
            last = session.scalar(select(func.max(CorrectionRow.seq)))
            row = CorrectionRow(
                id=body.id,
                seq=(last or 0) + 1,
                park=park,
                device=body.device,
                quantity=body.quantity,
                start=body.start,
                end=body.end,
                kind=body.kind,
                amount=body.amount,
                reason=body.reason,
                created_at=_now(),
                created_by=_check_actor(actor),
            )
            session.add(row)
            session.flush()
            self._append_audit(
                session,
                actor,
                "correction.add",
                f"park/{park}/correction/{body.id}",
                {
                    "park": park,
                    "seq": row.seq,
                    **body.model_dump(mode="json"),
                    "row": row_ref(row),
                },
            )
            return CorrectionRecord.model_validate(row)

    def get_correction(self, corr_id: str, park: str | None = None) -> CorrectionRecord:
        with self._read() as session:
            row = session.get(CorrectionRow, corr_id)
            if row is None or (park is not None and row.park != park):
                raise NotFoundError(f"no correction {corr_id!r}")
            return CorrectionRecord.model_validate(row)

    def list_corrections(
        self, park: str, *, include_revoked: bool = False
    ) -> list[CorrectionRecord]:
        """A park's corrections in creation (= application) order."""
        stmt = select(CorrectionRow).where(CorrectionRow.park == park)
        if not include_revoked:
            stmt = stmt.where(CorrectionRow.revoked_at.is_(None))
        stmt = stmt.order_by(CorrectionRow.seq)
        with self._read() as session:
            return [CorrectionRecord.model_validate(r) for r in session.scalars(stmt)]

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
        row = self._revoke(CorrectionRow, "correction", corr_id, actor, reason, park)
        return CorrectionRecord.model_validate(row)

    # -- shared by the ledgers (certificates, offsets, corrections) ----------------------

    def _revoke(
        self,
        row_type: type[_RevocableRow],
        kind: str,
        entry_id: str,
        actor: str,
        reason: str,
        park: str | None,
    ) -> _RevocableRow:
        """Soft-revoke one ledger entry and audit it in the same transaction."""
        with self._write() as session:
            row = session.get(row_type, entry_id)
            if row is None or (park is not None and row.park != park):
                raise NotFoundError(f"no {kind} {entry_id!r}")
            if row.revoked_at is not None:
                raise AlreadyRevokedError(f"{kind} {entry_id!r} is already revoked")
            row.revoked_at = _now()
            row.revoked_by = _check_actor(actor)
            row.revoke_reason = reason
            session.flush()
            self._append_audit(
                session,
                actor,
                f"{kind}.revoke",
                f"park/{row.park}/{kind}/{entry_id}",
                {"park": row.park, "id": entry_id, "reason": reason, "row": row_ref(row)},
            )
            return row  # sessions don't expire on commit: readable after the block

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
        api_role = ApiRole(role)
        if len(label) > 200:
            raise ValueError("label longer than 200 characters")
        scope = None if parks is None else sorted({_check_park(p) for p in parks})
        if scope is not None and not scope:
            raise ValueError("a key scoped to parks needs at least one park")
        if scope is not None and api_role is ApiRole.ADMIN:
            raise ValueError("admin keys cover every park (they create keys): no park scope")
        key_id = keylib.new_key_id()
        plaintext = keylib.new_plaintext_key(key_id)
        with self._write() as session:
            row = ApiKeyRow(
                id=key_id,
                key_hash=keylib.hash_key(plaintext),
                role=api_role.value,
                label=label,
                parks=None if scope is None else canonical_json(scope),
                created_at=_now(),
                created_by=_check_actor(actor),
            )
            session.add(row)
            session.flush()
            self._append_audit(
                session,
                actor,
                "key.create",
                f"key/{key_id}",
                {
                    "id": key_id,
                    "role": api_role.value,
                    "label": label,
                    "parks": scope,
                    "row": row_ref(row),
                },
            )
            return ApiKeyCreated(**ApiKeyInfo.model_validate(row).model_dump(), key=plaintext)

    def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The active key matching `key` (its id is the audit actor), or None."""
        if not key:
            return None
        digest = keylib.hash_key(key)
        with self._read() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.key_hash, digest):
                return None
            return ApiKeyInfo.model_validate(row)

    def verify_key(self, key: str) -> ApiRole | None:
        """The role of an active key, or None (unknown, revoked or empty)."""
        info = self.authenticate(key)
        return None if info is None else info.role

    def get_key(self, key_id: str) -> ApiKeyInfo:
        with self._read() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"no API key {key_id!r}")
            return ApiKeyInfo.model_validate(row)

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
        """All keys without secrets, oldest first."""
        stmt = select(ApiKeyRow)
        if not include_revoked:
            stmt = stmt.where(ApiKeyRow.revoked_at.is_(None))
        stmt = stmt.order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        with self._read() as session:
            return [ApiKeyInfo.model_validate(r) for r in session.scalars(stmt)]

    def revoke_key(self, key_id: str, actor: str = SYSTEM_ACTOR) -> ApiKeyInfo:
        """Revoke a key; refuses to revoke the last active admin key (lock-out)."""
        with self._write() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"no API key {key_id!r}")
            if row.revoked_at is not None:
                raise AlreadyRevokedError(f"API key {key_id!r} is already revoked")
            if row.role == ApiRole.ADMIN.value:
                admins = session.scalar(
                    select(func.count())
                    .select_from(ApiKeyRow)
                    .where(ApiKeyRow.role == ApiRole.ADMIN.value, ApiKeyRow.revoked_at.is_(None))
                )
                if (admins or 0) <= 1:
                    raise LedgerError("refusing to revoke the last active admin key")
            row.revoked_at = _now()
            row.revoked_by = _check_actor(actor)
            session.flush()
            self._append_audit(
                session,
                actor,
                "key.revoke",
                f"key/{key_id}",
                {"id": key_id, "role": row.role, "row": row_ref(row)},
            )
            return ApiKeyInfo.model_validate(row)

    def bootstrap_admin(self, key: str) -> ApiKeyInfo:
        """Make `key` (LINGTAN_BOOTSTRAP_ADMIN_KEY) an admin key under id `bootstrap`.

        Idempotent: the same key again changes nothing. A different key replaces the old
        bootstrap secret (rotation through the environment). An explicitly revoked bootstrap
        key stays revoked while the environment still holds the same key.
        """
        if len(key) < keylib.MIN_BOOTSTRAP_LEN:
            raise ValueError(
                f"bootstrap admin key must be at least {keylib.MIN_BOOTSTRAP_LEN} characters"
            )
        digest = keylib.hash_key(key)
        key_id = keylib.BOOTSTRAP_KEY_ID
        with self._write() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is not None and row.key_hash == digest:
                return ApiKeyInfo.model_validate(row)
            clash = session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.key_hash == digest))
            if clash is not None:
                raise LedgerError(f"bootstrap key is already in use as API key {clash!r}")
            if row is None:
                row = ApiKeyRow(
                    id=key_id,
                    key_hash=digest,
                    role=ApiRole.ADMIN.value,
                    label="LINGTAN_BOOTSTRAP_ADMIN_KEY",
                    created_at=_now(),
                    created_by=SYSTEM_ACTOR,
                )
                session.add(row)
                action = "key.bootstrap"
            else:
                row.key_hash = digest
                row.role = ApiRole.ADMIN.value
                row.revoked_at = None
                row.revoked_by = None
                action = "key.bootstrap_rotate"
            session.flush()
            self._append_audit(
                session,
                SYSTEM_ACTOR,
                action,
                f"key/{key_id}",
                {"id": key_id, "role": "admin", "row": row_ref(row)},
            )
            return ApiKeyInfo.model_validate(row)

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
        if not _DOC_KIND_RE.fullmatch(kind):
            raise ValueError(f"invalid document kind {kind!r}")
        if not _DOC_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid document name {name!r}")
        text_body = canonical_json(dict(body))
        with self._write() as session:
            current = session.scalar(
                select(func.max(DocumentRow.version)).where(
                    DocumentRow.kind == kind, DocumentRow.name == name
                )
            )
            current_version = current or 0
            if expected_version is not None and expected_version != current_version:
                raise VersionConflictError(
                    f"{kind} {name!r} is at version {current_version}, not {expected_version}"
                )
            row = DocumentRow(
                kind=kind,
                name=name,
                version=current_version + 1,
                body=text_body,
                created_at=_now(),
                created_by=_check_actor(actor),
                comment=comment[:500],
            )
            session.add(row)
            session.flush()
            self._append_audit(
                session,
                actor,
                f"{kind}.put",
                f"{kind}/{name}",
                {
                    "kind": kind,
                    "name": name,
                    "version": row.version,
                    "body_sha256": hashlib.sha256(text_body.encode("utf-8")).hexdigest(),
                    "comment": row.comment,
                    **(details or {}),
                    "row": row_ref(row),
                },
            )
            return _doc(row)

    def get_document(
        self, kind: str, name: str, version: int | None = None
    ) -> DocumentVersion | None:
        """The latest (or given) version, or None."""
        stmt = select(DocumentRow).where(DocumentRow.kind == kind, DocumentRow.name == name)
        if version is None:
            stmt = stmt.order_by(DocumentRow.version.desc()).limit(1)
        else:
            stmt = stmt.where(DocumentRow.version == version)
        with self._read() as session:
            row = session.scalar(stmt)
            return None if row is None else _doc(row)

    def latest_document_version(self, kind: str, name: str) -> int:
        """The newest version number (0 when none): one cheap query, for polling."""
        stmt = select(func.max(DocumentRow.version)).where(
            DocumentRow.kind == kind, DocumentRow.name == name
        )
        with self._read() as session:
            return session.scalar(stmt) or 0

    def list_document_names(self, kind: str) -> list[str]:
        """Names of every stored document of `kind`, sorted."""
        stmt = select(DocumentRow.name).where(DocumentRow.kind == kind).distinct()
        with self._read() as session:
            return sorted(session.scalars(stmt))

    def list_document_versions(self, kind: str, name: str) -> list[DocumentVersion]:
        stmt = (
            select(DocumentRow)
            .where(DocumentRow.kind == kind, DocumentRow.name == name)
            .order_by(DocumentRow.version)
        )
        with self._read() as session:
            return [_doc(r) for r in session.scalars(stmt)]

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
        with self._write() as session:
            return _entry(self._append_audit(session, actor, action, obj, details or {}))

    def list_audit(
        self, *, after_seq: int = 0, limit: int = 1000, parks: Iterable[str] | None = None
    ) -> list[AuditEntry]:
        """Entries with seq > after_seq, oldest first (page with the last seq seen).

        `parks` (None = all): only entries about those parks' ledgers (object
        `park/<id>/...`), for keys scoped to parks."""
        stmt = select(AuditRow).where(AuditRow.seq > after_seq)
        if parks is not None:
            stmt = stmt.where(
                or_(
                    false(),
                    *(AuditRow.object.startswith(f"park/{p}/", autoescape=True) for p in parks),
                )
            )
        stmt = stmt.order_by(AuditRow.seq).limit(max(1, min(limit, 10_000)))
        with self._read() as session:
            return [_entry(r) for r in session.scalars(stmt)]

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, (0, GENESIS_HASH) when empty. Record it outside
        the database (report, log, ticket) and pass it to verify_audit later to detect a
        truncated or wholly rewritten chain."""
        with self._read() as session:
            tail = session.execute(
                select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
            ).first()
            return (tail[0], tail[1]) if tail else (0, GENESIS_HASH)

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
        stmt = select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
        refs: RowRefs = {}
        with self._read() as session:

            def entries() -> Iterator[StoredEntry]:
                for r in session.scalars(stmt):
                    collect_row_ref(refs, r.seq, r.details)
                    yield StoredEntry(
                        seq=r.seq,
                        ts=r.ts,
                        actor=r.actor,
                        action=r.action,
                        object=r.object,
                        details=r.details,
                        prev_hash=r.prev_hash,
                        hash=r.hash,
                    )

            problems = verify_chain(entries(), anchor, anchors=anchors)
            return problems + compare_rows(refs, self._row_digests(session))

    def adopt_unaudited_rows(self, actor: str = SYSTEM_ACTOR, reason: str = "") -> list[str]:
        """Record, in one audit entry each (`row.adopt`), the content hash of every ledger
        row that has no audit entry at all: the one-time step for a database written before
        rows were hashed (docs/security.md). Rows whose content differs from their entry are
        never adopted (that is an edit to investigate). Returns `table/id` of each."""
        _check_actor(actor)
        adopted: list[str] = []
        with self._write() as session:
            refs: RowRefs = {}
            for seq, text in session.execute(select(AuditRow.seq, AuditRow.details)):
                collect_row_ref(refs, seq, text)
            for model in LEDGER_TABLES:
                for row in session.scalars(select(model)):
                    rid = row_id(row)
                    if (model.__tablename__, rid) in refs:
                        continue
                    park = getattr(row, "park", None)
                    obj = (
                        f"park/{park}/{model.__tablename__}/{rid}"
                        if park
                        else f"{model.__tablename__}/{rid}"
                    )
                    details: dict[str, Any] = {"reason": reason, "row": row_ref(row)}
                    if park:
                        details["park"] = park
                    self._append_audit(session, actor, "row.adopt", obj, details)
                    adopted.append(f"{model.__tablename__}/{rid}")
        return adopted

    @staticmethod
    def _row_digests(session: Session) -> Iterator[tuple[str, str, str, str | None]]:
        """(table, row id, content hash, park) of every row of every ledger table."""
        for model in LEDGER_TABLES:
            stmt = select(model).execution_options(yield_per=1000)
            for row in session.scalars(stmt):
                park = getattr(row, "park", None)
                yield model.__tablename__, row_id(row), row_digest(row), park


def _doc(row: DocumentRow) -> DocumentVersion:
    return DocumentVersion(
        kind=row.kind,
        name=row.name,
        version=row.version,
        body=json.loads(row.body),
        created_at=row.created_at,
        created_by=row.created_by,
        comment=row.comment,
    )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        object=row.object,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
