"""Live view: power by role, green share with stored green, carbon intensity, emission rate."""

from __future__ import annotations

import pytest

from app.accounting import CN_2023, StorageDeviceState, live_balance
from app.accounting.live import ThermalLive, emission_rate
from app.registry.models import Park, Role

PARK = Park.model_validate(
    {
        "id": "p",
        "grid_region": "northeast",
        "devices": [
            {"id": "g", "role": "grid"},
            {"id": "pv", "role": "pv"},
            {"id": "b", "role": "storage"},
            {"id": "hp", "role": "heat_pump"},
        ],
    }
)


def test_noon_export_and_charging_is_all_green() -> None:
    # PV 1000 kW, export 300 (grid −300), battery charging 200 (−200) → loads 500, all green
    live = live_balance(PARK, {"g": -300.0, "pv": 1000.0, "b": -200.0, "hp": 80.0}, {}, CN_2023)
    assert live.load_kw == pytest.approx(500.0)
    assert live.green_share_physical == pytest.approx(1.0)
    assert live.carbon_intensity_location_g_per_kwh == pytest.approx(0.0)
    assert live.power_by_role_kw == {
        "grid": -300.0,
        "pv": 1000.0,
        "storage": -200.0,
        "heat_pump": 80.0,
    }
    assert live.missing_devices == ()


def test_night_on_half_green_battery() -> None:
    # import 100 kW + discharge 300 kW from a battery holding 50 % green → loads 400,
    # green 150 → share 0.375; non-green 0.625 × 512.2 g = 320.125, market 0.625 × 609.6
    state = {"b": StorageDeviceState(1000.0, 500.0, 500.0)}
    live = live_balance(PARK, {"g": 100.0, "pv": 0.0, "b": 300.0}, state, CN_2023)
    assert live.load_kw == pytest.approx(400.0)
    assert live.green_share_physical == pytest.approx(0.375)
    assert live.carbon_intensity_location_g_per_kwh == pytest.approx(320.125)
    assert live.carbon_intensity_market_g_per_kwh == pytest.approx(381.0)


def test_certified_imports_lower_the_market_intensity_only() -> None:
    live = live_balance(
        PARK, {"g": 400.0, "pv": 0.0, "b": 0.0}, {}, CN_2023, certified_fraction=0.5
    )
    assert live.green_share_physical == pytest.approx(0.0)
    assert live.green_share_market == pytest.approx(0.5)
    assert live.carbon_intensity_location_g_per_kwh == pytest.approx(512.2)
    assert live.carbon_intensity_market_g_per_kwh == pytest.approx(304.8)


def test_missing_devices_and_no_load() -> None:
    live = live_balance(PARK, {"g": 0.0}, {}, CN_2023)
    assert live.missing_devices == ("pv", "b")
    assert live.green_share_physical is None
    assert live.carbon_intensity_location_g_per_kwh is None


def test_emission_rate_by_scope_hand_computed() -> None:
    # import 1000 kW; boiler burning 90 m³/h of natural gas; district heat 500 kW = 1.8 GJ/h;
    # 6 kg/h of grey hydrogen bought in; a quarter of imports covered by certificates
    thermal = ThermalLive(
        fuel_per_h={("natural_gas", "gas_m3"): 90.0},
        district_heat_kw=500.0,
        hydrogen_kg_per_h={"grey": 6.0},
    )
    rate = emission_rate(1000.0, thermal, CN_2023, "northeast", certified_fraction=0.25)
    # scope 2 location: 1000 kWh/h × 0.5122 kg/kWh = 512.2 kg/h
    assert rate.scope2_location == pytest.approx(512.2)
    # scope 2 market: (1000 − 250) × 0.6096 = 457.2 kg/h
    assert rate.scope2_market == pytest.approx(457.2)
    # scope 1: 90 m³/h × 2.162 kg/m³ = 194.58 kg/h
    assert rate.scope1 == pytest.approx(194.58)
    # purchased heat: 1.8 GJ/h × 110 kg/GJ = 198 kg/h
    assert rate.heat_purchased == pytest.approx(198.0)
    # hydrogen beside the totals: 6 kg/h × 29.02 = 174.12 kg/h
    assert rate.hydrogen == pytest.approx(174.12)
    assert rate.location == pytest.approx(512.2 + 194.58 + 198.0)  # 904.78
    assert rate.market == pytest.approx(457.2 + 194.58 + 198.0)  # 849.78
    assert rate.warnings == ()


def test_emission_rate_of_an_exporting_park_is_its_heat_only() -> None:
    # exporting (no import): electricity emits nothing now, the boiler still does
    thermal = ThermalLive(fuel_per_h={("natural_gas", "gas_m3"): 100.0})
    rate = emission_rate(0.0, thermal, CN_2023, "northeast")
    assert (rate.scope2_location, rate.scope2_market) == (0.0, 0.0)
    assert rate.location == pytest.approx(216.2) and rate.market == pytest.approx(216.2)


def test_thermal_flows_from_counter_rates() -> None:
    t = ThermalLive()
    assert t.add(Role.HEAT_FUEL, {"gas_m3": 90.0, "heat_kwh": 828.0}, fuel="natural_gas")
    assert t.add(Role.HEAT_PURCHASED, {"heat_gj": 1.8})  # 1.8 GJ/h = 500 kW
    assert t.add(Role.HEAT_RECOVERED, {"heat_kwh": 40.0})
    assert t.add(Role.HEAT_PUMP, {"heat_kwh": 300.0}, power_kw=100.0)
    assert t.add(Role.HYDROGEN, {"h2_kg": 3.0}, h2_class="renewable")
    # a district-heat meter seen once has no rate yet: its flow is unknown
    assert not t.add(Role.HEAT_PURCHASED, {})
    assert not t.add(Role.HYDROGEN, {}, h2_class="grey")
    doc = t.as_dict(CN_2023)
    assert doc["district_heat_kw"] == pytest.approx(500.0)
    assert doc["heat_kw"] == pytest.approx(828.0 + 500.0 + 40.0 + 300.0)
    assert doc["heat_gj_per_h"] == pytest.approx(1668.0 * 0.0036)
    # 90 m³/h × 1.2143 kgce/m³ × 8.141 kWh/kgce (29.3076 MJ) ≈ 889.7 kW of gas
    assert doc["boiler_fuel_kw"] == pytest.approx(889.7, abs=0.05)
    assert doc["heat_pump_kw"] == 100.0 and doc["heat_pump_heat_kw"] == 300.0
    # 3 kg/h × 33.33 kWh/kg (120 MJ/kg)
    assert doc["hydrogen_kg_per_h"] == 3.0 and doc["hydrogen_kw"] == pytest.approx(100.0)
    assert doc["fuels"] == [{"fuel": "natural_gas", "counter": "gas_m3", "per_h": 90.0}]


def test_reported_thermal_kw_stands_in_for_a_missing_heat_counter() -> None:
    t = ThermalLive()
    # a district-heat meter seen once but sending its thermal kW: the flow is known
    assert t.add(Role.HEAT_PURCHASED, {}, power_kw=555.6)
    # a boiler with its gas rate and its heat output as reported kW (no heat_kwh counter)
    assert t.add(Role.HEAT_FUEL, {"gas_m3": 40.0}, fuel="natural_gas", power_kw=400.0)
    # without a gas rate its emissions are unknown, whatever heat it reports
    assert not t.add(Role.HEAT_FUEL, {}, fuel="natural_gas", power_kw=400.0)
    assert t.district_heat_kw == 555.6 and t.boiler_heat_kw == 800.0
    assert t.fuel_per_h == {("natural_gas", "gas_m3"): 40.0}
