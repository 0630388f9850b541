"""Alarms through the API in-process, on a controlled clock: the engine's rounds against the
live view (offline, live thresholds with their window), the list in JSON and CSV, the manager
acknowledgement, `alarms` in /live and the SSE `alarm` event, and the /metrics gauges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from app.accounting.buckets import to_ns
from app.alarms.engine import AlarmEngine, EngineOptions
from app.registry.alarm_settings import AlarmSettings
from app.registry.holder import RegistryHolder
from app.registry.models import Registry
from app.telemetry.models import Reading
from tests.api_support import Api, make_api
from tests.fixtures.influx import InfluxServer
from tests.test_api_live import next_event, served

NOW = datetime.fromisoformat("2026-06-01T14:00:00+08:00")
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


def with_settings(reg: Registry, park: str, settings: AlarmSettings) -> Registry:
    parks = [p.model_copy(update={"alarms": settings}) if p.id == park else p for p in reg.parks]
    return Registry(parks=tuple(parks))


def engine_for(api: Api, settings: AlarmSettings) -> AlarmEngine:
    reg = with_settings(api.registry, "demo", settings)
    assert api.svc.alarms is not None
    return AlarmEngine(
        api.svc.alarms.store,
        RegistryHolder(reg),
        api.live,
        api.storage,
        options=EngineOptions(slow_every_s=3600),
        view=api.svc.alarms.view,
        clock=lambda: api.clock[0],
    )


def at(api: Api, seconds: float) -> int:
    api.clock[0] = to_ns(NOW) + int(seconds * S)
    return api.clock[0]


def meter(api: Api, device: str, seconds: float, **values: float) -> None:
    ts = at(api, seconds)
    api.live.apply([Reading("demo", device, ts, dict(values))])


async def test_offline_fires_after_learned_cadence_and_resolves(api: Api) -> None:
    engine = engine_for(api, AlarmSettings(offline_grace_s=45))
    # grid-main reports every 60 s: t = 0, 60, 120 (two steps learned: cadence 60 s)
    for t in (0, 60, 120):
        meter(api, "grid-main", t, power_kw=100.0)
        await engine.evaluate()
    assert engine.cadence(api.registry.parks[0], "grid-main") == 60.0
    # silent since t = 120: 105 s allowed, so nothing at t = 225, firing at t = 226
    at(api, 225)
    await engine.evaluate()
    assert api.svc.alarms is not None and api.svc.alarms.view.of("demo") == []
    at(api, 226)
    await engine.evaluate()
    (alarm,) = api.svc.alarms.view.of("demo")
    assert (alarm["rule"], alarm["subject"], alarm["state"]) == (
        "device_offline",
        "grid-main",
        "firing",
    )
    assert alarm["params"] == {"device": "grid-main", "silent_s": 106, "cadence_s": 60}
    # visible in /live
    doc = (await api.get("/api/v1/parks/demo/live")).json()
    assert [a["id"] for a in doc["alarms"]] == [alarm["id"]]
    # it reports again: resolved at the next round
    meter(api, "grid-main", 300, power_kw=100.0)
    await engine.evaluate()
    assert api.svc.alarms.view.of("demo") == []
    (done,) = (await api.get("/api/v1/parks/demo/alarms?state=history")).json()["items"]
    assert done["state"] == "resolved" and done["id"] == alarm["id"]
    assert (await api.get("/api/v1/parks/demo/live")).json()["alarms"] == []


async def test_live_threshold_fires_only_after_its_window(api: Api) -> None:
    engine = engine_for(api, AlarmSettings(green_share_min=0.5, window_s=300))
    # 300 kW from the grid, 100 kW PV: green share 100 / 400 = 0.25 < 0.5
    for t in (0, 100, 200, 299):
        meter(api, "grid-main", t, power_kw=300.0)
        meter(api, "pv-1", t, power_kw=100.0)
        await engine.evaluate()
    assert api.svc.alarms is not None and api.svc.alarms.view.of("demo") == []
    meter(api, "grid-main", 300, power_kw=300.0)
    meter(api, "pv-1", 300, power_kw=100.0)
    await engine.evaluate()
    (alarm,) = api.svc.alarms.view.of("demo")
    assert (alarm["rule"], alarm["value"], alarm["threshold"]) == ("green_share_low", 0.25, 0.5)
    # the sun comes out: 300 kW PV, 100 kW grid → 0.75: resolved at once
    meter(api, "grid-main", 310, power_kw=100.0)
    meter(api, "pv-1", 310, power_kw=300.0)
    await engine.evaluate()
    assert api.svc.alarms.view.of("demo") == []


async def test_list_csv_ack_and_errors(api: Api) -> None:
    engine = engine_for(api, AlarmSettings(offline_grace_s=0, device_cadence_s={"pv-1": 10}))
    meter(api, "pv-1", 0, power_kw=5.0)
    at(api, 11)
    await engine.evaluate()
    items = (await api.get("/api/v1/parks/demo/alarms")).json()["items"]
    (alarm,) = items
    assert alarm["message"]["en"] == "device pv-1 silent for 11 s (reports every 10 s)"
    csv_resp = await api.get("/api/v1/parks/demo/alarms", headers={"accept": "text/csv"})
    assert csv_resp.headers["content-type"].startswith("text/csv")
    lines = csv_resp.text.splitlines()
    assert lines[0] == (
        "id,rule,subject,severity,state,value,threshold,fired_at,acked_at,acked_by,"
        "ack_reason,resolved_at,message_en,message_zh"
    )
    assert lines[1] == (
        f"{alarm['id']},device_offline,pv-1,critical,firing,11.0,10.0,2026-06-01T06:00:11+00:00"
        ",,,,,device pv-1 silent for 11 s (reports every 10 s),"
        "设备 pv-1 已 11 秒无数据（上报周期约 10 秒）"
    )
    url = f"/api/v1/parks/demo/alarms/{alarm['id']}/ack"
    body = {"reason": "inverter maintenance"}
    assert (await api.client.post(url, json=body, headers=api.auth("viewer"))).status_code == 403
    assert (await api.client.post(url, json=body)).status_code == 401
    assert (
        await api.client.post(url, json={"reason": ""}, headers=api.auth("manager"))
    ).status_code == 422
    other = f"/api/v1/parks/berlin/alarms/{alarm['id']}/ack"
    assert (await api.client.post(other, json=body, headers=api.auth("manager"))).status_code == 404
    ok = await api.client.post(url, json=body, headers=api.auth("manager"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "acknowledged"
    assert ok.json()["acked_by"] == api.ledgers.authenticate(api.keys["manager"]).id  # type: ignore[union-attr]
    again = await api.client.post(url, json=body, headers=api.auth("admin"))
    assert again.status_code == 409
    huge = "/api/v1/parks/demo/alarms/135611439929967171507257968951296/ack"
    assert (await api.client.post(huge, json=body, headers=api.auth("manager"))).status_code == 422
    assert (await api.get("/api/v1/parks/nope/alarms")).status_code == 404
    assert (await api.get("/api/v1/parks/demo/alarms?state=later")).status_code == 422


async def test_sse_sends_an_alarm_event(api: Api) -> None:
    engine = engine_for(api, AlarmSettings(offline_grace_s=0, device_cadence_s={"pv-1": 10}))
    meter(api, "pv-1", 0, power_kw=5.0)
    async with (
        served(api) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/api/v1/parks/demo/live/stream", headers=api.auth("viewer")) as resp,
    ):
        lines = resp.aiter_lines()
        first = await asyncio.wait_for(next_event(lines), 5)
        assert first["event"] == "live" and json.loads(first["data"])["alarms"] == []
        at(api, 11)
        await engine.evaluate()
        event = await asyncio.wait_for(next_event(lines), 5)
        while event["event"] != "alarm":
            event = await asyncio.wait_for(next_event(lines), 5)
        (alarm,) = json.loads(event["data"])
        assert (alarm["rule"], alarm["subject"]) == ("device_offline", "pv-1")


async def test_metrics_gauges(api: Api) -> None:
    engine = engine_for(api, AlarmSettings(green_share_min=0.4, offline_grace_s=30))
    api.svc.registry_holder = engine.registry  # the app exports the registry in force
    api.svc.alarms.engine = engine  # type: ignore[union-attr]
    meter(api, "grid-main", 0, power_kw=300.0)
    meter(api, "pv-1", 0, power_kw=100.0)
    at(api, 60)
    meter(api, "pv-1", 60, power_kw=100.0)
    at(api, 75)
    await engine.evaluate()
    text = (await api.client.get("/metrics")).text
    lines = set(text.splitlines())
    assert 'lingtan_park_green_share{park="demo"} 0.25' in lines
    # 400 kW load × intensity: the intensity is what /live says, the product is ours
    doc = api.live.document("demo")
    rate = 400.0 * doc["carbon_intensity_location_g_per_kwh"] / 1000.0
    assert f'lingtan_park_emission_rate_kg_per_hour{{park="demo"}} {rate}' in lines
    # received at t = 0 and t = 60, scraped at t = 75
    assert 'lingtan_device_last_reading_age_seconds{device="grid-main",park="demo"} 75.0' in lines
    assert 'lingtan_device_last_reading_age_seconds{device="pv-1",park="demo"} 15.0' in lines
    assert 'lingtan_device_cadence_seconds{device="pv-1",park="demo"} 60.0' not in lines  # 1 step
    assert 'lingtan_alarm_threshold{park="demo",rule="green_share_low"} 0.4' in lines
    assert 'lingtan_alarm_threshold{park="demo",rule="device_offline"} 30.0' in lines
    assert "lingtan_api_storage_up 1.0" in lines


async def test_cadence_from_stored_history_when_not_seen_live(api: Api) -> None:
    """pv-1 reported every 300 s before the API started (stored), and once live since: its
    cadence comes from storage, so its silence is judged without waiting for live steps."""
    from app.storage.base import WriteBatch

    base = to_ns(NOW)
    stored = [
        Reading("demo", "pv-1", base + k * 300 * S, {"energy_kwh": 10.0 + k}) for k in range(-4, 1)
    ]
    await api.storage.write(WriteBatch(readings=stored))
    engine = engine_for(api, AlarmSettings(offline_grace_s=45))
    meter(api, "pv-1", 0, energy_kwh=10.0)
    await engine.evaluate()
    assert engine.cadence(api.registry.parks[0], "pv-1") == 300.0
    assert engine.cadence(api.registry.parks[0], "grid-main") is None  # nothing stored
    at(api, 345)
    await engine.evaluate()
    assert api.svc.alarms is not None and api.svc.alarms.view.of("demo") == []
    at(api, 346)
    await engine.evaluate()
    assert [a["subject"] for a in api.svc.alarms.view.of("demo")] == ["pv-1"]


async def test_storage_collector_and_projection_rules_reach_the_log(api: Api) -> None:
    """The engine's other inputs: a store nobody answers on (a real client to a closed
    port), the collector probe of `lingtan up`, and the daily evaluation report."""
    from app.main import year_report
    from app.storage.influx import InfluxStorage
    from tests.fixtures.mosquitto import free_port

    reports: list[str] = []

    async def report(park: object) -> dict[str, object]:
        reports.append(getattr(park, "id", "?"))
        return {
            "completeness": 0.5,
            "core": {"id": "core", "target": 0.2, "projection": {"value": 0.3, "pass": False}},
            "guiding": [],
        }

    engine = engine_for(api, AlarmSettings(storage_unreachable_s=0))
    engine.report = report  # type: ignore[assignment]
    engine.backlog = lambda: (8192, False)
    dead = InfluxStorage(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    engine.storage = dead
    try:
        at(api, 0)
        await engine.evaluate()
        await engine.evaluate()  # the daily report is not asked for again
    finally:
        await dead.close()
    assert api.svc.alarms is not None
    open_ = {(a["rule"], a["subject"]) for a in api.svc.alarms.view.of("demo")}
    assert open_ == {
        ("storage_unreachable", "storage"),
        ("collector_backlog", "collector"),
        ("projection_off_target", "core"),
    }
    # each park's report once (the projection check is daily)
    assert sorted(reports) == ["berlin", "demo", "store"]
    # the store answers again and the spool drained: those two resolve
    engine.storage = api.storage
    engine.backlog = lambda: (0, False)
    await engine.evaluate()
    open_ = {(a["rule"], a["subject"]) for a in api.svc.alarms.view.of("demo")}
    assert open_ == {("projection_off_target", "core")}
    # the real report function on a park without data: nothing measured, no projection alarm
    from app.alarms.rules import projection_off_target

    doc = await year_report(api.svc, api.registry.parks[0])
    assert doc["completeness"] == 0.0
    assert projection_off_target(doc, 0.25) == []
