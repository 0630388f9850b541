"""A simulated week through Mosquitto, the collector and storage: stored energies and /balance
equal the simulator's ground truth."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import parse_registry
from app.storage.base import Storage
from app.storage.embedded import EmbeddedStorage
from app.storage.influx import InfluxStorage
from app.storage.spool import DurableWriter
from collectors.mqtt import GmqttPublisher, MqttEndpoint
from collectors.pipeline import Collector
from collectors.service import start_collector
from simulator import GatewayOptions, TruthAccumulator, simulate
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import wait_for

SH = ZoneInfo("Asia/Shanghai")
PARK = "week"
PARKS_YAML = f"""
parks:
  - id: {PARK}
    name: 一周模拟园区
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    latitude: 41.8
    longitude: 123.6
    devices:
      - {{id: grid-main, role: grid}}
      - {{id: pv-roof, role: pv, max_kw: 1500}}
      - {{id: wind-1, role: wind, max_kw: 2000}}
      - {{id: green-line, role: green_direct, max_kw: 1500}}
      - {{id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 800}}
      - {{id: bldg-a, role: load, included_in: grid-main}}
"""
REGISTRY = parse_registry(PARKS_YAML)
# a winter week shortly after the balance epoch (2025-01-01), so the day chain is short
START = datetime(2025, 1, 6, tzinfo=SH)
DAYS = 7
END = START + timedelta(days=DAYS)
STEP_S = 300
NS = 10**9
START_NS = int(START.timestamp()) * NS
END_NS = int(END.timestamp()) * NS
# gateways flush arrays and go offline (buffered readings arrive late, in order per device):
# the late-data path must still give every interval exactly the energy the meters registered
GATEWAY = GatewayOptions(batch=3, offline_per_day=2.0, offline_max_min=45)

# Balance field ← (role, counter) whose ground-truth sum it must equal (I, X, G, D)
BALANCE_SOURCES: dict[str, list[tuple[str, str]]] = {
    "grid_import_kwh": [("grid", "energy_import_kwh")],
    "grid_export_kwh": [("grid", "energy_export_kwh")],
    "renewable_kwh": [("pv", "energy_kwh"), ("wind", "energy_kwh")],
    "green_direct_kwh": [("green_direct", "energy_import_kwh")],
}
REL = 1e-3  # 0.1 %
#: the simulated battery books its losses on charging: content += charge × η − discharge
SIM_STORAGE_ETA = 0.90


def _role(device: str) -> str:
    dev = REGISTRY.device(PARK, device)
    assert dev is not None, device
    return dev.role.value


def _truth_sums(by_interval: dict[tuple[str, str, str, int], float]) -> dict[str, float]:
    """Ground truth per balance field over the week, summed per role from the registry."""
    per_role: dict[tuple[str, str], float] = defaultdict(float)
    for (_park, device, counter, start_ns), amount in by_interval.items():
        if START_NS <= start_ns < END_NS:
            per_role[(_role(device), counter)] += amount
    return {
        field: sum(per_role[src] for src in sources) for field, sources in BALANCE_SOURCES.items()
    }


async def _storage(backend: str, request: pytest.FixtureRequest, tmp: Path) -> Storage:
    if backend == "influx":
        influx: InfluxServer = request.getfixturevalue("fresh_influx_db")
        return InfluxStorage(influx.url, database=influx.database)
    return EmbeddedStorage(tmp / "store.sqlite")


async def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    pub = GmqttPublisher(MqttEndpoint.parse(url))
    await pub.connect()
    try:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=1)
        await pub.drain()
    finally:
        await pub.close()


@asynccontextmanager
async def _api(storage: Storage, tmp: Path) -> AsyncIterator[httpx.AsyncClient]:
    ledgers = LedgerStore(f"sqlite:///{tmp / 'ledgers.db'}")
    app = create_app(
        Settings(data_dir=tmp / "api", parks=tmp / "parks.yaml", anonymous_read=True),
        registry=REGISTRY,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(REGISTRY),
        refresh_today_in_background=False,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        ledgers.close()


def _rejected(service_metrics: object) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for m in service_metrics.rejected.collect()  # type: ignore[attr-defined]
        for s in m.samples
        if s.name.endswith("_total") and s.value
    ]


def _assert_intervals_match(
    stored: list[IntervalEnergy], by_interval: dict[tuple[str, str, str, int], float]
) -> None:
    got: dict[tuple[str, str, int], float] = {}
    for iv in stored:
        assert not iv.estimated and "implausible" not in iv.flags, iv
        for counter, value in iv.values.items():
            got[(iv.device, counter, iv.start_ns)] = value
    expected = {(d, c, s): v for (_p, d, c, s), v in by_interval.items()}
    # grid import/export, pv, wind, green line, storage charge/discharge, load: 8 counters,
    # each with one interval per quarter hour of the week
    assert len(expected) == 8 * DAYS * 96
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} intervals not stored, e.g. {missing[:3]}"
    counters = {c for _d, c, _s in expected}
    # interval values also carry end-of-interval states (soc_pct): compare counters only
    extra = {k: v for k, v in got.items() if k[1] in counters and k not in expected and v}
    assert not extra, f"stored energy the meters never registered: {list(extra.items())[:3]}"
    off = {
        k: (got[k], v) for k, v in expected.items() if got[k] != pytest.approx(v, rel=REL, abs=1e-6)
    }
    assert not off, f"{len(off)} intervals differ from the truth, e.g. {list(off.items())[:3]}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["influx", "embedded"])
async def test_simulated_week_through_the_pipeline_matches_the_ground_truth(
    backend: str, mosquitto: MosquittoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    truth = TruthAccumulator()
    sim = list(
        simulate(REGISTRY, PARK, START, timedelta(days=DAYS), STEP_S, 2025, GATEWAY, truth=truth)
    )
    n_readings = sum(m.readings for m in sim)
    # readings at both ends of the week: (steps + 1) per device
    assert n_readings == 6 * (DAYS * 86_400 // STEP_S + 1)
    by_interval = truth.by_interval()

    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS_YAML)
    # the collector as `lingtan collect` runs it (default batching), on a real broker
    settings = Settings(
        mqtt_url=mosquitto.url,
        parks=parks,
        data_dir=tmp_path / "data",
        metrics_port=0,
        client_id=f"week-{backend}",
    )
    storage = await _storage(backend, request, tmp_path)
    service = await start_collector(settings, storage=storage, serve_metrics=False)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await _publish(mosquitto.url, [(m.topic, m.payload) for m in sim])  # full speed
        await wait_for(
            lambda: service.metrics.readings._value.get() >= n_readings,
            timeout_s=60,
            what=f"{n_readings} readings collected",
        )
        assert not _rejected(service.metrics), "clean simulated data was dead-lettered"
    finally:
        await service.stop()  # flushes, then closes the storage it was given

    reader = await _storage(backend, request, tmp_path)
    try:
        assert len(await reader.readings(PARK, START_NS, END_NS + NS)) == n_readings
        # 1. every per-device interval energy in storage equals the truth (0.1 %)
        _assert_intervals_match(await reader.intervals(PARK, START_NS, END_NS + NS), by_interval)

        # 2. /balance over the week: I, X, G, D equal the truth summed per role (0.1 %)
        sums = _truth_sums(by_interval)
        assert all(v > 0 for v in sums.values()), sums  # the week both imports and exports
        async with _api(reader, tmp_path) as client:
            r = await client.get(
                f"/api/v1/parks/{PARK}/balance",
                params={"start": START.isoformat(), "end": END.isoformat(), "every": "1d"},
            )
        assert r.status_code == 200, r.text
        body = r.json()
        total = body["total"]
        for field, value in sums.items():
            assert total[field] == pytest.approx(value, rel=REL), field
        # docs/accounting.md boundary consumption E = I + D + G − X
        boundary = (
            sums["grid_import_kwh"]
            + sums["green_direct_kwh"]
            + sums["renewable_kwh"]
            - sums["grid_export_kwh"]
        )
        assert total["boundary_consumption_kwh"] == pytest.approx(boundary, rel=REL)
        # consumption = loads + storage losses: the sub-meter is the park's whole load (the
        # simulator's grid meter balances it), and the battery lost (1 − η) of what it charged
        load = sum(v for (_p, d, _c, _s), v in by_interval.items() if _role(d) == "load")
        charged = sum(v for (_p, _d, c, _s), v in by_interval.items() if c == "energy_charge_kwh")
        losses = (1 - SIM_STORAGE_ETA) * charged
        assert total["consumption_kwh"] == pytest.approx(load + losses, rel=REL)
        # day by day (park-local days): grid import per bucket
        assert len(body["buckets"]) == DAYS
        for day, bucket in enumerate(body["buckets"]):
            lo = START_NS + day * 86_400 * NS
            day_import = sum(
                v
                for (_p, d, c, s), v in by_interval.items()
                if _role(d) == "grid" and c == "energy_import_kwh" and lo <= s < lo + 86_400 * NS
            )
            assert bucket["grid_import_kwh"] == pytest.approx(day_import, rel=REL), day
    finally:
        await reader.close()


async def test_one_batch_spanning_three_days_keeps_every_interval(tmp_path: Path) -> None:
    """A gateway back after a 3-day outage flushes its buffer as one array: all of it counts.

    (What a full-speed backfill also produces: the collector takes everything the broker's
    receive window holds as one batch.)
    """
    storage = EmbeddedStorage(tmp_path / "store.sqlite")
    writer = DurableWriter(storage, tmp_path / "spool.sqlite")
    writer.start()
    collector = Collector(REGISTRY, writer, storage, batch_max_wait_s=0.0)
    collector.start()
    steps = 3 * 86_400 // STEP_S  # 864 five-minute steps
    t0 = int(START.timestamp())
    # 1 kWh every 5 minutes from 5000 kWh: 3 kWh in each quarter hour
    body = [
        {"ts": t0 + k * STEP_S, "energy_import_kwh": 5000.0 + k, "power_kw": 12.0}
        for k in range(steps + 1)
    ]
    try:
        await collector.handle(f"lingtan/v1/{PARK}/bldg-a/telemetry", json.dumps(body).encode())
    finally:
        await collector.stop()
        await writer.close()
    try:
        assert len(await storage.readings(PARK, START_NS, END_NS, "bldg-a")) == steps + 1
        got = {
            (iv.start_ns - START_NS) // (900 * NS): iv.values["energy_import_kwh"]
            for iv in await storage.intervals(PARK, START_NS, END_NS, "bldg-a")
        }
    finally:
        await storage.close()
    lost = sorted(set(range(3 * 96)) - set(got))
    assert not lost, (
        f"{len(lost)} of {3 * 96} intervals never stored (quarter hours {lost[0]}..{lost[-1]})"
    )
    assert got == {q: pytest.approx(3.0) for q in range(3 * 96)}
