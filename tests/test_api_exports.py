"""`/readings` and `/balance` exports as CSV and XLSX (real influxd): content, headers, memory."""

from __future__ import annotations

import csv
import io
import itertools
import tracemalloc
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from app.accounting.buckets import to_ns
from app.storage.base import WriteBatch
from app.telemetry import routes as telemetry_routes
from app.telemetry.models import Reading
from tests.api_support import Api, iv, make_api
from tests.fixtures.influx import InfluxServer

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MIN = 60_000_000_000
T0 = datetime.fromisoformat("2026-06-01T08:00:00+08:00")
T0_NS = to_ns(T0)
RANGE = {"start": "2026-06-01T08:00:00+08:00", "end": "2026-06-01T11:00:00+08:00"}
DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}
SPEC_FIELDS = [
    "consumption_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "renewable_kwh",
    "green_direct_kwh",
    "green_physical_kwh",
    "green_market_kwh",
    "green_share_physical",
    "green_share_market",
    "scope1_kg",
    "scope2_location_kg",
    "scope2_market_kg",
    "heat_purchased_kg",
    "offsets_kg",
    "net_kg",
    "energy_tce",
    "tco2_per_tce",
    "completeness",
]


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


def sheet_rows(body: bytes, sheet: str | None = None) -> list[list[Any]]:
    wb = load_workbook(io.BytesIO(body), read_only=True)
    ws = wb[sheet] if sheet is not None else wb.worksheets[0]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    wb.close()
    # read-only mode stops a row at its last written cell: pad to the header's width
    width = max((len(r) for r in rows), default=0)
    return [r + [None] * (width - len(r)) for r in rows]


def as_dicts(rows: list[list[Any]]) -> list[dict[str, Any]]:
    header = rows[0]
    return [dict(zip(header, r, strict=True)) for r in rows[1:]]


# -- readings --------------------------------------------------------------------------


async def write_readings(api: Api) -> None:
    # grid-main every 30 min for 3 h (6 readings), pv-1 once with an unknown field
    rows = [
        Reading("demo", "grid-main", T0_NS + k * 30 * MIN, {"energy_import_kwh": 1000.0 + k})
        for k in range(6)
    ]
    rows.append(
        Reading("demo", "pv-1", T0_NS + 5 * MIN, {"energy_kwh": 7.5, "inverter_temp": 41.0}, True)
    )
    await api.storage.write(WriteBatch(readings=rows))


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"format": "xlsx"}, {}), ({}, {"Accept": XLSX})],
)
async def test_readings_xlsx(api: Api, params: dict[str, str], headers: dict[str, str]) -> None:
    await write_readings(api)
    r = await api.get("/api/v1/parks/demo/readings", params={**RANGE, **params}, headers=headers)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"] == 'attachment; filename="demo-readings.xlsx"'
    assert int(r.headers["content-length"]) == len(r.content)
    rows = sheet_rows(r.content, "readings")
    header = rows[0]
    assert header[:4] == ["time", "device", "ts_source", "reset"]
    assert header[-1] == "extra"
    assert "energy_import_kwh" in header and "power_kw" in header
    items = as_dicts(rows)
    assert len(items) == 7
    first = items[0]
    assert first["time"] == "2026-06-01T08:00:00+08:00" and first["device"] == "grid-main"
    assert first["ts_source"] == "device" and first["reset"] is False
    assert first["energy_import_kwh"] == 1000.0 and first["energy_kwh"] is None
    assert first["extra"] is None
    pv = items[1]
    assert pv["time"] == "2026-06-01T08:05:00+08:00" and pv["device"] == "pv-1"
    assert pv["reset"] is True and pv["energy_kwh"] == 7.5
    assert pv["extra"] == '{"inverter_temp": 41.0}'
    assert [i["energy_import_kwh"] for i in items if i["device"] == "grid-main"] == [
        1000.0,
        1001.0,
        1002.0,
        1003.0,
        1004.0,
        1005.0,
    ]


async def test_readings_xlsx_one_device_filename(api: Api) -> None:
    await write_readings(api)
    r = await api.get(
        "/api/v1/parks/demo/readings", params={**RANGE, "device": "pv-1", "format": "xlsx"}
    )
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="demo-readings-pv-1.xlsx"'
    items = as_dicts(sheet_rows(r.content))
    assert [(i["device"], i["energy_kwh"]) for i in items] == [("pv-1", 7.5)]


async def test_readings_xlsx_empty_range_has_header_only(api: Api) -> None:
    r = await api.get("/api/v1/parks/demo/readings", params={**RANGE, "format": "xlsx"})
    assert r.status_code == 200
    rows = sheet_rows(r.content)
    assert len(rows) == 1 and rows[0][0] == "time"


