"""Glitch versus reset, and plausibility bounds without `max_kw` (docs/intervals.md)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.intervals import (
    IntervalEnergy,
    IntervalEngine,
    compute_intervals,
    history_start_ns,
    interval_start_ns,
)
from app.registry.models import Park
from app.telemetry.models import Reading

MIN = 60 * 1_000_000_000
T0 = 1_795_392_000 * 1_000_000_000  # 2026-11-23T00:00Z = 08:00 Asia/Shanghai
A, B, C = T0, T0 + 15 * MIN, T0 + 30 * MIN
Q = "energy_import_kwh"

PARK = Park.model_validate(
    {
        "id": "p",
        "timezone": "Asia/Shanghai",
        "devices": [
            {"id": "grid-main", "role": "grid"},  # no max_kw: the grid role default, 2 GW
            {"id": "main", "role": "grid", "max_kw": 600},
            {"id": "bldg", "role": "load", "included_in": "main"},
        ],
    }
)


def rd(minute: float, kwh: float, device: str = "grid-main", reset: bool = False) -> Reading:
    return Reading("p", device, T0 + int(minute * MIN), {Q: kwh}, reset)


def table(out: list[IntervalEnergy]) -> dict[int, tuple[float, tuple[str, ...]]]:
    return {e.start_ns: (e.values[Q], e.flags) for e in out}


# The meter of the issue: 681,400 kWh at 08:00, 1 kWh/min, readings every 5 min.
TRUE = [rd(m, 681_400 + m) for m in (0, 5, 10, 15, 20, 25)]


@pytest.mark.parametrize(
    "bad",
    [
        0.0,  # a Modbus read error
        5.0,  # {"energy_import_kwh": 5}: the wrong register
        681_407 * 1000.0,  # a spike x1000
    ],
)
def test_one_bad_reading_costs_nothing_but_a_flag(bad: float) -> None:
    out = compute_intervals([*TRUE, rd(7, bad)], PARK)
    # A = 08:00-08:15 still 15 kWh (5->10 bridged over the glitch at 08:07), flagged;
    # B = 08:15-08:25 = 10 kWh untouched
    assert table(out) == {A: (pytest.approx(15.0), ("glitch",)), B: (10.0, ())}


def test_a_drop_is_suspect_until_the_next_reading_decides() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    engine.add(TRUE[:2])  # 08:00, 08:05: A = 5
    # the drop is not counted yet (neither 5 kWh from a "new counter" nor anything else)
    assert table(engine.add([rd(7, 5.0)])) == {A: (0.0 + 5.0, ("suspect",))}
    # back on the old trajectory: a glitch; 08:05->08:10 = 5 kWh bridged over it
    assert table(engine.add([TRUE[2]])) == {A: (pytest.approx(10.0), ("glitch",))}


def test_a_real_reset_without_flag_counts_from_the_new_value() -> None:
    readings = [*TRUE[:2], rd(7, 2.0), rd(10, 5.0), rd(15, 10.0)]
    # 08:07 drops to 2 and 08:10 stays low and rises: a reset from zero (2 kWh), then 3 + 5
    assert table(compute_intervals(readings, PARK)) == {A: (5.0 + 2.0 + 3.0 + 5.0, ("reset",))}


def test_a_drop_that_stays_low_not_near_zero_is_a_new_baseline() -> None:
    readings = [*TRUE[:2], rd(7, 500_000.0), rd(10, 500_003.0)]
    # not near zero: nothing counted for the drop, then 3 kWh from the new value
    assert table(compute_intervals(readings, PARK)) == {A: (5.0 + 3.0, ("counter_decrease",))}


def test_reset_flag_is_authoritative() -> None:
    readings = [*TRUE[:2], rd(7, 1.0, reset=True), rd(10, 4.0)]
    # never a glitch although 4 is far below the old trajectory: 5 + 1 + 3
    assert table(compute_intervals(readings, PARK)) == {A: (9.0, ("reset",))}
    # a flagged reset whose next reading is back up: still a reset (1), then 681,409 kWh in
    # 3 min, which the 2 GW bound rejects: 2e6 x (180 + 60) / 3600 + 1 = 133,334 kWh
    back = [*TRUE[:2], rd(7, 1.0, reset=True), rd(10, 681_410.0)]
    assert table(compute_intervals(back, PARK)) == {A: (6.0, ("implausible", "reset"))}


def test_a_spike_the_next_reading_contradicts_is_a_glitch_even_when_plausible() -> None:
    readings = [*TRUE[:3], rd(12, 681_480.0)]  # +70 kWh in 2 min, then back to 681,415
    readings.append(rd(15, 681_415.0))
    assert table(compute_intervals(readings, PARK)) == {A: (pytest.approx(15.0), ("glitch",))}


def test_the_decision_waits_at_most_six_hours() -> None:
    # the next reading 7 h later is back above the old value: a reset, not a glitch, so
    # 1 kWh from zero, then 681,409 kWh over 7 h (97 MW: plausible) spread, 8/420 in A
    readings = [*TRUE[:2], rd(7, 1.0), rd(7 + 420, 681_410.0)]
    out = table(compute_intervals(readings, PARK))
    assert out[A][0] == pytest.approx(5.0 + 1.0 + 681_409.0 * 8 / 420)
    assert out[A][1] == ("gap", "reset")


def test_grid_meter_without_max_kw_has_a_bound() -> None:
    # first segment 0 -> 681,400 kWh in 5 min: 2 GW allows 2e6 x 360 / 3600 + 1 = 200,001
    out = compute_intervals([rd(0, 0.0), rd(5, 681_400.0), rd(10, 681_405.0)], PARK)
    assert table(out) == {A: (5.0, ("implausible",))}


def test_sub_meter_takes_its_parent_meters_bound() -> None:
    # bldg has no max_kw; its parent "main" has 600 kW: 5 min allow 600 x 360 / 3600 + 1 = 61
    ok = [rd(0, 0.0, "bldg"), rd(5, 61.0, "bldg")]
    bad = [rd(0, 0.0, "bldg"), rd(5, 61.5, "bldg")]
    assert table(compute_intervals(ok, PARK)) == {A: (61.0, ())}
    assert table(compute_intervals(bad, PARK)) == {A: (0.0, ("implausible",))}


def test_restart_between_the_glitch_and_the_reading_that_resolves_it() -> None:
    # stored since 07:00; the collector stops after the glitch at 08:07
    stored = [*(rd(m, 681_400 + m) for m in range(-60, 0, 5)), *TRUE[:2], rd(7, 0.0)]
    before = IntervalEngine(lambda pid: PARK)
    state = {e.start_ns: e for e in before.add(stored)}
    assert state[A].values[Q] == 5.0 and state[A].flags == ("suspect",)
    # the restarted collector seeds what the protocol loads: history from
    # history_start_ns(newest stored) on, plus the last reading before it
    start = history_start_ns(stored[-1].ts_ns, PARK)
    older = [r for r in stored if r.ts_ns < start]
    seed = [*older[-1:], *(r for r in stored if r.ts_ns >= start)]
    assert older and seed[0].ts_ns < A - 30 * MIN  # not the whole history
    after = IntervalEngine(lambda pid: PARK)
    after.seed(seed)
    state.update({e.start_ns: e for e in after.add(TRUE[2:])})
    # the four quarter hours before 08:00 at 15 kWh each, then as without the restart
    assert table(list(state.values())) == {
        **{A - k * 15 * MIN: (15.0, ()) for k in (1, 2, 3, 4)},
        A: (pytest.approx(15.0), ("glitch",)),
        B: (10.0, ()),
    }


# -- properties -----------------------------------------------------------------------------

PROPS = settings(max_examples=150, deadline=None)
GLITCHES = ("zero", "near_zero", "spike", "repeated_ts")


@st.composite
def glitched(draw: st.DrawFn) -> tuple[list[Reading], Reading, int, int, str]:
    """A true monotone series of a grid meter without max_kw, and one bad reading inside it.

    Returns (true readings, the bad reading, ts of its two true neighbours, kind).
    """
    value = draw(st.floats(10_000, 5e6))
    t = T0 + draw(st.integers(0, 14 * 60)) * 1_000_000_000
    true = []
    for _ in range(draw(st.integers(3, 14))):
        true.append(Reading("p", "grid-main", t, {Q: value}))
        t += draw(st.integers(60, 20 * 60)) * 1_000_000_000  # every 1-20 min
        value += draw(st.floats(0, 3000))  # up to 9 MW: plausible for a 2 GW bound
    kind = draw(st.sampled_from(GLITCHES))
    k = draw(st.integers(1, len(true) - 2)) if kind == "repeated_ts" else None
    if k is None:
        i = draw(st.integers(0, len(true) - 2))
        a, b = true[i], true[i + 1]
        ts = draw(st.integers(a.ts_ns + 1, b.ts_ns - 1))
        around = (a.ts_ns, b.ts_ns)
        real = a.values[Q]
    else:
        ts, around, real = true[k].ts_ns, (true[k - 1].ts_ns, true[k + 1].ts_ns), true[k].values[Q]
    bad = {"zero": 0.0, "near_zero": real * 1e-4, "spike": real * 1000}.get(
        kind, real * draw(st.sampled_from([0.0, 0.5, 1000.0]))
    )
    return true, Reading("p", "grid-main", ts, {Q: bad}), *around, kind


def _values(out: list[IntervalEnergy]) -> dict[int, float]:
    return {e.start_ns: e.values[Q] for e in out}


@PROPS
@given(glitched())
def test_a_glitch_anywhere_costs_at_most_its_own_intervals(
    case: tuple[list[Reading], Reading, int, int, str],
) -> None:
    true, bad, lo, hi, kind = case
    if kind == "repeated_ts":
        # it arrived first, so it is the one kept and the true reading is the conflict
        expected = [r for r in true if r.ts_ns != bad.ts_ns]
        readings = [bad, *true]
    else:
        expected, readings = true, [*true, bad]
    want, got = (
        _values(compute_intervals(expected, PARK)),
        _values(compute_intervals(readings, PARK)),
    )
    # the intervals the glitch's two neighbours span are the only ones that may differ...
    own = {s for s in got if s + 1 > interval_start_ns(lo, PARK) and s <= hi}
    assert sorted(got) == sorted(want)
    for start in got:
        if start not in own:
            assert got[start] == want[start]
    # ...and among them the energy is the same: nothing is lost or invented
    total = math.fsum(got[s] for s in own)
    assert total == pytest.approx(math.fsum(want[s] for s in own), rel=1e-9, abs=1e-6)
    assert math.fsum(got.values()) == pytest.approx(true[-1].values[Q] - true[0].values[Q])


def _kept(readings: list[Reading]) -> list[Reading]:
    """The readings as stored: at a repeated ts the first one stays (docs/intervals.md)."""
    seen: set[int] = set()
    out = []
    for r in readings:
        if r.ts_ns not in seen:
            seen.add(r.ts_ns)
            out.append(r)
    return out


@PROPS
@given(glitched(), st.data())
def test_same_result_in_any_arrival_order(
    case: tuple[list[Reading], Reading, int, int, str], data: st.DataObject
) -> None:
    true, bad, _, _, _ = case
    order = _kept(data.draw(st.permutations([bad, *true])))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=5)))
    engine = IntervalEngine(lambda pid: PARK)
    state: dict[int, IntervalEnergy] = {}
    for lo, hi in zip([0, *cuts], [*cuts, len(order)], strict=True):
        state.update({e.start_ns: e for e in engine.add(order[lo:hi])})
    assert state == {e.start_ns: e for e in compute_intervals(order, PARK)}


@PROPS
@given(glitched(), st.data())
def test_same_result_across_a_restart(
    case: tuple[list[Reading], Reading, int, int, str], data: st.DataObject
) -> None:
    true, bad, _, _, _ = case
    readings = sorted(_kept([bad, *true]), key=lambda r: r.ts_ns)
    glitch_at = next(i for i, r in enumerate(readings) if r is bad) if bad in readings else 1
    # the collector stops after storing the glitch (or anywhere else), before what resolves it
    cut = data.draw(st.sampled_from([glitch_at + 1, *range(1, len(readings))]))
    stored, rest = readings[:cut], readings[cut:]
    engine = IntervalEngine(lambda pid: PARK)
    state = {e.start_ns: e for e in engine.add(stored)}
    # restarted: seeded as the collector does (docs/intervals.md, "Collector protocol")
    start = history_start_ns(stored[-1].ts_ns, PARK)
    older = [r for r in stored if r.ts_ns < start]
    restarted = IntervalEngine(lambda pid: PARK)
    restarted.seed([*older[-1:], *(r for r in stored if r.ts_ns >= start)], not older)
    horizon = restarted.horizon("p", "grid-main")
    assert horizon is not None and all(r.ts_ns >= horizon for r in rest)
    state.update({e.start_ns: e for e in restarted.add(rest)})
    assert state == {e.start_ns: e for e in compute_intervals(readings, PARK)}


def test_the_worked_example_of_docs_intervals_md() -> None:
    readings = [
        rd(0, 681_400.0),
        rd(5, 681_405.0),
        rd(7, 5.0),
        rd(10, 681_410.0),
        rd(12, 681_412_000.0),
        rd(15, 681_415.0),
        rd(20, 681_420.0),
    ]
    engine = IntervalEngine(lambda pid: PARK)
    engine.add(readings[:2])
    assert table(engine.add(readings[2:3])) == {A: (5.0, ("suspect",))}
    state = {e.start_ns: e for e in engine.add(readings[3:])}
    assert table(list(state.values())) == {
        A: (pytest.approx(5 + 2 + 3 + 2 + 3), ("glitch",)),
        B: (5.0, ()),
    }
    assert state == {e.start_ns: e for e in compute_intervals(readings, PARK)}
    # the conflicting second reading for 08:05 flags A
    assert engine.held("p", "grid-main", T0 + 5 * MIN) == {Q: (681_405.0, False)}
    (flagged,) = engine.conflict("p", "grid-main", T0 + 5 * MIN)
    assert flagged.flags == ("conflict", "glitch") and flagged.values == state[A].values
    # had 08:10 read 8: a meter replaced without the flag, 5 (from zero) + 3
    replaced = [*readings[:3], rd(10, 8.0)]
    assert table(compute_intervals(replaced, PARK)) == {A: (5.0 + 5.0 + 3.0, ("reset",))}


@PROPS
@given(
    st.floats(10_000, 5e6),
    st.lists(st.tuples(st.integers(60, 1200), st.floats(0, 3000)), min_size=1, max_size=8),
    st.integers(60, 1200),
    st.floats(0, 1),
    st.lists(st.tuples(st.integers(60, 1200), st.floats(0, 300)), min_size=1, max_size=8),
    st.booleans(),
)
def test_a_real_reset_counts_from_the_new_value(
    start_kwh: float,
    before: list[tuple[int, float]],
    gap_s: int,
    fraction: float,
    after: list[tuple[int, float]],
    flagged: bool,
) -> None:
    """A meter replaced (flagged or not): the old counter's increments, then the new one's
    value from zero on; nothing lost or invented, in any arrival order."""
    t, v = T0, start_kwh
    readings = [Reading("p", "grid-main", t, {Q: v})]
    for dt, inc in before:
        t, v = t + dt * 1_000_000_000, v + inc
        readings.append(Reading("p", "grid-main", t, {Q: v}))
    old_total = v - start_kwh
    new = 0.01 * v * fraction  # near zero: at most 1 % of the old reading
    t += gap_s * 1_000_000_000
    readings.append(Reading("p", "grid-main", t, {Q: new}, reset=flagged))
    for dt, inc in after:  # staying low and rising (far below the old reading)
        t, new = t + dt * 1_000_000_000, new + inc
        readings.append(Reading("p", "grid-main", t, {Q: new}))
    out = compute_intervals(readings, PARK)
    total = math.fsum(e.values[Q] for e in out)
    assert total == pytest.approx(old_total + new, rel=1e-9, abs=1e-6)
    assert any("reset" in e.flags for e in out)
    assert not any("glitch" in e.flags or "suspect" in e.flags for e in out)
    engine = IntervalEngine(lambda pid: PARK)
    state = {e.start_ns: e for e in engine.add(list(reversed(readings)))}
    assert state == {e.start_ns: e for e in out}


def test_a_conflict_at_the_newest_reading_flags_its_interval_once_it_has_energy() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    engine.add([rd(0, 681_400.0), rd(15, 681_415.0)])
    # a conflicting reading for 08:15: B has no segment yet, nothing to write...
    assert engine.conflict("p", "grid-main", B) == []
    # ...but B says so as soon as it has one
    assert table(engine.add([rd(20, 681_420.0)])) == {B: (5.0, ("conflict",))}
