"""Keeps a store's day rollups current: what `lingtan collect` runs beside ingest, and
`lingtan storage rollup` runs once (docs/storage.md, "Day rollups")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from app.balance.cache import IntervalCache, StoredInputs, day_runs
from app.balance.rollup import TOTALS, usable
from app.registry.models import Park
from app.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

#: UTC days read from the rows in one go (a month of a 1,000-meter park is ~3 M rows)
RUN_DAYS = 31

#: (park id, days done, days to do) after each run of days
Progress = Callable[[str, int, int], None]


class RollupBuilder:
    """Computes the rollups of days whose change marker moved since their rollup was written.

    Safe to run in any number of processes at once: a rollup is stamped with the marker read
    before its rows, so one computed from data that is not the latest never matches the
    marker readers see (docs/storage.md, "Day rollups").
    """

    def __init__(self, storage: Storage, parks: Callable[[], Sequence[Park]]) -> None:
        self.storage = storage
        self.parks = parks
        # the row path only: its own rollups are what this builds
        self._reader = IntervalCache(storage, rollups=False, write_rollups=False)
        #: per park, the markers seen at the previous refresh (a day is "settled" when its
        #: token has not moved since)
        self._seen: dict[str, dict[int, int]] = {}
        self.built = 0  # days built so far (for tests and metrics)

    async def stale_days(self, park: Park) -> tuple[StoredInputs, list[int]]:
        """The park's markers (read first) and the marked days without a usable rollup."""
        changes = await self.storage.interval_changes(park.id)
        if not changes:
            return StoredInputs(changes, ()), []
        stamps = await self.storage.day_rollups(
            park.id, TOTALS, min(changes), max(changes), payload=False
        )
        fp = self._reader.fingerprint(park)
        stale = [k for k, tok in sorted(changes.items()) if not usable(stamps.get(k), tok, fp)]
        return StoredInputs(changes, ()), stale

    async def build(
        self,
        park: Park,
        days: Sequence[int],
        inputs: StoredInputs,
        progress: Progress | None = None,
    ) -> int:
        """Compute and store the rollups of `days` (UTC days) of `park` under `inputs`."""
        done = 0
        for run in day_runs(days, RUN_DAYS):
            _, rollups = await self._reader.read_days(park, run, inputs)
            await self.storage.put_day_rollups(park.id, TOTALS, rollups)
            done += len(run)
            self.built += len(run)
            if progress is not None:
                progress(park.id, done, len(days))
        return done

    async def refresh(self, *, settled_only: bool = True, progress: Progress | None = None) -> int:
        """One pass over every park: build the stale days (with `settled_only`, only those
        whose marker did not move since the previous pass, so a day still being written is
        not rebuilt at every write). Returns the number of days built."""
        n = 0
        for park in self.parks():
            inputs, stale = await self.stale_days(park)
            seen = self._seen.get(park.id, {})
            self._seen[park.id] = dict(inputs.changes)
            if settled_only:
                stale = [k for k in stale if seen.get(k) == inputs.changes[k]]
            if stale:
                n += await self.build(park, stale, inputs, progress)
        return n

    async def run(self, interval_s: float, *, first_after_s: float | None = None) -> None:
        """Refresh every `interval_s` seconds (the first time after `first_after_s`, default
        `interval_s`) until cancelled; store outages are waited out."""
        wait_s = interval_s if first_after_s is None else first_after_s
        while True:
            await asyncio.sleep(wait_s)
            wait_s = interval_s
            try:
                built = await self.refresh()
            except StorageError as exc:
                log.warning("day rollups not refreshed: %s", exc)
                continue
            if built:
                log.debug("day rollups: %d day(s) built", built)
