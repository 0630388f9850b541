"""Per-park, per-local-day cache of `IntervalTotals` loaded from storage, with invalidation."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from starlette.concurrency import run_in_threadpool

from app.accounting import IntervalTotals, interval_totals
from app.balance import embedded_loader
from app.balance.influx_loader import aggregated_totals, series_match_registry
from app.corrections import Correction, apply_corrections
from app.http.times import to_ns
from app.registry.models import Park
from app.storage.base import Storage
from app.storage.embedded import EmbeddedStorage
from app.storage.influx import InfluxStorage

_NS_PER_S = 1_000_000_000


def day_start_ns(day: date, park: Park) -> int:
    """UTC ns of the local midnight starting `day` (a skipped midnight resolves forward)."""
    return to_ns(datetime.combine(day, dtime(0), tzinfo=park.tz).astimezone(UTC))


def local_day(ns: int, park: Park) -> date:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return dt.astimezone(park.tz).date()


@dataclass(slots=True)
class _Day:
    totals: list[IntervalTotals]
    loaded_ns: int
    final: bool  # the day ended well before it was loaded; kept until invalidated


class IntervalCache:
    """`IntervalTotals` of each park's local days, loaded from storage on first use.

    Totals are factor-free, so one cached day serves every factor set, bucket size and
    certificate set. A day that had ended `settle_s` before it was loaded is kept until
    `invalidate` names it (the composition root calls that for every interval write, so late
    data recomputes only the days it touches); a more recent day (today) is reloaded after
    `recent_ttl_s`. Least recently used days are dropped beyond `max_days` park-days.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        recent_ttl_s: float = 30.0,
        settle_s: float = 2 * 3600.0,
        max_days: int = 50_000,
        max_query_days: int = 31,
        aggregate: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.storage = storage
        #: sum summable roles inside InfluxDB when the series match the registry
        self.aggregate = aggregate and isinstance(storage, InfluxStorage | EmbeddedStorage)
        self._series_ok: dict[str, tuple[int, bool]] = {}
        self.recent_ttl_ns = int(recent_ttl_s * _NS_PER_S)
        self.settle_ns = int(settle_s * _NS_PER_S)
        self.max_days = max_days
        self.max_query_days = max(1, max_query_days)
        self.clock = clock
        self._days: OrderedDict[tuple[str, date], _Day] = OrderedDict()
        self._bounds: dict[tuple[str, date], tuple[int, int]] = {}
        self._gen: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: loads a park's active corrections (blocking; run in a thread); None = no corrections
        self.corrections_for: Callable[[str], Sequence[Correction]] | None = None
        self.corrections_ttl_ns = int(recent_ttl_s * _NS_PER_S)
        self._corrections: dict[str, tuple[int, tuple[Correction, ...]]] = {}
        self.loads = 0  # storage queries made (for metrics and tests)
        self.hits = 0
        self.misses = 0

    def generation(self, park: str) -> int:
        """Changes whenever cached data of `park` is invalidated."""
        return self._gen.get(park, 0)

    def invalidate(self, park: str, start_ns: int | None = None, end_ns: int | None = None) -> int:
        """Forget cached days of `park` overlapping [start_ns, end_ns) (all when None).

        Returns how many days were dropped. Cheap; safe to call for every write batch.
        """
        self._gen[park] = self._gen.get(park, 0) + 1
        self._series_ok.pop(park, None)  # a new device/role may have been written
        drop = []
        for key in self._days:
            if key[0] != park:
                continue
            if start_ns is None or end_ns is None:
                drop.append(key)
                continue
            # An interval belongs to the day containing its start; compare with day bounds.
            lo, hi = self._bounds[key]
            if lo < end_ns and start_ns < hi:
                drop.append(key)
        for key in drop:
            del self._days[key]
            self._bounds.pop(key, None)
        return len(drop)

    async def _corrections_of(self, park: str) -> tuple[Correction, ...]:
        hit = self._corrections.get(park)
        if hit is not None:
            return hit[1]
        if self.corrections_for is None:
            return ()
        snap = tuple(await run_in_threadpool(self.corrections_for, park))
        self._corrections[park] = (self.clock(), snap)
        return snap

    async def refresh_corrections(self, park: str, *, force: bool = False) -> list[tuple[int, int]]:
        """Reload `park`'s corrections when older than the TTL (or `force`); returns the
        windows of the corrections added or revoked since the last load, whose days are stale.
        The caller invalidates them (with the balance chain); nothing is dropped here."""
        if self.corrections_for is None:
            return []
        now = self.clock()
        hit = self._corrections.get(park)
        if hit is not None and not force and now - hit[0] < self.corrections_ttl_ns:
            return []
        snap = tuple(await run_in_threadpool(self.corrections_for, park))
        self._corrections[park] = (now, snap)
        if hit is None:
            return []
        changed = set(hit[1]).symmetric_difference(snap)
        return sorted((c.start_ns, c.end_ns) for c in changed)

    def is_final(self, park: str, day: date) -> bool:
        """True when `day` is cached as settled (kept until invalidated)."""
        entry = self._days.get((park, day))
        return entry is not None and entry.final

    def _fresh(self, day: _Day, now: int) -> bool:
        return day.final or now - day.loaded_ns < self.recent_ttl_ns

    async def totals(self, park: Park, start_ns: int, end_ns: int) -> list[IntervalTotals]:
        """Interval totals of `park` whose start is in [start_ns, end_ns), time-ordered."""
        if start_ns >= end_ns:
            return []
        first, last = local_day(start_ns, park), local_day(end_ns - 1, park)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        lock = self._locks.setdefault(park.id, asyncio.Lock())
        async with lock:
            now = self.clock()
            missing = []
            for d in days:
                entry = self._days.get((park.id, d))
                if entry is not None and self._fresh(entry, now):
                    self._days.move_to_end((park.id, d))
                    self.hits += 1
                else:
                    missing.append(d)
                    self.misses += 1
            run: list[date] = []
            for d in missing:
                if run and ((d - run[-1]).days != 1 or len(run) >= self.max_query_days):
                    await self._load(park, run)
                    run = []
                run.append(d)
            if run:
                await self._load(park, run)
            out: list[IntervalTotals] = []
            for d in days:
                entry = self._days.get((park.id, d))
                if entry is None:  # evicted while loading a huge range: load it alone
                    await self._load(park, [d])
                    entry = self._days[(park.id, d)]
                out.extend(t for t in entry.totals if start_ns <= t.start_ns < end_ns)
            return out

    async def _read(self, park: Park, start_ns: int, end_ns: int) -> list[IntervalTotals]:
        storage = self.storage
        corrections = [
            c
            for c in await self._corrections_of(park.id)
            if c.start_ns < end_ns and start_ns < c.end_ns
        ]
        if corrections:
            # Corrections apply per device row, so this range is read row by row (not summed
            # inside the database); stored rows are not modified, only the loaded copies.
            rows = apply_corrections(
                await storage.intervals(park.id, start_ns, end_ns), corrections, park
            )
            return interval_totals((r for r in rows if start_ns <= r.start_ns < end_ns), park)
        if self.aggregate and isinstance(storage, InfluxStorage | EmbeddedStorage):
            now = time.monotonic_ns()
            hit = self._series_ok.get(park.id)
            if hit is None or now - hit[0] > 60 * _NS_PER_S:
                if isinstance(storage, InfluxStorage):
                    ok = await series_match_registry(storage, park)
                else:
                    ok = await embedded_loader.series_match_registry(storage, park)
                hit = (now, ok)
                self._series_ok[park.id] = hit
            if hit[1]:
                if isinstance(storage, InfluxStorage):
                    return await aggregated_totals(storage, park, start_ns, end_ns)
                return await embedded_loader.aggregated_totals(storage, park, start_ns, end_ns)
        return interval_totals(await self.storage.intervals(park.id, start_ns, end_ns), park)

    async def _load(self, park: Park, days: list[date]) -> None:
        gen = self._gen.get(park.id, 0)
        edges = [day_start_ns(d, park) for d in days]
        edges.append(day_start_ns(days[-1] + timedelta(days=1), park))
        totals = await self._read(park, edges[0], edges[-1])
        self.loads += 1
        now = self.clock()
        per_day: list[list[IntervalTotals]] = [[] for _ in days]
        for t in totals:
            k = bisect_right(edges, t.start_ns) - 1
            if 0 <= k < len(days):
                per_day[k].append(t)
        # Data invalidated while the query ran may be stale: serve it, don't keep it as final.
        intact = self._gen.get(park.id, 0) == gen
        for i, d in enumerate(days):
            key = (park.id, d)
            final = intact and edges[i + 1] <= now - self.settle_ns
            self._days[key] = _Day(per_day[i], now if intact else 0, final)
            self._bounds[key] = (edges[i], edges[i + 1])
            self._days.move_to_end(key)
        while len(self._days) > self.max_days:
            old, _ = self._days.popitem(last=False)
            self._bounds.pop(old, None)
