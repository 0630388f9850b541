"""Simulator physics: sun, wind, heat, storage, and the park's energy balance at every step."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.registry import parse_registry
from simulator import ParkModel, StepResult, simulate
from simulator.heat import heat_demand_fraction, heat_pump_cop
from simulator.solar import clear_sky_ghi_wm2, cos_zenith, hour_angle_rad, pv_power_kw
from simulator.storage import Battery
from simulator.wind import power_curve_fraction, weibull_speed_ms

SH = ZoneInfo("Asia/Shanghai")
REGISTRY = parse_registry(
    """
parks:
  - id: full
    timezone: Asia/Shanghai
    latitude: 41.8
    longitude: 123.4
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 2000}
      - {id: wind-1, role: wind, max_kw: 1500}
      - {id: green-line, role: green_direct, max_kw: 800}
      - {id: bess-1, role: storage, capacity_kwh: 3000, max_kw: 1000}
      - {id: boiler-1, role: heat_fuel, fuel: natural_gas, max_kw: 2000}
      - {id: dh-inlet, role: heat_purchased, max_kw: 2500}
      - {id: hp-1, role: heat_pump, max_kw: 800}
      - {id: waste-heat, role: heat_recovered, max_kw: 300}
      - {id: factory-1, role: load, max_kw: 1500}
      - {id: office-1, role: load, max_kw: 400}
      - {id: ev-1, role: ev_charger, max_kw: 360}
      - {id: elz-1, role: electrolyzer, max_kw: 500}
      - {id: h2-store, role: hydrogen, h2_class: renewable}
