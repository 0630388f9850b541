"""`/live` from memory and `/live/stream` over SSE (real uvicorn), fed by `LiveState.apply`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.accounting.buckets import to_ns
from app.main import refresh_today
from app.storage.base import WriteBatch
from app.telemetry.models import Reading
from tests.api_support import Api, iv, make_api
from tests.fixtures.influx import InfluxServer, free_port

NOW = datetime.fromisoformat("2026-06-01T14:00:00+08:00")
NOW_NS = to_ns(NOW)
S = 1_000_000_000


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(
        fresh_influx_db.url,
        fresh_influx_db.database,
        sqlite_url,
        tmp_path,
        settings={"sse_poll_s": 0.02, "sse_heartbeat_s": 30.0},
        now=NOW,
    ):
        yield a


def reading(device: str, age_s: float, park: str = "demo", **values: float) -> Reading:
    return Reading(park, device, NOW_NS - int(age_s * S), dict(values))


async def test_live_power_share_intensity_and_freshness(api: Api) -> None:
    api.live.apply(
        [
            reading("grid-main", 10, power_kw=300.0, energy_import_kwh=5000.0),
            reading("pv-1", 5, power_kw=100.0),
            reading("bldg-a", 20, power_kw=50.0),
        ]
    )
    r = await api.get("/api/v1/parks/demo/live", params={"detail": "true"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["power_kw"] == {"grid": 300.0, "pv": 100.0, "load": 50.0}
    # loads draw 300 (grid) + 100 (pv) = 400 kW, green 100 → share 0.25
    assert doc["load_kw"] == pytest.approx(400.0)
    assert doc["green_share_physical"] == pytest.approx(0.25)
    # location: (1 − 0.25) × 0.5122 kg/kWh × 1000 = 384.15 g/kWh
    assert doc["carbon_intensity_location_g_per_kwh"] == pytest.approx(384.15)
    # market, no certificates: 0.75 × 0.6096 × 1000 = 457.2 g/kWh
    assert doc["carbon_intensity_market_g_per_kwh"] == pytest.approx(457.2)
    fresh = {d["id"]: d for d in doc["devices"]}
    assert fresh["grid-main"]["age_s"] == pytest.approx(10.0)
    assert fresh["grid-main"]["ts"] == "2026-06-01T13:59:50+08:00"
    assert fresh["pv-1"]["stale"] is False
    assert doc["time"] == "2026-06-01T14:00:00+08:00"
    assert doc["freshness"] == {"grid-main": 10.0, "pv-1": 5.0, "bldg-a": 20.0}
    assert doc["oldest_age_s"] == 20.0
    assert doc["today"] is None  # not refreshed yet


async def test_stale_device_is_left_out_and_late_reading_ignored(api: Api) -> None:
    api.live.apply([reading("grid-main", 10, power_kw=300.0), reading("pv-1", 1000, power_kw=99.0)])
    # an older reading of the grid meter arriving late does not move it back in time
    api.live.apply([reading("grid-main", 60, power_kw=1.0)])
    doc = (await api.get("/api/v1/parks/demo/live")).json()
    assert doc["stale_devices"] == ["pv-1"]  # 1000 s > 900 s
    assert doc["load_kw"] == pytest.approx(300.0)
    assert doc["green_share_physical"] == pytest.approx(0.0)
    assert "pv-1" in doc["missing_devices"]
    assert "devices" not in doc  # per-device detail only on request
    assert doc["freshness"] == {"grid-main": 10.0, "pv-1": 1000.0, "bldg-a": None}


async def test_power_derived_from_counters(api: Api) -> None:
    # 15 min apart, import counter +25 kWh → 25 / 0.25 h = 100 kW
    api.live.apply([reading("grid-b", 900, park="berlin", energy_import_kwh=100.0)])
    api.live.apply([reading("grid-b", 0, park="berlin", energy_import_kwh=125.0)])
    doc = (await api.get("/api/v1/parks/berlin/live?detail=1")).json()
    (dev,) = doc["devices"]
    assert dev["power_kw"] == pytest.approx(100.0) and dev["power_source"] == "counter"
    assert doc["grid_import_kw"] == pytest.approx(100.0)


async def test_today_balance_in_live(api: Api) -> None:
    park = api.registry.park("demo")
    assert park is not None
    midnight = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    await api.storage.write(
        WriteBatch(
            intervals=[
                iv(park, "grid-main", midnight, 60, energy_import_kwh=40.0),
                iv(park, "pv-1", midnight, 60, energy_kwh=10.0),
            ]
        )
    )
    await refresh_today(api.svc, park)
    today = (await api.get("/api/v1/parks/demo/live")).json()["today"]
    assert today["start"] == "2026-06-01T00:00:00+08:00"
    assert today["end"] == "2026-06-01T14:00:00+08:00"
    # consumption 40 + 10 = 50; green 10 → share 0.2; scope2 location 40 × 0.5122 = 20.488
    assert today["consumption_kwh"] == pytest.approx(50.0)
    assert today["green_share_physical"] == pytest.approx(0.2)
    assert today["scope2_location_kg"] == pytest.approx(20.488)


async def test_live_unknown_park_and_auth(api: Api) -> None:
    assert (await api.get("/api/v1/parks/nope/live")).status_code == 404
    assert (await api.client.get("/api/v1/parks/demo/live")).status_code == 401


@contextlib.asynccontextmanager
async def served(api: Api) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def next_event(lines: AsyncIterator[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line.strip():
            if "data" in event:
                return event
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        event[key] = event.get(key, "") + value.lstrip(" ")
    raise AssertionError("stream ended")


async def test_sse_pushes_after_apply(api: Api) -> None:
    async with (
        served(api) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/api/v1/parks/demo/live/stream", headers=api.auth("viewer")) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()
        first = await asyncio.wait_for(next_event(lines), 5)
        assert first["event"] == "live"
        assert json.loads(first["data"])["load_kw"] == 0.0
        api.live.apply([reading("grid-main", 1, power_kw=250.0)])
        second = await asyncio.wait_for(next_event(lines), 5)
        doc = json.loads(second["data"])
        assert doc["grid_import_kw"] == pytest.approx(250.0)
        assert doc["power_kw"] == {"grid": 250.0}


async def test_sse_with_rate_limited_renders_still_delivers_the_change(api: Api) -> None:
    api.live.min_render_interval_s = 0.3  # as in production (1 s), shorter for the test
    async with (
        served(api) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/api/v1/parks/demo/live/stream", headers=api.auth("viewer")) as resp,
    ):
        lines = resp.aiter_lines()
        first = json.loads((await asyncio.wait_for(next_event(lines), 5))["data"])
        assert first["load_kw"] == 0.0
        api.live.apply([reading("pv-1", 1, power_kw=40.0)])
        # the first event after the change may only come once the render interval has passed,
        # but it must carry the change (and come well before the 30 s heartbeat)
        doc = json.loads((await asyncio.wait_for(next_event(lines), 3))["data"])
        assert doc["renewable_kw"] == pytest.approx(40.0)


async def test_sse_ends_with_an_event_when_the_park_leaves_the_registry(api: Api) -> None:
    async with (
        served(api) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/api/v1/parks/store/live/stream", headers=api.auth("viewer")) as resp,
    ):
        lines = resp.aiter_lines()
        assert (await asyncio.wait_for(next_event(lines), 5))["event"] == "live"
        r = await client.delete("/api/v1/parks/store", headers=api.auth("manager"))
        assert r.status_code == 200, r.text
        last = await asyncio.wait_for(next_event(lines), 5)
        assert last["event"] == "removed" and "left the registry" in last["data"]
        with pytest.raises(AssertionError, match="stream ended"):
            await asyncio.wait_for(next_event(lines), 5)
