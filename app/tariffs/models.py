"""Tariff definitions: TOU periods by local time, day type and season, prices, revisions."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from functools import cached_property
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Period(StrEnum):
    """A time-of-use period of the import price (尖峰 / 高峰 / 平段 / 低谷)."""

    CRITICAL_PEAK = "critical_peak"
    PEAK = "peak"
    FLAT = "flat"
    VALLEY = "valley"


class DayType(StrEnum):
    WORKDAY = "workday"  # Monday–Friday, not in the tariff's holiday list
    WEEKEND = "weekend"  # Saturday, Sunday, not in the holiday list
    HOLIDAY = "holiday"  # a date of the tariff's holiday list


ALL_DAY_TYPES = (DayType.WORKDAY, DayType.WEEKEND, DayType.HOLIDAY)
ALL_MONTHS = tuple(range(1, 13))


def _minutes(text: str) -> int:
    """Minutes after local midnight of "HH:MM" ("24:00" = 1440)."""
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"time {text!r} must be HH:MM")
    value = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or value > 1440:
        raise ValueError(f"time {text!r} is not between 00:00 and 24:00")
    return value


class Band(BaseModel):
    """Local wall-clock span [start, end) of one period; end "24:00" is midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str  # "HH:MM", local wall clock
    end: str  # "HH:MM", after start ("24:00" allowed)
    period: Period

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(f"band {self.start}–{self.end}: start must be before end")
        return self


class Schedule(BaseModel):
    """Which period each minute of a local day is in, for some months and day types."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    months: tuple[int, ...] = ALL_MONTHS  # local calendar months (1–12) it applies to
    day_types: tuple[DayType, ...] = ALL_DAY_TYPES
    #: must cover 00:00–24:00 exactly once (sorted or not)
    bands: tuple[Band, ...]

    @field_validator("months")
    @classmethod
    def _months(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(m < 1 or m > 12 for m in value):
            raise ValueError("months must be a non-empty list of 1–12")
        return value

    @model_validator(mode="after")
    def _covers_day(self) -> Self:
        at = 0
        for band in sorted(self.bands, key=lambda b: _minutes(b.start)):
            if _minutes(band.start) != at:
                raise ValueError(
                    f"bands must cover 00:00–24:00 without gap or overlap (at {band.start})"
                )
            at = _minutes(band.end)
        if at != 1440:
            raise ValueError("bands must cover 00:00–24:00 without gap or overlap (end)")
        return self

    @cached_property
    def _spans(self) -> tuple[tuple[int, int, Period], ...]:
        return tuple((_minutes(b.start), _minutes(b.end), b.period) for b in self.bands)

    def period_at(self, minute: int) -> Period:
        """The period at `minute` after local midnight (0–1439)."""
        for lo, hi, period in self._spans:
            if lo <= minute < hi:
                return period
        raise AssertionError("bands cover the day")  # validated


class TariffRevision(BaseModel):
    """One revision of a tariff: applies from `valid_from` (local date) until the next one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    valid_from: date  # first local day it applies to
    source: str = Field(min_length=1, description="document, issuer and date it comes from")
    #: False until every figure was checked against the published document (docs/cost.md)
    confirmed: bool = False
    note: str = ""
    schedules: tuple[Schedule, ...]
    #: import energy price by period, CNY/kWh (every period a schedule uses needs a price)
    import_cny_per_kwh: dict[Period, float]
    #: credit for energy exported to the grid, CNY/kWh
    export_cny_per_kwh: float = Field(default=0.0, ge=0)
    #: direct green supply (绿电直连) contract price, CNY/kWh
    green_direct_cny_per_kwh: float = Field(default=0.0, ge=0)
    #: demand charge, CNY per kW of the month's maximum 15-min import demand
    demand_cny_per_kw_month: float = Field(default=0.0, ge=0)
    #: capacity charge instead: CNY per kVA-month times the contracted `capacity_kva`
    capacity_cny_per_kva_month: float = Field(default=0.0, ge=0)
    capacity_kva: float = Field(default=0.0, ge=0)
    #: natural gas, CNY/m³
    gas_cny_per_m3: float = Field(default=0.0, ge=0)
    #: other fuels by registry fuel name, CNY per unit of their counter (kg or l)
    fuel_cny_per_unit: dict[str, float] = Field(default_factory=dict)
    #: purchased heat, CNY/GJ
    heat_cny_per_gj: float = Field(default=0.0, ge=0)
    #: green certificates and green power trades applied to imports, CNY/MWh
    certificate_cny_per_mwh: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        used = {b.period for s in self.schedules for b in s.bands}
        missing = sorted(p.value for p in used if p not in self.import_cny_per_kwh)
        if missing:
            raise ValueError(f"no import price for period(s) {', '.join(missing)}")
        for month in ALL_MONTHS:
            for dt in ALL_DAY_TYPES:
                if not any(month in s.months and dt in s.day_types for s in self.schedules):
                    raise ValueError(f"no schedule for month {month}, {dt.value}")
        if any(p < 0 for p in self.import_cny_per_kwh.values()):
            raise ValueError("import prices must not be negative")
        return self

    def schedule_for(self, day: date, holiday: bool) -> Schedule:
        if holiday:
            kind = DayType.HOLIDAY
        else:
            kind = DayType.WEEKEND if day.weekday() >= 5 else DayType.WORKDAY
        for s in self.schedules:  # validated: one always matches
            if day.month in s.months and kind in s.day_types:
                return s
        raise AssertionError("a schedule matches every month and day type")


class Tariff(BaseModel):
    """A park's tariff: revisions in date order, and the dates that count as holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    holidays: tuple[date, ...] = ()
    revisions: tuple[TariffRevision, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        days = [r.valid_from for r in self.revisions]
        if days != sorted(set(days)):
            raise ValueError("revisions must have distinct valid_from dates in increasing order")
        return self

    def revision_on(self, day: date) -> TariffRevision | None:
        """The revision in force on local `day` (None before the first one)."""
        found: TariffRevision | None = None
        for r in self.revisions:
            if r.valid_from <= day:
                found = r
        return found

    def day_schedule(self, day: date) -> tuple[TariffRevision, Schedule] | None:
        """The revision and schedule of local `day` (None before the first revision)."""
        rev = self.revision_on(day)
        if rev is None:
            return None
        return rev, rev.schedule_for(day, day in self.holidays)

    def price_at(self, local: datetime) -> tuple[TariffRevision, Period, float] | None:
        """Revision, period and import price (CNY/kWh) at a local wall-clock instant."""
        found = self.day_schedule(local.date())
        if found is None:
            return None
        rev, sched = found
        period = sched.period_at(local.hour * 60 + local.minute)
        return rev, period, rev.import_cny_per_kwh[period]
