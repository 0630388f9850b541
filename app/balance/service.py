# Long module: the service's cache, ledger snapshot and chain invalidation rules read together.
"""Balance service: interval totals from the cache, ledgers from the store, accounting on top."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import msgspec
from starlette.concurrency import run_in_threadpool

from app.accounting import (
    EVERY_VALUES,
    BalanceFields,
    BalanceResult,
    BucketBalance,
    Certificate,
    CertificateUse,
    FactorSet,
    IntervalTotals,
    Offset,
    compute_balance,
    get_factor_set,
)
from app.accounting.buckets import Every, bucket_edges
from app.accounting.result import Sums
from app.accounting.storage import StorageDeviceState
from app.balance.cache import IntervalCache, StoredInputs, day_start_ns, local_day
from app.balance.chain import Chain, ChainDay, sums_of
from app.balance.chain_store import (
    chain_kind,
    day_digest,
    day_number,
    decode_result,
    encode_result,
    epoch_digest,
)
from app.corrections import Correction
from app.ledgers import LedgerStore
from app.registry.models import Park
from app.storage.base import DayRollup, StorageError
from app.timeutil import to_ns

log = logging.getLogger(__name__)

_NS_PER_S = 1_000_000_000
_STEP_S = {"15m": 900, "1h": 3600, "1d": 82_800, "1mo": 28 * 86_400}
#: docs/accounting.md: the evaluation's base year is 2025; the chain of days starts there by default
DEFAULT_EPOCH = date(2025, 1, 1)


class BalanceRequestError(ValueError):
    """The request cannot be answered as asked (bad `every`, too many buckets)."""


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """A park's active ledger rows as read at one moment."""

    certificates: tuple[Certificate, ...]
    offsets: tuple[Offset, ...]
    corrections: tuple[Correction, ...] = ()


def ledger_change_start_ns(old: LedgerSnapshot, new: LedgerSnapshot, park: Park) -> int | None:
    """Earliest instant whose balance a change from `old` to `new` certificates or offsets
    can move (None: none can). Allocation runs forward in time, so a certificate changes
    nothing before its `valid_from`; an offset counts at its date's local midnight.
    Corrections are part of each day's `StoredInputs.day_key` instead."""
    starts = [
        to_ns(c.valid_from) for c in set(old.certificates).symmetric_difference(new.certificates)
    ]
    starts += [
        day_start_ns(o.date, park) for o in set(old.offsets).symmetric_difference(new.offsets)
    ]
    return min(starts) if starts else None


@dataclass(slots=True)
class _ParkChain:
    """One park and factor set's chain, with what it was computed against."""

    chain: Chain
    park: Park
    factor_set: FactorSet
    ledgers: LedgerSnapshot
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _Piece:
    lo: datetime
    hi: datetime
    fields: BalanceFields
    #: `sums_of(fields)` where already known (a chained day's)
    sums: Sums | None = None


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


def _ns_dt(ns: int, park: Park) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(
        park.tz
    )


