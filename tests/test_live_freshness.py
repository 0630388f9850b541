"""Freshness by each device's own cadence, per quantity; heat meters and the emission rate."""

from __future__ import annotations

import pytest

from app.live.freshness import MIN_STALE_NS, QuantitySeen, stale_limit_ns
from app.live.state import LiveState
from app.registry import parse_registry
from app.telemetry.models import Reading

S = 1_000_000_000
T0 = 1_780_000_000 * S  # 2026-05-28T20:26:40Z

REGISTRY = parse_registry(
    """
parks:
  - id: heat
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    devices:
      - {id: grid-main, role: grid}
      - {id: boiler, role: heat_fuel, fuel: natural_gas}
      - {id: dh, role: heat_purchased}
      - {id: hp, role: heat_pump}
      - {id: h2, role: hydrogen, h2_class: grey}
      - {id: meter-h, role: load, included_in: grid-main}
"""
)


def test_cadence_is_the_median_of_the_latest_gaps() -> None:
    s = QuantitySeen(T0)
    assert s.cadence_ns is None
    for t in (60, 120, 720, 780):  # gaps 60, 60, 600 (an outage), 60 s
        s = s.seen_at(T0 + t * S)
    assert s.gaps == (60 * S, 60 * S, 600 * S, 60 * S)
    assert s.cadence_ns == 60 * S  # the outage does not move it
    assert s.seen_at(T0) is s  # an older report changes nothing
    for t in (840, 900, 960):  # only the last 5 gaps are kept
        s = s.seen_at(T0 + t * S)
    assert s.gaps == (600 * S, 60 * S, 60 * S, 60 * S, 60 * S)


def test_stale_limit_follows_the_cadence() -> None:
    assert stale_limit_ns(None, 900 * S) == 900 * S  # unknown cadence: the default
    assert stale_limit_ns(60 * S, 900 * S) == 180 * S  # three reports overdue
    assert stale_limit_ns(3600 * S, 900 * S) == 3 * 3600 * S  # hourly meter: 3 h
    assert stale_limit_ns(1 * S, 900 * S) == MIN_STALE_NS == 60 * S


def _state(clock: list[int]) -> LiveState:
    return LiveState(REGISTRY, clock=lambda: clock[0], min_render_interval_s=0.0)


def _minutely_heat(live: LiveState, minutes: int) -> None:
    """Boiler, district heat and hydrogen meters sending counters every minute, no kW."""
    for m in range(minutes):
        ts = T0 + m * 60 * S
        live.apply(
            [
                # +1.5 m³ gas and +13.8 kWh heat a minute: 90 m³/h, 828 kW
                Reading(
                    "heat", "boiler", ts, {"gas_m3": 500.0 + 1.5 * m, "heat_kwh": 1e4 + 13.8 * m}
                ),
                # +0.03 GJ a minute: 1.8 GJ/h = 500 kW
                Reading("heat", "dh", ts, {"heat_gj": 100.0 + 0.03 * m}),
                # +0.1 kg a minute: 6 kg/h
                Reading("heat", "h2", ts, {"h2_kg": 10.0 + 0.1 * m}),
                Reading("heat", "grid-main", ts, {"power_kw": 1000.0}),
                Reading("heat", "hp", ts, {"power_kw": 100.0, "heat_kwh": 2e4 + 5.0 * m}),
            ]
        )


def test_minutely_heat_meters_without_kw_are_fresh_and_counted() -> None:
    last = T0 + 4 * 60 * S
    clock = [last + 100 * S]  # 100 s after the last report: < 3 × 60 s
    live = _state(clock)
    _minutely_heat(live, 5)
    doc = live.document("heat")
    assert doc["stale_devices"] == []
    assert doc["stale_quantities"] == {}
    # the sub-meter that never reported is neither stale nor missing from the balance
    assert doc["missing_devices"] == []
    assert doc["freshness"]["boiler"] == 100.0 and doc["freshness"]["meter-h"] is None
    th = doc["thermal"]
    assert th["district_heat_kw"] == pytest.approx(500.0)
    assert th["district_heat_gj_per_h"] == pytest.approx(1.8)
    assert th["boiler_heat_kw"] == pytest.approx(828.0)
    assert th["heat_pump_heat_kw"] == pytest.approx(300.0) and th["heat_pump_kw"] == 100.0
    assert th["hydrogen_kg_per_h"] == pytest.approx(6.0)
    assert th["fuels"] == [{"fuel": "natural_gas", "counter": "gas_m3", "per_h": pytest.approx(90)}]
    assert doc["power_kw"]["heat_pump"] == 100.0
    # kgCO2/h: grid 1000 × 0.5122 = 512.2; gas 90 × 2.162 = 194.58; heat 1.8 × 110 = 198
    rate = doc["emission_rate_kg_per_h"]
    assert doc["emission_rate_location_kg_per_h"] == pytest.approx(904.78)
    # market: 1000 × 0.6096 = 609.6 + 194.58 + 198 = 1002.18
    assert doc["emission_rate_market_kg_per_h"] == pytest.approx(1002.18)
    assert rate["scope1"] == pytest.approx(194.58)
    assert rate["heat_purchased"] == pytest.approx(198.0)
    assert rate["hydrogen"] == pytest.approx(6.0 * 29.02)
    assert rate["complete"] is True and rate["missing_devices"] == []

    # 181 s after the last report (> 3 × 60 s) every device is stale, nothing counted
    clock[0] = last + 181 * S
    doc = live.document("heat")
    assert doc["stale_devices"] == ["grid-main", "boiler", "dh", "hp", "h2"]
    assert doc["thermal"]["heat_kw"] == 0.0
    assert doc["emission_rate_kg_per_h"]["complete"] is False
    assert doc["emission_rate_kg_per_h"]["missing_devices"] == ["grid-main", "boiler", "dh", "h2"]