"""
)
PARK = REGISTRY.park("full")


def run_steps(start: datetime, hours: float, step_s: int = 300, seed: int = 1) -> list[StepResult]:
    assert PARK is not None
    t0 = int(start.timestamp()) * 10**9
    model = ParkModel(PARK, seed, step_s, t0)
    return [model.step(t0 + k * step_s * 10**9) for k in range(int(hours * 3600 // step_s))]


# --- sun ------------------------------------------------------------------------------------


def test_zenith_at_equinox_noon_is_latitude() -> None:
    # day 81: declination 23.45·sin(2π·365/365) = 0, so at solar noon the zenith is the latitude
    assert cos_zenith(41.8, 81, 0.0) == pytest.approx(math.cos(math.radians(41.8)), abs=1e-9)


def test_haurwitz_clear_sky_overhead_and_below_horizon() -> None:
    assert clear_sky_ghi_wm2(1.0) == pytest.approx(1098.0 * math.exp(-0.057))  # 1037.2 W/m²
    assert clear_sky_ghi_wm2(0.0) == 0.0
    assert clear_sky_ghi_wm2(-0.3) == 0.0


def test_solar_noon_in_shenyang_is_before_clock_noon() -> None:
    # 123.4 °E is 3.4° east of the +08:00 meridian: 13.6 min early; equation of time on
    # day 81 is 9.87 sin(0) − 7.53 cos(0) − 0 = −7.53 min, so noon is at ≈ 04:05.9 UTC
    utc_hours = 12.0 - 123.4 / 15.0 + 7.53 / 60.0
    assert hour_angle_rad(utc_hours, 123.4, 81) == pytest.approx(0.0, abs=1e-9)


def test_pv_power_capped_and_temperature_derated() -> None:
    # 1000 W/m² at 0 °C air: cell 30 °C, derate 1 − 0.004·5 = 0.98, × PR 0.8 → 784 kW of 1000
    assert pv_power_kw(1000.0, 1000.0, 0.0) == pytest.approx(784.0)
    assert pv_power_kw(100.0, 1500.0, -20.0) == 100.0
    assert pv_power_kw(1000.0, 0.0, 20.0) == 0.0


def test_pv_zero_at_night_and_producing_at_noon() -> None:
    steps = run_steps(datetime(2026, 6, 21, tzinfo=SH), 24)
    for s in steps:
        hour = datetime.fromtimestamp(s.t_ns / 1e9, SH).hour
        if hour < 4 or hour >= 20:  # midsummer sunrise in Shenyang ≈ 04:10, sunset ≈ 19:25
            assert s.balance.pv_kw == 0.0
            assert s.amounts["pv-1"]["energy_kwh"] == 0.0
    noon = [s.balance.pv_kw for s in steps if datetime.fromtimestamp(s.t_ns / 1e9, SH).hour == 11]
    assert max(noon) > 200.0


# --- wind -----------------------------------------------------------------------------------


def test_power_curve_points() -> None:
    assert power_curve_fraction(2.9) == 0.0
    assert power_curve_fraction(3.0) == 0.0
    assert power_curve_fraction(7.5) == pytest.approx((7.5**3 - 27.0) / (1728.0 - 27.0))
    assert power_curve_fraction(12.0) == 1.0
    assert power_curve_fraction(24.9) == 1.0
    assert power_curve_fraction(25.0) == 0.0


def test_weibull_median() -> None:
    # median of Weibull(k=2, c=7): 7·(ln 2)^(1/2) = 5.828 m/s
    assert weibull_speed_ms(0.5) == pytest.approx(7.0 * math.sqrt(math.log(2.0)))


# --- heat -----------------------------------------------------------------------------------


def test_heat_demand_fraction_points() -> None:
    assert heat_demand_fraction(20.0) == pytest.approx(0.06)  # hot water only
    assert heat_demand_fraction(16.0) == pytest.approx(0.06)
    assert heat_demand_fraction(-3.0) == pytest.approx(0.06 + 0.94 * 19.0 / 38.0)
    assert heat_demand_fraction(-22.0) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(st.floats(-35, 35), st.floats(0.1, 20))
def test_colder_means_more_heat_and_lower_cop(t: float, delta: float) -> None:
    assert heat_demand_fraction(t - delta) >= heat_demand_fraction(t)
    assert heat_pump_cop(t - delta) <= heat_pump_cop(t)


def test_january_park_uses_far_more_heat_and_gas_than_july() -> None:
    jan = run_steps(datetime(2026, 1, 15, tzinfo=SH), 48)
    jul = run_steps(datetime(2026, 7, 15, tzinfo=SH), 48)
    jan_gas = sum(s.amounts["boiler-1"]["gas_m3"] for s in jan)
    jul_gas = sum(s.amounts["boiler-1"]["gas_m3"] for s in jul)
    assert min(s.outdoor_c for s in jan) < -5.0 < 20.0 < max(s.outdoor_c for s in jul)
    assert sum(s.heat_demand_kw for s in jan) > 3 * sum(s.heat_demand_kw for s in jul)
    assert jan_gas > 5 * jul_gas
    for s in jan + jul:  # heat delivered never exceeds demand; each device within its size
        assert sum(s.heat_kw.values()) <= s.heat_demand_kw + 1e-9
        assert s.heat_kw["hp-1"] <= 800.0 + 1e-9


# --- storage --------------------------------------------------------------------------------


def test_battery_books_losses_on_charging() -> None:
    b = Battery(capacity_kwh=100.0, max_kw=50.0, content_kwh=50.0, efficiency=0.9)
    b.apply(10.0, 0.0)
    assert b.content_kwh == pytest.approx(59.0)
    b.apply(0.0, 20.0)
    assert b.content_kwh == pytest.approx(39.0)
    # 95 % ceiling: 95 − 39 = 56 kWh of room needs 56/0.9 = 62.2 kWh in, capped at 50 kW·1 h
    assert b.max_charge_kw(1.0) == pytest.approx(50.0)
    assert b.max_charge_kw(2.0) == pytest.approx(56.0 / 0.9 / 2.0)
    # 5 % floor: 39 − 5 = 34 kWh available
    assert b.max_discharge_kw(1.0) == pytest.approx(34.0)


@pytest.mark.parametrize("month", [1, 4, 7])
def test_storage_soc_bounded_and_energy_conserving(month: int) -> None:
    steps = run_steps(datetime(2026, month, 10, tzinfo=SH), 72)
    charged = discharged = 0.0
    first = steps[0].content_kwh["bess-1"][0]
    for s in steps:
        before, after = s.content_kwh["bess-1"]
        c = s.amounts["bess-1"]["energy_charge_kwh"]
        d = s.amounts["bess-1"]["energy_discharge_kwh"]
        assert c == 0.0 or d == 0.0
        assert after - before == pytest.approx(0.9 * c - d, abs=1e-9)
        assert 0.0 <= after <= 3000.0
        assert 0.0 <= s.instant["bess-1"]["soc_pct"] <= 100.0
        assert c / (300 / 3600) <= 1000.0 + 1e-9 and d / (300 / 3600) <= 1000.0 + 1e-9
        charged += c
        discharged += d
    last = steps[-1].content_kwh["bess-1"][1]
    assert last - first == pytest.approx(0.9 * charged - discharged, abs=1e-6)
    assert charged > 0.0 and discharged > 0.0  # the rule does cycle over three days


def test_storage_discharges_in_evening_peak_and_charges_on_surplus() -> None:
    steps = run_steps(datetime(2026, 5, 4, tzinfo=SH), 96)
    for s in steps:
        b = s.balance
        own = b.pv_kw + b.wind_kw + b.green_direct_kw - b.consumption_kw
        hour = datetime.fromtimestamp(s.t_ns / 1e9, SH).hour
        if b.discharge_kw > 0.0:
            assert 17 <= hour < 21 and own < 0.0
            assert b.discharge_kw <= -own + 1e-9  # never discharges into export
        if own > 0.0:
            assert b.discharge_kw == 0.0


# --- park balance ---------------------------------------------------------------------------


@pytest.mark.parametrize("month", [1, 6, 10])
def test_grid_meter_closes_the_balance_every_step(month: int) -> None:
    steps = run_steps(datetime(2026, month, 1, tzinfo=SH), 48, step_s=60, seed=month)
    h = 60 / 3600
    imported = False
    for s in steps:
        a = s.amounts
        load = sum(a[d]["energy_import_kwh"] for d in ("factory-1", "office-1", "ev-1"))
        hp = a["hp-1"]["energy_import_kwh"]
        elz = a["elz-1"]["energy_import_kwh"]
        gen = a["pv-1"]["energy_kwh"] + a["wind-1"]["energy_kwh"]
        green = a["green-line"]["energy_import_kwh"]
        charge = a["bess-1"]["energy_charge_kwh"]
        discharge = a["bess-1"]["energy_discharge_kwh"]
        net = a["grid-main"]["energy_import_kwh"] - a["grid-main"]["energy_export_kwh"]
        assert net == pytest.approx(load + hp + elz + charge - gen - green - discharge, abs=1e-9)
        # at most one direction per step, and the instantaneous sign matches
        assert min(a["grid-main"]["energy_import_kwh"], a["grid-main"]["energy_export_kwh"]) == 0
        assert s.instant["grid-main"]["power_kw"] == pytest.approx(net / h, abs=1e-3)
        assert s.instant["bess-1"]["power_kw"] == pytest.approx((discharge - charge) / h, abs=1e-3)
        imported |= net > 0
        for amounts in a.values():
            assert all(v >= 0.0 and math.isfinite(v) for v in amounts.values())
    assert imported


def test_sizes_respected_for_plausibility_checks() -> None:
    # the collector rejects a delta above max_kw over the step: the simulator must not exceed it
    sizes = {d.id: d.max_kw for d in PARK.devices if d.max_kw} if PARK else {}
    for s in run_steps(datetime(2026, 1, 20, tzinfo=SH), 48, seed=5):
        for dev, amounts in s.amounts.items():
            if dev in sizes:
                for name, v in amounts.items():
                    if name.endswith("_kwh"):
                        assert v <= sizes[dev] * s.step_s / 3600 + 1e-9, (dev, name)


def test_hydrogen_follows_the_electrolyzer() -> None:
    for s in run_steps(datetime(2026, 3, 3, tzinfo=SH), 24):
        elz_kwh = s.amounts["elz-1"]["energy_import_kwh"]
        assert s.amounts["h2-store"]["h2_kg"] == pytest.approx(elz_kwh / 52.0)


def test_week_shape_factory_idles_on_sunday() -> None:
    # 2026-03-01 is a Sunday, 2026-03-02 a Monday
    sunday = run_steps(datetime(2026, 3, 1, tzinfo=SH), 24)
    monday = run_steps(datetime(2026, 3, 2, tzinfo=SH), 24)
    sun = sum(s.amounts["factory-1"]["energy_import_kwh"] for s in sunday)
    mon = sum(s.amounts["factory-1"]["energy_import_kwh"] for s in monday)
    # base 35 % all Sunday vs 35 % + 95 % for 15 of the 16 shift hours on Monday
    assert sun == pytest.approx(1500 * 0.35 * 24, rel=0.05)
    assert mon > 1.8 * sun


def test_model_is_deterministic_per_seed() -> None:
    a = run_steps(datetime(2026, 4, 1, tzinfo=SH), 12, seed=3)
    b = run_steps(datetime(2026, 4, 1, tzinfo=SH), 12, seed=3)
    c = run_steps(datetime(2026, 4, 1, tzinfo=SH), 12, seed=4)
    assert [s.amounts for s in a] == [s.amounts for s in b]
    assert [s.amounts for s in a] != [s.amounts for s in c]


def test_on_step_sees_each_step_once() -> None:
    seen: list[int] = []
    start = datetime(2026, 2, 2, tzinfo=SH)
    list(
        simulate(
            REGISTRY,
            "full",
            start,
            timedelta(hours=1),
            60,
            0,
            on_step=lambda s: seen.append(s.t_ns),
        )
    )
    t0 = int(start.timestamp()) * 10**9
    assert seen == [t0 + k * 60 * 10**9 for k in range(60)]
