"""Pydantic request/response schemas of the ledgers, API keys, documents and audit log."""

from __future__ import annotations

import datetime as dt
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from app.accounting.ledger_types import Certificate, Offset
from app.ledgers.roles import ApiRole
from app.registry.models import ID_PATTERN

#: Ledger entry ids (certificate serials, trade contract ids, CCER serials).
ENTRY_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
#: Offset kinds are open-ended (ccer, sink, vcs, ...) but kept to a safe token.
OFFSET_KIND_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"

CertificateKind = Literal["gec", "trade"]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


#: Ledger times and dates must fall in [LEDGER_FIRST, LEDGER_END): far-off years are typos, and
#: a date near year 1 or 9999 is not representable at every park's local midnight.
LEDGER_FIRST = dt.date(2000, 1, 1)
LEDGER_END = dt.date(2100, 1, 1)
#: Largest MWh or tCO2 of one ledger entry (a park emits ~10^5 t a year).
MAX_AMOUNT = 1e9


class _In(BaseModel):
    # Unknown fields are refused so a typo ("valid_form") is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CertificateIn(_In):
    """A GEC batch (1 certificate = 1 MWh) or green-power trade, as POSTed (docs/api.md §4)."""

    id: str = Field(pattern=ENTRY_ID_PATTERN, description="globally unique identifier")
    kind: CertificateKind
    # capped: two near-float-max entries summed to inf and broke every report (fuzzing)
    mwh: float = Field(gt=0, le=MAX_AMOUNT, description="volume in MWh")
    valid_from: AwareDatetime = Field(description="RFC 3339 with offset; inclusive")
    valid_to: AwareDatetime = Field(description="RFC 3339 with offset; exclusive")
    source: str = Field(default="", max_length=500)

    _mwh_finite = field_validator("mwh")(_finite)

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        # 0001-01-01T00:00:00+14:00 is valid RFC 3339 but overflows in UTC (a 500, found by
        # fuzzing); and a year-2 certificate would make the balance replay two millennia
        if not LEDGER_FIRST <= value.date() < LEDGER_END or not (
            datetime.combine(LEDGER_FIRST, dt.time(), UTC)
            <= value
            < datetime.combine(LEDGER_END, dt.time(), UTC)
        ):
            raise ValueError(f"must be from {LEDGER_FIRST} to before {LEDGER_END} (UTC)")
        return value

    @model_validator(mode="after")
    def _period(self) -> CertificateIn:
        if self.valid_from >= self.valid_to:
            raise ValueError("valid_from must be before valid_to")
        return self


class OffsetIn(_In):
    """A carbon offset (CCER, sink, ...) in tonnes CO2, as POSTed (docs/api.md §4)."""

    id: str = Field(pattern=ENTRY_ID_PATTERN, description="globally unique identifier")
    kind: str = Field(pattern=OFFSET_KIND_PATTERN, description="e.g. ccer, sink")
    tco2: float = Field(gt=0, le=MAX_AMOUNT, description="tonnes CO2 offset")
    date: dt.date = Field(description="day the offset counts on (park local)")
    source: str = Field(default="", max_length=500)

    @field_validator("date")
    @classmethod
    def _plausible_date(cls, value: dt.date) -> dt.date:
        # 0001-01-01 at a park east of UTC has no UTC midnight: the balance raised (found by
        # fuzzing the API), and every later balance of the park was a 500
        if not LEDGER_FIRST <= value < LEDGER_END:
            raise ValueError(f"must be from {LEDGER_FIRST} to before {LEDGER_END}")
        return value

    _tco2_finite = field_validator("tco2")(_finite)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # Records always carry UTC, whether freshly written or read back.
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value


class CertificateRecord(_Out):
    """A stored certificate/trade with its bookkeeping (who added/revoked it, when)."""

    id: str
    park: str
    kind: CertificateKind
    mwh: float
    valid_from: datetime
    valid_to: datetime
    source: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_certificate(self) -> Certificate:
        return Certificate(
            id=self.id,
            park=self.park,
            kind=self.kind,
            mwh=self.mwh,
            valid_from=self.valid_from.astimezone(UTC),
            valid_to=self.valid_to.astimezone(UTC),
            source=self.source,
        )


class OffsetRecord(_Out):
    """A stored offset with its bookkeeping."""

    id: str
    park: str
    kind: str
    tco2: float
    date: dt.date
    source: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_offset(self) -> Offset:
        return Offset(
            id=self.id,
            park=self.park,
            kind=self.kind,
            tco2=self.tco2,
            date=self.date,
            source=self.source,
        )


class CertificateList(BaseModel):
    items: list[CertificateRecord]


class OffsetList(BaseModel):
    items: list[OffsetRecord]


class RevokeIn(_In):
    """Body of a revoke request: why, kept in the record and its audit entry."""

    reason: str = Field(
        min_length=1, max_length=500, description="why the entry no longer applies (required)"
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required (not only spaces)")
        return value.strip()


#: Park ids in a key's scope: the registry's id form.
ParkId = Annotated[str, Field(pattern=ID_PATTERN)]


class ApiKeyCreate(_In):
    """Request to create an API key."""

    role: ApiRole
    label: str = Field(default="", max_length=200, description="who/what the key is for")
    parks: list[ParkId] | Literal["all"] = Field(
        default="all",
        description='the parks the key may act on: a list of park ids, or "all" (default); '
        "admin keys are always all",
    )

    @field_validator("parks")
    @classmethod
    def _some_parks(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not 1 <= len(value) <= 1000:
            raise ValueError('give from 1 to 1000 park ids, or "all"')
        return value

    @property
    def park_scope(self) -> list[str] | None:
        """The scope as the store takes it: None = every park."""
        return None if self.parks == "all" else list(self.parks)


class ApiKeyInfo(_Out):
    """An API key without its secret (what list/get return)."""

    id: str
    role: ApiRole
    label: str
    #: park ids the key may act on, or "all"
    parks: list[str] | Literal["all"] = "all"
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @field_validator("parks", mode="before")
    @classmethod
    def _stored_scope(cls, value: Any) -> Any:
        # stored as canonical JSON text, NULL = every park
        if value is None:
            return "all"
        if isinstance(value, str) and value.startswith("["):
            return json.loads(value)
        return value

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def park_scope(self) -> frozenset[str] | None:
        """None = every park."""
        return None if self.parks == "all" else frozenset(self.parks)


class ApiKeyCreated(ApiKeyInfo):
    """A freshly created key: `key` is the plaintext, shown this once and never stored."""

    key: str


class ApiKeyList(BaseModel):
    items: list[ApiKeyInfo]


class DocumentVersion(_Out):
    """One version of a stored JSON document (factor-set override, registry edit)."""

    kind: str
    name: str
    version: int
    body: dict[str, Any]
    created_at: datetime
    created_by: str
    comment: str


class AuditEntry(_Out):
    """One entry of the tamper-evident audit log."""

    seq: int
    ts: datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    items: list[AuditEntry]


class AuditProblem(BaseModel):
    """One thing `verify_audit` found wrong, located by sequence number."""

    model_config = ConfigDict(frozen=True)

    seq: int
    kind: Literal[
        "edited",
        "missing",
        "chain_broken",
        "bad_genesis",
        "unreadable",
        "head_mismatch",
        "row_unaudited",
        "row_mismatch",
        "row_deleted",
        "checkpoint_invalid",
    ]
    message: str
    #: ledger table and row id, for the row_* kinds
    table: str | None = None
    row: str | None = None
    #: the row's park where it has one (keys scoped to parks see only their parks' rows)
    park: str | None = None
