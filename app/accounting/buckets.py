"""Report buckets (15m, 1h, 1d, 1mo) aligned to the park's local time zone, DST-correct."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Every = Literal["15m", "1h", "1d", "1mo"]
EVERY_VALUES: tuple[str, ...] = get_args(Every)

_QUARTER = timedelta(minutes=15)


def _check(start: datetime, end: datetime, every: str) -> None:
    if every not in EVERY_VALUES:
        raise ValueError(f"every must be one of {', '.join(EVERY_VALUES)}, not {every!r}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be time-zone aware")
    if start >= end:
        raise ValueError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # A midnight that does not exist (DST jump at 00:00) resolves through zoneinfo's fold=0
    # rule to the first instant of the local day after the jump, which is what we want.
    local = datetime.combine(day, time(0), tzinfo=tz)
    return local.astimezone(UTC)


def _calendar_edges(start: datetime, end: datetime, every: str, tz: ZoneInfo) -> list[datetime]:
    # All comparisons in UTC: aware datetimes sharing one tzinfo compare by wall clock and
    # ignore `fold`, which is wrong around DST.
    day = start.astimezone(tz).date()
    if every == "1mo":
        day = day.replace(day=1)
    edges: list[datetime] = []
    while True:
        edge = _local_midnight(day, tz)
        edges.append(edge)
        if edge >= end:
            return edges
        if every == "1d":
            day = day + timedelta(days=1)
        else:
            day = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _clock_edges(start: datetime, end: datetime, every: str, tz: ZoneInfo) -> list[datetime]:
    # Walk the UTC quarter-hour grid (every UTC offset in use is a multiple of 15 min) and keep
    # the instants whose *local* wall clock sits on a boundary. Fixed-length steps in UTC make a
    # repeated local hour (DST end) two distinct buckets and a skipped one none.
    s_utc = start.astimezone(UTC)
    t = s_utc.replace(minute=s_utc.minute - s_utc.minute % 15, second=0, microsecond=0)
    # start from the local boundary at or before `start` (a window may start mid-hour)
    while every != "15m" and t.astimezone(tz).minute != 0:
        t -= _QUARTER
    edges: list[datetime] = []
    while True:
        local = t.astimezone(tz)
        if every == "15m" or local.minute == 0:
            if t <= start:
                edges = [t]
            else:
                edges.append(t)
                if t >= end:
                    return edges
        t += _QUARTER


def bucket_edges(
    start: datetime, end: datetime, every: Every, tz: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Half-open buckets covering [start, end), aligned to `tz`'s wall clock.

    Buckets are local calendar units: a `1d` bucket spans one local day (23 or 25 h on DST
    days), `1mo` one local month; `15m`/`1h` follow the local clock (an hour repeated at DST
    end gives two buckets). The first and last buckets are clipped to [start, end), so a
    window starting at 10:00 gives a first daily bucket [10:00, next midnight). Returned
    datetimes are in `tz`.
    """
    _check(start, end, every)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if every in ("1d", "1mo"):
        edges = _calendar_edges(start, end, every, tz)
    else:
        edges = _clock_edges(start, end, every, tz)
    # Clip: the first edge is ≤ start and the last ≥ end by construction.
    out: list[tuple[datetime, datetime]] = []
    s_utc, e_utc = start.astimezone(UTC), end.astimezone(UTC)
    for lo, hi in pairwise(edges):
        lo_c = max(lo, s_utc)
        hi_c = min(hi, e_utc)
        if lo_c < hi_c:
            out.append((lo_c.astimezone(tz), hi_c.astimezone(tz)))
    return out


def to_ns(dt: datetime) -> int:
    """UTC epoch nanoseconds of an aware datetime (exact, no float rounding)."""
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def from_ns(ns: int, tz: ZoneInfo) -> datetime:
    """Aware datetime in `tz` for UTC epoch nanoseconds (truncated to microseconds)."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(tz)
