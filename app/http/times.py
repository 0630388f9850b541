"""RFC 3339 query parameters: parse aware datetimes, refuse naive ones with a clear 422."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException

# the pure helpers live low (app/timeutil.py); routes keep importing them from here
from app.timeutil import ns_to_rfc3339, to_ns

# A '+' in a query string decodes to a space when the client did not percent-encode it
# ("?start=2026-01-01T00:00:00+08:00"); accept that common mistake instead of a cryptic 422.
_SPACE_OFFSET = re.compile(r"^(.+T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")


#: Query times must fall in [TIME_FIRST, TIME_END): within what every store holds as
#: nanoseconds since 1970 in 64 bits (1677..2262), so a far-off year is a 422, not a 502 from
#: the store (`end=9999-12-31T23:59:59+14:00` was).
TIME_FIRST = datetime(1900, 1, 1, tzinfo=UTC)
TIME_END = datetime(2200, 1, 1, tzinfo=UTC)

__all__ = ["TIME_END", "TIME_FIRST", "ns_to_rfc3339", "parse_range", "parse_time", "to_ns"]


def parse_time(value: str, name: str) -> datetime:
    """An aware datetime from RFC 3339 text; HTTP 422 when unparsable or without an offset."""
    text = value.strip()
    m = _SPACE_OFFSET.match(text)
    if m:
        text = f"{m.group(1)}+{m.group(2)}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(
            422, f"{name}: {value!r} is not an RFC 3339 time (e.g. 2026-01-01T00:00:00+08:00)"
        ) from None
    if dt.tzinfo is None:
        raise HTTPException(
            422, f"{name}: {value!r} has no UTC offset; add one (Z or +08:00) — times are RFC 3339"
        )
    # the local date first: comparing a year-1 or year-9999 time with a UTC one can overflow
    if not (TIME_FIRST.date() <= dt.date() < TIME_END.date() and TIME_FIRST <= dt < TIME_END):
        raise HTTPException(
            422,
            f"{name}: {value!r} is outside the supported times, {TIME_FIRST.date()} to before "
            f"{TIME_END.date()} UTC",
        )
    return dt


def parse_range(
    start: str, end: str, *, max_span: timedelta | None = None
) -> tuple[datetime, datetime]:
    """Half-open [start, end): both aware, start < end, span within `max_span` (else 400)."""
    s, e = parse_time(start, "start"), parse_time(end, "end")
    if s >= e:
        raise HTTPException(422, f"start ({s.isoformat()}) must be before end ({e.isoformat()})")
    if max_span is not None and e - s > max_span:
        raise HTTPException(
            400, f"range too large: {e - s} exceeds the limit of {max_span.days} days"
        )
    return s, e
