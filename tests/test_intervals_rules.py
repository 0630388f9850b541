"""Interval energies from counters: resets, replacements, implausible jumps, gaps, late data."""

from __future__ import annotations

import pytest

from app.intervals import IntervalEnergy, IntervalEngine, compute_intervals
from app.registry.models import Park
from app.telemetry.models import Reading

MIN = 60 * 1_000_000_000
T0 = 1_795_392_000 * 1_000_000_000  # 2026-11-23T00:00Z = 08:00 Asia/Shanghai
A, B, C, D, E, F = (T0 + k * 15 * MIN for k in range(6))  # interval starts 08:00, 08:15, ...

PARK = Park.model_validate(
    {
        "id": "p",
        "timezone": "Asia/Shanghai",
        "devices": [
            {"id": "m", "role": "grid"},
            {"id": "pv", "role": "pv", "max_kw": 100},
            {"id": "dh", "role": "heat_purchased", "max_kw": 1000},
        ],
    }
)


def rd(minute: float, device: str = "m", reset: bool = False, **values: float) -> Reading:
    return Reading("p", device, T0 + int(minute * MIN), dict(values), reset)


def by_start(out: list[IntervalEnergy]) -> dict[int, IntervalEnergy]:
    assert len({(e.device, e.start_ns) for e in out}) == len(out)
    return {e.start_ns: e for e in out}


def check(
    out: list[IntervalEnergy], expected: dict[int, tuple[float, tuple[str, ...], bool]], q: str
) -> None:
    got = by_start(out)
    assert sorted(got) == sorted(expected)
    for start, (value, flags, estimated) in expected.items():
        assert got[start].values[q] == pytest.approx(value, abs=1e-9), start
        assert got[start].flags == flags, start
        assert got[start].estimated is estimated, start
        assert got[start].end_ns == start + 15 * MIN


def test_segment_inside_one_interval_and_boundary_reading() -> None:
    out = compute_intervals(
        [rd(1, energy_import_kwh=5), rd(14, energy_import_kwh=18), rd(15, energy_import_kwh=19)],
        PARK,
    )
    # 1->14: 13 in A; 14->15: 1 in A (ends exactly at B's start, so B gets nothing)
    check(out, {A: (14.0, (), False)}, "energy_import_kwh")
    assert out[0].role == "grid" and out[0].park == "p" and out[0].device == "m"


def test_reset_flag() -> None:
    readings = [
        rd(0, energy_import_kwh=1000),
        rd(5, energy_import_kwh=1010),
        rd(10, reset=True, energy_import_kwh=3),
        rd(20, energy_import_kwh=8),
    ]
    # A: 0->5 = 10; 5->10 reset, counts from zero = 3; 10->20 = 5 over 10 min, 5 min in A = 2.5
    #    => 15.5, flagged reset (the reset segment lies in A)
    # B: the other 2.5 of 10->20, no flag
    check(
        compute_intervals(readings, PARK),
        {A: (15.5, ("reset",), False), B: (2.5, (), False)},
        "energy_import_kwh",
    )


def test_meter_replaced_drop_to_near_zero_without_flag() -> None:
    readings = [
        rd(0, energy_import_kwh=50000),
        rd(10, energy_import_kwh=50020),
        rd(20, energy_import_kwh=12),  # 12 <= 1 % of 50020 -> new meter, counts from zero
        rd(30, energy_import_kwh=22),
    ]
    # A: 0->10 = 20, plus 10->20 reset amount 12 spread over 10 min: 5 min in A = 6 => 26
    # B: other half of the reset segment = 6, plus 20->30 = 10 => 16
    check(
        compute_intervals(readings, PARK),
        {A: (26.0, ("reset",), False), B: (16.0, ("reset",), False)},
        "energy_import_kwh",
    )


