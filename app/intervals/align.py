"""Interval alignment: which local wall-clock interval of a park a UTC instant falls into.

Boundaries are the UTC instants whose local wall-clock time (with the UTC offset in force at
that instant) is a multiple of `park.interval_minutes` past the hour, plus every UTC-offset
change (DST switch). So intervals never straddle an offset change, a 15-min local day has
92 intervals on a spring-forward day and 100 on a fall-back day in Europe/Berlin, and odd
offsets work: in Asia/Kathmandu (+05:45) 60-min intervals start at hh:15 UTC.

All times are UTC epoch nanoseconds; intervals are half-open `[start_ns, end_ns)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from app.registry.models import Park

NS_PER_S = 1_000_000_000
_US = timedelta(microseconds=1)


def interval_ns(park: Park) -> int:
    """Nominal interval length of the park, ns."""
    return park.interval_minutes * 60 * NS_PER_S


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset_ns(tz: ZoneInfo, ts_ns: int) -> int:
    # tzdata transitions fall on whole seconds, so the offset at floor(ts/1s) is the offset at ts.
    off = datetime.fromtimestamp(ts_ns // NS_PER_S, tz).utcoffset()
    assert off is not None
    return (off // _US) * 1000


def _first_with_offset(tz: ZoneInfo, lo_ns: int, hi_ns: int) -> int:
    """Smallest instant in (lo_ns, hi_ns] whose offset equals the offset at hi_ns.

    Precondition: the offsets at lo_ns and hi_ns differ and there is one change between them.
    """
    target = _offset_ns(tz, hi_ns)
    lo, hi = lo_ns // NS_PER_S, hi_ns // NS_PER_S  # offset(lo) != target, offset(hi) == target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_ns(tz, mid * NS_PER_S) == target:
            hi = mid
        else:
            lo = mid
    return hi * NS_PER_S


@lru_cache(maxsize=65536)
def _resolve(zone: str, step_ns: int, offset_ns: int, cand_ns: int) -> tuple[int, int]:
    """Bounds of the interval whose naive candidate start is `cand_ns` under offset `offset_ns`.

    Assumes at most one offset change within one interval length (true for every real zone).
    """
    tz = _zone(zone)
    last = cand_ns + step_ns - 1
    if _offset_ns(tz, cand_ns) != offset_ns:  # changed inside (cand, ts]: starts at the change
        return _first_with_offset(tz, cand_ns, last), cand_ns + step_ns
    if _offset_ns(tz, last) != offset_ns:  # changes inside (ts, cand+step): ends at the change
        return cand_ns, _first_with_offset(tz, cand_ns, last)
    return cand_ns, cand_ns + step_ns


NS_PER_DAY = 86_400 * NS_PER_S


@lru_cache(maxsize=16384)
def _day_offset_ns(zone: str, day: int) -> int | None:
    """The UTC offset in force throughout UTC day `day` (days since the epoch), or None when
    it changes within that day.

    Asking the zone database costs a `datetime` per call (~1 µs); intervals ask per reading.
    Like `_resolve`, this assumes an offset changes at most once in a span this short (true
    for every real zone: at most twice a year), so equal offsets at both ends mean no change.
    """
    tz = _zone(zone)
    start = day * NS_PER_DAY
    first = _offset_ns(tz, start)
    return first if _offset_ns(tz, start + NS_PER_DAY - 1) == first else None


def interval_bounds(ts_ns: int, park: Park) -> tuple[int, int]:
    """`(start_ns, end_ns)` of the park's local-time interval containing `ts_ns`."""
    step = park.interval_minutes * 60 * NS_PER_S
    day = ts_ns // NS_PER_DAY
    off = _day_offset_ns(park.timezone, day)
    if off is not None:
        cand = ts_ns - (ts_ns + off) % step
        # the whole interval inside one UTC day of one offset: no change can split it
        if cand >= day * NS_PER_DAY and cand + step <= (day + 1) * NS_PER_DAY:
            return cand, cand + step
    else:
        off = _offset_ns(_zone(park.timezone), ts_ns)
    return _resolve(park.timezone, step, off, ts_ns - (ts_ns + off) % step)


def interval_start_ns(ts_ns: int, park: Park) -> int:
    """Start (UTC ns) of the park's local-time interval containing `ts_ns`."""
    return interval_bounds(ts_ns, park)[0]


def iter_interval_bounds(start_ns: int, end_ns: int, park: Park) -> Iterator[tuple[int, int]]:
    """All intervals overlapping `[start_ns, end_ns)`, in time order."""
    t = start_ns
    while t < end_ns:
        bounds = interval_bounds(t, park)
        yield bounds
        t = bounds[1]
