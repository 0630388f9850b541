"""Hand-computed cost scenarios (docs/cost.md): a revision mid-month, holidays, DST days in
Europe/Berlin, 15-min demand peaks over two months, export credit, green supply and fuels,
and a battery doing arbitrage."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from app.accounting import CN_2023, Certificate, compute_balance
from app.accounting.buckets import to_ns
from app.accounting.totals import IntervalTotals
from app.registry.models import Park
from app.tariffs.models import Tariff

SH = "Asia/Shanghai"

#: workdays: valley 00–08, peak 08–12, flat 12–18, peak 18–22, valley 22–24;
#: weekends and holidays: flat all day
WORKDAY = [
    {"start": "00:00", "end": "08:00", "period": "valley"},
    {"start": "08:00", "end": "12:00", "period": "peak"},
    {"start": "12:00", "end": "18:00", "period": "flat"},
    {"start": "18:00", "end": "22:00", "period": "peak"},
    {"start": "22:00", "end": "24:00", "period": "valley"},
]
OFF = [{"start": "00:00", "end": "24:00", "period": "flat"}]


def revision(valid_from: str, peak: float, flat: float, valley: float, demand: float) -> Any:
    return {
        "valid_from": valid_from,
        "source": "test tariff",
        "schedules": [
            {"day_types": ["workday"], "bands": WORKDAY},
            {"day_types": ["weekend", "holiday"], "bands": OFF},
        ],
        "import_cny_per_kwh": {"peak": peak, "flat": flat, "valley": valley},
        "export_cny_per_kwh": 0.35,
        "green_direct_cny_per_kwh": 0.45,
        "demand_cny_per_kw_month": demand,
        "gas_cny_per_m3": 3.5,
        "heat_cny_per_gj": 40.0,
        "certificate_cny_per_mwh": 50.0,
    }


#: revision A from 2026-03-01, revision B from 2026-03-16; 2026-03-20 (a Friday) a holiday
TARIFF = {
    "name": "test",
    "holidays": ["2026-03-20"],
    "revisions": [
        revision("2026-03-01", 1.0, 0.6, 0.3, 30.0),
        revision("2026-03-16", 1.2, 0.7, 0.2, 40.0),
    ],
}

DEVICES = [
    {"id": "g", "role": "grid"},
    {"id": "pv", "role": "pv"},
    {"id": "line", "role": "green_direct"},
    {"id": "b", "role": "storage", "capacity_kwh": 1000},
    {"id": "gas", "role": "heat_fuel", "fuel": "natural_gas"},
    {"id": "dh", "role": "heat_purchased"},
]


def make_park(tz: str = SH, minutes: int = 60, tariff: Any = TARIFF) -> Park:
    return Park.model_validate(
        {
            "id": "p",
            "timezone": tz,
            "grid_region": "northeast",
            "interval_minutes": minutes,
            "devices": DEVICES,
            "tariff": tariff,
        }
    )


def at(park: Park, d: date, hour: int, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=park.tz)


def tot(park: Park, start: datetime, minutes: int | None = None, **kw: Any) -> IntervalTotals:
    s = to_ns(start)
    length = (minutes or park.interval_minutes) * 60 * 1_000_000_000
    return IntervalTotals(s, s + length, **kw)


def run(
    park: Park, rows: list[IntervalTotals], start: datetime, end: datetime, every: str, **kw: Any
) -> Any:
    return compute_balance(
        park,
        rows,
        kw.pop("certs", []),
        [],
        CN_2023,
        start,
        end,
        every,  # type: ignore[arg-type]
        **kw,
    )


def test_no_tariff_means_no_cost() -> None:
    park = make_park(tariff=None)
    d = date(2026, 3, 2)
    r = run(
        park,
        [tot(park, at(park, d, 9), grid_import_kwh=100.0)],
        at(park, d, 0),
        at(park, d + timedelta(days=1), 0),
        "1d",
    )
    assert r.total.cost_cny is None and r.total.cost is None
    assert r.as_dict()["total"]["cost_cny"] is None
    assert "cost_sums" not in r.as_dict()["total"]


def month_rows(park: Park) -> list[IntervalTotals]:
    return [
        # Mon 2026-03-02 09:00, revision A, workday peak: 100 kWh × 1.0 = 100 CNY
        tot(park, at(park, date(2026, 3, 2), 9), grid_import_kwh=100.0),
        # Sat 2026-03-07 09:00, revision A, weekend flat: 100 × 0.6 = 60
        tot(park, at(park, date(2026, 3, 7), 9), grid_import_kwh=100.0),
        # Mon 2026-03-16 03:00, revision B from this day, valley: 200 × 0.2 = 40
        tot(park, at(park, date(2026, 3, 16), 3), grid_import_kwh=200.0),
        # Mon 2026-03-16 19:00, revision B, peak: 50 × 1.2 = 60
        tot(park, at(park, date(2026, 3, 16), 19), grid_import_kwh=50.0),
        # Fri 2026-03-20 09:00, a holiday: flat (not peak) under B: 80 × 0.7 = 56
        tot(park, at(park, date(2026, 3, 20), 9), grid_import_kwh=80.0),
    ]


@pytest.mark.parametrize("every", ["1d", "1mo"])
def test_month_crossing_a_revision(every: str) -> None:
    park = make_park()
    start, end = at(park, date(2026, 3, 1), 0), at(park, date(2026, 4, 1), 0)
    r = run(park, month_rows(park), start, end, every)
    cost = r.total.cost
    # by period: peak 100 + 50 kWh = 100 + 60 CNY; flat 100 + 80 kWh = 60 + 56 CNY;
    # valley 200 kWh = 40
    assert cost["by_period"]["peak"] == pytest.approx({"kwh": 150.0, "cny": 160.0})
    assert cost["by_period"]["flat"] == pytest.approx({"kwh": 180.0, "cny": 116.0})
    assert cost["by_period"]["valley"] == pytest.approx({"kwh": 200.0, "cny": 40.0})
    assert cost["energy_cny"] == pytest.approx(316.0)
    # demand (1-h intervals: the hour's mean): 200 kW on 03-16 03:00 under B at 40 CNY/kW
    assert cost["demand_peak_kw"] == pytest.approx(200.0)
    assert cost["demand_charge_cny"] == pytest.approx(8000.0)
    assert r.total.cost_cny == pytest.approx(8316.0)
    if every == "1d":
        day16 = r.buckets[15].fields
        assert day16.cost_cny == pytest.approx(100.0)  # 40 + 60, no demand charge on a day
        assert day16.cost["demand_charge_cny"] == 0.0
        assert day16.cost["demand_months"]["2026-03"]["complete"] is False
        assert day16.cost["demand_months"]["2026-03"]["charge_cny"] == pytest.approx(8000.0)
        assert day16.cost["demand_peak_kw"] == pytest.approx(200.0)
        assert r.buckets[1].fields.cost_cny == pytest.approx(100.0)  # 03-02
        assert r.buckets[2].fields.cost_cny is None  # 03-03: no interval, nothing known
    else:
        assert r.buckets[0].fields.cost_cny == pytest.approx(8316.0)


@pytest.mark.parametrize(
    ("day", "valley_quarters", "flat_quarters"),
    [
        # spring forward: 02:00–03:00 does not exist; valley 00–06 has 5 h = 20 quarters
        (date(2026, 3, 29), 20, 72),
        # fall back: 02:00–03:00 happens twice; valley 00–06 has 7 h = 28 quarters
        (date(2026, 10, 25), 28, 72),
    ],
)
def test_dst_day_in_berlin(day: date, valley_quarters: int, flat_quarters: int) -> None:
    # every day: valley 00:00–06:00 at 0.2, flat 06:00–24:00 at 0.5 (local wall clock)
    bands = [
        {"start": "00:00", "end": "06:00", "period": "valley"},
        {"start": "06:00", "end": "24:00", "period": "flat"},
    ]
    tariff = {
        "name": "berlin",
        "revisions": [
            {
                "valid_from": "2026-01-01",
                "source": "test",
                "schedules": [{"bands": bands}],
                "import_cny_per_kwh": {"valley": 0.2, "flat": 0.5},
                "demand_cny_per_kw_month": 10.0,
            }
        ],
    }
    park = make_park("Europe/Berlin", 15, tariff)
    start, end = at(park, day, 0), at(park, day + timedelta(days=1), 0)
    n = (to_ns(end) - to_ns(start)) // (900 * 1_000_000_000)
    assert n == valley_quarters + flat_quarters  # 92 or 100 quarters
    rows = [
        IntervalTotals(
            to_ns(start) + k * 900_000_000_000,
            to_ns(start) + (k + 1) * 900_000_000_000,
            grid_import_kwh=10.0,
        )
        for k in range(n)
    ]
    r = run(park, rows, start, end, "1h")
    cost = r.total.cost
    assert cost["by_period"]["valley"]["kwh"] == pytest.approx(10.0 * valley_quarters)
    assert cost["by_period"]["flat"]["kwh"] == pytest.approx(720.0)
    # 92 quarters: 200 × 0.2 + 720 × 0.5 = 400; 100 quarters: 280 × 0.2 + 360 = 416
    assert cost["energy_cny"] == pytest.approx({20: 400.0, 28: 416.0}[valley_quarters])
    # 10 kWh per quarter is 40 kW; one day is not the whole month: its demand charge so far
    # (40 kW × 10 = 400) is shown, not counted
    assert cost["demand_peak_kw"] == pytest.approx(40.0)
    month = cost["demand_months"][f"2026-{day.month:02d}"]
    assert month["charge_cny"] == pytest.approx(400.0) and month["complete"] is False
    assert r.total.cost_cny == pytest.approx(cost["energy_cny"])
    assert len(r.buckets) == n // 4
    assert sum(b.fields.cost_cny for b in r.buckets) == pytest.approx(cost["energy_cny"])


def test_demand_peak_over_15_minutes_in_two_months() -> None:
    """5-min intervals: the demand is each clock quarter's import over 0.25 h, not the
    5-min spike; each month of the window is charged its own peak."""
    park = make_park(minutes=5)
    rows = []
    d1, d2 = date(2026, 3, 31), date(2026, 4, 1)  # Tue, Wed: 13:00 is flat (0.7 under B)
    for day, kwhs in ((d1, [50.0, 0.0, 0.0, 20.0, 20.0, 20.0]), (d2, [15.0, 15.0, 15.0])):
        for k, kwh in enumerate(kwhs):
            rows.append(
                tot(park, at(park, day, 13) + timedelta(minutes=5 * k), grid_import_kwh=kwh)
            )
    start, end = at(park, date(2026, 3, 1), 0), at(park, date(2026, 5, 1), 0)
    # March peak: 13:15 quarter 60 kWh → 240 kW (the 13:00 quarter is 50 → 200 kW, its first
    # 5 min alone would be 600 kW); April: 45 kWh → 180 kW; both under B at 40 CNY/kW
    # energy: (110 + 45) × 0.7 = 108.5
    for every in ("1d", "1mo"):
        r = run(park, rows, start, end, every)
        months = r.total.cost["demand_months"]
        assert months["2026-03"]["peak_kw"] == pytest.approx(240.0)
        assert months["2026-03"]["at"] == "2026-03-31T05:15:00+00:00"
        assert months["2026-04"]["peak_kw"] == pytest.approx(180.0)
        assert r.total.cost["demand_charge_cny"] == pytest.approx(240 * 40 + 180 * 40)
        assert r.total.cost_cny == pytest.approx(108.5 + 16800.0)
    r = run(park, rows, start, end, "1mo")
    assert [b.fields.cost_cny for b in r.buckets] == pytest.approx([77.0 + 9600.0, 31.5 + 7200.0])


def test_export_credit_green_supply_fuels_heat_certificates() -> None:
    park = make_park()
    d = date(2026, 3, 17)  # Tuesday, revision B; 13:00 is flat at 0.7
    t = at(park, d, 13)
    rows = [
        tot(
            park,
            t,
            grid_export_kwh=200.0,
            renewable_kwh=500.0,
            green_direct_kwh=100.0,
            fuel={("natural_gas", "gas_m3"): 10.0},
            heat_purchased_gj=2.0,
        ),
        # 22:00 valley import 300 kWh at 0.2 = 60, 100 kWh of it covered by a certificate
        tot(park, at(park, d, 22), grid_import_kwh=300.0),
    ]
    cert = Certificate("c1", "p", "gec", 0.1, at(park, d, 0), at(park, d + timedelta(days=1), 0))
    r = run(park, rows, at(park, d, 0), at(park, d + timedelta(days=1), 0), "1d", certs=[cert])
    c = r.total.cost
    assert c["export_kwh"] == pytest.approx(200.0)
    assert c["export_credit_cny"] == pytest.approx(70.0)  # 200 × 0.35
    assert c["green_direct_cny"] == pytest.approx(45.0)  # 100 × 0.45
    assert c["fuel_cny"] == pytest.approx(35.0)  # 10 m³ × 3.5
    assert c["heat_cny"] == pytest.approx(80.0)  # 2 GJ × 40
    assert c["certificate_cny"] == pytest.approx(5.0)  # 0.1 MWh × 50
    # 60 − 70 + 45 + 35 + 80 + 5 = 155; March's demand so far (300 kW × 40 = 12000) is
    # not in a day's cost
    assert c["energy_cny"] == pytest.approx(155.0)
    assert r.buckets[0].fields.cost_cny == pytest.approx(155.0)
    assert r.total.cost_cny == pytest.approx(155.0)
    assert c["demand_months"]["2026-03"]["charge_cny"] == pytest.approx(12000.0)
    # saved at 13:00: the 300 kWh of PV used on site at 0.7 (210) plus the 200 exported at
    # 0.35 (70); the green line's 100 kWh at 0.7 − 0.45 (25); no storage
    assert c["saved_cny"] == pytest.approx(
        {"renewable": 280.0, "green_direct": 25.0, "storage": 0.0, "total": 305.0}
    )


def test_battery_arbitrage() -> None:
    park = make_park()
    d = date(2026, 3, 17)  # Tuesday, revision B: valley 0.2 at 03:00, peak 1.2 at 19:00
    rows = [
        # 03:00 import 500, the battery charges 400 (loads 100); SoC 0 → 40 % of 1000 kWh
        tot(
            park,
            at(park, d, 3),
            grid_import_kwh=500.0,
            storage={"b": (400.0, 0.0)},
            storage_soc_pct={"b": 40.0},
        ),
        # 19:00 it gives 360 back (40 lost), import 40 (loads 400); SoC 0 %
        tot(
            park,
            at(park, d, 19),
            grid_import_kwh=40.0,
            storage={"b": (0.0, 360.0)},
            storage_soc_pct={"b": 0.0},
        ),
    ]
    r = run(park, rows, at(park, d, 0), at(park, d + timedelta(days=1), 0), "1h")
    c = r.total.cost
    # paid: 500 × 0.2 + 40 × 1.2 = 148; loads bought from the grid instead:
    # 100 × 0.2 + 400 × 1.2 = 500; saved by storage: −400 × 0.2 + 360 × 1.2 = 352 = 500 − 148
    assert c["energy_cny"] == pytest.approx(148.0)
    assert c["saved_cny"]["storage"] == pytest.approx(352.0)
    assert c["saved_cny"]["renewable"] == pytest.approx(0.0)
    assert r.buckets[3].fields.cost["saved_cny"]["storage"] == pytest.approx(-80.0)
    assert r.buckets[19].fields.cost["saved_cny"]["storage"] == pytest.approx(432.0)
    assert r.total.storage_losses_kwh == pytest.approx(40.0)


def test_before_the_first_revision_is_unpriced() -> None:
    park = make_park()
    d = date(2026, 2, 28)
    rows = [
        tot(park, at(park, d, 23), grid_import_kwh=10.0),
        tot(park, at(park, d + timedelta(days=1), 1), grid_import_kwh=10.0),
    ]
    r = run(park, rows, at(park, d, 0), at(park, d + timedelta(days=2), 0), "1d")
    assert r.buckets[0].fields.cost_cny is None
    assert r.buckets[1].fields.cost_cny == pytest.approx(6.0)  # Sunday 03-01: 10 × flat 0.6
    assert r.total.cost["unpriced_intervals"] == 1
    assert any("first revision" in w for w in r.warnings)


def test_tariff_validation() -> None:
    bad = dict(TARIFF)
    rev = revision("2026-03-01", 1.0, 0.6, 0.3, 30.0)
    rev["schedules"] = [{"day_types": ["workday"], "bands": WORKDAY[:-1]}]
    bad["revisions"] = [rev]
    with pytest.raises(ValueError, match="00:00–24:00"):
        Tariff.model_validate(bad)
    rev = revision("2026-03-01", 1.0, 0.6, 0.3, 30.0)
    rev["schedules"] = [{"day_types": ["workday"], "bands": WORKDAY}]
    bad["revisions"] = [rev]
    with pytest.raises(ValueError, match="no schedule for month 1, weekend"):
        Tariff.model_validate(bad)
    rev = revision("2026-03-01", 1.0, 0.6, 0.3, 30.0)
    del rev["import_cny_per_kwh"]["valley"]
    bad["revisions"] = [rev]
    with pytest.raises(ValueError, match="no import price for period"):
        Tariff.model_validate(bad)
    bad["revisions"] = [revision("2026-03-16", 1, 1, 1, 1), revision("2026-03-01", 1, 1, 1, 1)]
    with pytest.raises(ValueError, match="increasing order"):
        Tariff.model_validate(bad)


def test_capacity_charge_counts_once_per_whole_month() -> None:
    """A capacity charge (CNY per kVA-month × contracted kVA) instead of a demand charge."""
    tariff = {**TARIFF, "revisions": [revision("2026-03-01", 1.0, 0.6, 0.3, 0.0)]}
    tariff["revisions"][0].update(capacity_cny_per_kva_month=22.0, capacity_kva=1000.0)
    park = make_park(tariff=tariff)
    rows = [
        tot(park, at(park, date(2026, 3, 2), 9), grid_import_kwh=100.0),  # peak 1.0 → 100
        tot(park, at(park, date(2026, 4, 4), 9), grid_import_kwh=100.0),  # Sat, flat → 60
    ]
    # March and April whole: 2 × 22 × 1000 = 44000 on top of 160
    start, end = at(park, date(2026, 3, 1), 0), at(park, date(2026, 5, 1), 0)
    r = run(park, rows, start, end, "1mo")
    assert [b.fields.cost_cny for b in r.buckets] == pytest.approx([22100.0, 22060.0])
    assert r.total.cost["capacity_charge_cny"] == pytest.approx(44000.0)
    assert r.total.cost["demand_charge_cny"] == 0.0
    # a window ending mid-April covers only March whole
    r = run(park, rows, start, at(park, date(2026, 4, 15), 0), "1d")
    assert r.total.cost_cny == pytest.approx(160.0 + 22000.0)
    assert r.total.cost["demand_months"]["2026-04"]["complete"] is False