def test_decrease_that_is_not_a_reset() -> None:
    readings = [
        rd(0, energy_import_kwh=1000),
        rd(5, energy_import_kwh=1010),
        rd(10, energy_import_kwh=990),  # far above 1 % of 1010: a decrease, not a new meter
        rd(20, energy_import_kwh=1000),
    ]
    # A: 10 + 0 (decrease never subtracted) + half of (1000-990) = 15, flagged
    # B: other half = 5; 990 is the new baseline
    check(
        compute_intervals(readings, PARK),
        {A: (15.0, ("counter_decrease",), False), B: (5.0, (), False)},
        "energy_import_kwh",
    )


def test_implausible_jump() -> None:
    readings = [
        rd(0, "pv", energy_kwh=1000),
        rd(5, "pv", energy_kwh=1008),  # 8 kWh in 5 min = 96 kW; limit 100*(300+60)/3600+1 = 11
        rd(10, "pv", energy_kwh=5000),  # 3992 kWh in 5 min: limit 11 -> not counted
        rd(20, "pv", energy_kwh=5010),  # 10 kWh in 10 min; limit 100*660/3600+1 = 19.33 -> ok
    ]
    # A: 8 + 0 + half of 10 = 13, flagged implausible; B: other half = 5
    check(
        compute_intervals(readings, PARK),
        {A: (13.0, ("implausible",), False), B: (5.0, (), False)},
        "energy_kwh",
    )


def test_implausible_heat_gj_is_converted_to_kwh() -> None:
    readings = [
        rd(0, "dh", heat_gj=100.0),
        rd(5, "dh", heat_gj=100.3),  # 0.3 GJ = 83.3 kWh; limit 1000*360/3600+1 = 101 -> ok
        rd(10, "dh", heat_gj=101.3),  # 1 GJ = 277.8 kWh > 101 -> implausible
    ]
    check(compute_intervals(readings, PARK), {A: (0.3, ("implausible",), False)}, "heat_gj")


def test_one_hour_gap_is_spread_and_estimated() -> None:
    readings = [
        rd(0, energy_import_kwh=100),
        rd(15, energy_import_kwh=110),
        rd(75, energy_import_kwh=150),  # 60 min > 1.5 x 15 min: a gap
        rd(90, energy_import_kwh=155),
    ]
    # 15->75: 40 kWh over 60 min = 10 per quarter hour in B, C, D, E (estimated, gap)
    est = (10.0, ("gap",), True)
    check(
        compute_intervals(readings, PARK),
        {A: (10.0, (), False), B: est, C: est, D: est, E: est, F: (5.0, (), False)},
        "energy_import_kwh",
    )


def test_unaligned_gap() -> None:
    readings = [rd(10, energy_import_kwh=0), rd(70, energy_import_kwh=60)]
    # 1 kWh/min from 08:10 to 09:10: A gets 5, B, C, D 15 each, E 10; all estimated
    out = compute_intervals(readings, PARK)
    check(
        out,
        {
            A: (5.0, ("gap",), True),
            B: (15.0, ("gap",), True),
            C: (15.0, ("gap",), True),
            D: (15.0, ("gap",), True),
            E: (10.0, ("gap",), True),
        },
        "energy_import_kwh",
    )


def test_twenty_minute_spacing_is_not_a_gap() -> None:
    out = compute_intervals([rd(0, energy_import_kwh=0), rd(20, energy_import_kwh=20)], PARK)
    check(out, {A: (15.0, (), False), B: (5.0, (), False)}, "energy_import_kwh")


def test_counters_are_independent_and_zero_is_kept() -> None:
    readings = [
        rd(0, energy_import_kwh=10, energy_export_kwh=5, power_kw=3),
        rd(5, energy_import_kwh=12),  # no export here
        rd(10, energy_import_kwh=12, energy_export_kwh=5),
        rd(20, power_kw=7, voltage_v=400),  # instantaneous only: ignored
    ]
    out = compute_intervals(readings, PARK)
    # import 0->5: 2, 5->10: 0; export 0->10: 0 (kept as 0.0); nothing in B
    assert [(e.start_ns, e.values) for e in out] == [
        (A, {"energy_export_kwh": 0.0, "energy_import_kwh": 2.0})
    ]


