"""The compact interval engine (bounded collector memory) gives the same stored intervals as
one holding the whole history, late readings and glitches included (docs/intervals.md,
"Collector memory")."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from app.intervals import IntervalEngine, compute_intervals
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.storage import EmbeddedStorage
from app.storage.spool import DurableWriter
from app.telemetry.models import Reading
from collectors import pipeline
from collectors.pipeline import Collector
from tests.ingest_support import PARKS_YAML, T0_NS, T0_S, topic

REGISTRY = parse_registry(PARKS_YAML)
PARK = REGISTRY.park("p1")
MIN_NS = 60 * 10**9
NOW_NS = T0_NS + 10 * 86_400 * 10**9  # "now" for the decoder: after every reading below
DEVICES = ("m0", "m1")


@dataclass(frozen=True)
class Sent:
    device: str
    minute: int
    kwh: float
    reset: bool = False


def body(s: Sent) -> bytes:
    doc: dict[str, object] = {"ts": T0_S + 60 * s.minute, "energy_import_kwh": s.kwh}
    if s.reset:
        doc["reset"] = True
    return json.dumps(doc).encode()


async def run(
    batches: list[list[Sent]], store: Path, compact: bool
) -> tuple[list[IntervalEnergy], float]:
    """Feed the batches to a collector over an embedded store: the stored intervals, and how
    many intervals it recomputed from storage."""
    storage = EmbeddedStorage(store)
    writer = DurableWriter(storage, store.with_suffix(".spool"))
    writer.start()
    c = Collector(
        REGISTRY,
        writer,
        storage,
        batch_max_wait_s=0.0,
        clock_ns=lambda: NOW_NS,
        compact_engine=compact,
    )
    c.start()
    try:
        for batch in batches:  # taken together, so each list is one flush
            await asyncio.gather(*(c.handle(topic(s.device), body(s)) for s in batch))
        stored = await storage.intervals("p1", T0_NS, NOW_NS)
        return stored, c.metrics.recomputed._value.get()
    finally:
        await c.stop()
        await writer.close()
        await storage.close()


def by_key(rows: list[IntervalEnergy]) -> dict[tuple[str, int], IntervalEnergy]:
    return {(r.device, r.start_ns): r for r in rows}


@st.composite
def day_part(draw: st.DrawFn) -> list[list[Sent]]:
    """Six hours of one-a-minute readings of two meters, with glitches (drops to 0, spikes
    ×1000), a replaced meter, identical and conflicting duplicates, gaps, and readings
    delayed by a minute to three hours; grouped into batches in arrival order."""
    sent: list[tuple[int, Sent]] = []  # (arrival minute, reading)
    for device in DEVICES:
        kwh, rate = 1000.0, draw(st.sampled_from([0.5, 1.0, 2.5]))
        for minute in range(0, 360):
            kind = draw(
                st.sampled_from(["ok"] * 30 + ["skip", "drop", "spike", "late", "dup", "reset"])
            )
            kwh += rate
            if kind == "skip":
                continue
            value, reset = kwh, False
            if kind == "drop":
                value = 0.0
            elif kind == "spike":
                value = kwh * 1000
            elif kind == "reset":
                kwh, value, reset = 0.0, 0.0, True
            arrive = minute
            if minute == 200:  # at least one reading per meter from beyond the held history
                arrive += 95
            elif kind == "late":
                arrive += draw(st.sampled_from([1, 3, 14, 16, 31, 95, 180]))
            sent.append((arrive, Sent(device, minute, value, reset)))
            if kind == "dup":  # redelivered a bit later, the same or (conflict) another value
                other = draw(st.sampled_from([value, value + 7.0]))
                again = arrive + draw(st.sampled_from([0, 2, 40]))
                sent.append((again, Sent(device, minute, other)))
    sent.sort(key=lambda a: a[0])  # stable: same arrival minute keeps generation order
    batches: list[list[Sent]] = []
    i = 0
    while i < len(sent):
        size = draw(st.integers(1, 12))
        batches.append([s for _, s in sent[i : i + size]])
        i += size
    return batches


@settings(
    max_examples=6,
    deadline=None,
    # the same examples in every run: a random one found the divergence pinned below, and
    # shrinking it takes longer than the whole suite (it is reproduced there instead)
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(day_part())
def test_compact_engine_stores_what_the_whole_history_engine_stores(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Sent]]
) -> None:
    _compare_engines(tmp_path_factory, batches)


@seed(5)
@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(day_part())
def test_seed_5_a_first_reading_three_hours_late(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Sent]]
) -> None:
    """The examples where a random run found the engines apart: m0's first reading (00:00)
    arrived three hours late, before every stored reading of m0, and the compact engine's
    recompute loaded no history for it (00:00-00:15 lost the segment to 00:01; the conflict
    and the glitches in that interval were bystanders). Regression: the test below."""
    _compare_engines(tmp_path_factory, batches)


def _compare_engines(tmp_path_factory: pytest.TempPathFactory, batches: list[list[Sent]]) -> None:
    tmp = tmp_path_factory.mktemp("mem")
    compact, reloaded = asyncio.run(run(batches, tmp / "compact.sqlite", compact=True))
    whole, never = asyncio.run(run(batches, tmp / "whole.sqlite", compact=False))
    # the compact engine went back to storage for late readings, the whole one never did
    assert reloaded > 0 and never == 0
    assert by_key(compact) == by_key(whole)
    # and both are the batch reference over the stored readings (the first value of a ts
    # stays), conflict flags apart: the reference knows nothing of refused readings
    firsts: dict[tuple[str, int], Reading] = {}
    for batch in batches:
        for s in batch:
            ts = T0_NS + s.minute * MIN_NS
            firsts.setdefault(
                (s.device, ts),
                Reading("p1", s.device, ts, {"energy_import_kwh": s.kwh}, reset=s.reset),
            )
    assert PARK is not None
    reference = by_key(compute_intervals(list(firsts.values()), PARK))
    got = {
        k: (v.values, v.estimated, tuple(f for f in v.flags if f != "conflict"))
        for k, v in by_key(compact).items()
    }
    assert got == {k: (v.values, v.estimated, v.flags) for k, v in reference.items()}


def test_a_day_of_minutes_holds_a_bounded_history() -> None:
    """What the engine holds per device stops growing: the points of about two intervals."""
    engine = IntervalEngine(REGISTRY.park, compact=True)
    held = []
    final: dict[int, float] = {}
    for minute in range(24 * 60 + 1):  # 1 kWh a minute
        r = Reading("p1", "m0", T0_NS + minute * MIN_NS, {"energy_import_kwh": float(minute)})
        for e in engine.add([r]):
            final[e.start_ns] = e.values["energy_import_kwh"]
        held.append(engine.held_sizes("p1", "m0"))
    # from the second hour on: at most two 15-min intervals of points plus one, plus a trim
    # step (as many points again as were kept); the cells from the earliest kept point on
    assert max(p for p, _ in held[60:]) <= 2 * (2 * 15 + 1)
    assert max(c for _, c in held[60:]) <= 4
    # every quarter hour of the day reads 15 kWh, each emitted as it was written
    assert len(final) == 96 and set(final.values()) == {15.0}
    # in-order readings never fall back to storage: the next minute is handled exactly
    horizon = engine.horizon("p1", "m0")
    assert horizon is not None and horizon <= T0_NS + (24 * 60 + 1) * MIN_NS


def at(minute: int, kwh: float) -> Reading:
    return Reading("p1", "m0", T0_NS + minute * MIN_NS, {"energy_import_kwh": kwh})


def test_the_point_after_a_whole_intervals_first_one_is_left_to_storage() -> None:
    """A reading right after the first point `p` of the first whole known interval changes
    the segment before `p` (through `p`'s glitch decision), which reaches into an interval
    the engine does not know whole: the compact engine's horizon sends it to storage."""
    engine = IntervalEngine(REGISTRY.park, compact=True)
    # stored history loaded from 00:10 on: known exactly from the second point (00:14), so
    # from the interval 00:15-00:30 on; 00:15 is a drop that 00:20 makes a glitch
    engine.seed([at(10, 100.0), at(14, 104.0), at(15, 50.0), at(20, 110.0)])
    assert engine.horizon("p1", "m0") == T0_NS + 20 * MIN_NS + 1
    # why: a late 00:17 reading of 55 stays low, so 00:15 is no glitch but a decrease
    # (0 kWh instead of the bridged 1 kWh for 00:14-00:15): 00:00-00:15 changes, yet the
    # engine, not knowing it whole, cannot emit it
    before = {e.start_ns for e in engine.add([at(17, 55.0)])}
    assert T0_NS not in before
    history = [at(10, 100.0), at(14, 104.0), at(15, 50.0), at(20, 110.0)]
    assert PARK is not None
    old = {e.start_ns: e for e in compute_intervals(history, PARK)}[T0_NS]
    new = {e.start_ns: e for e in compute_intervals([*history, at(17, 55.0)], PARK)}[T0_NS]
    assert (old.values, old.flags) == ({"energy_import_kwh": 5.0}, ("glitch",))
    assert (new.values, new.flags) == ({"energy_import_kwh": 4.0}, ("counter_decrease",))


@pytest.mark.parametrize("compact", [True, False])
def test_a_conflict_in_a_long_batch_flags_its_interval(tmp_path: Path, compact: bool) -> None:
    """Three hours of a meter in one batch (a gateway flushing its buffer), with another value
    for 01:00 in the same batch: the compact engine forgets 01:00-01:15 when the batch is in,
    before storage holds it, yet the stored interval is flagged `conflict`."""
    batch = [Sent("m0", minute, 1000.0 + minute) for minute in range(181)]
    batch.insert(100, Sent("m0", 60, 5.0))
    stored, _ = asyncio.run(run([batch], tmp_path / "store.sqlite", compact=compact))
    flagged = [(r.start_ns - T0_NS) // MIN_NS for r in stored if "conflict" in r.flags]
    assert flagged == [60]
    # the refused value changed nothing: 15 kWh in every whole quarter hour
    assert {
        r.values["energy_import_kwh"] for r in stored if r.end_ns - r.start_ns == 15 * MIN_NS
    } == {15.0}


def by_minute(rows: list[IntervalEnergy]) -> dict[int, tuple[float, tuple[str, ...]]]:
    """Stored intervals by start minute: (energy_import_kwh, flags)."""
    return {(r.start_ns - T0_NS) // MIN_NS: (r.values["energy_import_kwh"], r.flags) for r in rows}


@pytest.mark.parametrize("compact", [True, False])
def test_a_late_first_ever_reading_is_recomputed_with_the_readings_after_it(
    tmp_path: Path, compact: bool
) -> None:
    """A meter's first reading arrives after half an hour of later ones. Storage holds no
    reading before it, yet the ones after it: with it, they are the meter's whole history
    (docs/intervals.md, "Collector protocol"), so the interval it opens gains the segment
    to the next reading."""
    later = [[Sent("m0", minute, 1004.0 + minute)] for minute in range(1, 31)]
    batches = [*later, [Sent("m0", 0, 1000.0)]]
    stored, _ = asyncio.run(run(batches, tmp_path / "store.sqlite", compact=compact))
    # 00:00-00:15: 1000 -> 1005 in the first minute, then 1 kWh a minute to 1019 at 00:15
    assert by_minute(stored) == {0: (19.0, ()), 15: (15.0, ())}


@pytest.mark.parametrize("compact", [True, False])
def test_after_a_restart_a_first_ever_reading_joins_the_stored_history(
    tmp_path: Path, compact: bool
) -> None:
    """The same first reading, arriving only after a restart: the restarted collector is
    not to take the meter for a new one (00:00 -> 00:31 one gap segment over everything
    stored) but load what is stored after the reading."""
    store = tmp_path / "store.sqlite"
    later = [[Sent("m0", minute, 1004.0 + minute)] for minute in range(1, 31)]
    asyncio.run(run(later, store, compact=compact))
    batch = [Sent("m0", 0, 1000.0), Sent("m0", 31, 1040.0)]
    stored, _ = asyncio.run(run([batch], store, compact=compact))
    # as above, and 00:30-00:45: 1034 -> 1040 in its first minute
    assert by_minute(stored) == {0: (19.0, ()), 15: (15.0, ()), 30: (6.0, ())}


@pytest.mark.parametrize("compact", [True, False])
def test_after_a_restart_a_late_reading_inside_the_stored_history_is_recomputed(
    tmp_path: Path, compact: bool
) -> None:
    """A compact engine seeded from storage keeps only what the next in-order reading
    needs: a reading of the restart's first batch older than that is recomputed from
    storage, as a late one is."""
    store = tmp_path / "store.sqlite"
    # 1 kWh a minute and 10 kWh more in the minute to 00:15, whose reading is missing
    kwh = {minute: 1000.0 + minute + (10.0 if minute >= 15 else 0.0) for minute in range(41)}
    asyncio.run(run([[Sent("m0", m, v)] for m, v in kwh.items() if m != 15], store, compact))
    # without 00:15: 1014 -> 1026 over 00:14-00:16 gives 6 kWh to each side of 00:15
    assert by_minute(asyncio.run(run([], store, compact))[0]) == {
        0: (20.0, ()),
        15: (20.0, ()),
        30: (10.0, ()),
    }
    stored, _ = asyncio.run(run([[Sent("m0", 15, kwh[15])]], store, compact=compact))
    # with it: 1014 -> 1025 in 00:14-00:15, then 1025 -> 1040 at 00:30
    assert by_minute(stored) == {0: (25.0, ()), 15: (15.0, ()), 30: (10.0, ())}


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("one_by_one", [16, 0], ids=["device-queries", "park-query"])
def test_after_a_restart_a_recomputed_interval_keeps_its_conflict_flag(
    tmp_path: Path, compact: bool, one_by_one: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused conflicting reading stays refused: an interval stored flagged `conflict` and
    recomputed from storage by a restarted collector (whose engine holds no marks) keeps the
    flag (docs/intervals.md §3), whether the marks are read per device or park-wide (as for
    a restart of many devices)."""
    monkeypatch.setattr(pipeline, "_ONE_BY_ONE", one_by_one)
    store = tmp_path / "store.sqlite"
    first = [[Sent("m0", m, 1000.0 + m)] for m in range(41) if m != 17]
    conflicting = [[Sent("m0", 20, 1027.0)]]  # 00:20 again, 7 kWh off: refused, flagged
    stored, _ = asyncio.run(run([*first, *conflicting], store, compact))
    assert by_minute(stored)[15] == (15.0, ("conflict",))
    # restarted: 00:17 arrives late, inside the stored history, and 00:15-00:30 is recomputed
    stored, _ = asyncio.run(run([[Sent("m0", 17, 1017.0)]], store, compact=compact))
    assert by_minute(stored) == {0: (15.0, ()), 15: (15.0, ("conflict",)), 30: (10.0, ())}
    # and written again by in-order readings after a restart (the interval still open)
    stored, _ = asyncio.run(run([[Sent("m0", 41, 1041.0)]], store, compact=compact))
    assert by_minute(stored)[30] == (11.0, ())
    then = [[Sent("m0", 44, 1044.0)], [Sent("m0", 44, 1050.0)]]  # 00:30-00:45 flagged
    asyncio.run(run(then, store, compact=compact))
    stored, _ = asyncio.run(run([[Sent("m0", 45, 1045.0)]], store, compact=compact))
    assert by_minute(stored)[30] == (15.0, ("conflict",))


@pytest.mark.parametrize("compact", [True, False])
def test_after_a_restart_a_redelivered_stored_reading_recomputes_nothing(
    tmp_path: Path, compact: bool
) -> None:
    """A crash between a batch's write and its acks makes the broker redeliver it: readings
    stored already, identical or not, change no interval (the first stays), so the restarted
    collector recomputes nothing for them; a reading missing from storage still does."""
    store = tmp_path / "store.sqlite"
    kwh = {minute: 1000.0 + 2 * minute for minute in range(41) if minute != 17}
    asyncio.run(run([[Sent("m0", m, v)] for m, v in kwh.items()], store, compact))
    before = by_minute(asyncio.run(run([], store, compact))[0])
    redelivered = [Sent("m0", m, kwh[m]) for m in (14, 16, 18, 40)]
    stored, recomputed = asyncio.run(run([redelivered], store, compact=compact))
    assert recomputed == 0 and by_minute(stored) == before
    # the same again with the missing 00:17 among them: its interval is recomputed
    stored, recomputed = asyncio.run(
        run([[*redelivered, Sent("m0", 17, 1034.0)]], store, compact=compact)
    )
    # a compact engine seeded after a restart holds only what the next in-order reading
    # needs, so 00:17 is before its horizon and recomputed (the whole-window engine takes
    # it in directly); on the line either way: the same energies
    assert (recomputed > 0) is compact
    assert by_minute(stored) == before
