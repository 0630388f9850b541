"""`/balance` through the API on a real influxd: a hand-computed day, certificates, DST, 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.accounting import IntervalTotals
from app.accounting.buckets import to_ns
from app.intervals.models import IntervalEnergy
from app.registry import Park
from app.storage.base import WriteBatch
from tests.api_support import Api, iv, make_api
from tests.fixtures.influx import InfluxServer

# cn-2023, northeast: EF_grid = 0.5122 kgCO2/kWh, EF_residual = 0.6096 kgCO2/kWh
EF_GRID = 0.5122
EF_RES = 0.6096
KGCE_PER_KWH = 0.1229


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(
        fresh_influx_db.url,
        fresh_influx_db.database,
        sqlite_url,
        tmp_path,
        settings={"max_balance_span": timedelta(days=400), "max_buckets": 10_000},
        now=datetime.fromisoformat("2026-07-01T00:00:00+08:00"),
    ):
        yield a


async def write_demo_day(api: Api) -> None:
    """2026-06-01 (Asia/Shanghai, 1-h intervals).

    00:00  grid import 100, pv 0           → consumption 100, green 0
    12:00  grid import 20, export 50, pv 200 → G_self = 150, consumption 20 + 200 − 50 = 170
    bldg-a (sub-meter) 60 kWh at 00:00: breakdown only, never added.
    """
    park = api.registry.park("demo")
    assert park is not None
    d0 = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    d12 = datetime.fromisoformat("2026-06-01T12:00:00+08:00")
    rows = [
        iv(park, "grid-main", d0, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
        iv(park, "pv-1", d0, 60, energy_kwh=0.0),
        iv(park, "bldg-a", d0, 60, energy_import_kwh=60.0),
        iv(park, "grid-main", d12, 60, energy_import_kwh=20.0, energy_export_kwh=50.0),
        iv(park, "pv-1", d12, 60, energy_kwh=200.0),
    ]
    await api.storage.write(WriteBatch(intervals=rows))


DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}


async def test_hand_computed_day(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get("/api/v1/parks/demo/balance", params={**DAY, "every": "1d"})
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert list(doc)[:7] == ["park", "factor_set", "start", "end", "every", "buckets", "total"]
    assert doc["park"] == "demo" and doc["factor_set"] == "cn-2023" and doc["every"] == "1d"
    assert doc["start"] == "2026-06-01T00:00:00+08:00"
    assert doc["end"] == "2026-06-02T00:00:00+08:00"
    assert len(doc["buckets"]) == 1
    t = doc["total"]
    # consumption = 100 + 170 = 270; import 120; export 50; renewable 200
    assert t["consumption_kwh"] == pytest.approx(270.0)
    assert t["grid_import_kwh"] == pytest.approx(120.0)
    assert t["grid_export_kwh"] == pytest.approx(50.0)
    assert t["renewable_kwh"] == pytest.approx(200.0)
    assert t["green_direct_kwh"] == pytest.approx(0.0)
    # green physical = G_self = 200 − 50 = 150; no certificates → market = physical
    assert t["green_physical_kwh"] == pytest.approx(150.0)
    assert t["green_market_kwh"] == pytest.approx(150.0)
    assert t["green_share_physical"] == pytest.approx(150 / 270)
    # scope 2: location 120 × 0.5122 = 61.464 kg; market 120 × 0.6096 = 73.152 kg
    assert t["scope2_location_kg"] == pytest.approx(61.464)
    assert t["scope2_market_kg"] == pytest.approx(73.152)
    assert t["scope1_kg"] == pytest.approx(0.0)
    assert t["offsets_kg"] == pytest.approx(0.0)
    assert t["net_kg"] == pytest.approx(73.152)
    # tce = 270 × 0.1229 / 1000 = 0.033183; tCO2/tce = 0.073152 / 0.033183 = 2.20450...
    assert t["energy_tce"] == pytest.approx(0.033183)
    assert t["tco2_per_tce"] == pytest.approx(0.073152 / 0.033183)
    # 2 non-sub-meter devices × 24 intervals = 48 expected, 4 rows measured
    assert t["completeness"] == pytest.approx(4 / 48)
    assert t["submeter_kwh"] == {"load": pytest.approx(60.0)}


async def test_hourly_buckets_and_total_equal_daily(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get("/api/v1/parks/demo/balance", params={**DAY, "every": "1h"})
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert len(doc["buckets"]) == 24
    b12 = doc["buckets"][12]
    assert b12["start"] == "2026-06-01T12:00:00+08:00" and b12["end"] == "2026-06-01T13:00:00+08:00"
    assert b12["consumption_kwh"] == pytest.approx(170.0)
    assert b12["green_share_physical"] == pytest.approx(150 / 170)
    # an hour without data: zero energy, no meaningful share
    assert doc["buckets"][5]["consumption_kwh"] == 0.0
    assert doc["buckets"][5]["green_share_physical"] is None
    assert doc["total"]["consumption_kwh"] == pytest.approx(270.0)


async def test_certificate_and_offset_window_independent(api: Api) -> None:
    await write_demo_day(api)
    # 0.11 MWh = 110 kWh valid all day: 00:00 takes 100 (its whole import), 12:00 takes 10.
    r = await api.client.post(
        "/api/v1/parks/demo/certificates",
        json={
            "id": "GEC-1",
            "kind": "gec",
            "mwh": 0.11,
            "valid_from": "2026-06-01T00:00:00+08:00",
            "valid_to": "2026-06-02T00:00:00+08:00",
            "source": "test",
        },
        headers=api.auth("manager"),
    )
    assert r.status_code == 201, r.text[:300]
    r = await api.client.post(
        "/api/v1/parks/demo/offsets",
        json={"id": "CCER-1", "kind": "ccer", "tco2": 0.5, "date": "2026-06-01", "source": "t"},
        headers=api.auth("manager"),
    )
    assert r.status_code == 201, r.text[:300]
    t = (await api.get("/api/v1/parks/demo/balance", params={**DAY, "every": "1d"})).json()["total"]
    # market: (120 − 110) × 0.6096 = 6.096 kg; green market = 150 + 110 = 260
    assert t["scope2_market_kg"] == pytest.approx(6.096)
    assert t["green_market_kwh"] == pytest.approx(260.0)
    assert t["certificates_applied_kwh"] == pytest.approx(110.0)
    # offsets 0.5 t = 500 kg: net = 6.096 − 500 = −493.904
    assert t["offsets_kg"] == pytest.approx(500.0)
    assert t["net_kg"] == pytest.approx(-493.904)

    # Afternoon only: the certificate already gave 100 kWh to 00:00, so 12:00 gets 10, not 20.
    r = await api.get(
        "/api/v1/parks/demo/balance",
        params={
            "start": "2026-06-01T06:00:00+08:00",
            "end": "2026-06-02T00:00:00+08:00",
            "every": "1d",
        },
    )
    doc = r.json()
    t = doc["total"]
    assert t["certificates_applied_kwh"] == pytest.approx(10.0)
    # (20 − 10) × 0.6096 = 6.096
    assert t["scope2_market_kg"] == pytest.approx(6.096)
    assert t["offsets_kg"] == 0.0  # the offset counts at local midnight, outside the window
    assert doc["certificate_trail"] == [
        {
            "certificate_id": "GEC-1",
            "start_ns": doc["certificate_trail"][0]["start_ns"],
            "end_ns": doc["certificate_trail"][0]["end_ns"],
            "kwh": pytest.approx(10.0),
        }
    ]


async def test_dst_days_through_the_api(api: Api) -> None:
    park = api.registry.park("berlin")
    assert park is not None
    # 2026-10-25 Europe/Berlin: 25 local hours (CEST 02:00–03:00 then CET 02:00–03:00 again).
    start = datetime.fromisoformat("2026-10-25T00:00:00+02:00")
    rows = [
        iv(park, "grid-b", start + timedelta(minutes=15 * k), 15, energy_import_kwh=1.0)
        for k in range(100)  # 25 h × 4
    ]
    await api.storage.write(WriteBatch(intervals=rows))
    r = await api.get(
        "/api/v1/parks/berlin/balance",
        params={"start": "2026-10-25T00:00:00+02:00", "end": "2026-10-26T00:00:00+01:00"},
    )
    assert r.status_code == 200, r.text[:300]
    (b,) = r.json()["buckets"]
    assert b["start"] == "2026-10-25T00:00:00+02:00" and b["end"] == "2026-10-26T00:00:00+01:00"
    assert b["grid_import_kwh"] == pytest.approx(100.0)
    assert b["expected_intervals"] == 100 and b["completeness"] == pytest.approx(1.0)
    r = await api.get(
        "/api/v1/parks/berlin/balance",
        params={
            "start": "2026-10-25T00:00:00+02:00",
            "end": "2026-10-26T00:00:00+01:00",
            "every": "1h",
        },
    )
    buckets = r.json()["buckets"]
    assert len(buckets) == 25
    assert [b["start"][11:] for b in buckets[2:4]] == ["02:00:00+02:00", "02:00:00+01:00"]
    assert all(b["grid_import_kwh"] == pytest.approx(4.0) for b in buckets)

    # 2026-03-29: 23 h. A two-day daily query gives a 24-h and a 23-h bucket.
    r = await api.get(
        "/api/v1/parks/berlin/balance",
        params={"start": "2026-03-28T00:00:00+01:00", "end": "2026-03-30T00:00:00+02:00"},
    )
    b1, b2 = r.json()["buckets"]
    assert b1["end"] == b2["start"] == "2026-03-29T00:00:00+01:00"
    assert b1["expected_intervals"] == 96  # 24 h × 4
    assert b2["expected_intervals"] == 92  # 23 h × 4
    # A month bucket in UTC+01:00/+02:00 local time
    r = await api.get(
        "/api/v1/parks/berlin/balance",
        params={
            "start": "2026-10-01T00:00:00+02:00",
            "end": "2026-12-01T00:00:00+01:00",
            "every": "1mo",
        },
    )
    months = r.json()["buckets"]
    assert [(m["start"], m["end"]) for m in months] == [
        ("2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00"),
        ("2026-11-01T00:00:00+01:00", "2026-12-01T00:00:00+01:00"),
    ]
    assert months[0]["grid_import_kwh"] == pytest.approx(100.0)


async def test_shanghai_buckets_are_local(api: Api) -> None:
    await write_demo_day(api)
    # A UTC-expressed window: buckets still follow Shanghai midnights.
    r = await api.get(
        "/api/v1/parks/demo/balance",
        params={"start": "2026-05-31T16:00:00Z", "end": "2026-06-02T16:00:00Z", "every": "1d"},
    )
    assert r.status_code == 200, r.text[:300]
    starts = [b["start"] for b in r.json()["buckets"]]
    assert starts == ["2026-06-01T00:00:00+08:00", "2026-06-02T00:00:00+08:00"]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"start": "2026-06-01T00:00:00", "end": "2026-06-02T00:00:00+08:00"}, 422, "offset"),
        ({"start": "yesterday", "end": "2026-06-02T00:00:00+08:00"}, 422, "RFC 3339"),
        ({"start": "2026-06-02T00:00:00+08:00", "end": "2026-06-01T00:00:00+08:00"}, 422, "before"),
        ({**DAY, "every": "2h"}, 422, "every"),
        ({"start": "2025-01-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}, 400, "large"),
        (
            {
                "start": "2026-01-01T00:00:00+08:00",
                "end": "2026-12-01T00:00:00+08:00",
                "every": "15m",
            },
            422,
            "buckets",
        ),
        ({"end": "2026-06-02T00:00:00+08:00"}, 422, "start"),
    ],
)
async def test_bad_requests(api: Api, params: dict[str, str], status: int, needle: str) -> None:
    r = await api.get("/api/v1/parks/demo/balance", params=params)
    assert r.status_code == status, r.text[:300]
    assert needle in r.text


async def test_unencoded_plus_in_offset_is_accepted(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get(
        "/api/v1/parks/demo/balance?start=2026-06-01T00:00:00+08:00&end=2026-06-02T00:00:00+08:00"
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json()["total"]["consumption_kwh"] == pytest.approx(270.0)


async def test_unknown_park_404(api: Api) -> None:
    r = await api.get("/api/v1/parks/nope/balance", params=DAY)
    assert r.status_code == 404 and "nope" in r.text


async def test_cache_invalidation_sees_late_data(api: Api) -> None:
    await write_demo_day(api)
    url, params = "/api/v1/parks/demo/balance", {**DAY, "every": "1d"}
    assert (await api.get(url, params=params)).json()["total"]["grid_import_kwh"] == 120.0
    park = api.registry.park("demo")
    assert park is not None
    late = iv(
        park,
        "grid-main",
        datetime.fromisoformat("2026-06-01T20:00:00+08:00"),
        60,
        energy_import_kwh=30.0,
    )
    await api.storage.write(WriteBatch(intervals=[late]))
    # The day was cached, but the write moved the day's change marker in the store: the very
    # next answer counts the new row, with no hook from the writer.
    assert (await api.get(url, params=params)).json()["total"]["grid_import_kwh"] == 150.0


async def test_stored_solar_carried_across_windows(api: Api) -> None:
    """Day 1 12:00: pv 100 all into the battery (loads get 0); day 2 01:00: discharge 80 +
    grid 20 → loads 100, of which 80 green (stored solar). Asking for day 2 alone must give the
    same answer as day 2 inside a two-day window: the state is carried from the chain."""
    park = api.registry.park("store")
    assert park is not None
    d1 = datetime.fromisoformat("2026-06-01T12:00:00+08:00")
    d2 = datetime.fromisoformat("2026-06-02T01:00:00+08:00")
    await api.storage.write(
        WriteBatch(
            intervals=[
                iv(park, "pv-s", d1, 60, energy_kwh=100.0),
                iv(
                    park,
                    "bess",
                    d1,
                    60,
                    energy_charge_kwh=100.0,
                    energy_discharge_kwh=0.0,
                    soc_pct=50.0,
                ),
                iv(park, "grid-s", d2, 60, energy_import_kwh=20.0),
                iv(
                    park,
                    "bess",
                    d2,
                    60,
                    energy_charge_kwh=0.0,
                    energy_discharge_kwh=80.0,
                    soc_pct=10.0,
                ),
            ]
        )
    )
    url = "/api/v1/parks/store/balance"
    day2 = {"start": "2026-06-02T00:00:00+08:00", "end": "2026-06-03T00:00:00+08:00"}
    both = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-03T00:00:00+08:00"}
    alone = (await api.get(url, params={**day2, "every": "1d"})).json()["total"]
    assert alone["consumption_kwh"] == pytest.approx(100.0)
    assert alone["green_physical_kwh"] == pytest.approx(80.0)
    assert alone["green_share_physical"] == pytest.approx(0.8)
    inside = (await api.get(url, params={**both, "every": "1d"})).json()["buckets"]
    assert inside[0]["consumption_kwh"] == pytest.approx(0.0)  # all of day 1's pv was stored
    assert inside[1]["green_physical_kwh"] == pytest.approx(80.0)
    hourly = (await api.get(url, params={**day2, "every": "1h"})).json()["buckets"]
    assert hourly[1]["green_share_physical"] == pytest.approx(0.8)
    # a window starting mid-day (direct computation from the chain state at midnight)
    r = await api.get(
        url, params={"start": "2026-06-02T00:30:00+08:00", "end": day2["end"], "every": "1d"}
    )
    assert r.json()["total"]["green_physical_kwh"] == pytest.approx(80.0)
    # month bucket assembled from chained days equals the sum
    r = await api.get(
        url,
        params={
            "start": "2026-06-01T00:00:00+08:00",
            "end": "2026-07-01T00:00:00+08:00",
            "every": "1mo",
        },
    )
    (m,) = r.json()["buckets"]
    assert m["consumption_kwh"] == pytest.approx(100.0)
    assert m["green_physical_kwh"] == pytest.approx(80.0)
    assert m["storage_charge_kwh"] == pytest.approx(100.0)


async def test_influx_sums_equal_row_by_row(api: Api) -> None:
    """The cold-cache path that sums by role inside influxd gives the same interval totals as
    reading every row (estimated rows, sub-meters and storage included)."""
    from app.accounting import interval_totals
    from app.balance.loader import aggregated_totals, series_match_registry

    park = api.registry.park("store")
    assert park is not None
    rows, lo, hi = _store_day(park)
    await api.storage.write(WriteBatch(intervals=rows))
    assert await series_match_registry(api.storage, park)
    fast = await aggregated_totals(api.storage, park, lo, hi)
    slow = interval_totals(await api.storage.intervals("store", lo, hi), park)
    _assert_same_totals(fast, slow)


async def test_unregistered_device_rows_fall_back_to_row_by_row(api: Api) -> None:
    await write_demo_day(api)
    # rows of a device the registry doesn't know: never counted (summing by tag would)
    stray = IntervalEnergy(
        "demo",
        "ghost",
        "grid",
        to_ns(datetime.fromisoformat("2026-06-01T03:00:00+08:00")),
        to_ns(datetime.fromisoformat("2026-06-01T04:00:00+08:00")),
        {"energy_import_kwh": 999.0},
    )
    await api.storage.write(WriteBatch(intervals=[stray]))
    r = await api.get("/api/v1/parks/demo/balance", params={**DAY, "every": "1d"})
    assert r.json()["total"]["grid_import_kwh"] == pytest.approx(120.0)


async def test_embedded_sums_equal_row_by_row(tmp_path: Path) -> None:
    """The embedded store's per-role rollup gives the same interval totals as every row."""
    from app.accounting import interval_totals
    from app.balance.loader import aggregated_totals, series_match_registry
    from app.registry import parse_registry
    from app.storage.embedded import EmbeddedStorage
    from tests.api_support import REGISTRY_YAML

    park = parse_registry(REGISTRY_YAML).park("store")
    assert park is not None
    rows, lo, hi = _store_day(park)
    storage = EmbeddedStorage(tmp_path / "store.sqlite")
    try:
        await storage.write(WriteBatch(intervals=rows))
        assert await series_match_registry(storage, park)
        fast = await aggregated_totals(storage, park, lo, hi)
        slow = interval_totals(await storage.intervals("store", lo, hi), park)
    finally:
        await storage.close()
    _assert_same_totals(fast, slow)


