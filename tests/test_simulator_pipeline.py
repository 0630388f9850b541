"""Ground truth against the collector's own path: decoder → interval engine equals the truth."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.intervals.engine import compute_intervals
from app.registry import parse_registry
from app.telemetry.decode import TelemetryDecoder
from app.telemetry.models import Reading
from simulator import GatewayOptions, TruthAccumulator, simulate

SH = ZoneInfo("Asia/Shanghai")
NS = 10**9
REGISTRY = parse_registry(
    """
parks:
  - id: demo
    timezone: Asia/Shanghai
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 1500}
      - {id: wind-1, role: wind, max_kw: 2000}
      - {id: green-line, role: green_direct, max_kw: 1500}
      - {id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 800}
      - {id: boiler-1, role: heat_fuel, fuel: natural_gas, max_kw: 2000}
      - {id: dh-inlet, role: heat_purchased, max_kw: 3000}
      - {id: hp-1, role: heat_pump, max_kw: 500}
      - {id: bldg-a, role: load, included_in: grid-main, max_kw: 600}
"""
)
START = datetime(2026, 2, 2, tzinfo=SH)


@pytest.mark.parametrize(
    "options",
    [
        GatewayOptions(),
        GatewayOptions(
            batch=3,
            offline_per_day=6.0,
            resets_per_day=2.0,
            replacements_per_day=2.0,
            malformed_rate=0.01,
        ),
    ],
    ids=["clean", "faults"],
)
def test_interval_engine_reproduces_the_truth(options: GatewayOptions) -> None:
    park = REGISTRY.park("demo")
    assert park is not None
    truth = TruthAccumulator()
    msgs = list(
        simulate(REGISTRY, "demo", START, timedelta(hours=24), 60, 21, options, truth=truth)
    )
    decoder = TelemetryDecoder(REGISTRY)
    now_ns = int(START.timestamp()) * NS + 25 * 3600 * NS
    readings: list[Reading] = []
    for m in msgs:
        out = decoder.decode(m.topic, m.payload, now_ns)
        assert len(out.deadletters) == (m.malformed is not None)
        readings.extend(out.readings)
    computed = compute_intervals(readings, park)
    got = {(e.device, name, e.start_ns): v for e in computed for name, v in e.values.items()}
    expected = {(d, c, s): v for (_p, d, c, s), v in truth.by_interval().items()}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    # nothing estimated or rejected: one reading a minute, every meter within its max_kw
    assert not any(e.estimated or "implausible" in e.flags for e in computed)


def test_injected_glitches_cost_no_energy_and_are_flagged() -> None:
    park = REGISTRY.park("demo")
    assert park is not None
    truth = TruthAccumulator()
    options = GatewayOptions(glitches_per_day=24.0)  # about one per device-hour
    msgs = list(simulate(REGISTRY, "demo", START, timedelta(hours=12), 60, 5, options, truth=truth))
    glitches = [m for m in msgs if m.glitch is not None]
    kinds = {m.glitch for m in glitches}
    assert kinds == {
        "glitch_zero",
        "glitch_wrong_register",
        "glitch_spike",
        "glitch_repeated_ts",
    }
    decoder = TelemetryDecoder(REGISTRY)
    now_ns = int(START.timestamp()) * NS + 13 * 3600 * NS
    readings: list[Reading] = []
    for m in msgs:  # publication order: at a repeated ts the real reading came first
        out = decoder.decode(m.topic, m.payload, now_ns)
        assert not out.deadletters
        readings.extend(out.readings)
    computed = compute_intervals(readings, park)
    got = {(e.device, name, e.start_ns): v for e in computed for name, v in e.values.items()}
    expected = {(d, c, s): v for (_p, d, c, s), v in truth.by_interval().items()}
    assert set(got) == set(expected)
    # each glitch lands inside one 1-min step, which lies in one interval: bridging it over
    # that step gives exactly the true energy of every interval
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    flagged = {(e.device, e.start_ns) for e in computed if "glitch" in e.flags}
    # every glitch but the repeated ts (the second at its ts, so never used) flags the one
    # interval it lies in (Asia/Shanghai quarter hours are UTC quarter hours)
    want = set()
    for m in glitches:
        if m.glitch != "glitch_repeated_ts":
            ts = int(datetime.fromisoformat(json.loads(m.payload)["ts"]).timestamp()) * NS
            want.add((m.topic.split("/")[3], ts - ts % (900 * NS)))
    assert len(want) > 10 and flagged == want
