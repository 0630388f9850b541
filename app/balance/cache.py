"""Per-park, per-local-day cache of `IntervalTotals`, valid while the day's inputs are unchanged."""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from app.accounting import IntervalTotals, interval_totals
from app.balance.loader import aggregated_totals, series_match_registry
from app.balance.rollup import (
    TOTALS,
    decode_day,
    encode_day,
    park_fingerprint,
    split_by_day,
    totals_stamp,
    usable,
)
from app.corrections import Correction, apply_corrections
from app.registry.models import Park
from app.storage.base import NS_PER_DAY, DayRollup, Storage, StorageError
from app.timeutil import to_ns

log = logging.getLogger(__name__)


def day_start_ns(day: date, park: Park) -> int:
    """UTC ns of the local midnight starting `day` (a skipped midnight resolves forward)."""
    return to_ns(datetime.combine(day, dtime(0), tzinfo=park.tz).astimezone(UTC))


def local_day(ns: int, park: Park) -> date:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return dt.astimezone(park.tz).date()


def day_runs(days: Iterable[int], max_len: int | None = None) -> list[list[int]]:
    """`days` sorted into runs of consecutive days, each at most `max_len` long."""
    runs: list[list[int]] = []
    for k in sorted(days):
        if runs and runs[-1][-1] == k - 1 and (max_len is None or len(runs[-1]) < max_len):
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