def test_unknown_devices_and_parks_are_ignored() -> None:
    readings = [
        rd(0, "ghost", energy_import_kwh=1),
        rd(5, "ghost", energy_import_kwh=2),
        Reading("other", "m", T0, {"energy_import_kwh": 1.0}),
        Reading("other", "m", T0 + 5 * MIN, {"energy_import_kwh": 9.0}),
    ]
    assert compute_intervals(readings, PARK) == []
    engine = IntervalEngine(lambda pid: PARK if pid == "p" else None)
    assert engine.add(readings) == []
    assert engine.unknown_readings == 4


def test_late_reading_recomputes_only_touched_intervals() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    first = engine.add(
        [rd(0, energy_import_kwh=0), rd(20, energy_import_kwh=20), rd(40, energy_import_kwh=40)]
    )
    # 1 kWh/min: A 15, B 15, C 10 (08:30-08:40)
    check(
        first,
        {A: (15.0, (), False), B: (15.0, (), False), C: (10.0, (), False)},
        "energy_import_kwh",
    )
    late = engine.add([rd(10, energy_import_kwh=16)])
    # segments now 0->10: 16 (A), 10->20: 4 over 10 min (2 in A, 2 in B),
    # 20->40: 20 (10 in B, 10 in C)
    # A = 16 + 2 = 18, B = 2 + 10 = 12; C untouched, not re-emitted
    check(late, {A: (18.0, (), False), B: (12.0, (), False)}, "energy_import_kwh")
    # the same late reading again: nothing changes
    assert engine.add([rd(10, energy_import_kwh=16)]) == []
    # a duplicate with another value: the first one stays (the collector keeps the other
    # as a conflict record), nothing changes
    assert engine.add([rd(10, energy_import_kwh=6)]) == []


def test_each_interval_at_most_once_per_call() -> None:
    engine = IntervalEngine(lambda pid: PARK)
    out = engine.add([rd(m, energy_import_kwh=m * 2.0) for m in (0, 3, 6, 9, 12, 14, 1, 7)])
    # 2 kWh/min from 0 to 14 min, all in A
    check(out, {A: (28.0, (), False)}, "energy_import_kwh")


@pytest.mark.parametrize(
    ("v1", "expected_a", "flags"),
    [
        # 10 <= 1 % of 1000: a new counter, counts from zero: 10 in A
        (10.0, 10.0, ("reset",)),
        # 10.5 > 1 %: an ordinary decrease, 0
        (10.5, 0.0, ("counter_decrease",)),
    ],
)
def test_near_zero_threshold(v1: float, expected_a: float, flags: tuple[str, ...]) -> None:
    # the reading after the drop stays low and rises (+1): a reset, not a glitch
    out = compute_intervals(
        [
            rd(0, energy_import_kwh=1000),
            rd(5, energy_import_kwh=v1),
            rd(10, energy_import_kwh=v1 + 1),
        ],
        PARK,
    )
    check(out, {A: (expected_a + 1, flags, False)}, "energy_import_kwh")


@pytest.mark.parametrize(
    ("delta", "expected_a", "flags"),
    [
        # 5 min at max 100 kW: limit 100 * (300 + 60) / 3600 + 1 = 11 kWh, inclusive
        (11.0, 11.0, ()),
        (11.01, 0.0, ("implausible",)),
    ],
)
def test_implausible_threshold(delta: float, expected_a: float, flags: tuple[str, ...]) -> None:
    out = compute_intervals([rd(0, "pv", energy_kwh=0), rd(5, "pv", energy_kwh=delta)], PARK)
    check(out, {A: (expected_a, flags, False)}, "energy_kwh")


def test_gas_counter_has_no_power_bound() -> None:
    park = Park.model_validate(
        {
            "id": "p",
            "devices": [
                {"id": "b", "role": "heat_fuel", "fuel": "natural_gas", "max_kw": 1},
            ],
        }
    )
    readings = [rd(0, "b", gas_m3=0), rd(5, "b", gas_m3=5000)]
    # m3 is not energy: max_kw does not apply, all 5000 m3 in A
    assert [(e.start_ns, e.values, e.flags) for e in compute_intervals(readings, park)] == [
        (A, {"gas_m3": 5000.0}, ())
    ]
