"""Local-time interval alignment: Shanghai, Kathmandu (+05:45) and Berlin across DST."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from app.intervals import interval_bounds, interval_start_ns, iter_interval_bounds
from app.registry.models import Park

MIN_NS = 60 * 1_000_000_000


def ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) * 1_000_000_000


def test_shanghai_quarter_hours() -> None:
    park = Park(id="sh", timezone="Asia/Shanghai")
    # 08:07:30 local (+08:00) lies in 08:00-08:15 local = 00:00Z-00:15Z
    assert interval_bounds(ns("2026-11-23T08:07:30+08:00"), park) == (
        ns("2026-11-23T00:00:00+00:00"),
        ns("2026-11-23T00:15:00+00:00"),
    )
    # a boundary instant belongs to the interval it starts
    assert interval_start_ns(ns("2026-11-23T08:15:00+08:00"), park) == ns("2026-11-23T00:15Z")
    # one nanosecond earlier is still the previous interval
    assert interval_start_ns(ns("2026-11-23T08:15:00+08:00") - 1, park) == ns("2026-11-23T00:00Z")


def test_kathmandu_odd_offset() -> None:
    quarter = Park(id="np", timezone="Asia/Kathmandu")
    hourly = Park(id="np1", timezone="Asia/Kathmandu", interval_minutes=60)
    half = Park(id="np2", timezone="Asia/Kathmandu", interval_minutes=30)
    t = ns("2026-01-01T10:59:00+05:45")  # = 05:14Z
    # 15 min: local 10:45 = 05:00Z (345 min offset is a multiple of 15, so UTC-aligned too)
    assert interval_bounds(t, quarter) == (ns("2026-01-01T05:00Z"), ns("2026-01-01T05:15Z"))
    # 60 min: local 10:00-11:00 = 04:15Z-05:15Z, NOT the UTC hour
    assert interval_bounds(t, hourly) == (ns("2026-01-01T04:15Z"), ns("2026-01-01T05:15Z"))
    # 30 min: local 10:30-11:00 = 04:45Z-05:15Z
    assert interval_bounds(t, half) == (ns("2026-01-01T04:45Z"), ns("2026-01-01T05:15Z"))


def test_berlin_dst_days_have_92_and_100_quarter_hours() -> None:
    park = Park(id="de", timezone="Europe/Berlin")
    spring = list(
        iter_interval_bounds(ns("2026-03-29T00:00+01:00"), ns("2026-03-30T00:00+02:00"), park)
    )
    autumn = list(
        iter_interval_bounds(ns("2026-10-25T00:00+02:00"), ns("2026-10-26T00:00+01:00"), park)
    )
    normal = list(
        iter_interval_bounds(ns("2026-06-01T00:00+02:00"), ns("2026-06-02T00:00+02:00"), park)
    )
    assert (len(spring), len(autumn), len(normal)) == (92, 100, 96)  # 23 h, 25 h, 24 h x 4
    for bounds in (spring, autumn):
        assert all(e - s == 15 * MIN_NS for s, e in bounds)
        assert all(a[1] == b[0] for a, b in pairwise(bounds))


def test_berlin_repeated_hour_gives_distinct_intervals() -> None:
    park = Park(id="de", timezone="Europe/Berlin")
    # 02:05 local happens twice on 2026-10-25: 00:05Z (CEST) and 01:05Z (CET)
    first = interval_bounds(ns("2026-10-25T02:05+02:00"), park)
    second = interval_bounds(ns("2026-10-25T02:05+01:00"), park)
    assert first == (ns("2026-10-25T00:00Z"), ns("2026-10-25T00:15Z"))
    assert second == (ns("2026-10-25T01:00Z"), ns("2026-10-25T01:15Z"))
    # spring forward: 01:59 CET is followed directly by 03:00 CEST
    assert interval_bounds(ns("2026-03-29T01:50+01:00"), park) == (
        ns("2026-03-29T01:45+01:00"),
        ns("2026-03-29T03:00+02:00"),
    )


def test_lord_howe_half_hour_dst_never_straddles_a_change() -> None:
    park = Park(id="lh", timezone="Australia/Lord_Howe", interval_minutes=60)
    # 2026-10-04 02:00 local std (+10:30) jumps to 02:30 (+11:00): the hour 01:00-02:00 std,
    # then a 30-min interval 02:30-03:00 DST, then whole local hours again.
    got = list(
        iter_interval_bounds(ns("2026-10-04T01:00+10:30"), ns("2026-10-04T04:00+11:00"), park)
    )
    assert got == [
        (ns("2026-10-04T01:00+10:30"), ns("2026-10-04T02:00+10:30")),
        (ns("2026-10-04T02:30+11:00"), ns("2026-10-04T03:00+11:00")),
        (ns("2026-10-04T03:00+11:00"), ns("2026-10-04T04:00+11:00")),
    ]


def _uncached_bounds(ts_ns: int, park: Park) -> tuple[int, int]:
    """The alignment without the per-day offset cache: the zone database asked at `ts_ns`."""
    from app.intervals.align import _offset_ns, _resolve, _zone, interval_ns

    step = interval_ns(park)
    off = _offset_ns(_zone(park.timezone), ts_ns)
    return _resolve(park.timezone, step, off, ts_ns - (ts_ns + off) % step)


ZONES = ["Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns", "UTC"]


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    minutes=st.sampled_from([5, 15, 30, 60]),
    ts_s=st.integers(min_value=946_684_800, max_value=4_102_444_799),
)
def test_day_offset_cache_changes_no_bound(zone: str, minutes: int, ts_s: int) -> None:
    park = Park(id="p", timezone=zone, interval_minutes=minutes)
    ts_ns = ts_s * 1_000_000_000 + 123
    assert interval_bounds(ts_ns, park) == _uncached_bounds(ts_ns, park)


def test_day_offset_cache_on_every_switch_day() -> None:
    # every 7.5 min across the days a zone switches (and the days around them)
    days = {
        "Europe/Berlin": ["2026-03-28", "2026-03-29", "2026-10-25", "2026-10-26"],
        "Australia/Lord_Howe": ["2026-04-04", "2026-04-05", "2026-10-04"],
        "America/St_Johns": ["2026-03-08", "2026-11-01"],
    }
    for zone, dates in days.items():
        for minutes in (15, 60):
            park = Park(id="p", timezone=zone, interval_minutes=minutes)
            for date in dates:
                t0 = ns(f"{date}T00:00:00+00:00") - 86_400 * 1_000_000_000
                for k in range(3 * 192):
                    ts = t0 + k * 450 * 1_000_000_000
                    assert interval_bounds(ts, park) == _uncached_bounds(ts, park), (zone, ts)
