"""SQLAlchemy 2 typed ORM tables of the ledger store (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

from sqlalchemy import (
    Date,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Tz-aware datetimes stored as UTC; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: a time zone is required")
        utc = value.astimezone(UTC)
        # SQLite has no time zone type: store the UTC wall time, re-attach UTC on read.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class _Revocable:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    revoke_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class CertificateRow(_Revocable, Base):
    __tablename__ = "ledger_certificates"

    # Primary key on id alone: unique across parks, so one MWh cannot sit in two parks.
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    park: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    mwh: Mapped[float] = mapped_column(Double())
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(500), default="")


class OffsetRow(_Revocable, Base):
    __tablename__ = "ledger_offsets"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    park: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    tco2: Mapped[float] = mapped_column(Double())
    date: Mapped[dt.date] = mapped_column(Date())
    source: Mapped[str] = mapped_column(String(500), default="")


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 hex of the whole plaintext key; unique so verification is one indexed lookup.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    # Parks the key may act on: canonical JSON list of park ids, NULL = every park
    # (docs/security.md, tenants).
    parks: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(128), default=None)


class DocumentRow(Base):
    """Versioned JSON documents; every version is kept so past reports stay reproducible."""

    __tablename__ = "documents"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(Text)  # canonical JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(String(500), default="")


class AuditRow(Base):
    __tablename__ = "audit_log"
    # A second entry claiming the same predecessor would be a fork: refuse it structurally.
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_prev_hash"),
        Index("ix_audit_ts", "ts"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(300))
    # Canonical JSON text, not a JSON/JSONB column: JSONB reorders keys and would make
    # the stored form differ from what was hashed.
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class CorrectionRow(_Revocable, Base):
    """A manual correction (journal entry over raw data); the data itself is never edited."""

    __tablename__ = "ledger_corrections"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Creation order, which is the order corrections apply in (unique, assigned under the
    # write lock as max + 1).
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    park: Mapped[str] = mapped_column(String(64), index=True)
    device: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[str] = mapped_column(String(32))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[float] = mapped_column(Double())
    reason: Mapped[str] = mapped_column(String(500))


#: The ledger tables `lingtan audit verify` checks row by row against the audit log, with the
#: columns each may change after insert (revocation); every other column is immutable.
LEDGER_TABLES: tuple[type[Base], ...] = (
    CertificateRow,
    OffsetRow,
    CorrectionRow,
    ApiKeyRow,
    DocumentRow,
)