async def test_readings_xlsx_large_range_window_by_window(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days of 1-minute readings from 3 devices (8,640 rows): read one park-hour per
    storage query (48 queries), rolled over to new sheets at the (patched) sheet limit, and
    the export's peak Python memory stays well below what the rows take when held at once."""
    devices = ("grid-main", "pv-1", "bldg-a")
    n_min = 2 * 24 * 60
    start = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    start_ns = to_ns(start)
    batch: list[Reading] = []
    for k in range(n_min):
        for d in devices:
            batch.append(
                Reading("demo", d, start_ns + k * MIN, {"energy_kwh": float(k), "power_kw": 1.5})
            )
    await api.storage.write(WriteBatch(readings=batch))
    total = len(batch)
    assert total == 8640
    del batch

    # the memory all rows take as Reading objects at once (what the export must not do)
    tracemalloc.start()
    held = await api.storage.readings("demo", start_ns, start_ns + n_min * MIN)
    all_rows_bytes = tracemalloc.get_traced_memory()[0]
    assert len(held) == total
    del held
    tracemalloc.stop()

    calls: list[tuple[int, int]] = []
    real = api.storage.readings

    async def counting(park: str, lo: int, hi: int, device: str | None = None) -> list[Reading]:
        calls.append((lo, hi))
        return await real(park, lo, hi, device)

    monkeypatch.setattr(api.storage, "readings", counting)
    monkeypatch.setattr(telemetry_routes, "XLSX_SHEET_ROWS", 3000)
    params = {"start": start.isoformat(), "end": (start + timedelta(days=2)).isoformat()}

    tracemalloc.start()
    tracemalloc.reset_peak()
    r = await api.get("/api/v1/parks/demo/readings", params={**params, "format": "xlsx"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.status_code == 200
    body_bytes = len(r.content)
    assert body_bytes < all_rows_bytes / 10

    # one park-hour per query, contiguous, covering the two days
    assert len(calls) == 48
    assert calls[0][0] == start_ns and calls[-1][1] == start_ns + n_min * MIN
    assert all(a[1] == b[0] for a, b in itertools.pairwise(calls))
    # peak = one window, the test client's copy of the body (~0.2 MB) and buffers; holding
    # every row at once would alone exceed all_rows_bytes (~4 MB). Measured: ~1.4 MB.
    assert peak < all_rows_bytes / 2, (peak, body_bytes, all_rows_bytes)

    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    assert wb.sheetnames == ["readings", "readings 2", "readings 3"]
    seen: list[tuple[str, float]] = []
    for ws in wb.worksheets:
        rows = [list(x) for x in ws.iter_rows(values_only=True)]
        assert rows[0][:2] == ["time", "device"]
        header = rows[0]
        for row in rows[1:]:
            doc = dict(zip(header, row, strict=False))
            seen.append((str(doc["device"]), float(doc["energy_kwh"])))
    wb.close()
    assert len(seen) == total
    # oldest first: each device's minutes in order, every minute exactly once
    for d in devices:
        assert [v for dev, v in seen if dev == d] == [float(k) for k in range(n_min)]
    assert sorted(seen[:3]) == [("bldg-a", 0.0), ("grid-main", 0.0), ("pv-1", 0.0)]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({**RANGE, "format": "pdf"}, 422),
        ({**RANGE, "format": "xlsx", "device": "ghost"}, 404),
        ({**RANGE, "format": "xlsx", "start": "2026-06-01T08:00:00"}, 422),
        ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "format": "xlsx"}, 400),
    ],
)
async def test_readings_export_4xx(api: Api, params: dict[str, str], status: int) -> None:
    r = await api.get("/api/v1/parks/demo/readings", params=params)
    assert r.status_code == status, r.text


async def test_readings_xlsx_needs_a_key(api: Api) -> None:
    r = await api.client.get("/api/v1/parks/demo/readings", params={**RANGE, "format": "xlsx"})
    assert r.status_code == 401


# -- balance ---------------------------------------------------------------------------


