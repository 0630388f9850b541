"""The embedded store's compact raw readings: block codec, compaction, migration, retention."""

from __future__ import annotations

import importlib.util
import math
import sqlite3
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.accounting import interval_totals
from app.balance.loader import aggregated_totals
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.storage import EmbeddedStorage, StorageRejected, WriteBatch
from app.storage.base import FAR_NS, NS_PER_DAY, histories_one_by_one
from app.storage.embedded import SCHEMA_VERSION, retention_cut_ns
from app.storage.readingblock import BLOCK_NS, NonFiniteValue, Point, decode, encode, merge_points
from app.telemetry.models import DeadLetter, Reading, RejectReason
from tests.api_support import REGISTRY_YAML

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_795_392_000_000_000_000  # 2026-11-23T00:00:00Z, a UTC day and hour boundary
MIN = 60_000_000_000
HOUR = 60 * MIN

# --- the block codec ----------------------------------------------------------------------

names = st.text(min_size=1, max_size=8)
any_float = st.floats(allow_nan=False, allow_infinity=False)
# what meters send: a few decimals (the scaled-integer path), next to any float at all
meter_float = st.builds(lambda n, k: n / 10**k, st.integers(-(10**12), 10**12), st.integers(0, 6))
values = st.dictionaries(names, any_float | meter_float, max_size=4)
points = st.lists(
    st.builds(
        Point,
        st.integers(-(2**63), 2**63 - 1),
        values,
        st.booleans(),
        st.booleans(),
    ),
    max_size=60,
)


def _bits(ps: list[Point]) -> list[Any]:
    """Points with each value as its exact bits (-0.0 is not 0.0 here)."""
    return [(p.ts_ns, {k: v.hex() for k, v in p.values.items()}, p.reset, p.collector) for p in ps]


@settings(max_examples=300, deadline=None)
@given(base=st.integers(-(2**40), 2**40), ps=points)
def test_a_block_round_trips_exactly(base: int, ps: list[Point]) -> None:
    # a block holds one hour: shift the generated times into one
    block = [
        Point(base * BLOCK_NS + p.ts_ns % BLOCK_NS, p.values, p.reset, p.collector) for p in ps
    ]
    merged = merge_points(block)
    assert _bits(decode(encode(merged))) == _bits(merged)


@settings(max_examples=100, deadline=None)
@given(
    counter=st.lists(st.integers(0, 10**6), min_size=1, max_size=60),
    power=st.lists(meter_float, min_size=1, max_size=60),
)
def test_counter_resets_and_steps_round_trip(counter: list[int], power: list[float]) -> None:
    # counters that run, fall back (a reset) and jump, in 0.01 kWh steps
    ps = [
        Point(T0 + i * MIN, {"energy_import_kwh": c / 100, "power_kw": power[i % len(power)]})
        for i, c in enumerate(counter)
    ]
    assert _bits(decode(encode(ps))) == _bits(ps)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_block_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(NonFiniteValue):
        encode([Point(T0, {"x": 1.0}), Point(T0 + MIN, {"x": bad})])


@given(
    writes=st.lists(
        st.tuples(
            st.integers(0, 5), st.dictionaries(st.sampled_from("abc"), any_float), st.booleans()
        ),
        max_size=30,
    )
)
def test_merge_puts_later_writes_last_and_keeps_flags(
    writes: list[tuple[int, dict[str, float], bool]],
) -> None:
    ps = [Point(T0 + t, v, reset=r) for t, v, r in writes]
    model: dict[int, tuple[dict[str, float], bool]] = {}
    for t, v, r in writes:
        old_v, old_r = model.get(T0 + t, ({}, False))
        model[T0 + t] = ({**old_v, **v}, old_r or r)
    got = merge_points(ps)
    assert [p.ts_ns for p in got] == sorted(model)
    assert [(p.values, p.reset) for p in got] == [model[t] for t in sorted(model)]


