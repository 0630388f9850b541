"""Simulator messages: determinism, counters, gateway faults, decoder acceptance, ground truth."""

from __future__ import annotations

import csv
import itertools
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.registry import parse_registry
from app.registry.models import Registry
from app.telemetry.decode import TelemetryDecoder
from app.telemetry.models import RejectReason
from simulator import GatewayOptions, SimMessage, TruthAccumulator, add_synthetic_loads, simulate
from simulator.gateway import SimStats

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
      - {id: green-line, role: green_direct}
      - {id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 800}
      - {id: boiler-1, role: heat_fuel, fuel: natural_gas}
      - {id: dh-inlet, role: heat_purchased}
      - {id: hp-1, role: heat_pump, max_kw: 500}
      - {id: bldg-a, role: load, included_in: grid-main, max_kw: 600}
      - {id: ev-1, role: ev_charger, max_kw: 240}
"""
)
START = datetime(2026, 1, 12, 0, 0, tzinfo=SH)
FAULTS = GatewayOptions(
    batch=1,
    offline_per_day=6.0,
    offline_max_min=50.0,
    resets_per_day=1.0,
    replacements_per_day=1.0,
    malformed_rate=0.01,
)


def run(
    hours: float = 24,
    seed: int = 1,
    options: GatewayOptions | None = None,
    registry: Registry = REGISTRY,
    step_s: int = 60,
) -> tuple[list[SimMessage], TruthAccumulator, SimStats]:
    truth, stats = TruthAccumulator(), SimStats()
    msgs = list(
        simulate(
            registry,
            "demo",
            START,
            timedelta(hours=hours),
            step_s,
            seed,
            options,
            truth=truth,
            stats=stats,
        )
    )
    return msgs, truth, stats


def readings_of(msgs: list[SimMessage]) -> dict[str, list[dict[str, object]]]:
    """Per device, every reading (in publication order), malformed payloads left out."""
    out: dict[str, list[dict[str, object]]] = defaultdict(list)
    for m in msgs:
        if m.malformed:
            continue
        device = m.topic.split("/")[3]
        doc = json.loads(m.payload)
        out[device].extend(doc if isinstance(doc, list) else [doc])
    return out


def ts_ns(reading: dict[str, object]) -> int:
    return int(datetime.fromisoformat(str(reading["ts"])).timestamp()) * NS


def interval_start(t: int) -> int:
    # Asia/Shanghai is UTC+8 all year: local quarter hours are UTC quarter hours shifted by 8 h
    return t - (t + 8 * 3600 * NS) % (900 * NS)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_different() -> None:
    a, _, _ = run(6, seed=11, options=FAULTS)
    b, _, _ = run(6, seed=11, options=FAULTS)
    c, _, _ = run(6, seed=12, options=FAULTS)
    assert a == b
    assert [m.payload for m in a] != [m.payload for m in c]


def test_messages_in_simulated_time_order_and_topics() -> None:
    msgs, _, _ = run(2)
    assert [m.sim_ns for m in msgs] == sorted(m.sim_ns for m in msgs)
    devices = {d.id for d in REGISTRY.parks[0].devices}
    assert {m.topic for m in msgs} == {f"lingtan/v1/demo/{d}/telemetry" for d in devices}
    # 2 h at 60 s: 121 readings per device (both ends), one per message
    assert len(msgs) == 121 * len(devices)


def test_payload_shape_per_role() -> None:
    msgs, _, _ = run(1)
    first = {m.topic.split("/")[3]: json.loads(m.payload) for m in msgs[:10]}
    assert first["grid-main"]["ts"] == "2026-01-12T00:00:00+08:00"
    assert set(first["grid-main"]) == {"ts", "energy_import_kwh", "energy_export_kwh", "power_kw"}
    assert {"energy_kwh", "power_kw"} <= set(first["pv-1"])
    assert set(first["green-line"]) == {"ts", "energy_import_kwh", "power_kw"}
    assert {"energy_charge_kwh", "energy_discharge_kwh", "soc_pct", "power_kw"} <= set(
        first["bess-1"]
    )
    assert {"gas_m3", "heat_kwh", "supply_temp_c", "return_temp_c"} <= set(first["boiler-1"])
    assert "heat_gj" in first["dh-inlet"]
    assert {"energy_import_kwh", "heat_kwh", "temp_c"} <= set(first["hp-1"])
    assert set(first["bldg-a"]) == {"ts", "energy_import_kwh", "power_kw"}
    # midnight in January: no sun
    assert first["pv-1"]["power_kw"] == 0.0


# --- counters and ground truth --------------------------------------------------------------


def check_truth(msgs: list[SimMessage], truth: TruthAccumulator, stats: SimStats) -> None:
    expected: dict[tuple[str, str, int], int] = defaultdict(int)
    silent = 0
    for device, readings in readings_of(msgs).items():
        readings.sort(key=ts_ns)
        for r0, r1 in itertools.pairwise(readings):
            assert ts_ns(r1) - ts_ns(r0) == 60 * NS  # nothing lost, nothing duplicated
            counters = [k for k in r1 if k.endswith(("_kwh", "_m3", "_gj", "_kg"))]
            dropped = any(r1[k] < r0[k] for k in counters)  # type: ignore[operator]
            if dropped and not r1.get("reset"):
                silent += 1
                # the collector's "near zero" rule: at most 1 % of the previous value
                assert all(r1[k] <= 0.01 * r0[k] or r0[k] == 0 for k in counters)  # type: ignore[operator]
            for k in counters:
                v0, v1 = round(r0[k] * 1000), round(r1[k] * 1000)  # type: ignore[operator]
                delta = v1 if (r1.get("reset") or dropped) else v1 - v0
                assert delta >= 0
                expected[(device, k, interval_start(ts_ns(r0)))] += delta
    assert silent == stats.replacements
    got = {(d, c, s): round(v * 1000) for (_p, d, c, s), v in truth.by_interval().items()}
    assert got == dict(expected)


def test_ground_truth_equals_published_counter_deltas() -> None:
    msgs, truth, stats = run(24)
    check_truth(msgs, truth, stats)
    # one day at 15 min: 96 intervals for each of the 12 counters of the park
    assert len(truth.by_interval()) == 96 * 14


def test_ground_truth_holds_through_outages_resets_and_replacements() -> None:
    msgs, truth, stats = run(48, seed=3, options=FAULTS)
    assert stats.outages >= 3 and stats.resets >= 3 and stats.replacements >= 1
    check_truth(msgs, truth, stats)


def test_counters_monotone_except_at_resets() -> None:
    msgs, _, stats = run(48, seed=3, options=FAULTS)
    flagged = 0
    for readings in readings_of(msgs).values():
        readings.sort(key=ts_ns)
        for r0, r1 in itertools.pairwise(readings):
            flagged += bool(r1.get("reset"))
            for k in ("energy_import_kwh", "energy_export_kwh", "energy_kwh", "gas_m3"):
                if k in r1 and r1[k] < r0[k]:  # type: ignore[operator]
                    assert r1.get("reset") or r1[k] <= 0.01 * r0[k]  # type: ignore[operator]
    assert flagged == stats.resets


def test_truth_balance_grid_equals_consumption_minus_supply() -> None:
    _, truth, _ = run(24, seed=2)
    tot = {(d, c): v for (_p, d, c), v in truth.totals().items()}
    net_grid = tot[("grid-main", "energy_import_kwh")] - tot[("grid-main", "energy_export_kwh")]
    consumption = sum(tot[(d, "energy_import_kwh")] for d in ("bldg-a", "ev-1", "hp-1"))
    supply = (
        tot[("pv-1", "energy_kwh")]
        + tot[("wind-1", "energy_kwh")]
        + tot[("green-line", "energy_import_kwh")]
    )
    storage = tot[("bess-1", "energy_charge_kwh")] - tot[("bess-1", "energy_discharge_kwh")]
    # per-counter 0.001 rounding per step: at most 1440 steps × 0.0005 per counter
    assert net_grid == pytest.approx(consumption + storage - supply, abs=1440 * 0.0005 * 9)


def test_truth_files(tmp_path: Path) -> None:
    _, truth, _ = run(1)
    truth.write(tmp_path / "t.csv")
    truth.write(tmp_path / "t.json")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    doc = json.loads((tmp_path / "t.json").read_text())["intervals"]
    assert len(rows) == len(doc) == 4 * 14
    grid = [r for r in rows if r["device"] == "grid-main" and r["counter"] == "energy_import_kwh"]
    assert [r["interval_start"] for r in grid] == [
        "2026-01-12T00:00:00+08:00",
        "2026-01-12T00:15:00+08:00",
        "2026-01-12T00:30:00+08:00",
        "2026-01-12T00:45:00+08:00",
    ]
    assert grid[0]["role"] == "grid" and grid[0]["interval_end"] == "2026-01-12T00:15:00+08:00"


# --- gateway behaviour ----------------------------------------------------------------------


def test_batches_are_arrays_of_n() -> None:
    msgs, _, stats = run(2, options=GatewayOptions(batch=5))
    sizes = [len(json.loads(m.payload)) for m in msgs]
    assert all(isinstance(json.loads(m.payload), list) for m in msgs)
    # 121 readings per device: 24 arrays of 5 and a last one of 1, flushed at the end
    assert sorted(set(sizes)) == [1, 5]
    assert stats.readings == 121 * 10 == sum(sizes)


def test_outage_buffers_and_flushes_late_as_arrays() -> None:
    msgs, _, stats = run(24, seed=5, options=GatewayOptions(offline_per_day=4.0))
    assert stats.outages >= 1
    late = [
        m
        for m in msgs
        if ts_ns(json.loads(m.payload)[0] if m.payload.startswith(b"[") else json.loads(m.payload))
        < m.sim_ns
    ]
    assert late and all(m.payload.startswith(b"[") for m in late)
    assert max(m.readings for m in late) >= 5
    assert sum(m.readings for m in msgs) == 1441 * 10  # nothing lost


def test_clock_skew_shifts_some_devices_ts() -> None:
    msgs, _, stats = run(1, seed=2, options=GatewayOptions(skew_max_s=120))
    assert stats.skewed_devices  # seed 2 skews at least one of ten devices
    for m in msgs:
        device = m.topic.split("/")[3]
        skew = stats.skewed_devices.get(device, 0)
        assert ts_ns(json.loads(m.payload)) - m.sim_ns == skew * NS
        assert abs(skew) <= 120


def test_decoder_accepts_everything_but_the_injected_faults() -> None:
    msgs, _, stats = run(48, seed=3, options=FAULTS)
    decoder = TelemetryDecoder(REGISTRY)
    now_ns = int(START.timestamp()) * NS + 49 * 3600 * NS
    accepted = 0
    reasons: dict[str, set[RejectReason]] = defaultdict(set)
    for m in msgs:
        out = decoder.decode(m.topic, m.payload, now_ns)
        if m.malformed is None:
            assert out.deadletters == [], out.deadletters[:1]
            assert len(out.readings) == m.readings
            accepted += len(out.readings)
        else:
            assert out.readings == [] and len(out.deadletters) == 1
            reasons[m.malformed].add(out.deadletters[0].reason)
    assert accepted == stats.readings == 2881 * 10
    assert sum(m.malformed is not None for m in msgs) == stats.malformed_total > 0
    expected = {
        "invalid_json": RejectReason.INVALID_JSON,
        "string_number": RejectReason.INVALID_READING,
        "non_finite": RejectReason.NON_FINITE,
        "negative_counter": RejectReason.OUT_OF_RANGE,
        "unknown_device": RejectReason.UNKNOWN_DEVICE,
        "no_quantities": RejectReason.INVALID_READING,
        "clock_unset": RejectReason.OUT_OF_RANGE,
    }
    for kind, got in reasons.items():
        assert got == {expected[kind]}


def test_synthetic_loads_are_registered_and_published() -> None:
    big = add_synthetic_loads(REGISTRY, 25, seed=4)
    park = big.park("demo")
    assert park is not None and len(park.devices) == 35
    extra = [d for d in park.devices if d.id.startswith("sim-load-")]
    assert [d.id for d in extra][:2] == ["sim-load-00001", "sim-load-00002"]
    assert all(d.included_in == "grid-main" and d.max_kw for d in extra)
    msgs, truth, _ = run(1, registry=big)
    assert len({m.topic for m in msgs}) == 35
    dec_big, dec_small = TelemetryDecoder(big), TelemetryDecoder(REGISTRY)
    now_ns = int(START.timestamp()) * NS + 2 * 3600 * NS
    syn = next(m for m in msgs if "sim-load-00007" in m.topic)
    assert dec_big.decode(syn.topic, syn.payload, now_ns).deadletters == []
    assert dec_small.decode(syn.topic, syn.payload, now_ns).deadletters[0].reason == (
        RejectReason.UNKNOWN_DEVICE
    )
    # the synthetic loads are inside the grid meter: the balance still closes
    tot = {(d, c): v for (_p, d, c), v in truth.totals().items()}
    loads = sum(v for (d, c), v in tot.items() if d.startswith("sim-load-"))
    assert loads > 0
    net_grid = tot[("grid-main", "energy_import_kwh")] - tot[("grid-main", "energy_export_kwh")]
    own = sum(tot[(d, "energy_import_kwh")] for d in ("bldg-a", "ev-1", "hp-1"))
    supply = (
        tot[("pv-1", "energy_kwh")]
        + tot[("wind-1", "energy_kwh")]
        + tot[("green-line", "energy_import_kwh")]
    )
    storage = tot[("bess-1", "energy_charge_kwh")] - tot[("bess-1", "energy_discharge_kwh")]
    # 60 steps × 0.0005 rounding for each of the 34 counters involved
    assert net_grid == pytest.approx(own + loads + storage - supply, abs=60 * 0.0005 * 34)


def test_step_must_divide_the_interval() -> None:
    with pytest.raises(ValueError, match="dividing"):
        list(simulate(REGISTRY, "demo", START, 3600, 7, 0))
    with pytest.raises(ValueError, match="not in the registry"):
        list(simulate(REGISTRY, "nope", START, 3600, 60, 0))


def test_start_is_floored_to_the_step_in_local_time() -> None:
    msgs = list(simulate(REGISTRY, "demo", START + timedelta(seconds=100), 600, 300, 0))
    assert json.loads(msgs[0].payload)["ts"] == "2026-01-12T00:00:00+08:00"
    assert json.loads(msgs[-1].payload)["ts"] == "2026-01-12T00:10:00+08:00"
