"""Balance service: interval totals from the cache, ledgers from the store, accounting on top."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool

from app.accounting import (
    EVERY_VALUES,
    BalanceResult,
    Certificate,
    FactorSet,
    Offset,
    compute_balance,
    get_factor_set,
)
from app.accounting.buckets import Every
from app.balance.cache import IntervalCache
from app.http.times import to_ns
from app.ledgers import LedgerStore
from app.registry.models import Park

_NS_PER_S = 1_000_000_000
_STEP_S = {"15m": 900, "1h": 3600, "1d": 82_800, "1mo": 28 * 86_400}


class BalanceRequestError(ValueError):
    """The request cannot be answered as asked (bad `every`, too many buckets)."""


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    certificates: tuple[Certificate, ...]
    offsets: tuple[Offset, ...]


def certificate_load_start_ns(
    certificates: tuple[Certificate, ...], start_ns: int, end_ns: int
) -> int:
    """Earliest instant from which imports must be replayed so certificate use is exact.

    A certificate overlapping the window may have been partly used before it, and its use
    there depended on the other certificates valid then: follow that chain back (closure).
    """
    lo = start_ns
    spans = [(to_ns(c.valid_from), to_ns(c.valid_to)) for c in certificates]
    changed = True
    while changed:
        changed = False
        for vf, vt in spans:
            if vf < lo and vt > lo and vf < end_ns:
                lo, changed = vf, True
    return lo


def estimate_buckets(start: datetime, end: datetime, every: str) -> int:
    """Upper bound on the bucket count (cheap, before building the edges)."""
    span_s = (end - start).total_seconds()
    return math.ceil(span_s / _STEP_S[every]) + 1


class BalanceService:
    """Answers `/balance` and today's live balance for any park of the registry.

    Window independence: intervals are replayed from the earliest `valid_from` of the chain
    of certificates overlapping the window (see `certificate_load_start_ns`), and storage
    state is warmed up from `storage_warmup` before the window (starting empty there).
    """

    def __init__(
        self,
        cache: IntervalCache,
        ledgers: LedgerStore,
        *,
        factor_sets: Mapping[str, FactorSet] | None = None,
        storage_warmup: timedelta = timedelta(days=1),
        max_buckets: int = 40_000,
        ledger_ttl_s: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cache = cache
        self.ledgers = ledgers
        self.factor_sets = factor_sets
        self.storage_warmup_ns = int(storage_warmup.total_seconds() * _NS_PER_S)
        self.max_buckets = max_buckets
        self.ledger_ttl_ns = int(ledger_ttl_s * _NS_PER_S)
        self.clock = clock
        self._ledger_cache: dict[str, tuple[int, int, LedgerSnapshot]] = {}
        self._ledger_gen: dict[str, int] = {}
        self._results: OrderedDict[tuple[object, ...], BalanceResult] = OrderedDict()

    def invalidate(self, park: str, start_ns: int | None = None, end_ns: int | None = None) -> None:
        """New or corrected interval data for `park` in [start_ns, end_ns): drop cached days."""
        self.cache.invalidate(park, start_ns, end_ns)

    def ledgers_changed(self, park: str) -> None:
        """A certificate or offset of `park` was added or revoked."""
        self._ledger_gen[park] = self._ledger_gen.get(park, 0) + 1
        self._ledger_cache.pop(park, None)

    async def _ledgers(self, park: str) -> tuple[int, LedgerSnapshot]:
        now = self.clock()
        gen = self._ledger_gen.get(park, 0)
        hit = self._ledger_cache.get(park)
        if hit is not None and hit[0] == gen and now - hit[1] < self.ledger_ttl_ns:
            return gen, hit[2]

        def load() -> LedgerSnapshot:
            return LedgerSnapshot(
                tuple(self.ledgers.certificates_for(park)), tuple(self.ledgers.offsets_for(park))
            )

        snap = await run_in_threadpool(load)
        self._ledger_cache[park] = (gen, now, snap)
        return gen, snap

    def check(self, start: datetime, end: datetime, every: str) -> Every:
        if every not in EVERY_VALUES:
            raise BalanceRequestError(
                f"every must be one of {', '.join(EVERY_VALUES)}, not {every!r}"
            )
        n = estimate_buckets(start, end, every)
        if n > self.max_buckets:
            raise BalanceRequestError(
                f"too many buckets (~{n} of {every}); the limit is {self.max_buckets}:"
                " use a larger `every` or a shorter range"
            )
        return every  # type: ignore[return-value]

    async def balance(
        self, park: Park, start: datetime, end: datetime, every: str
    ) -> BalanceResult:
        """Balance of `park` over [start, end) in `every` buckets (SPEC §6)."""
        ev = self.check(start, end, every)
        fs = get_factor_set(park.factor_set, self.factor_sets)
        start_ns, end_ns = to_ns(start), to_ns(end)
        ledger_gen, snap = await self._ledgers(park.id)
        lo = certificate_load_start_ns(snap.certificates, start_ns - self.storage_warmup_ns, end_ns)
        now = self.clock()
        # Results of settled windows are reused until data or ledgers change.
        settled = end_ns <= now - self.cache.settle_ns
        key = (park.id, start_ns, end_ns, ev, fs.name, self.cache.generation(park.id), ledger_gen)
        if settled and key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        totals = await self.cache.totals(park, lo, end_ns)
        result = await run_in_threadpool(
            compute_balance,
            park,
            totals,
            snap.certificates,
            snap.offsets,
            fs,
            start,
            end,
            ev,
        )
        if settled:
            self._results[key] = result
            while len(self._results) > 256:
                self._results.popitem(last=False)
        return result
