"""Pydantic request/response schemas of manual corrections (`/parks/{park}/corrections`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from app.accounting.buckets import to_ns
from app.corrections.models import Correction, CorrectionKind

#: Same id form as certificates and offsets.
CORRECTION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
#: Windows must lie in [2000-01-01, 2100-01-01) UTC, like ledger entries: 0001-01-01T01:00+03:04
#: is valid RFC 3339 but overflows in UTC (a 500, found by fuzzing the API).
WINDOW_FIRST = datetime(2000, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2100, 1, 1, tzinfo=UTC)
#: Largest |amount|, as for telemetry values: beyond it, two entries could sum to inf.
MAX_ABS_AMOUNT = 1e12


class CorrectionIn(BaseModel):
    """A manual correction as POSTed: a device's counter over a half-open aligned window."""

    # Unknown fields are refused so a typo is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=CORRECTION_ID_PATTERN, description="globally unique identifier")
    device: str = Field(min_length=1, max_length=64)
    quantity: str = Field(min_length=1, max_length=32, description="a counter, e.g. energy_kwh")
    start: AwareDatetime = Field(description="RFC 3339; an interval boundary; inclusive")
    end: AwareDatetime = Field(description="RFC 3339; an interval boundary; exclusive")
    kind: CorrectionKind = Field(description="set: replace the window's total; add: add to it")
    amount: float = Field(description="in the counter's unit (kWh, m³, GJ, ...), whole window")
    reason: str = Field(min_length=1, max_length=500, description="why (kept in the audit log)")

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if abs(value) > MAX_ABS_AMOUNT:
            raise ValueError(f"must be within ±{MAX_ABS_AMOUNT:g}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        # the date check first: comparing a year-1 time with a UTC one can itself overflow
        if not (
            WINDOW_FIRST.date() <= value.date() < WINDOW_END.date()
            and WINDOW_FIRST <= value < WINDOW_END
        ):
            raise ValueError(
                f"must be from {WINDOW_FIRST.date()} to before {WINDOW_END.date()} UTC"
            )
        return value

    @model_validator(mode="after")
    def _window(self) -> CorrectionIn:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if self.kind == "set" and self.amount < 0:
            raise ValueError("a set amount cannot be negative")
        return self


class CorrectionRecord(BaseModel):
    """A stored correction with its bookkeeping (who added/revoked it, when)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    park: str
    seq: int
    device: str
    quantity: str
    start: datetime
    end: datetime
    kind: CorrectionKind
    amount: float
    reason: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # Records always carry UTC, whether freshly written or read back.
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def to_correction(self) -> Correction:
        return Correction(
            id=self.id,
            park=self.park,
            device=self.device,
            quantity=self.quantity,
            start_ns=to_ns(self.start),
            end_ns=to_ns(self.end),
            kind=self.kind,
            amount=self.amount,
            seq=self.seq,
        )


class CorrectionList(BaseModel):
    items: list[CorrectionRecord]