class BalanceService:
    """Answers `/balance` and today's live balance for any park of the registry.

    Every answer is the one a fresh recomputation from what is stored would give
    (docs/accounting.md, "How answers stay exact"). At the start of each request the service
    reads the ledger database's audit head (every ledger change appends to it: certificates,
    offsets, corrections, factor sets) and the store's change markers (every write of
    intervals, by any process, records a fresh token for the days it touches); cached days
    are served only while those are unchanged.

    From `epoch` on (default 2025-01-01, park local), every day up to today is computed once,
    in order, from the state the previous day ended with (`Chain`): storage provenance and
    certificate use are then exact and independent of the requested window, and daily or
    monthly answers are sums of chained days. One computation per park and factor set runs
    at a time (concurrent requests wait for it, then share it). Windows (or parts) past
    today are computed directly from the chain state at their day's midnight. Before the
    epoch, the window is replayed from the earliest `valid_from` of the certificates
    overlapping it and storage starts empty `storage_warmup` before it.
    """

    def __init__(
        self,
        cache: IntervalCache,
        ledgers: LedgerStore,
        *,
        factor_sets: Mapping[str, FactorSet] | None = None,
        epoch: date = DEFAULT_EPOCH,
        storage_warmup: timedelta = timedelta(days=1),
        max_buckets: int = 40_000,
        clock: Callable[[], int] = time.time_ns,
        persist_chain: bool = True,
    ) -> None:
        self.cache = cache
        #: continue chains from the days any process stored, and store the days computed here
        self.persist_chain = persist_chain
        self.ledgers = ledgers
        self.factor_sets = factor_sets
        self.epoch = epoch
        self.storage_warmup_ns = int(storage_warmup.total_seconds() * _NS_PER_S)
        self.max_buckets = max_buckets
        self.clock = clock
        self._ledger_cache: dict[str, tuple[tuple[int, str], LedgerSnapshot]] = {}
        self._factor_head: tuple[int, str] | None = None
        self._chains: dict[tuple[str, str], _ParkChain] = {}
        self.computed_days = 0  # days computed into chains (for metrics and tests)
        self.loaded_days = 0  # days continued from the store

    # --- inputs -------------------------------------------------------------------------

    async def _ledgers(self, park: str) -> LedgerSnapshot:
        """The park's ledger rows, reloaded whenever the audit head moved (any process)."""
        head = await run_in_threadpool(self.ledgers.audit_head)
        if head != self._factor_head:
            invalidate = getattr(self.factor_sets, "invalidate", None)
            if callable(invalidate):  # user factor sets are ledger documents too
                invalidate()
            self._factor_head = head
        hit = self._ledger_cache.get(park)
        if hit is not None and hit[0] == head:
            return hit[1]

        def load() -> LedgerSnapshot:
            return LedgerSnapshot(
                tuple(self.ledgers.certificates_for(park)),
                tuple(self.ledgers.offsets_for(park)),
                tuple(self.ledgers.corrections_for(park)),
            )

        # Loaded after the head was read: at least as new as it (a later change moves the
        # head again, and the next request reloads).
        snap = await run_in_threadpool(load)
        self._ledger_cache[park] = (head, snap)
        return snap

    async def _inputs(self, park: Park) -> tuple[LedgerSnapshot, StoredInputs]:
        snap = await self._ledgers(park.id)
        return snap, await self.cache.inputs(park.id, snap.corrections)

    # --- requests -----------------------------------------------------------------------

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
        """Balance of `park` over [start, end) in `every` buckets (docs/api.md, "Balance")."""
        ev = self.check(start, end, every)
        try:
            fs = get_factor_set(park.factor_set, self.factor_sets)
        except ValueError as exc:  # a park configured with a set nobody defined: say so
            raise BalanceRequestError(f"park {park.id!r}: {exc}") from None
        snap, inputs = await self._inputs(park)
        start_ns, end_ns = to_ns(start), to_ns(end)
        epoch_ns = day_start_ns(self.epoch, park)
        if start_ns < epoch_ns:
            return await self._unchained(park, fs, snap, inputs, start, end, ev)
        chain = await self._chain_through(park, fs, snap, inputs, end_ns)
        if ev in ("15m", "1h"):
            return await self._direct(park, fs, snap, inputs, chain, start, end, ev)
        return await self._assembled(park, fs, snap, inputs, chain, start, end, ev)

    async def _unchained(
        self,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
        start: datetime,
        end: datetime,
        every: Every,
    ) -> BalanceResult:
        start_ns, end_ns = to_ns(start), to_ns(end)
        lo = certificate_load_start_ns(snap.certificates, start_ns - self.storage_warmup_ns, end_ns)
        totals = await self.cache.totals(park, lo, end_ns, inputs)
        return await run_in_threadpool(
            compute_balance, park, totals, snap.certificates, snap.offsets, fs, start, end, every
        )

    async def _chain_through(
        self, park: Park, fs: FactorSet, snap: LedgerSnapshot, inputs: StoredInputs, end_ns: int
    ) -> Chain:
        """The park's chain, valid for `inputs` and extended through the day containing
        `end_ns` (at most today), as a snapshot the caller may read while others extend it.
        Single-flight: one caller per park and factor set updates it; the others wait."""
        key = (park.id, fs.name)
        pc = self._chains.get(key)
        if pc is None:
            pc = self._chains[key] = _ParkChain(Chain(self.epoch), park, fs, snap)
        async with pc.lock:
            self._revalidate(pc, park, fs, snap, inputs)
            await self._extend(pc, park, fs, snap, inputs, end_ns)
            return pc.chain.snapshot()

    def _revalidate(
        self,
        pc: _ParkChain,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
    ) -> None:
        """Drop every chained day from the first one whose inputs changed (later days start
        from its end state, so they go too)."""
        chain = pc.chain
        if not (pc.park is park or pc.park == park) or pc.factor_set != fs:
            chain.days.clear()
            pc.park, pc.factor_set = park, fs
        if pc.ledgers != snap:
            changed_ns = ledger_change_start_ns(pc.ledgers, snap, park)
            if changed_ns is not None:
                chain.truncate(local_day(changed_ns, park))
            pc.ledgers = snap
        for i, cd in enumerate(chain.days):
            if cd.key != inputs.day_key(cd.start_ns, cd.end_ns):
                del chain.days[i:]
                break

    async def _extend(
        self,
        pc: _ParkChain,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
        end_ns: int,
    ) -> None:
        """Chain every day from the chain's end up to the day containing `end_ns` (at most
        today: later days have no data yet and are computed directly)."""
        chain = pc.chain
        first = chain.end_day
        last = min(local_day(end_ns - 1, park), local_day(self.cache.clock(), park))
        if first > last:
            return
        origin = epoch_digest(self.cache.fingerprint(park), fs, self.epoch)
        if self.persist_chain:
            first = await self._continue_from_store(chain, park, fs, snap, inputs, origin, last)
            if first > last:
                return
        prev_digest = chain.end_digest(origin)
        lo_ns = day_start_ns(first, park)
        hi_ns = day_start_ns(last + timedelta(days=1), park)
        totals = await self.cache.totals(park, lo_ns, hi_ns, inputs)

        def run() -> list[ChainDay]:
            out: list[ChainDay] = []
            storage, used = chain.state_at(first)
            digest = prev_digest
            k = 0
            day = first
            while day <= last:
                d0, d1 = day_start_ns(day, park), day_start_ns(day + timedelta(days=1), park)
                while k < len(totals) and totals[k].start_ns < d0:
                    k += 1
                j = k
                while j < len(totals) and totals[j].start_ns < d1:
                    j += 1
                result = compute_balance(
                    park,
                    totals[k:j],
                    snap.certificates,
                    snap.offsets,
                    fs,
                    _ns_dt(d0, park),
                    _ns_dt(d1, park),
                    "1d",
                    initial_storage=storage,
                    certificates_used_before_kwh=used,
                )
                key = inputs.day_key(d0, d1)
                digest = day_digest(digest, day, d0, d1, key, snap.certificates, snap.offsets)
                out.append(ChainDay.of(day, d0, d1, key, result, digest))
                storage, used = result.storage_state, result.certificates_used_kwh
                k = j
                day += timedelta(days=1)
            return out

        # Appended here, on the event loop, under the chain's lock: never twice.
        new_days = await run_in_threadpool(run)
        chain.days.extend(new_days)
        self.computed_days += len(new_days)
        if self.persist_chain and new_days:
            await self._store_days(park, fs, new_days)

    async def _continue_from_store(
        self,
        chain: Chain,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
        origin: str,
        last: date,
    ) -> date:
        """Append the stored days that continue `chain` with the digest computed here for
        them; returns the first day still to compute."""
        day = chain.end_day
        try:
            stored = await self.cache.storage.day_rollups(
                park.id, chain_kind(fs), day_number(day), day_number(last)
            )
        except StorageError:
            return day  # only a cache: compute
        digest = chain.end_digest(origin)
        while day <= last:
            row = stored.get(day_number(day))
            if row is None:
                break
            d0, d1 = day_start_ns(day, park), day_start_ns(day + timedelta(days=1), park)
            key = inputs.day_key(d0, d1)
            digest = day_digest(digest, day, d0, d1, key, snap.certificates, snap.offsets)
            if row.stamp != digest:
                break
            try:
                result = decode_result(row.payload, park)
            except (msgspec.DecodeError, msgspec.ValidationError):
                break  # a damaged or foreign payload: compute the day
            chain.days.append(ChainDay.of(day, d0, d1, key, result, digest))
            self.loaded_days += 1
            day += timedelta(days=1)
        return day

    async def _store_days(self, park: Park, fs: FactorSet, days: list[ChainDay]) -> None:
        rows = [DayRollup(day_number(cd.day), cd.digest, encode_result(cd.result)) for cd in days]
        try:
            await self.cache.storage.put_day_rollups(park.id, chain_kind(fs), rows)
        except StorageError as exc:  # only a cache: the answer stands without it
            log.warning("chained days of park %s not stored: %s", park.id, exc)

    async def _direct(
        self,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
        chain: Chain,
        start: datetime,
        end: datetime,
        every: Every,
    ) -> BalanceResult:
        """compute_balance from the chain state at the latest usable midnight ≤ start."""
        day = min(local_day(to_ns(start), park), chain.end_day)
        anchor_ns = day_start_ns(day, park)
        storage, used = chain.state_at(day)
        totals = await self.cache.totals(park, anchor_ns, to_ns(end), inputs)
        return await run_in_threadpool(
            _compute, park, totals, snap, fs, start, end, every, storage, used
        )

    async def _assembled(
        self,
        park: Park,
        fs: FactorSet,
        snap: LedgerSnapshot,
        inputs: StoredInputs,
        chain: Chain,
        start: datetime,
        end: datetime,
        every: Every,
    ) -> BalanceResult:
        """Daily/monthly buckets as sums of chained days, computing only the rest directly."""
        start_ns, end_ns = to_ns(start), to_ns(end)
        pieces: list[_Piece] = []
        trail: list[CertificateUse] = []
        warnings: set[str] = set()
        state_at_start: dict[str, StorageDeviceState] | None = None
        last: BalanceResult | None = None
        cursor = start_ns
        while cursor < end_ns:
            day = local_day(cursor, park)
            i = chain.index(day)
            if (
                i is not None
                and chain.days[i].start_ns == cursor
                and chain.days[i].end_ns <= end_ns
            ):
                cd = chain.days[i]
                if state_at_start is None:
                    state_at_start = dict(cd.result.storage_state_at_start)
                b = cd.result.buckets[0]
                pieces.append(_Piece(b.start, b.end, b.fields, cd.sums))
                trail.extend(cd.result.certificate_trail)
                warnings.update(cd.result.warnings)
                last = cd.result
                cursor = cd.end_ns
                continue
            # Not chained: up to the next chained midnight (or the end), computed directly.
            seg_end = end_ns
            if i is not None or day < chain.end_day:
                seg_end = min(end_ns, day_start_ns(day + timedelta(days=1), park))
            r = await self._direct(
                park, fs, snap, inputs, chain, _ns_dt(cursor, park), _ns_dt(seg_end, park), "1d"
            )
            if state_at_start is None:
                state_at_start = dict(r.storage_state_at_start)
            pieces.extend(_Piece(b.start, b.end, b.fields) for b in r.buckets)
            trail.extend(r.certificate_trail)
            warnings.update(r.warnings)
            last = r
            cursor = seg_end
        assert last is not None and state_at_start is not None
        buckets, total = _bucketed(pieces, bucket_edges(start, end, every, park.tz))
        return BalanceResult(
            park=park.id,
            factor_set=fs.name,
            start=start.astimezone(park.tz),
            end=end.astimezone(park.tz),
            every=every,
            buckets=buckets,
            total=BalanceFields.from_sums(total),
            certificate_trail=tuple(trail),
            certificate_trail_all=tuple(trail),
            certificates_used_kwh=dict(last.certificates_used_kwh),
            storage_state=dict(last.storage_state),
            storage_state_at_start=state_at_start,
            warnings=tuple(sorted(warnings)),
        )


