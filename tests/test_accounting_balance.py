"""Hand-computed balance scenarios (docs/accounting.md): export, storage, heat, sub-meters."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from app.accounting import CN_2023, Offset, compute_balance
from app.accounting.buckets import to_ns
from app.accounting.storage import StorageDeviceState
from app.intervals.models import IntervalEnergy
from app.registry.models import Park

# cn-2023, northeast: EF_grid = 0.5122 kgCO2/kWh, EF_residual = 0.6096 kgCO2/kWh
EF = 0.5122
RES = 0.6096

DAY = datetime(2026, 6, 1)


def make_park(*devices: dict[str, Any], tz: str = "Asia/Shanghai") -> Park:
    return Park.model_validate(
        {
            "id": "p",
            "timezone": tz,
            "grid_region": "northeast",
            "factor_set": "cn-2023",
            "interval_minutes": 60,
            "devices": list(devices),
        }
    )


def row(park: Park, device: str, hour: int, **values: float) -> IntervalEnergy:
    start = datetime.combine(DAY.date(), datetime.min.time(), tzinfo=park.tz) + timedelta(
        hours=hour
    )
    s = to_ns(start)
    role = park.device_map[device].role.value
    return IntervalEnergy("p", device, role, s, s + 3_600_000_000_000, dict(values))


def day_window(park: Park) -> tuple[datetime, datetime]:
    start = datetime.combine(DAY.date(), datetime.min.time(), tzinfo=park.tz)
    return start, start + timedelta(days=1)


def balance(park: Park, rows: list[IntervalEnergy], every: str = "1h", **kw: Any) -> Any:
    start, end = day_window(park)
    return compute_balance(
        park,
        rows,
        kw.pop("certs", []),
        kw.pop("offsets", []),
        CN_2023,
        start,
        end,
        every,  # type: ignore[arg-type]
        **kw,
    )


GRID = {"id": "g", "role": "grid"}
PV = {"id": "pv", "role": "pv"}
BESS = {"id": "b", "role": "storage"}
#: a battery whose content is observed (capacity and SoC): losses measured, content tracked
TRACKED = {"id": "b", "role": "storage", "capacity_kwh": 1000}


def test_sunny_day_with_export() -> None:
    park = make_park(GRID, PV)
    rows = [
        # 12:00 noon: PV 1000, export 300 → E = 1000 − 300 = 700, G_self = 700, all green
        row(park, "g", 12, energy_import_kwh=0.0, energy_export_kwh=300.0),
        row(park, "pv", 12, energy_kwh=1000.0),
        # 22:00 night: import 400, no PV → E = 400, nothing green
        row(park, "g", 22, energy_import_kwh=400.0, energy_export_kwh=0.0),
        row(park, "pv", 22, energy_kwh=0.0),
    ]
    r = balance(park, rows, "1d")
    t = r.total
    assert t.consumption_kwh == pytest.approx(1100.0)  # 700 + 400
    assert t.boundary_consumption_kwh == pytest.approx(1100.0)
    assert t.green_physical_kwh == pytest.approx(700.0)
    assert t.green_share_physical == pytest.approx(700.0 / 1100.0)  # 0.63636
    assert t.green_market_kwh == pytest.approx(700.0)  # no certificates
    assert t.scope2_location_kg == pytest.approx(400.0 * EF)  # 204.88
    assert t.scope2_market_kg == pytest.approx(400.0 * RES)  # 243.84
    assert t.avoided_kg == pytest.approx(300.0 * EF)  # 153.66, not netted
    assert t.net_kg == pytest.approx(243.84)
    assert t.energy_tce == pytest.approx(1100.0 * 0.1229 / 1000.0)  # 0.13519
    assert t.tco2_per_tce == pytest.approx(0.24384 / 0.13519)
    hourly = balance(park, rows, "1h")
    assert hourly.buckets[12].fields.green_share_physical == pytest.approx(1.0)
    assert hourly.buckets[22].fields.green_share_physical == pytest.approx(0.0)
    # a bucket with no consumption has no share (None, not 0)
    assert hourly.buckets[3].fields.green_share_physical is None


def test_night_on_pv_charged_storage_is_green() -> None:
    park = make_park(GRID, PV, {"id": "b", "role": "storage", "capacity_kwh": 1000})
    rows = [
        # 12:00 PV 1000, battery charges 400 from it: loads get 600, battery 400 green
        row(park, "g", 12, energy_import_kwh=0.0, energy_export_kwh=0.0),
        row(park, "pv", 12, energy_kwh=1000.0),
        row(park, "b", 12, energy_charge_kwh=400.0, energy_discharge_kwh=0.0, soc_pct=40.0),
        # 21:00 battery discharges 360 and ends empty (soc 0 %): 40 kWh lost, green too
        row(park, "g", 21, energy_import_kwh=0.0, energy_export_kwh=0.0),
        row(park, "pv", 21, energy_kwh=0.0),
        row(park, "b", 21, energy_charge_kwh=0.0, energy_discharge_kwh=360.0, soc_pct=0.0),
    ]
    r = balance(park, rows)
    noon, night = r.buckets[12].fields, r.buckets[21].fields
    assert noon.consumption_kwh == pytest.approx(600.0)  # 1000 − 400 into storage
    assert noon.green_physical_kwh == pytest.approx(600.0)
    assert noon.boundary_consumption_kwh == pytest.approx(1000.0)
    # night: loads 360 + losses 40 = 400, all green: the stored solar
    assert night.consumption_kwh == pytest.approx(400.0)
    assert night.green_physical_kwh == pytest.approx(400.0)
    assert night.green_share_physical == pytest.approx(1.0)
    assert night.storage_losses_kwh == pytest.approx(40.0)
    assert night.grid_import_kwh == 0.0
    # day total: storage empty at both ends → equals Σ(G_self + D) = 1000 and I + D + G − X
    assert r.total.green_physical_kwh == pytest.approx(1000.0)
    assert r.total.consumption_kwh == pytest.approx(1000.0)
    assert r.total.boundary_consumption_kwh == pytest.approx(1000.0)
    assert r.storage_state["b"].content_kwh == pytest.approx(0.0)


def test_storage_without_soc_counts_its_net_charge_when_charged() -> None:
    park = make_park(GRID, PV, BESS)  # no capacity, no SOC: losses cannot be known
    rows = [
        row(park, "pv", 12, energy_kwh=1000.0),
        row(park, "b", 12, energy_charge_kwh=400.0, energy_discharge_kwh=0.0),
        row(park, "b", 21, energy_charge_kwh=0.0, energy_discharge_kwh=360.0),
    ]
    r = balance(park, rows)
    noon, night = r.buckets[12].fields, r.buckets[21].fields
    # 12:00: loads 600 + the 400 charged, all solar: 1000 consumed, 1000 green
    assert noon.consumption_kwh == pytest.approx(1000.0)
    assert noon.green_physical_kwh == pytest.approx(1000.0)
    # 21:00: the loads' 360 came out of the battery, counted when charged
    assert night.consumption_kwh == pytest.approx(0.0)
    assert night.green_physical_kwh == pytest.approx(0.0)
    # the day is the boundary identity: the 40 kWh of losses are consumption
    assert r.total.consumption_kwh == pytest.approx(1000.0)
    assert r.total.boundary_consumption_kwh == pytest.approx(1000.0)
    assert r.total.green_physical_kwh == pytest.approx(1000.0)
    assert any("storage b: no state of charge" in w for w in r.warnings)


def test_storage_without_soc_exporting_at_night() -> None:
    park = make_park(GRID, PV, BESS)
    rows = [
        row(park, "pv", 12, energy_kwh=500.0),
        row(park, "b", 12, energy_charge_kwh=500.0, energy_discharge_kwh=0.0),
        # 20:00: the battery discharges 500, 200 go to the grid, loads take 300
        row(park, "g", 20, energy_import_kwh=0.0, energy_export_kwh=200.0),
        row(park, "b", 20, energy_charge_kwh=0.0, energy_discharge_kwh=500.0),
    ]
    r = balance(park, rows)
    # noon: 500 charged counts as consumed (green); night: loads 300 − 500 given back
    assert r.buckets[12].fields.consumption_kwh == pytest.approx(500.0)
    assert r.buckets[12].fields.green_physical_kwh == pytest.approx(500.0)
    night = r.buckets[20].fields
    assert night.consumption_kwh == pytest.approx(-200.0)
    assert night.green_physical_kwh == pytest.approx(-200.0)
    assert night.green_share_physical is None
    assert r.total.consumption_kwh == pytest.approx(300.0)
    assert r.total.boundary_consumption_kwh == pytest.approx(300.0)
    assert r.total.green_physical_kwh == pytest.approx(300.0)


def test_grid_charged_battery_is_not_green() -> None:
    park = make_park(GRID, PV, {"id": "b", "role": "storage", "capacity_kwh": 1000})
    rows = [
        # 02:00 off-peak: import 500, all into the battery → loads 0, battery 500 grey
        row(park, "g", 2, energy_import_kwh=500.0, energy_export_kwh=0.0),
        row(park, "b", 2, energy_charge_kwh=500.0, energy_discharge_kwh=0.0, soc_pct=50.0),
        # 10:00: import 100, discharge 450, ends empty → loads 550, losses 50, nothing green
        row(park, "g", 10, energy_import_kwh=100.0, energy_export_kwh=0.0),
        row(park, "b", 10, energy_charge_kwh=0.0, energy_discharge_kwh=450.0, soc_pct=0.0),
    ]
    r = balance(park, rows)
    assert r.buckets[2].fields.consumption_kwh == pytest.approx(0.0)
    assert r.buckets[2].fields.green_share_physical is None
    ten = r.buckets[10].fields
    assert ten.consumption_kwh == pytest.approx(600.0)  # 550 loads + 50 losses
    assert ten.green_physical_kwh == pytest.approx(0.0)
    assert ten.green_share_physical == pytest.approx(0.0)
    # scope 2 stays at the time of import: 500 × 0.5122 at 02:00
    assert r.buckets[2].fields.scope2_location_kg == pytest.approx(256.1)
    assert r.total.scope2_location_kg == pytest.approx(600.0 * EF)  # 307.32


def test_half_green_battery_and_mixed_charging() -> None:
    park = make_park(GRID, PV, TRACKED)
    rows = [
        # 11:00: I 300, PV 300 (no export) → N = 600, green fraction 0.5; battery takes 200
        # → 100 green stored; loads 400 of which 200 green
        row(park, "g", 11, energy_import_kwh=300.0, energy_export_kwh=0.0),
        row(park, "pv", 11, energy_kwh=300.0),
        row(park, "b", 11, energy_charge_kwh=200.0, energy_discharge_kwh=0.0, soc_pct=20.0),
        # 20:00: discharge 100 at 0.5 → 50 green; import 100 → loads 200, green 50
        row(park, "g", 20, energy_import_kwh=100.0, energy_export_kwh=0.0),
        row(park, "b", 20, energy_charge_kwh=0.0, energy_discharge_kwh=100.0, soc_pct=10.0),
    ]
    r = balance(park, rows)
    assert r.buckets[11].fields.green_physical_kwh == pytest.approx(200.0)
    assert r.buckets[11].fields.consumption_kwh == pytest.approx(400.0)
    assert r.buckets[20].fields.green_physical_kwh == pytest.approx(50.0)
    assert r.buckets[20].fields.green_share_physical == pytest.approx(0.25)
    assert r.storage_state["b"] == StorageDeviceState(100.0, 50.0, 50.0)


def test_battery_exporting_at_night_does_not_count_as_consumed_green() -> None:
    park = make_park(GRID, PV, TRACKED)
    rows = [
        row(park, "pv", 12, energy_kwh=500.0),
        row(park, "b", 12, energy_charge_kwh=500.0, energy_discharge_kwh=0.0, soc_pct=50.0),
        # 20:00: the battery discharges 500, 200 go to the grid, loads take 300
        row(park, "g", 20, energy_import_kwh=0.0, energy_export_kwh=200.0),
        row(park, "b", 20, energy_charge_kwh=0.0, energy_discharge_kwh=500.0, soc_pct=0.0),
    ]
    r = balance(park, rows)
    night = r.buckets[20].fields
    assert night.consumption_kwh == pytest.approx(300.0)
    assert night.green_physical_kwh == pytest.approx(300.0)
    assert night.boundary_consumption_kwh == pytest.approx(-200.0)  # I + D + G − X
    assert night.avoided_kg == 0.0  # only exported *renewable generation* (min(G, X))


def test_winter_day_gas_and_purchased_heat_and_offset() -> None:
    park = make_park(
        GRID,
        {"id": "boiler", "role": "heat_fuel", "fuel": "natural_gas"},
        {"id": "dh1", "role": "heat_purchased"},
        {"id": "dh2", "role": "heat_purchased"},
    )
    rows = [
        row(park, "g", 8, energy_import_kwh=2000.0, energy_export_kwh=0.0),
        row(park, "boiler", 8, gas_m3=1000.0, heat_kwh=9000.0),
        row(park, "dh1", 8, heat_gj=10.0),
        row(park, "dh2", 8, heat_kwh=10_000.0 / 3.6),  # 2777.78 kWh = 10 GJ
    ]
    offsets = [
        Offset("o1", "p", "ccer", 1.0, DAY.date()),
        Offset("o2", "q", "ccer", 9.0, DAY.date()),
    ]
    r = balance(park, rows, "1d", offsets=offsets)
    t = r.total
    assert t.scope1_kg == pytest.approx(1000.0 * 2.162)  # 2162
    assert t.heat_purchased_gj == pytest.approx(20.0)
    assert t.heat_purchased_kg == pytest.approx(20.0 * 110.0)  # 2200
    assert t.scope2_market_kg == pytest.approx(2000.0 * RES)  # 1219.2
    assert t.offsets_kg == pytest.approx(1000.0)  # only this park's offset
    # net = 2162 + 1219.2 + 2200 − 1000 = 4581.2
    assert t.net_kg == pytest.approx(4581.2)
    assert t.net_location_kg == pytest.approx(2162 + 2000 * EF + 2200 - 1000)
    # tce: electricity 2000 × 0.1229 = 245.8 kgce; gas 1000 × 1.2143 = 1214.3;
    # heat 20 GJ × 34.1 = 682 → 2142.1 kgce
    assert t.energy_tce == pytest.approx(2.1421)
    assert t.tco2_per_tce == pytest.approx(4.5812 / 2.1421)
    assert t.tco2_per_tce_before_offsets == pytest.approx(5.5812 / 2.1421)


def test_offset_lands_in_the_bucket_of_its_local_date() -> None:
    park = make_park(GRID)
    start = datetime(2026, 6, 1, tzinfo=park.tz)
    end = datetime(2026, 6, 4, tzinfo=park.tz)
    offs = [
        Offset("o", "p", "ccer", 2.0, date(2026, 6, 2)),
        Offset("x", "p", "ccer", 5.0, date(2026, 6, 4)),
    ]
    r = compute_balance(park, [], [], offs, CN_2023, start, end, "1d")
    assert [b.fields.offsets_kg for b in r.buckets] == [0.0, 2000.0, 0.0]
    assert r.total.offsets_kg == 2000.0  # 4 June is outside [start, end)
    assert r.total.net_kg == -2000.0


def test_submeters_are_not_double_counted() -> None:
    park = make_park(
        GRID,
        {"id": "bldg", "role": "load", "included_in": "g"},
        {"id": "hp", "role": "heat_pump"},
        {"id": "ev", "role": "ev_charger"},
    )
    rows = [
        row(park, "g", 9, energy_import_kwh=600.0, energy_export_kwh=0.0),
        row(park, "bldg", 9, energy_import_kwh=300.0),
        row(park, "hp", 9, energy_import_kwh=200.0, heat_kwh=700.0),
        row(park, "ev", 9, energy_import_kwh=50.0),
    ]
    r = balance(park, rows, "1d")
    assert r.total.consumption_kwh == pytest.approx(600.0)  # the grid meter only
    assert r.total.scope2_location_kg == pytest.approx(600.0 * EF)
    assert r.total.submeter_kwh == {"load": 300.0, "heat_pump": 200.0, "ev_charger": 50.0}
    # heat pump heat is not purchased heat
    assert r.total.heat_purchased_kg == 0.0


def test_a_device_whose_role_was_edited_counts_once_under_its_registry_role() -> None:
    park = make_park(GRID, {"id": "w", "role": "wind"})
    rows = [
        row(park, "g", 9, energy_import_kwh=100.0, energy_export_kwh=0.0),
        row(park, "g", 10, energy_import_kwh=100.0, energy_export_kwh=0.0),
        # hour 9 was stored while "w" was registered as a load sub-meter (a partial value),
        # and recomputed under the new role after the edit; hour 10 exists only under the old tag
        replace(row(park, "w", 9, energy_kwh=40.0), role="load"),
        row(park, "w", 9, energy_kwh=60.0),
        replace(row(park, "w", 10, energy_kwh=50.0), role="load"),
    ]
    for ordered in (rows, rows[::-1]):
        r = balance(park, ordered, "1d")
        # 60 (the current row of hour 9) + 50 (hour 10, counted under the registry role)
        assert r.total.renewable_kwh == pytest.approx(110.0)
        assert r.total.consumption_kwh == pytest.approx(310.0)
        assert r.total.submeter_kwh == {}


def test_green_direct_and_hydrogen() -> None:
    park = make_park(
        GRID,
        {"id": "line", "role": "green_direct"},
        {"id": "h2", "role": "hydrogen", "h2_class": "low_carbon"},
    )
    rows = [
        row(park, "g", 9, energy_import_kwh=100.0, energy_export_kwh=0.0),
        row(park, "line", 9, energy_import_kwh=300.0),
        row(park, "h2", 9, h2_kg=10.0),
    ]
    t = balance(park, rows, "1d").total
    assert t.consumption_kwh == pytest.approx(400.0)
    assert t.green_physical_kwh == pytest.approx(300.0)
    assert t.green_share_physical == pytest.approx(0.75)
    assert t.scope2_market_kg == pytest.approx(100.0 * RES)  # D counts as zero
    assert t.hydrogen_kg == pytest.approx(145.1)  # 10 kg × 14.51
    assert t.net_kg == pytest.approx(60.96)  # hydrogen reported, not in net (docs/accounting.md)


def test_completeness_counts_measured_non_submeter_device_intervals() -> None:
    park = make_park(GRID, PV, {"id": "bldg", "role": "load"})
    rows = []
    for h in range(24):
        rows.append(row(park, "g", h, energy_import_kwh=1.0, energy_export_kwh=0.0))
        rows.append(row(park, "bldg", h, energy_import_kwh=1.0))  # sub-meter: not expected
        if h < 20:
            rows.append(row(park, "pv", h, energy_kwh=0.0))
    est = row(park, "pv", 20, energy_kwh=0.0)
    rows.append(
        IntervalEnergy(
            est.park,
            est.device,
            est.role,
            est.start_ns,
            est.end_ns,
            est.values,
            estimated=True,
            flags=("gap",),
        )
    )
    r = balance(park, rows, "1d")
    # expected 2 devices × 24 intervals = 48; measured 24 grid + 20 pv = 44 (the estimated
    # one does not count)
    assert r.total.expected_intervals == 48
    assert r.total.completeness == pytest.approx(44 / 48)
    assert r.total.estimated_intervals == 1
    # hourly buckets: 23:00 has only the grid
    assert balance(park, rows, "1h").buckets[23].fields.completeness == pytest.approx(0.5)


def test_intervals_before_start_warm_up_storage_but_are_not_reported() -> None:
    park = make_park(GRID, PV, TRACKED)
    rows = [
        row(park, "pv", 10, energy_kwh=400.0),
        row(park, "b", 10, energy_charge_kwh=400.0, energy_discharge_kwh=0.0, soc_pct=40.0),
        row(park, "b", 20, energy_charge_kwh=0.0, energy_discharge_kwh=200.0, soc_pct=20.0),
    ]
    start, _ = day_window(park)
    r = compute_balance(
        park, rows, [], [], CN_2023, start + timedelta(hours=18), start + timedelta(hours=24), "1h"
    )
    assert r.total.renewable_kwh == 0.0
    assert r.total.green_physical_kwh == pytest.approx(200.0)
    assert r.storage_state_at_start["b"] == StorageDeviceState(400.0, 400.0, 400.0)
    # continuing from a saved state gives the same answer without the earlier rows
    r2 = compute_balance(
        park,
        rows[2:],
        [],
        [],
        CN_2023,
        start + timedelta(hours=18),
        start + timedelta(hours=24),
        "1h",
        initial_storage=r.storage_state_at_start,
    )
    assert r2.total == r.total


def test_unknown_region_is_a_clear_error() -> None:
    park = make_park(GRID).model_copy(update={"grid_region": "atlantis"})
    with pytest.raises(ValueError, match="atlantis"):
        balance(park, [], "1d")


def test_as_dict_has_the_contract_fields() -> None:
    from app.accounting import BALANCE_FIELDS

    park = make_park(GRID)
    d = balance(park, [row(park, "g", 1, energy_import_kwh=1.0)], "1d").as_dict()
    assert set(d) >= {"park", "factor_set", "start", "end", "every", "buckets", "total"}
    assert d["factor_set"] == "cn-2023"
    for name in BALANCE_FIELDS:
        assert name in d["total"]
        assert name in d["buckets"][0]
    assert d["buckets"][0]["start"] == "2026-06-01T00:00:00+08:00"


def test_worked_example_of_docs() -> None:
    park = make_park(GRID, PV, {"id": "b", "role": "storage", "capacity_kwh": 1000})
    day0, _ = day_window(park)
    from app.accounting import Certificate

    rows = [
        row(park, "pv", 12, energy_kwh=1000.0),
        row(park, "b", 12, energy_charge_kwh=400.0, energy_discharge_kwh=0.0, soc_pct=40.0),
        row(park, "b", 21, energy_charge_kwh=0.0, energy_discharge_kwh=360.0, soc_pct=0.0),
        row(park, "g", 22, energy_import_kwh=400.0, energy_export_kwh=0.0),
    ]
    t = balance(park, rows, "1d").total
    assert t.consumption_kwh == pytest.approx(1400.0)
    assert t.green_physical_kwh == pytest.approx(1000.0)
    assert t.green_share_physical == pytest.approx(1000 / 1400)
    assert t.energy_tce == pytest.approx(0.17206)
    assert t.net_kg == pytest.approx(243.84)
    assert t.tco2_per_tce == pytest.approx(0.24384 / 0.17206)
    gec = Certificate("gec", "p", "gec", 1.0, day0, day0 + timedelta(days=1))
    r = balance(park, rows, "1d", certs=[gec])
    assert r.total.scope2_market_kg == pytest.approx(0.0)
    assert r.total.green_market_kwh == pytest.approx(1400.0)
    assert r.certificates_used_kwh["gec"] == pytest.approx(400.0)


def test_storage_without_soc_never_reports_more_physical_than_market_green() -> None:
    """What a storage without state of charge gives back carries the market share it was
    charged at, which may exceed its physical share (certificates in force then, not now):
    taken off, it could leave an interval with more physical than market green, which no
    interval can have (market = physical + certified). The lower figure stands for both
    (found by tests/test_accounting_properties.py; docs/accounting.md §2)."""
    from app.accounting.balance import _bounded_green

    assert _bounded_green(10.0, 8.0, 6.0) == (6.0, 6.0)  # market below physical: physical down
    assert _bounded_green(10.0, 4.0, 6.0) == (4.0, 6.0)  # the usual case: unchanged
    assert _bounded_green(5.0, 8.0, 9.0) == (5.0, 5.0)  # never more green than consumed
    assert _bounded_green(-2.0, 1.0, 1.0) == (-2.0, -2.0)  # gave back more than consumed