async def write_demo_day(api: Api) -> None:
    """2026-06-01 (Asia/Shanghai, 1-h intervals).

    00:00  grid import 100, pv 0             → consumption 100
    12:00  grid import 20, export 50, pv 200 → consumption 20 + 200 − 50 = 170, green 150
    """
    park = api.registry.park("demo")
    assert park is not None
    d0 = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    d12 = datetime.fromisoformat("2026-06-01T12:00:00+08:00")
    rows = [
        iv(park, "grid-main", d0, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
        iv(park, "pv-1", d0, 60, energy_kwh=0.0),
        iv(park, "grid-main", d12, 60, energy_import_kwh=20.0, energy_export_kwh=50.0),
        iv(park, "pv-1", d12, 60, energy_kwh=200.0),
    ]
    await api.storage.write(WriteBatch(intervals=rows))


HEADER = ["row", "start", "end", *SPEC_FIELDS]


async def test_balance_csv_daily(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get("/api/v1/parks/demo/balance", params={**DAY, "every": "1d", "format": "csv"})
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        r.headers["content-disposition"] == 'attachment; filename="demo-balance-1d-2026-06-01.csv"'
    )
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == HEADER
    assert [row[:3] for row in rows[1:]] == [
        ["bucket", "2026-06-01T00:00:00+08:00", "2026-06-02T00:00:00+08:00"],
        ["total", "2026-06-01T00:00:00+08:00", "2026-06-02T00:00:00+08:00"],
    ]
    total = dict(zip(HEADER, rows[2], strict=True))
    assert float(total["consumption_kwh"]) == pytest.approx(270.0)
    assert float(total["grid_import_kwh"]) == pytest.approx(120.0)
    assert float(total["grid_export_kwh"]) == pytest.approx(50.0)
    assert float(total["green_physical_kwh"]) == pytest.approx(150.0)
    assert float(total["green_share_physical"]) == pytest.approx(150 / 270)
    # market scope 2 = 120 kWh × 0.6096 kg/kWh (cn-2023 northeast residual mix)
    assert float(total["scope2_market_kg"]) == pytest.approx(73.152)
    assert float(total["net_kg"]) == pytest.approx(73.152)
    # 2 devices × 24 intervals expected, 4 stored
    assert float(total["completeness"]) == pytest.approx(4 / 48)
    assert rows[1][3:] == rows[2][3:]  # one bucket: bucket == total


async def test_balance_csv_hourly_blank_share_and_total(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get(
        "/api/v1/parks/demo/balance",
        params={**DAY, "every": "1h"},
        headers={"Accept": "text/csv"},
    )
    assert r.status_code == 200
    rows = [dict(zip(HEADER, row, strict=True)) for row in csv.reader(io.StringIO(r.text))][1:]
    assert [x["row"] for x in rows] == ["bucket"] * 24 + ["total"]
    assert rows[12]["start"] == "2026-06-01T12:00:00+08:00"
    assert float(rows[12]["consumption_kwh"]) == pytest.approx(170.0)
    # an hour without consumption has no meaningful share: empty cell, not 0
    assert float(rows[5]["consumption_kwh"]) == 0.0 and rows[5]["green_share_physical"] == ""
    assert float(rows[-1]["consumption_kwh"]) == pytest.approx(270.0)


async def test_balance_xlsx(api: Api) -> None:
    await write_demo_day(api)
    r = await api.get(
        "/api/v1/parks/demo/balance", params={**DAY, "every": "1h"}, headers={"Accept": XLSX}
    )
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == XLSX
    assert (
        r.headers["content-disposition"] == 'attachment; filename="demo-balance-1h-2026-06-01.xlsx"'
    )
    rows = sheet_rows(r.content, "balance")
    assert rows[0] == HEADER
    items = as_dicts(rows)
    assert len(items) == 25
    b0, b5, b12, total = items[0], items[5], items[12], items[-1]
    assert b0["row"] == "bucket" and b0["start"] == "2026-06-01T00:00:00+08:00"
    assert b0["end"] == "2026-06-01T01:00:00+08:00"
    assert b0["consumption_kwh"] == pytest.approx(100.0) and b0["green_share_physical"] == 0.0
    assert b5["consumption_kwh"] == 0 and b5["green_share_physical"] is None
    assert b12["green_physical_kwh"] == pytest.approx(150.0)
    assert b12["green_share_physical"] == pytest.approx(150 / 170)
    assert total["row"] == "total" and total["end"] == "2026-06-02T00:00:00+08:00"
    assert total["consumption_kwh"] == pytest.approx(270.0)
    assert total["scope2_location_kg"] == pytest.approx(120 * 0.5122)
    about = dict((k, v) for k, v in sheet_rows(r.content, "about"))
    assert about["park"] == "demo" and about["factor_set"] == "cn-2023"
    assert about["every"] == "1h" and about["interval_minutes"] == 60


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({**DAY, "format": "ods"}, 422),
        ({**DAY, "format": "csv", "every": "7m"}, 422),
        ({**DAY, "format": "xlsx", "start": "2026-06-01T00:00:00"}, 422),
        ({"start": DAY["end"], "end": DAY["start"], "format": "csv"}, 422),
    ],
)
async def test_balance_export_4xx(api: Api, params: dict[str, str], status: int) -> None:
    r = await api.get("/api/v1/parks/demo/balance", params=params)
    assert r.status_code == status, r.text


async def test_balance_export_unknown_park_and_no_key(api: Api) -> None:
    r = await api.get("/api/v1/parks/nope/balance", params={**DAY, "format": "csv"})
    assert r.status_code == 404
    r = await api.client.get("/api/v1/parks/demo/balance", params={**DAY, "format": "xlsx"})
    assert r.status_code == 401
