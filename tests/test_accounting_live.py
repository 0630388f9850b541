"""Live view: power by role, green share with stored green, carbon intensity."""

from __future__ import annotations

import pytest

from app.accounting import CN_2023, StorageDeviceState, live_balance
from app.registry.models import Park

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