def test_a_steady_meter_costs_about_ten_bytes_a_reading() -> None:
    ps = [
        Point(T0 + i * MIN + (i * 7919 % 200) * 1_000_000, {
            "energy_import_kwh": round(1234.5 + i * 0.41 + (i % 3) * 0.01, 2),
            "power_kw": round(24.6 + (i * 37 % 11) / 10, 3),
        })
        for i in range(60)
    ]  # fmt: skip
    assert len(encode(ps)) / len(ps) <= 16


# --- the store: writes in any order, compaction at any moment -------------------------------

_write = st.tuples(
    st.sampled_from(["d1", "d2"]),
    st.integers(0, 5 * 60).map(lambda m: T0 + m * MIN // 2),  # 2.5 h, 30 s apart
    st.dictionaries(
        st.sampled_from(["energy_kwh", "power_kw"]), meter_float | any_float, min_size=1
    ),
    st.booleans(),
)
_step = st.one_of(
    st.lists(_write, min_size=1, max_size=8).map(lambda ws: ("write", ws)),
    st.integers(0, 4).map(lambda h: ("compact", h)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, max_size=12))
async def test_late_out_of_order_and_repeated_readings_read_the_same_compacted_or_not(
    tmp_path: Path, steps: list[tuple[str, Any]]
) -> None:
    model: dict[tuple[str, int], Reading] = {}
    async with EmbeddedStorage(tmp_path / uuid.uuid4().hex / "s.sqlite", compact_every_s=1e9) as s:
        # the constructor's first write compacts "now": later times are all still open
        for kind, arg in steps:
            if kind == "compact":  # hours before T0 + arg h (and its grace) are closed
                await s.compact(T0 + arg * HOUR + 3 * MIN)
                continue
            batch = [Reading("p", d, ts, v, reset=r) for d, ts, v, r in arg]
            await s.write(WriteBatch(readings=batch))
            for r in batch:
                old = model.get((r.device, r.ts_ns))
                if old is not None:
                    r = Reading(
                        "p", r.device, r.ts_ns, {**old.values, **r.values}, old.reset or r.reset
                    )
                model[(r.device, r.ts_ns)] = r
        want = sorted(model.values(), key=lambda r: (r.ts_ns, r.device))
        assert await s.readings("p", T0, T0 + 3 * HOUR) == want
        assert await s.readings("p", T0 + HOUR, T0 + 2 * HOUR, "d1") == [
            r for r in want if r.device == "d1" and T0 + HOUR <= r.ts_ns < T0 + 2 * HOUR
        ]
        d2 = [r for r in want if r.device == "d2"]
        assert (
            await s.last_readings("p", "d2", T0 + 90 * MIN, 7)
            == [r for r in d2 if r.ts_ns < T0 + 90 * MIN][-7:]
        )
        align = lambda ts: ts - ts % (15 * MIN)  # noqa: E731
        first = {"d1": T0 + 100 * MIN, "d2": T0 + 30 * MIN, "d3": T0}
        assert await s.histories("p", first, align) == await histories_one_by_one(
            s, "p", first, align
        )


async def test_non_finite_values_are_still_refused(tmp_path: Path) -> None:
    async with EmbeddedStorage(tmp_path / "s.sqlite", compact_every_s=0) as s:
        with pytest.raises(StorageRejected, match="non-finite"):
            await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": math.inf})]))
        assert await s.readings("p", T0, T0 + 1) == []


# --- migration of a store written by the previous schema ------------------------------------


def _old_module(tmp_path: Path) -> ModuleType:
    """app/storage/embedded.py as of schema version 3 (commit 070a8e8), importable."""
    import subprocess

    src = subprocess.run(
        ["git", "show", "070a8e8:app/storage/embedded.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp_path / "embedded_v3.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("embedded_v3", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["embedded_v3"] = mod
    spec.loader.exec_module(mod)
    assert mod.SCHEMA_VERSION == 3
    return mod


def _history_batch() -> WriteBatch:
    readings = [
        Reading(
            "p", f"m{m}", T0 + i * MIN + m, {"energy_import_kwh": i * 0.25 + m, "power_kw": 15.0}
        )
        for m in range(3)
        for i in range(-90, 240)
    ]
    readings.append(
        Reading("p", "m0", T0 + 5 * MIN, {"extra": 1.0}, reset=True, ts_source="collector")
    )
    return WriteBatch(
        readings=readings,
        intervals=[
            IntervalEnergy("p", "m0", "grid", T0, T0 + 15 * MIN, {"energy_import_kwh": 3.75})
        ],
        deadletters=[DeadLetter(T0, "t", "p", "m9", RejectReason.INVALID_JSON, "bad", b"{")],
    )


async def _snapshot(s: Any) -> list[Any]:
    align = lambda ts: ts - ts % (15 * MIN)  # noqa: E731
    return [
        await s.readings("p", T0 - 2 * HOUR, FAR_NS),
        await s.readings("p", T0, T0 + 90 * MIN, "m1"),
        await s.last_readings("p", "m0", T0 + 7 * MIN, 20),
        await s.histories("p", {"m0": T0 + 61 * MIN, "m2": T0, "zz": T0}, align),
        await s.intervals("p", T0, T0 + HOUR),
        await s.deadletters("p", None, None),
        await s.interval_changes("p"),
    ]


async def test_a_store_of_the_previous_schema_is_migrated_with_every_reading(
    tmp_path: Path,
) -> None:
    old = _old_module(tmp_path)
    path = tmp_path / "store.sqlite"
    async with old.EmbeddedStorage(path) as s:
        await s.write(_history_batch())
        before = await _snapshot(s)
    assert len(before[0]) == 3 * 330
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
    async with EmbeddedStorage(path) as s:  # opening migrates; the old rows start out open
        assert await _snapshot(s) == before
        moved = await s.compact()
        assert moved == 3 * 330 + 1 - 1  # the extra reading merged into m0's at T0 + 5 min
        assert await _snapshot(s) == before
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM reading").fetchone()[0] == 0
    assert db.execute("SELECT sum(n) FROM reading_block").fetchone()[0] == 3 * 330
    db.close()


# --- retention -------------------------------------------------------------------------------


async def test_retention_deletes_only_old_raw_readings(tmp_path: Path) -> None:
    park = parse_registry(REGISTRY_YAML).park("store")
    assert park is not None
    day0 = T0 - 10 * NS_PER_DAY
    readings = [
        Reading("store", dev, day0 + i * 30 * MIN, {"energy_kwh": float(i)})
        for dev in ("grid-s", "pv-s")
        for i in range(10 * 48)
    ]
    intervals = [
        IntervalEnergy("store", "grid-s", "grid", day0 + h * HOUR, day0 + (h + 1) * HOUR,
                       {"energy_import_kwh": 10.0 + h % 7, "energy_export_kwh": 0.5})
        for h in range(10 * 24)
    ] + [
        IntervalEnergy("store", "pv-s", "pv", day0 + h * HOUR, day0 + (h + 1) * HOUR,
                       {"energy_kwh": float(h % 5)}, estimated=h % 11 == 0)
        for h in range(10 * 24)
    ]  # fmt: skip
    deadletters = [
        DeadLetter(day0 + d * NS_PER_DAY, "t", "store", "x", RejectReason.INVALID_JSON, "", b"")
        for d in range(10)
    ]
    cut = day0 + 6 * NS_PER_DAY
    async with EmbeddedStorage(tmp_path / "s.sqlite", compact_every_s=0) as s:
        await s.write(WriteBatch(readings=readings[::2], deadletters=deadletters))
        await s.write(WriteBatch(readings=readings[1::2], intervals=intervals))
        # a late reading of a compacted old day still sits in the open table
        await s.write(WriteBatch(readings=[Reading("store", "pv-s", day0 + 1, {"late": 1.0})]))
        totals_before = await aggregated_totals(s, park, day0, T0)
        ivs_before = await s.intervals("store", day0, T0)
        changes_before = await s.interval_changes("store")
        sums_before = await s.interval_role_sums("store", day0, T0)
        dead_before = await s.deadletters("store", None, None)
        kept = await s.readings("store", cut, FAR_NS)

        assert await s.prune_raw(cut) == len([r for r in readings if r.ts_ns < cut]) + 1

        assert await s.readings("store", 0, cut) == []
        assert await s.readings("store", cut, FAR_NS) == kept
        assert len(kept) == len([r for r in readings if r.ts_ns >= cut])
        assert await s.intervals("store", day0, T0) == ivs_before
        assert await s.interval_changes("store") == changes_before
        assert await s.interval_role_sums("store", day0, T0) == sums_before
        assert await s.deadletters("store", None, None) == dead_before
        assert await aggregated_totals(s, park, day0, T0) == totals_before
        assert interval_totals(await s.intervals("store", day0, cut), park) == interval_totals(
            ivs_before[: len([i for i in ivs_before if i.start_ns < cut])], park
        )


def test_the_retention_cut_is_whole_utc_days() -> None:
    now = T0 + 13 * HOUR + 5
    assert retention_cut_ns(30, now) == T0 - 30 * NS_PER_DAY
    assert retention_cut_ns(0.5, now) == T0


async def test_the_writer_applies_retention_itself(tmp_path: Path) -> None:
    import time

    now = time.time_ns()
    old = Reading("p", "d", now - 40 * NS_PER_DAY, {"x": 1.0})
    new = Reading("p", "d", now - 2 * NS_PER_DAY, {"x": 2.0})
    async with EmbeddedStorage(tmp_path / "s.sqlite", raw_retention_days=30) as s:
        await s.write(WriteBatch(readings=[old, new]))  # the first write runs maintenance
        assert await s.readings("p", 0, FAR_NS) == [new]


async def test_open_storage_gives_the_store_the_retention_setting(tmp_path: Path) -> None:
    from app.config import Settings
    from app.storage.factory import open_storage

    s = await open_storage(Settings(data_dir=tmp_path, raw_retention_days=90))
    try:
        assert isinstance(s, EmbeddedStorage) and s.raw_retention_days == 90
    finally:
        await s.close()
    s = await open_storage(Settings(data_dir=tmp_path))
    try:
        assert isinstance(s, EmbeddedStorage) and s.raw_retention_days is None
    finally:
        await s.close()


async def test_a_non_numeric_value_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = Reading("p", "d", T0 + MIN, {"x": "1.5"})  # type: ignore[dict-item]
    async with EmbeddedStorage(tmp_path / "s.sqlite", compact_every_s=0) as s:
        with pytest.raises(StorageRejected, match="non-numeric"):
            await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0}), bad]))
        assert await s.readings("p", 0, FAR_NS) == []


async def test_a_row_that_cannot_be_compacted_stays_open_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    good = [Reading("p", d, T0 + i * MIN, {"x": float(i)}) for d in ("a", "c") for i in range(3)]
    async with EmbeddedStorage(path, compact_every_s=None) as s:
        await s.write(WriteBatch(readings=good))
    # as an older Lingtan could have stored it: a string value (refused at write since)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO reading VALUES ('p', 'b', ?, '{\"x\":\"text\"}', 0, 0)", (T0,))
    db.commit()
    db.close()
    async with EmbeddedStorage(path, compact_every_s=None) as s:
        assert await s.compact() == len(good)
        got = await s.readings("p", T0, T0 + HOUR)
    assert [(r.device, r.ts_ns) for r in got] == sorted(
        [("b", T0), *((r.device, r.ts_ns) for r in good)], key=lambda k: (k[1], k[0])
    )
    db = sqlite3.connect(path)
    assert db.execute("SELECT device FROM reading").fetchall() == [("b",)]
    db.close()