def _store_day(park: Park) -> tuple[list[IntervalEnergy], int, int]:
    """Six hours of grid/pv/battery intervals of park `store`, the first grid one estimated."""
    t0 = datetime.fromisoformat("2026-06-03T00:00:00+08:00")
    rows = []
    for h in range(6):
        t = t0 + timedelta(hours=h)
        rows += [
            iv(park, "grid-s", t, 60, energy_import_kwh=10.0 + h, energy_export_kwh=h / 2),
            iv(park, "pv-s", t, 60, energy_kwh=3.0 * h),
            iv(park, "bess", t, 60, energy_charge_kwh=h % 2 * 5.0, energy_discharge_kwh=1.0),
        ]
    rows[0] = IntervalEnergy(
        "store",
        "grid-s",
        "grid",
        rows[0].start_ns,
        rows[0].end_ns,
        {"energy_import_kwh": 10.0, "energy_export_kwh": 0.0},
        estimated=True,
    )
    rows[4] = IntervalEnergy(  # pv-s at 01:00 rests on a suppressed glitch
        "store",
        "pv-s",
        "pv",
        rows[4].start_ns,
        rows[4].end_ns,
        {"energy_kwh": 3.0},
        flags=("glitch",),
    )
    return rows, to_ns(t0), to_ns(t0 + timedelta(days=1))


def _assert_same_totals(fast: list[IntervalTotals], slow: list[IntervalTotals]) -> None:
    assert len(fast) == len(slow) == 6
    for f, s in zip(fast, slow, strict=True):
        assert (f.start_ns, f.end_ns) == (s.start_ns, s.end_ns)
        assert f.grid_import_kwh == pytest.approx(s.grid_import_kwh)
        assert f.grid_export_kwh == pytest.approx(s.grid_export_kwh)
        assert f.renewable_kwh == pytest.approx(s.renewable_kwh)
        assert f.storage == s.storage
        assert (f.measured, f.estimated) == (s.measured, s.estimated)
        assert f.quality == s.quality  # the flagged rows, read apart from the sums
    assert (fast[0].measured, fast[0].estimated) == (2, 1)
    assert fast[0].quality == {"estimated": ("grid-s",)}
    assert fast[1].quality == {"glitch": ("pv-s",)}
