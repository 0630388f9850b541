"""Epoch-nanosecond time helpers: pure, importable from every layer (no HTTP, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def to_ns(dt: datetime) -> int:
    """UTC epoch nanoseconds of an aware datetime (exact)."""
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def ns_to_rfc3339(ns: int, tz: ZoneInfo | None = None) -> str:
    """RFC 3339 text of epoch nanoseconds (microsecond precision), in `tz` or UTC."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return dt.astimezone(tz or UTC).isoformat()
