"""Local-time buckets: DST days in Europe/Berlin, Asia/Shanghai, clipping and bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from app.accounting.buckets import bucket_edges, to_ns

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR_NS = 3_600_000_000_000


def hours(b: tuple[datetime, datetime]) -> float:
    return (to_ns(b[1]) - to_ns(b[0])) / HOUR_NS


def test_berlin_spring_forward_day_has_23_hours() -> None:
    days = bucket_edges(
        datetime(2026, 3, 28, tzinfo=BERLIN), datetime(2026, 3, 31, tzinfo=BERLIN), "1d", BERLIN
    )
    assert [hours(d) for d in days] == [24.0, 23.0, 24.0]
    assert days[1][0] == datetime(2026, 3, 29, tzinfo=BERLIN)
    assert days[1][1] == datetime(2026, 3, 30, tzinfo=BERLIN)
    # 23 local hours and 92 quarter-hours on that day
    d0, d1 = days[1]
    assert len(bucket_edges(d0, d1, "1h", BERLIN)) == 23
    assert len(bucket_edges(d0, d1, "15m", BERLIN)) == 92


def test_berlin_fall_back_day_has_25_hours_and_two_2am_buckets() -> None:
    d0, d1 = datetime(2026, 10, 25, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN)
    days = bucket_edges(d0, d1, "1d", BERLIN)
    assert len(days) == 1 and hours(days[0]) == 25.0
    hrs = bucket_edges(d0, d1, "1h", BERLIN)
    assert len(hrs) == 25
    assert all(hours(h) == 1.0 for h in hrs)
    # 02:00 CEST (00:00 UTC) and 02:00 CET (01:00 UTC) are separate buckets
    assert hrs[2][0].astimezone(UTC) == datetime(2026, 10, 25, 0, tzinfo=UTC)
    assert hrs[3][0].astimezone(UTC) == datetime(2026, 10, 25, 1, tzinfo=UTC)
    assert hrs[2][0].hour == hrs[3][0].hour == 2
    assert len(bucket_edges(d0, d1, "15m", BERLIN)) == 100


def test_shanghai_days_and_months_are_local() -> None:
    start = datetime(2026, 1, 1, tzinfo=SHANGHAI)
    end = datetime(2027, 1, 1, tzinfo=SHANGHAI)
    days = bucket_edges(start, end, "1d", SHANGHAI)
    assert len(days) == 365 and all(hours(d) == 24.0 for d in days)
    # local midnight = 16:00 UTC the day before
    assert days[0][0].astimezone(UTC) == datetime(2025, 12, 31, 16, tzinfo=UTC)
    months = bucket_edges(start, end, "1mo", SHANGHAI)
    assert len(months) == 12
    assert [round(hours(m) / 24) for m in months] == [
        31,
        28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ]
    assert months[1][0] == datetime(2026, 2, 1, tzinfo=SHANGHAI)


def test_berlin_month_with_dst_is_one_hour_short() -> None:
    m = bucket_edges(
        datetime(2026, 3, 1, tzinfo=BERLIN), datetime(2026, 4, 1, tzinfo=BERLIN), "1mo", BERLIN
    )
    assert len(m) == 1 and hours(m[0]) == 31 * 24 - 1


def test_partial_buckets_are_clipped_to_the_window() -> None:
    start = datetime(2026, 6, 1, 10, 7, tzinfo=SHANGHAI)
    end = datetime(2026, 6, 3, 5, 0, tzinfo=SHANGHAI)
    days = bucket_edges(start, end, "1d", SHANGHAI)
    assert days == [
        (start, datetime(2026, 6, 2, tzinfo=SHANGHAI)),
        (datetime(2026, 6, 2, tzinfo=SHANGHAI), datetime(2026, 6, 3, tzinfo=SHANGHAI)),
        (datetime(2026, 6, 3, tzinfo=SHANGHAI), end),
    ]
    q = bucket_edges(start, datetime(2026, 6, 1, 10, 40, tzinfo=SHANGHAI), "15m", SHANGHAI)
    assert [(a.minute, b.minute) for a, b in q] == [(7, 15), (15, 30), (30, 40)]


def test_window_given_in_utc_is_aligned_to_local_time() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)  # 08:00 in Shanghai
    end = datetime(2026, 6, 2, tzinfo=UTC)
    days = bucket_edges(start, end, "1d", SHANGHAI)
    assert [(a.hour, b.hour) for a, b in days] == [(8, 0), (0, 8)]


def test_half_hour_zone_hours_follow_the_local_clock() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    hrs = bucket_edges(
        datetime(2026, 1, 1, tzinfo=kolkata), datetime(2026, 1, 1, 3, tzinfo=kolkata), "1h", kolkata
    )
    assert [a.hour for a, _ in hrs] == [0, 1, 2] and all(a.minute == 0 for a, _ in hrs)


def test_hourly_window_starting_inside_an_hour() -> None:
    # found by the balance interleaving property: 00:15-00:30 by hour had no bucket at all
    start = datetime(2026, 10, 24, 0, 15, tzinfo=BERLIN)
    end = datetime(2026, 10, 24, 0, 30, tzinfo=BERLIN)
    assert bucket_edges(start, end, "1h", BERLIN) == [(start, end)]
    later = datetime(2026, 10, 24, 1, 45, tzinfo=BERLIN)
    assert bucket_edges(start, later, "1h", BERLIN) == [
        (start, datetime(2026, 10, 24, 1, 0, tzinfo=BERLIN)),
        (datetime(2026, 10, 24, 1, 0, tzinfo=BERLIN), later),
    ]
    nepal = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: local hours start at :15 UTC
    s2 = datetime(2026, 6, 1, 10, 30, tzinfo=nepal)
    e2 = datetime(2026, 6, 1, 11, 30, tzinfo=nepal)
    assert bucket_edges(s2, e2, "1h", nepal) == [
        (s2, datetime(2026, 6, 1, 11, 0, tzinfo=nepal)),
        (datetime(2026, 6, 1, 11, 0, tzinfo=nepal), e2),
    ]


def test_bad_input() -> None:
    a = datetime(2026, 1, 1, tzinfo=SHANGHAI)
    with pytest.raises(ValueError, match="every"):
        bucket_edges(a, datetime(2026, 1, 2, tzinfo=SHANGHAI), "1w", SHANGHAI)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before"):
        bucket_edges(a, a, "1d", SHANGHAI)
    with pytest.raises(ValueError, match="before"):
        bucket_edges(datetime(2026, 1, 2, tzinfo=SHANGHAI), a, "1h", SHANGHAI)
    with pytest.raises(ValueError, match="aware"):
        bucket_edges(datetime(2026, 1, 1), datetime(2026, 1, 2), "1d", SHANGHAI)