@dataclass(frozen=True, slots=True)
class StoredInputs:
    """What a park's interval totals are computed from, as read at the start of a request.

    `changes` are the store's change markers (UTC day → token of its last interval write,
    docs/storage.md "Change markers"); `corrections` the park's active manual corrections.
    Two reads of the same day with equal `day_key`s saw the same stored data.
    """

    changes: Mapping[int, int]
    corrections: tuple[Correction, ...]

    def day_key(self, start_ns: int, end_ns: int) -> Hashable:
        """Identity of what the local day [start_ns, end_ns) is computed from."""
        tokens = tuple(
            self.changes.get(k)
            for k in range(start_ns // NS_PER_DAY, (end_ns - 1) // NS_PER_DAY + 1)
        )
        corrections = tuple(
            c for c in self.corrections if c.start_ns < end_ns and start_ns < c.end_ns
        )
        return tokens, corrections


@dataclass(slots=True)
class _Day:
    totals: list[IntervalTotals]
    key: Hashable
    park: Park


class IntervalCache:
    """`IntervalTotals` of each park's local days, loaded from storage on first use.

    Totals are factor-free, so one cached day serves every factor set, bucket size and
    certificate set. A cached day is served only while its `StoredInputs.day_key` (the
    store's change markers of its UTC days and the corrections overlapping it) and the park's
    registry entry are the ones it was loaded with, so every write of intervals, by any
    process, is seen by the next request. Least recently used days are dropped beyond
    `max_days` park-days.

    Below this per-process cache sit the store's day rollups (docs/storage.md, "Day
    rollups"), shared by every process: a missing day is read from its UTC days' rollups
    where they are usable, and otherwise from the interval rows, after which the rollups of
    the UTC days read whole are written back (`write_rollups`) for the next process.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        max_days: int = 50_000,
        max_query_days: int = 31,
        aggregate: bool = True,
        clock: Callable[[], int] = time.time_ns,
        rollups: bool = True,
        write_rollups: bool = True,
    ) -> None:
        self.storage = storage
        #: read days through the store's day rollups; write back the ones computed here
        self.rollups = rollups
        self.write_rollups = write_rollups
        #: sum summable roles inside the store when the stored series match the registry
        self.aggregate = aggregate
        self.max_days = max_days
        self.max_query_days = max(1, max_query_days)
        #: "now" for the balance service (tests pin it)
        self.clock = clock
        self._days: OrderedDict[tuple[str, date], _Day] = OrderedDict()
        self._series_ok: dict[str, tuple[Park, Mapping[int, int], bool]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.loads = 0  # storage queries made (for metrics and tests)
        self.hits = 0
        self.misses = 0
        self.rollup_hits = 0  # UTC days served from a stored rollup
        self.rollup_writes = 0  # UTC days whose rollup this process wrote back
        self._fingerprints: dict[str, tuple[Park, str]] = {}

    async def inputs(self, park: str, corrections: tuple[Correction, ...]) -> StoredInputs:
        """The park's change markers read now, with `corrections`: read them before any data
        of the same request, so data read afterwards is at least as new as they are."""
        return StoredInputs(await self.storage.interval_changes(park), corrections)

    async def totals(
        self, park: Park, start_ns: int, end_ns: int, inputs: StoredInputs
    ) -> list[IntervalTotals]:
        """Interval totals of `park` whose start is in [start_ns, end_ns), time-ordered."""
        if start_ns >= end_ns:
            return []
        first, last = local_day(start_ns, park), local_day(end_ns - 1, park)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        lock = self._locks.setdefault(park.id, asyncio.Lock())
        async with lock:
            missing = []
            for d in days:
                entry = self._days.get((park.id, d))
                if entry is not None and self._valid(entry, park, d, inputs):
                    self._days.move_to_end((park.id, d))
                    self.hits += 1
                else:
                    missing.append(d)
                    self.misses += 1
            run: list[date] = []
            for d in missing:
                if run and ((d - run[-1]).days != 1 or len(run) >= self.max_query_days):
                    await self._load(park, run, inputs)
                    run = []
                run.append(d)
            if run:
                await self._load(park, run, inputs)
            out: list[IntervalTotals] = []
            for d in days:
                entry = self._days.get((park.id, d))
                if entry is None:  # evicted while loading a huge range: load it alone
                    await self._load(park, [d], inputs)
                    entry = self._days[(park.id, d)]
                out.extend(t for t in entry.totals if start_ns <= t.start_ns < end_ns)
            return out

    @staticmethod
    def _valid(entry: _Day, park: Park, day: date, inputs: StoredInputs) -> bool:
        if entry.park is not park and entry.park != park:
            return False
        d0 = day_start_ns(day, park)
        return entry.key == inputs.day_key(d0, day_start_ns(day + timedelta(days=1), park))

    async def read_range(
        self, park: Park, start_ns: int, end_ns: int, inputs: StoredInputs
    ) -> list[IntervalTotals]:
        """Totals of [start_ns, end_ns) from the interval rows (no rollups, no cache)."""
        corrections = [c for c in inputs.corrections if c.start_ns < end_ns and start_ns < c.end_ns]
        if corrections:
            # Corrections apply per device row, so this range is read row by row (not summed
            # by the store); stored rows are not modified, only the loaded copies.
            rows = apply_corrections(
                await self.storage.intervals(park.id, start_ns, end_ns), corrections, park
            )
            return interval_totals((r for r in rows if start_ns <= r.start_ns < end_ns), park)
        if self.aggregate and await self._series_match(park, inputs):
            return await aggregated_totals(self.storage, park, start_ns, end_ns)
        return interval_totals(await self.storage.intervals(park.id, start_ns, end_ns), park)

    async def _series_match(self, park: Park, inputs: StoredInputs) -> bool:
        # A new (device, role) series only ever comes with a write, which moves a marker:
        # the answer holds while the markers and the registry entry are the same.
        hit = self._series_ok.get(park.id)
        if hit is not None and (hit[0] is park or hit[0] == park) and hit[1] == inputs.changes:
            return hit[2]
        ok = await series_match_registry(self.storage, park)
        self._series_ok[park.id] = (park, inputs.changes, ok)
        return ok

    def fingerprint(self, park: Park) -> str:
        """`park_fingerprint`, computed once per registry entry."""
        hit = self._fingerprints.get(park.id)
        if hit is None or not (hit[0] is park or hit[0] == park):
            hit = self._fingerprints[park.id] = (park, park_fingerprint(park))
        return hit[1]

    async def _read_through_rollups(
        self, park: Park, start_ns: int, end_ns: int, inputs: StoredInputs
    ) -> list[IntervalTotals]:
        """Totals of [start_ns, end_ns) from the usable day rollups of its UTC days, the
        others read from the rows by runs of whole UTC days (and their rollups written back)."""
        k0, k1 = start_ns // NS_PER_DAY, (end_ns - 1) // NS_PER_DAY
        fp = self.fingerprint(park)
        stored = await self.storage.day_rollups(park.id, TOTALS, k0, k1)
        by_day: dict[int, list[IntervalTotals]] = {}
        missing: list[int] = []
        for k in range(k0, k1 + 1):
            if usable(stored.get(k), inputs.changes.get(k), fp):
                by_day[k] = decode_day(stored[k].payload, k)
                self.rollup_hits += 1
            else:
                missing.append(k)
        fresh: list[DayRollup] = []
        for run in day_runs(missing):
            per_day, rollups = await self.read_days(park, run, inputs)
            by_day.update(per_day)
            fresh += rollups
        if fresh and self.write_rollups:
            try:
                await self.storage.put_day_rollups(park.id, TOTALS, fresh)
                self.rollup_writes += len(fresh)
            except StorageError as exc:  # only a cache: the answer stands without it
                log.warning("day rollups of park %s not stored: %s", park.id, exc)
        return [
            t
            for k in range(k0, k1 + 1)
            for t in by_day.get(k, ())
            if start_ns <= t.start_ns < end_ns
        ]

    async def read_days(
        self, park: Park, run: list[int], inputs: StoredInputs
    ) -> tuple[dict[int, list[IntervalTotals]], list[DayRollup]]:
        """The totals of the consecutive whole UTC days `run` read from the rows, and the
        day rollups that keep them (stamped with the markers in `inputs`, read first)."""
        fp = self.fingerprint(park)
        lo, hi = run[0] * NS_PER_DAY, (run[-1] + 1) * NS_PER_DAY
        read = split_by_day(await self.read_range(park, lo, hi, inputs))
        per_day = {k: read.get(k, []) for k in run}
        rollups = [
            DayRollup(k, totals_stamp(token, fp), encode_day(per_day[k], k))
            for k in run
            # a day never marked holds no data, or data older than markers: not kept
            if (token := inputs.changes.get(k)) is not None
        ]
        return per_day, rollups

    async def _load(self, park: Park, days: list[date], inputs: StoredInputs) -> None:
        edges = [day_start_ns(d, park) for d in days]
        edges.append(day_start_ns(days[-1] + timedelta(days=1), park))
        lo, hi = edges[0], edges[-1]
        corrected = any(c.start_ns < hi and lo < c.end_ns for c in inputs.corrections)
        if self.rollups and not corrected:
            totals = await self._read_through_rollups(park, lo, hi, inputs)
        else:
            # rollups hold uncorrected totals; corrections apply row by row
            totals = await self.read_range(park, lo, hi, inputs)
        self.loads += 1
        per_day: list[list[IntervalTotals]] = [[] for _ in days]
        for t in totals:
            k = bisect_right(edges, t.start_ns) - 1
            if 0 <= k < len(days):
                per_day[k].append(t)
        for i, d in enumerate(days):
            key = (park.id, d)
            self._days[key] = _Day(per_day[i], inputs.day_key(edges[i], edges[i + 1]), park)
            self._days.move_to_end(key)
        while len(self._days) > self.max_days:
            self._days.popitem(last=False)
