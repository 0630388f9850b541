"""IntervalEngine: seeding after a restart, horizon, stale readings, pruning, DST days."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.intervals import (
    HORIZON_ALL,
    HORIZON_NONE,
    IntervalEngine,
    compute_intervals,
    compute_window,
)
from app.registry.models import Park
from app.telemetry.models import Reading

MIN = 60 * 1_000_000_000
T0 = 1_795_392_000 * 1_000_000_000  # 2026-11-23T00:00Z = 08:00 Asia/Shanghai
A, B, C = T0, T0 + 15 * MIN, T0 + 30 * MIN

PARK = Park.model_validate(
    {"id": "p", "timezone": "Asia/Shanghai", "devices": [{"id": "m", "role": "load"}]}
)


def rd(minute: float, kwh: float) -> Reading:
    return Reading("p", "m", T0 + int(minute * MIN), {"energy_import_kwh": kwh})


def test_unknown_device_has_no_horizon_and_add_means_whole_history() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    assert engine.horizon("p", "m") is None
    engine.add([rd(5, 5)])
    assert engine.horizon("p", "m") == HORIZON_ALL
    # an earlier reading is fine when the engine holds the whole history: 0->5 = 5 kWh in A
    out = engine.add([rd(0, 0)])
    assert [(e.start_ns, e.values) for e in out] == [(A, {"energy_import_kwh": 5.0})]


def test_seeded_history_horizon_and_late_readings() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    # stored history from 08:07 on, 1 kWh/min; what came before 08:07 is unknown
    assert engine.seed([rd(7, 7), rd(12, 12), rd(17, 17), rd(22, 22)]) is None
    # A (08:00-08:15) is partial; first point at/after the next boundary 08:15 is 08:17
    assert engine.horizon("p", "m") == T0 + 17 * MIN + 1
    out = engine.add([rd(27, 27)])
    # B = 12->17: 2 min in B (2), 17->22: 5, 22->27: 5 => 12, only B is emitted
    assert [(e.start_ns, e.values) for e in out] == [(B, {"energy_import_kwh": 12.0})]
    # a late reading inside the held history but before the horizon: A is not exactly
    # known (the segment before 08:07 is missing), so nothing is emitted for it
    assert engine.add([rd(9, 9)]) == []
    assert engine.stale_readings == 0
    # older than everything held: not stored, nothing emitted, counted
    assert engine.add([rd(5, 5)]) == []
    assert engine.stale_readings == 1
    # the collector's fallback for that window: readings loaded from storage from 08:00
    stored = [
        rd(-3, -3),
        rd(0, 0),
        rd(5, 5),
        rd(7, 7),
        rd(9, 9),
        rd(12, 12),
        rd(17, 17),
        rd(22, 22),
        rd(27, 27),
    ]
    window = compute_window(stored, PARK, A, B)
    # A = 0->...->15 at 1 kWh/min = 15; exact because the second point (08:00) starts A
    # (whether the first point was a glitch depends on the unknown one before it)
    assert [(e.start_ns, e.values) for e in window] == [(A, {"energy_import_kwh": 15.0})]
    # loaded from 08:00 only, the second point is 08:05: A cannot be known
    assert compute_window(stored[1:], PARK, A, B) == []


def test_seed_too_short_gives_no_exact_horizon() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    engine.seed([rd(7, 7)])
    assert engine.horizon("p", "m") == HORIZON_NONE
    # still stored. 7->20 touches A and B, and neither is known: had 08:07 been a glitch
    # (off the line between its unknown predecessor and 08:20), 7->20 would count otherwise
    assert engine.add([rd(20, 20)]) == []
    assert engine.horizon("p", "m") == HORIZON_NONE
    # exact from the second point (08:20) on: C (08:30-) is the first whole interval
    out = engine.add([rd(32, 32)])
    assert [(e.start_ns, e.values) for e in out] == [(C, {"energy_import_kwh": 2.0})]
    assert engine.horizon("p", "m") == T0 + 32 * MIN + 1


def test_seed_then_unchanged_reading_emits_nothing() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    engine.seed([rd(0, 0), rd(10, 10), rd(20, 20)])
    assert engine.add([rd(20, 20)]) == []
    out = engine.add([rd(30, 30)])
    assert [(e.start_ns, e.values) for e in out] == [(B, {"energy_import_kwh": 15.0})]


def test_pruning_keeps_results_exact_and_moves_the_horizon() -> None:
    engine = IntervalEngine(lambda pid: PARK, history_window_s=3600)
    readings = [rd(m, m * 0.5) for m in range(0, 241, 5)]  # 4 h, 0.5 kWh/min
    final = {}
    for r in readings:
        for e in engine.add([r]):
            final[e.start_ns] = e.values["energy_import_kwh"]
    # every quarter hour: 15 min x 0.5 = 7.5
    assert len(final) == 16 and all(v == pytest.approx(7.5) for v in final.values())
    # window 1 h, pruned once history exceeds window + max(window/8, 1 h) = 2 h: at 03:05
    # (minute 185) everything before the last point before 02:05 (minute 120) went; exact
    # from the second point (02:05) on, so from 02:15 on: the horizon is just after 02:15
    assert engine.horizon("p", "m") == T0 + 135 * MIN + 1
    # a reading older than the held history is not used (no wrong intervals)
    assert engine.add([rd(60, 0.0)]) == []
    assert engine.stale_readings == 1
    # normal appends still work
    out = engine.add([rd(245, 122.5)])
    assert [(e.start_ns, e.values) for e in out] == [(T0 + 240 * MIN, {"energy_import_kwh": 2.5})]


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        ("2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 92),  # 23-hour day
        ("2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 100),  # 25-hour day
    ],
)
def test_berlin_dst_day_through_the_engine(start: str, end: str, count: int) -> None:
    park = Park.model_validate(
        {"id": "de", "timezone": "Europe/Berlin", "devices": [{"id": "m", "role": "load"}]}
    )
    t0, t1 = _ns(start), _ns(end)
    # 60 kW constant, a reading every 5 min: 5 kWh per reading, 15 kWh per quarter hour
    readings = [
        Reading("de", "m", t, {"energy_import_kwh": 5.0 * k})
        for k, t in enumerate(range(t0, t1 + 1, 5 * MIN))
    ]
    out = IntervalEngine(lambda pid: park).add(readings)
    assert len(out) == count
    assert out[0].start_ns == t0 and out[-1].end_ns == t1
    assert all(e.values["energy_import_kwh"] == pytest.approx(15.0) for e in out)
    assert out == compute_intervals(readings, park)


def two(minute: float, **values: float) -> Reading:
    return Reading("p", "m", T0 + int(minute * MIN), values)


def test_pruning_keeps_the_cells_of_a_held_gap_segment_of_another_counter() -> None:
    """A prune drops the import points of the first hour; the export gap 08:00 -> 09:30 is
    still held whole. A late export reading at 09:10 splits the gap and makes 09:15-09:30
    exactly known: the import there (1 kWh/min) must still be in it, and the undecided drop
    at 09:30 keeps 09:10-09:30 `suspect` (both were lost with the cells before the fix)."""
    stored = [two(m, energy_import_kwh=float(m)) for m in range(0, 96, 5)]
    stored += [two(0, energy_export_kwh=10.0), two(90, energy_export_kwh=5.0)]
    late = [two(70, energy_export_kwh=10.0)]
    engine = IntervalEngine(lambda pid: PARK, history_window_s=1800)
    engine.seed(stored)  # newest 09:35: history older than 08:35 (window + 1 h slack) goes
    assert engine.held("p", "m", T0) == {"energy_export_kwh": (10.0, False)}
    out = engine.add(late)
    reference = {e.start_ns: e for e in compute_intervals(stored + late, PARK)}
    q4 = T0 + 75 * MIN  # 09:15-09:30
    assert [e.start_ns for e in out] == [q4]
    assert all(e == reference[e.start_ns] for e in out)
    assert out[0].values["energy_import_kwh"] == pytest.approx(15.0)
    assert out[0].flags == ("suspect",)


def test_a_counter_new_after_a_prune_is_held_from_the_seed_on() -> None:
    """Storage holds only import readings from 08:00 on (seeded); the prune drops the first
    hour of them. Late readings bring the export counter at 08:15:01 and 08:00:02: it has no
    reading from the seed on before them, so 08:15:01 starts its series (the prune does not
    make it stale), and 08:15-08:30 is not emitted: the export segment in it ends at the
    series' first point (before the fix it went out without its export value)."""
    sec = 1_000_000_000
    stored = [Reading("p", "m", T0 + t * sec, {"energy_import_kwh": 0.0}) for t in (0, 1, 5401)]
    both = {"energy_import_kwh": 0.0, "energy_export_kwh": 0.0}
    late = [Reading("p", "m", T0 + t * sec, both, reset=True) for t in (901, 2)]
    engine = IntervalEngine(lambda pid: PARK, history_window_s=1800)
    engine.seed(stored)
    assert engine.held("p", "m", T0) == {}  # pruned: 08:00:00 went
    out = engine.add(late)
    # 08:15:01 starts the export series; 08:00:02 arrived after it, before its first point
    assert engine.held("p", "m", T0 + 901 * sec)["energy_export_kwh"] == (0.0, True)
    assert engine.stale_readings == 1
    reference = {e.start_ns: e for e in compute_intervals(stored + late, PARK)}
    assert out and all(e == reference[e.start_ns] for e in out)
    assert B not in {e.start_ns for e in out}