def test_one_report_gives_no_rate_yet_and_the_default_limit() -> None:
    clock = [T0 + 800 * S]
    live = _state(clock)
    live.apply([Reading("heat", "dh", T0, {"heat_gj": 100.0})])
    doc = live.document("heat")
    # seen once: fresh (800 s < the 900 s default) but its flow is not known yet
    assert doc["stale_devices"] == []
    assert "dh" in doc["missing_devices"]
    assert doc["emission_rate_kg_per_h"]["complete"] is False
    clock[0] = T0 + 901 * S
    assert live.document("heat")["stale_devices"] == ["dh"]


def test_hourly_meter_is_judged_by_its_own_cadence() -> None:
    clock = [T0]
    live = _state(clock)
    for h in range(3):
        live.apply([Reading("heat", "dh", T0 + h * 3600 * S, {"heat_gj": 100.0 + 2.0 * h})])
    # two hours after its last report: fresh for an hourly meter (limit 3 h), 2 GJ/h
    clock[0] = T0 + 4 * 3600 * S
    doc = live.document("heat", detail=True)
    assert "dh" not in doc["stale_devices"]
    assert doc["thermal"]["district_heat_gj_per_h"] == pytest.approx(2.0)
    (dh,) = [d for d in doc["devices"] if d["id"] == "dh"]
    assert dh["quantities"] == {"heat_gj": {"age_s": 7200.0, "cadence_s": 3600.0, "stale": False}}
    assert dh["rates_per_h"] == {"heat_gj": pytest.approx(2.0)}
    clock[0] = T0 + 5 * 3600 * S + S  # 3 h + 1 s after the last report
    assert "dh" in live.document("heat")["stale_devices"]


def test_each_quantity_has_its_own_cadence() -> None:
    # power every 10 s, the heat counter every 15 min: both fresh at their own pace
    clock = [T0]
    live = _state(clock)
    for k in range(0, 1801, 10):
        values = {"power_kw": 100.0}
        if k % 900 == 0:
            values["heat_kwh"] = 2e4 + 75.0 * (k // 900)  # 75 kWh / 15 min = 300 kW
        live.apply([Reading("heat", "hp", T0 + k * S, values)])
    clock[0] = T0 + 1850 * S  # 50 s after the last power report, 50 s after the counter
    doc = live.document("heat")
    assert doc["stale_devices"] == [] and doc["stale_quantities"] == {}
    assert doc["thermal"]["heat_pump_heat_kw"] == pytest.approx(300.0)
    # power keeps coming but the heat counter stops: only that quantity goes stale
    for k in range(1810, 4600, 10):
        live.apply([Reading("heat", "hp", T0 + k * S, {"power_kw": 100.0})])
    clock[0] = T0 + 4600 * S  # the counter last came at 1800 s: 2800 s > 3 × 900 s
    doc = live.document("heat")
    assert doc["stale_devices"] == []
    assert doc["stale_quantities"] == {"hp": ["heat_kwh"]}
    assert doc["thermal"]["heat_pump_heat_kw"] == 0.0  # a stale counter's rate is not used
    assert doc["thermal"]["heat_pump_kw"] == 100.0


def test_counter_reset_drops_the_rate() -> None:
    clock = [T0 + 130 * S]
    live = _state(clock)
    live.apply([Reading("heat", "dh", T0, {"heat_gj": 100.0})])
    live.apply([Reading("heat", "dh", T0 + 60 * S, {"heat_gj": 100.03})])
    assert live.document("heat")["thermal"]["district_heat_gj_per_h"] == pytest.approx(1.8)
    live.apply([Reading("heat", "dh", T0 + 120 * S, {"heat_gj": 0.2}, reset=True)])
    doc = live.document("heat")
    assert doc["thermal"]["district_heat_kw"] == 0.0 and "dh" in doc["missing_devices"]
