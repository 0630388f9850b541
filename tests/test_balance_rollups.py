"""Day rollups (docs/storage.md, "Day rollups"): exact round trip, used only while the change
marker and the registry entry they were computed under hold, built by the collector's builder
and `lingtan rollups`, on both stores."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec.structs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.accounting import IntervalTotals
from app.balance.cache import IntervalCache, StoredInputs
from app.balance.rollup import TOTALS, decode_day, encode_day, totals_stamp
from app.balance.rollup_builder import RollupBuilder
from app.corrections import Correction
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.registry.models import Park
from app.storage.base import NS_PER_DAY, DayRollup, Storage, WriteBatch
from app.storage.embedded import EmbeddedStorage

Q = 900 * 10**9
D0 = 20_400  # a UTC day (2025-11-08)
REGISTRY = """
parks:
  - id: r
    timezone: Asia/Kathmandu
    grid_region: northeast
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv}
      - {id: bess, role: storage, capacity_kwh: 40}
      - {id: boiler, role: heat_fuel, fuel: natural_gas}
      - {id: sub, role: load, included_in: grid}
"""


def park(text: str = REGISTRY) -> Park:
    p = parse_registry(text).park("r")
    assert p is not None
    return p


# --- the payload ---------------------------------------------------------------------------

names = st.text("abcdefgh-_:中", min_size=1, max_size=6)
kwh = st.floats(0, 1e6, allow_nan=False) | st.sampled_from([0.0, 0.1 + 0.2, 1e-300, 5e-324])


@st.composite
def totals(draw: st.DrawFn) -> IntervalTotals:
    start = D0 * NS_PER_DAY + draw(st.integers(0, 95)) * Q
    return IntervalTotals(
        start,
        start + draw(st.sampled_from([Q, 4 * Q, 300 * 10**9])),
        draw(kwh),
        draw(kwh),
        draw(kwh),
        draw(kwh),
        draw(st.dictionaries(names, st.tuples(kwh, kwh), max_size=3)),
        draw(st.dictionaries(names, kwh, max_size=3)),
        draw(st.dictionaries(st.tuples(names, names), kwh, max_size=3)),
        draw(kwh),
        draw(kwh),
        draw(kwh),
        draw(st.dictionaries(names, kwh, max_size=2)),
        draw(st.dictionaries(names, kwh, max_size=3)),
        draw(st.integers(0, 10_000)),
        draw(st.integers(0, 10_000)),
        tuple(draw(st.lists(names, max_size=3))),
        draw(st.dictionaries(names, st.lists(names, max_size=3).map(tuple), max_size=3)),
    )


@given(st.lists(totals(), max_size=8))
def test_a_day_decodes_to_exactly_what_was_encoded(day: list[IntervalTotals]) -> None:
    back = decode_day(encode_day(day, D0), D0)
    assert back == day
    # the same types too (an int where a float was would print differently in an export)
    for a, b in zip(back, day, strict=True):
        for f in dataclasses.fields(IntervalTotals):
            assert type(getattr(a, f.name)) is type(getattr(b, f.name)), f.name


# --- the cache reads through them ----------------------------------------------------------


def rows(day: int, scale: float) -> list[IntervalEnergy]:
    """A UTC day of every device (Kathmandu is UTC+05:45: local days straddle two)."""
    out = []
    for q in range(96):
        t0 = day * NS_PER_DAY + q * Q
        a = scale * (1 + q % 7)
        out += [
            IntervalEnergy("r", "grid", "grid", t0, t0 + Q, {"energy_import_kwh": a}),
            IntervalEnergy("r", "pv", "pv", t0, t0 + Q, {"energy_kwh": a / 2}, estimated=q == 5),
            IntervalEnergy(
                "r", "bess", "storage", t0, t0 + Q, {"energy_charge_kwh": a / 4, "soc_pct": 50.0}
            ),
            IntervalEnergy("r", "boiler", "fuel", t0, t0 + Q, {"gas_m3": a / 10}),
            IntervalEnergy("r", "sub", "load", t0, t0 + Q, {"energy_import_kwh": a / 3}),
        ]
    return out


async def inputs(storage: Storage, corrections: tuple[Correction, ...] = ()) -> StoredInputs:
    return StoredInputs(await storage.interval_changes("r"), corrections)


async def from_rows(storage: Storage, p: Park, lo: int, hi: int) -> list[IntervalTotals]:
    cache = IntervalCache(storage, rollups=False, write_rollups=False)
    return await cache.read_range(p, lo, hi, await inputs(storage))


async def test_a_fresh_process_reads_the_rollups_another_wrote_and_only_while_valid(
    storage_backend: Storage,
) -> None:
    storage, p = storage_backend, park()
    for k in range(4):
        await storage.write(WriteBatch(intervals=rows(D0 + k, 1.0 + k)))
    lo, hi = D0 * NS_PER_DAY + 6 * 3_600 * 10**9, (D0 + 4) * NS_PER_DAY
    first = IntervalCache(storage)
    want = await from_rows(storage, p, lo, hi)
    assert await first.totals(p, lo, hi, await inputs(storage)) == want
    assert first.rollup_hits == 0 and first.rollup_writes == 4  # the four days with data
    days = await storage.day_rollups("r", TOTALS, D0 - 1, D0 + 5)
    assert set(days) == {D0, D0 + 1, D0 + 2, D0 + 3}

    second = IntervalCache(storage)  # another process: nothing in memory
    assert await second.totals(p, lo, hi, await inputs(storage)) == want
    assert second.rollup_hits == 4 and second.rollup_writes == 0

    # a late row for one day: its rollup no longer matches the marker
    late = rows(D0 + 2, 1.0)[7 * 5 : 7 * 5 + 1]
    late = [msgspec.structs.replace(late[0], values={"energy_import_kwh": 1234.5})]
    await storage.write(WriteBatch(intervals=late))
    want = await from_rows(storage, p, lo, hi)
    third = IntervalCache(storage)
    assert await third.totals(p, lo, hi, await inputs(storage)) == want
    assert third.rollup_hits == 3 and third.rollup_writes == 1

    # a registry edit (the boiler burns coal now): no rollup is trusted
    edited = park(REGISTRY.replace("fuel: natural_gas", "fuel: coal"))
    fourth = IntervalCache(storage)
    got = await fourth.totals(edited, lo, hi, await inputs(storage))
    assert fourth.rollup_hits == 0
    assert got == await from_rows(storage, edited, lo, hi) and got != want


async def test_a_rollup_stamped_with_another_token_is_never_used(storage_backend: Storage) -> None:
    storage, p = storage_backend, park()
    await storage.write(WriteBatch(intervals=rows(D0, 1.0)))
    cache = IntervalCache(storage)
    token = (await storage.interval_changes("r"))[D0]
    fp = cache.fingerprint(p)
    poison = encode_day([IntervalTotals(D0 * NS_PER_DAY, D0 * NS_PER_DAY + Q, 1e9)], D0)
    lo, hi = D0 * NS_PER_DAY, (D0 + 1) * NS_PER_DAY
    await storage.put_day_rollups("r", TOTALS, [DayRollup(D0, totals_stamp(token + 2, fp), poison)])
    assert await cache.totals(p, lo, hi, await inputs(storage)) == await from_rows(
        storage, p, lo, hi
    )
    # the one it wrote back instead is the right one; planted with the right stamp, it is used
    await storage.put_day_rollups("r", TOTALS, [DayRollup(D0, totals_stamp(token, fp), poison)])
    fresh = IntervalCache(storage)
    got = await fresh.totals(p, lo, hi, await inputs(storage))
    assert fresh.rollup_hits == 1 and got[0].grid_import_kwh == 1e9  # (so the check above bites)


async def test_corrected_days_are_read_from_the_rows(tmp_path: Path) -> None:
    storage, p = EmbeddedStorage(tmp_path / "s.db"), park()
    try:
        await storage.write(WriteBatch(intervals=rows(D0, 1.0)))
        lo, hi = D0 * NS_PER_DAY, (D0 + 1) * NS_PER_DAY
        await IntervalCache(storage).totals(p, lo, hi, await inputs(storage))  # writes it
        corr = Correction("c1", "r", "grid", "energy_import_kwh", lo, lo + Q, "set", 999.0)
        cache = IntervalCache(storage)
        got = await cache.totals(p, lo, hi, await inputs(storage, (corr,)))
        assert cache.rollup_hits == 0 and got[0].grid_import_kwh == 999.0
    finally:
        await storage.close()


# --- building them ------------------------------------------------------------------------


async def test_the_builder_builds_settled_days_and_waits_for_moving_ones(
    storage_backend: Storage,
) -> None:
    storage, p = storage_backend, park()
    for k in range(3):
        await storage.write(WriteBatch(intervals=rows(D0 + k, 2.0)))
    builder = RollupBuilder(storage, lambda: [p])
    assert (await builder.stale_days(p))[1] == [D0, D0 + 1, D0 + 2]
    assert await builder.refresh() == 0  # first sight: not known to be settled yet
    await storage.write(WriteBatch(intervals=rows(D0 + 2, 3.0)))  # the last day still moves
    assert await builder.refresh() == 2
    assert (await builder.stale_days(p))[1] == [D0 + 2]
    assert await builder.refresh() == 1
    assert (await builder.stale_days(p))[1] == []
    # what it built is what a reader computes from the rows
    lo, hi = D0 * NS_PER_DAY, (D0 + 3) * NS_PER_DAY
    cache = IntervalCache(storage)
    assert await cache.totals(p, lo, hi, await inputs(storage)) == await from_rows(
        storage, p, lo, hi
    )
    assert cache.rollup_hits == 3


def test_lingtan_rollups_builds_what_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from lingtan.cli import main

    (tmp_path / "parks.yaml").write_text(REGISTRY, encoding="utf-8")
    for k, v in {
        "LINGTAN_DATA_DIR": str(tmp_path),
        "LINGTAN_PARKS": str(tmp_path / "parks.yaml"),
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LINGTAN_INFLUX_URL", raising=False)
    monkeypatch.delenv("LINGTAN_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)

    async def seed() -> None:
        from app.config import load_settings
        from app.storage.factory import embedded_path

        store = EmbeddedStorage(embedded_path(load_settings()))
        for k in range(5):
            await store.write(WriteBatch(intervals=rows(D0 + k, 1.0)))
        await store.close()

    asyncio.run(seed())
    assert main(["rollups", "--park", "nope"]) == 2
    assert "unknown park" in capsys.readouterr().err
    assert main(["rollups"]) == 0
    out = capsys.readouterr().out
    assert "r: 5 of 5 day(s) to build" in out and "r: 5/5 days" in out and "done: 5" in out
    assert main(["rollups"]) == 0
    assert "r: 0 of 5 day(s) to build" in capsys.readouterr().out
    assert main(["rollups", "--all"]) == 0
    assert "r: 5 of 5 day(s) to build" in capsys.readouterr().out
