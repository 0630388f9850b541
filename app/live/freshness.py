"""Freshness by a device's own reporting cadence: cadence learned per quantity, stale limits."""

from __future__ import annotations

from typing import NamedTuple

_NS_PER_S = 1_000_000_000

#: gaps between a quantity's timestamps that its cadence is learned from (the latest ones)
CADENCE_GAPS = 5
#: a value is stale once this many reports in a row are overdue
STALE_CADENCES = 3
#: never stale sooner than this, however fast a device reports (collector batching, jitter)
MIN_STALE_NS = 60 * _NS_PER_S


class QuantitySeen(NamedTuple):
    """When one quantity of one device was last reported, and its learned cadence.

    `cadence_ns` is the median (the lower middle of an even count) of the last
    `CADENCE_GAPS` gaps between distinct timestamps, None until the quantity was seen twice:
    one outage or one burst does not move it. A tuple: made for every reading, it must be
    cheap.
    """

    ts_ns: int
    gaps: tuple[int, ...] = ()
    cadence_ns: int | None = None

    def seen_at(self, ts_ns: int) -> QuantitySeen:
        """The state after a report at `ts_ns` (an older or equal timestamp changes nothing)."""
        if ts_ns <= self.ts_ns:
            return self
        gaps = (*self.gaps[1 - CADENCE_GAPS :], ts_ns - self.ts_ns)
        return QuantitySeen(ts_ns, gaps, sorted(gaps)[(len(gaps) - 1) // 2])


def stale_limit_ns(cadence_ns: int | None, default_ns: int) -> int:
    """How old a value may get before it is stale: `STALE_CADENCES` reports overdue (at least
    `MIN_STALE_NS`), or `default_ns` while the cadence is unknown."""
    if cadence_ns is None:
        return default_ns
    return max(MIN_STALE_NS, STALE_CADENCES * cadence_ns)


def fresh_until_ns(seen: QuantitySeen, default_ns: int) -> int:
    """The last instant at which `seen` still counts as fresh."""
    return seen.ts_ns + stale_limit_ns(seen.cadence_ns, default_ns)
