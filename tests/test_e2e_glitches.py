"""Acceptance: the glitches of a real grid meter, through real Mosquitto and influxd.

A grid meter without `max_kw` (the demo park's `grid-main`) imports 120 kW: its counter
stands at 681,410 kWh and gains 10 kWh every 5 minutes over the last 3 hours (real time, so
a reading without `ts` is stamped among them). Into that stream come:

1. a Modbus read error: `0` halfway between two readings;
2. a spike: the counter x1000 halfway between two readings;
3. the same `ts` as a stored reading with another value (`5`): a conflict;
4. `{"energy_import_kwh": 5}` without `ts` (the wrong register), stamped on arrival, then
   the next real reading.

The window's grid import must be exactly last - first counter value (no glitch costs or
invents a kWh), the conflict is kept as a `conflict` record, and `/balance` names the
glitch, conflict intervals and the device in its `quality` objects.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.accounting.buckets import to_ns
from app.config import Settings
from app.http.services import Services
from app.intervals import interval_start_ns
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import load_registry
from app.storage.influx import InfluxStorage
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import SHANGHAI, publish_all, wait_for

PARK = "glitchy"
PARKS_YAML = f"""
parks:
  - id: {PARK}
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {{id: grid-main, role: grid}}
      - {{id: pv-1, role: pv, max_kw: 100}}
"""
TOPIC = f"lingtan/v1/{PARK}/grid-main/telemetry"
START_KWH = 681_410.0
STEP_S = 300
KWH_PER_S = 10.0 / STEP_S  # 120 kW


def iso(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, SHANGHAI).isoformat()


async def test_glitches_leave_the_grid_import_exact_and_are_flagged(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS_YAML)
    settings = Settings(
        mqtt_url=mosquitto.url,
        influx_url=fresh_influx_db.url,
        influx_db=fresh_influx_db.database,
        parks=parks,
        data_dir=tmp_path / "data",
        metrics_port=0,
        batch_max_wait_ms=20,
        anonymous_read=True,
    )
    registry = load_registry(parks)
    park = registry.park(PARK)
    assert park is not None
    storage = InfluxStorage(fresh_influx_db.url, database=fresh_influx_db.database)
    ledgers = LedgerStore(f"sqlite:///{tmp_path / 'ledgers.db'}")
    app = create_app(
        settings,
        registry=registry,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(registry, min_render_interval_s=0.0),
        refresh_today_in_background=False,
    )
    svc: Services = app.state.services
    # /balance is asked on the default read path, which sums rows by role in the store and
    # reads the flagged ones apart (docs/intervals.md, "Quality travels with the numbers")
    assert svc.balance.cache.aggregate
    service = await start_collector(settings, serve_metrics=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        now_s = int(time.time())
        t0 = now_s - now_s % STEP_S - 3 * 3600
        times = [t0 + k * STEP_S for k in range(37)]  # the last one is at most 5 min ago

        def kwh(ts_s: int) -> float:
            return START_KWH + (ts_s - t0) * KWH_PER_S

        real = [{"ts": iso(t), "energy_import_kwh": kwh(t)} for t in times]
        half = STEP_S // 2
        zero = {"ts": iso(times[6] + half), "energy_import_kwh": 0.0}
        spike = {"ts": iso(times[12] + half), "energy_import_kwh": kwh(times[12] + half) * 1000}
        repeated = {"ts": iso(times[18]), "energy_import_kwh": 5.0}
        await publish_all(mosquitto.url, [(TOPIC, [*real[:19]])])
        await publish_all(mosquitto.url, [(TOPIC, zero), (TOPIC, spike), (TOPIC, repeated)])
        await publish_all(mosquitto.url, [(TOPIC, [*real[19:]])])
        await wait_for(
            lambda: service.metrics.readings._value.get() >= 39, what="the readings and glitches"
        )
        # the wrong register without ts, stamped on arrival, then the next real reading
        await publish_all(mosquitto.url, [(TOPIC, {"energy_import_kwh": 5.0})])
        await wait_for(lambda: service.metrics.readings._value.get() >= 40, what="the ts-less")
        last_s = math.ceil(time.time()) + 1
        await publish_all(
            mosquitto.url, [(TOPIC, {"ts": iso(last_s), "energy_import_kwh": kwh(last_s)})]
        )
        await wait_for(lambda: service.metrics.readings._value.get() >= 41, what="the last one")
        await wait_for(lambda: service.metrics.batches._value.get() > 0, what="a flush")
        assert service.metrics.rejected.labels("conflict")._value.get() == 1

        # the stored conflict record keeps the refused reading
        conflicts = fresh_influx_db.points("SELECT * FROM deadletter WHERE reason='conflict'")
        assert len(conflicts) == 1
        assert "energy_import_kwh 5.0 differs from the first" in conflicts[0]["detail"]

        start = datetime.fromtimestamp(t0, SHANGHAI).replace(minute=0, second=0)
        end = datetime.fromtimestamp(last_s, SHANGHAI).replace(minute=0, second=0)
        end += timedelta(hours=1)
        expected_kwh = kwh(last_s) - START_KWH
        params = {"start": start.isoformat(), "end": end.isoformat(), "every": "1h"}

        doc = await balance_doc(client, params)
        assert doc["total"]["grid_import_kwh"] == pytest.approx(expected_kwh, rel=1e-12)
        quality = doc["total"]["quality"]
        assert quality["repaired"] is True
        assert quality["glitch"]["devices"] == ["grid-main"]
        assert quality["conflict"] == {"intervals": 1, "devices": ["grid-main"]}
        assert quality["implausible"]["intervals"] == 0
        assert quality["reset"]["intervals"] == 0
        # three glitches with a ts (0, spike) or without (5), each in its own interval
        glitch_hours = {
            interval_start_ns(to_ns(datetime.fromisoformat(x["ts"])), park) // 10**9 // 3600
            for x in (zero, spike)
        }
        assert quality["glitch"]["intervals"] == 3
        flagged_hours = {
            to_ns(datetime.fromisoformat(b["start"])) // 10**9 // 3600
            for b in doc["buckets"]
            if b["quality"]["glitch"]["intervals"]
        }
        assert glitch_hours <= flagged_hours
        for b in doc["buckets"]:
            hour = to_ns(datetime.fromisoformat(b["start"])) // 10**9 // 3600
            if hour not in flagged_hours and b["quality"]["conflict"]["intervals"] == 0:
                assert b["quality"]["repaired"] is False
    finally:
        await client.aclose()
        await service.stop()
        await storage.close()
        ledgers.close()


async def balance_doc(client: httpx.AsyncClient, params: dict[str, str]) -> Any:
    r = await client.get(f"/api/v1/parks/{PARK}/balance", params=params)
    assert r.status_code == 200, r.text[:300]
    return r.json()
