"""Property: whatever the interleaving of interval writes (late, repeated, whole days), ledger
edits (certificates added and revoked, offsets) and queries (alone or concurrent, any window
and bucket), `BalanceService` answers what a cache-less recomputation from the stored rows
and ledgers answers at that moment."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.accounting import Certificate, Offset, get_factor_set
from app.balance.cache import IntervalCache
from app.balance.service import BalanceService
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.storage.base import WriteBatch
from tests.balance_reference import mismatches, recompute
from tests.memory_store import MemoryIntervals, MemoryLedgers

TZ = ZoneInfo("Europe/Berlin")  # 2026-10-25 is a 25-hour day there
FIRST = datetime(2026, 10, 24, tzinfo=TZ)
DAYS = 4
QUARTERS = DAYS * 96 + 4  # the DST day has four more
Q_NS = 900 * 10**9
DEVICES = ("grid", "pv", "bess", "sub")
REGISTRY_YAML = """
parks:
  - id: x
    timezone: Europe/Berlin
    grid_region: northeast
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv}
      - {id: bess, role: storage, capacity_kwh: 50}
      - {id: sub, role: load, included_in: grid}
"""
PARK = parse_registry(REGISTRY_YAML).park("x")
assert PARK is not None
FS = get_factor_set(PARK.factor_set)
#: "now" for the service: mid-range, so windows cross from chained days into direct ones
NOW_NS = int((FIRST + timedelta(days=2, hours=13)).timestamp()) * 10**9


def start_ns(q: int) -> int:
    return int(FIRST.timestamp()) * 10**9 + q * Q_NS


def row(device: str, q: int, a: float, b: float) -> IntervalEnergy:
    t0, t1 = start_ns(q), start_ns(q + 1)
    if device == "grid":
        vals = {"energy_import_kwh": a, "energy_export_kwh": b / 4}
        return IntervalEnergy("x", "grid", "grid", t0, t1, vals)
    if device == "pv":
        return IntervalEnergy("x", "pv", "pv", t0, t1, {"energy_kwh": a + b})
    if device == "bess":
        vals = {"energy_charge_kwh": a / 3, "energy_discharge_kwh": b / 3, "soc_pct": a}
        return IntervalEnergy("x", "bess", "storage", t0, t1, vals)
    return IntervalEnergy("x", "sub", "load", t0, t1, {"energy_import_kwh": a / 2})


amounts = st.floats(0, 100, allow_nan=False).map(lambda v: round(v, 3))
quarter = st.integers(0, QUARTERS - 1)
window = st.tuples(quarter, st.integers(1, QUARTERS), st.sampled_from(["15m", "1h", "1d", "1mo"]))
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.lists(
                st.tuples(
                    st.sampled_from(["grid", "pv", "bess", "sub"]), quarter, amounts, amounts
                ),
                min_size=1,
                max_size=6,
            ),
        ),
        st.tuples(st.just("write_day"), st.integers(0, DAYS - 1), amounts, amounts),
        st.tuples(
            st.just("certificate"),
            st.sampled_from(["c1", "c2", "c3"]),
            st.floats(0.01, 2.0).map(lambda v: round(v, 3)),
            quarter,
            st.integers(4, QUARTERS),
        ),
        st.tuples(st.just("revoke"), st.sampled_from(["c1", "c2", "c3"])),
        st.tuples(st.just("offset"), st.sampled_from(["o1", "o2"]), st.integers(0, DAYS - 1)),
        # another replica answers from now on, or a replica restarts (nothing cached but
        # what it finds in the store: the day rollups other replicas wrote)
        st.tuples(st.just("replica"), st.integers(0, 1)),
        st.tuples(st.just("restart"), st.integers(0, 1)),
        # a write lands between a query's read of the change markers and of the data
        st.tuples(st.just("racing_query"), window, quarter, amounts),
        st.tuples(st.just("query"), window),
        st.tuples(st.just("queries"), st.lists(window, min_size=2, max_size=4)),
    ),
    min_size=1,
    max_size=20,
)


def when(q: int) -> datetime:
    return datetime.fromtimestamp(start_ns(q) / 1e9, tz=TZ)


class RacingStore(MemoryIntervals):
    """Applies a pending write right after the next read of the change markers."""

    pending: list[IntervalEnergy] | None = None

    async def interval_changes(self, park: str) -> dict[int, int]:
        out = await super().interval_changes(park)
        if self.pending is not None:
            rows, self.pending = self.pending, None
            await self.write(WriteBatch(intervals=rows))
        return out


def replica(store: MemoryIntervals, ledgers: MemoryLedgers) -> BalanceService:
    cache = IntervalCache(store, clock=lambda: NOW_NS)  # type: ignore[arg-type]
    return BalanceService(
        cache,
        ledgers,  # type: ignore[arg-type]
        epoch=FIRST.date(),
        clock=lambda: NOW_NS,
    )


async def run(steps: list[tuple[Any, ...]]) -> None:
    store, ledgers = RacingStore(), MemoryLedgers()
    replicas = [replica(store, ledgers), replica(store, ledgers)]
    active = 0
    # a first day of data, so the first queries have something to chain
    await store.write(
        WriteBatch(
            intervals=[row(d, q, 30, 10) for q in range(96) for d in ["grid", "pv", "bess", "sub"]]
        )
    )

    async def ask(
        q0: int, n: int, every: str, *, check: bool = True, on: int | None = None
    ) -> None:
        q1 = min(QUARTERS, q0 + n)
        if q1 <= q0:
            return
        start, end = when(q0), when(q1)
        service = replicas[active if on is None else on]
        got = (await service.balance(PARK, start, end, every)).as_dict()
        if not check:  # it may or may not include the racing write: only later answers count
            return
        rows = await store.intervals("x", start_ns(0), start_ns(q1))
        want = recompute(
            rows,
            PARK,
            ledgers.certificates_for("x"),
            ledgers.offsets_for("x"),
            FS,
            start,
            end,
            every,  # type: ignore[arg-type]
            epoch=FIRST.date(),
        )
        problems = mismatches(got, want)
        assert not problems, f"{start}..{end} {every}: {problems[:4]}"

    for op in steps:
        kind = op[0]
        if kind == "write":
            await store.write(WriteBatch(intervals=[row(d, q, a, b) for d, q, a, b in op[1]]))
        elif kind == "write_day":
            day, a, b = op[1:]
            qs = range(day * 96, min(QUARTERS, day * 96 + 96))
            await store.write(WriteBatch(intervals=[row(d, q, a, b) for q in qs for d in DEVICES]))
        elif kind == "certificate":
            cid, mwh, q0, n = op[1:]
            ledgers.certificates[cid] = Certificate(
                cid, "x", "gec", mwh, when(q0), when(min(QUARTERS, q0 + n))
            )
            ledgers.edited()
        elif kind == "revoke":
            if ledgers.certificates.pop(op[1], None) is not None:
                ledgers.edited()
        elif kind == "offset":
            oid, day = op[1:]
            ledgers.offsets[oid] = Offset(
                oid, "x", "ccer", 1.5, (FIRST + timedelta(days=day)).date()
            )
            ledgers.edited()
        elif kind == "replica":
            active = op[1]
        elif kind == "restart":
            replicas[op[1]] = replica(store, ledgers)
        elif kind == "racing_query":
            w, q, a = op[1:]
            store.pending = [row("pv", q, a, a)]
            await ask(*w, check=False)
            store.pending = None
        elif kind == "query":
            await ask(*op[1])
        else:  # concurrent queries: the chain is built once, shared, never appended twice
            await asyncio.gather(*(ask(*w) for w in op[1]))
    # and at the end, every window of the whole range, on both replicas and a fresh one
    replicas.append(replica(store, ledgers))
    for k in range(3):
        for every in ("15m", "1d", "1mo"):
            await ask(0, QUARTERS, every, on=k)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops)
def test_any_interleaving_answers_as_a_fresh_recomputation(steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(run(steps))