def _bucketed(
    pieces: list[_Piece], edges: list[tuple[datetime, datetime]]
) -> tuple[tuple[BucketBalance, ...], Sums]:
    """The buckets of `edges` from time-ordered `pieces`, and the sums of them all."""
    per_bucket: list[list[_Piece]] = [[] for _ in edges]
    k = 0
    for p in pieces:
        while k + 1 < len(edges) and to_ns(edges[k][1]) <= to_ns(p.lo):
            k += 1
        per_bucket[k].append(p)
    buckets: list[BucketBalance] = []
    total = Sums()
    for (lo, hi), ps in zip(edges, per_bucket, strict=True):
        if len(ps) == 1 and ps[0].lo == lo and ps[0].hi == hi:
            # a bucket that is one piece (a day of a daily answer): its fields as computed
            p = ps[0]
            buckets.append(BucketBalance(lo, hi, p.fields))
            total.add(p.sums if p.sums is not None else sums_of(p.fields))
            continue
        s = Sums()
        for p in ps:
            s.add(p.sums if p.sums is not None else sums_of(p.fields))
        buckets.append(BucketBalance(lo, hi, BalanceFields.from_sums(s)))
        total.add(s)
    return tuple(buckets), total


def _compute(
    park: Park,
    totals: list[IntervalTotals],
    snap: LedgerSnapshot,
    fs: FactorSet,
    start: datetime,
    end: datetime,
    every: Every,
    storage: Mapping[str, StorageDeviceState],
    used: Mapping[str, float],
) -> BalanceResult:
    return compute_balance(
        park,
        totals,
        snap.certificates,
        snap.offsets,
        fs,
        start,
        end,
        every,
        initial_storage=storage,
        certificates_used_before_kwh=used,
    )
