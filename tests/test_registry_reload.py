"""Registry edits reach running processes: `lingtan api` and `lingtan collect` as real processes
sharing one ledger database (the docker-compose shape), on real Mosquitto and influxd."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer, free_port
from tests.ingest_support import T0_S, publish_all, topic, wait_for
from tests.process_support import serving, start

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "registry-reload-admin-key-0123456789"
PARKS = """
parks:
  - id: p1
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {id: grid-main, role: grid}
"""
MINUTE_S = 60


def pv(minute: int) -> dict[str, float]:
    """A PV meter making 2 kWh a minute (30 kWh per 15-minute interval)."""
    return {"ts": T0_S + MINUTE_S * minute, "energy_kwh": 500.0 + 2.0 * minute}


def count(influx: InfluxServer, measurement: str, where: str) -> int:
    rows = influx.points(f'SELECT count(*) FROM "{measurement}" WHERE {where}')
    return (
        max((int(v) for k, v in rows[0].items() if k.startswith("count_")), default=0)
        if rows
        else 0
    )


def metric(port: int, name: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def test_edits_through_the_api_and_the_file_reach_the_running_collector(
    mosquitto: MosquittoServer,
    fresh_influx_db: InfluxServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    influx = fresh_influx_db
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS)
    api_port, metrics_port = free_port(), free_port()
    common = {
        "LINGTAN_MQTT_URL": mosquitto.url,
        "LINGTAN_INFLUX_URL": influx.url,
        "LINGTAN_INFLUX_DB": influx.database,
        "LINGTAN_PARKS": str(parks),
        # one ledger database for both processes, as docker-compose.yml sets it up
        "LINGTAN_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LINGTAN_REGISTRY_POLL_S": "0.2",
    }
    collect_env = {
        **common,
        "LINGTAN_DATA_DIR": str(tmp_path / "collector"),
        "LINGTAN_METRICS_PORT": str(metrics_port),
        "LINGTAN_BATCH_MAX_WAIT_MS": "20",
    }
    api_env = {
        **common,
        "LINGTAN_DATA_DIR": str(tmp_path / "api"),
        "LINGTAN_API_PORT": str(api_port),
        "LINGTAN_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    processes.append(start("collect", collect_env, tmp_path / "collect.log"))
    processes.append(start("api", api_env, tmp_path / "api.log"))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    base = f"http://127.0.0.1:{api_port}"
    await wait_for(
        lambda: metric(metrics_port, "lingtan_collector_registry_version") == 1.0,
        what="collector on registry version 1",
    )

    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=5) as api:
        await wait_for(lambda: serving(api), what="API up")
        # the file was imported once, whichever process started first
        doc = (await api.get("/api/v1/registry")).json()
        assert (doc["version"], doc["source"]) == (1, "file")

        # an unregistered meter: dead-lettered, nothing stored as its readings
        await publish_all(mosquitto.url, [(topic("pv-new"), pv(0))])
        await wait_for(
            lambda: count(influx, "deadletter", "park='p1'") == 1,
            what="unknown device dead-lettered",
        )
        r = await api.put(
            "/api/v1/parks/p1/devices/pv-new",
            json={"role": "pv", "max_kw": 500},
            params={"comment": "roof array commissioned"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 2
        await wait_for(
            lambda: metric(metrics_port, "lingtan_collector_registry_version") == 2.0,
            timeout_s=15,
            what="collector on registry version 2",
        )

        # now its readings are accepted and turned into interval energies
        await publish_all(mosquitto.url, [(topic("pv-new"), pv(k)) for k in range(31)])
        await wait_for(
            lambda: count(influx, "interval_energy", "device='pv-new'") >= 2,
            what="pv-new intervals",
        )
        rows = influx.points(
            "SELECT energy_kwh FROM interval_energy WHERE device='pv-new' AND role='pv'"
        )
        assert [(r["energy_kwh"]) for r in rows][:2] == [30.0, 30.0]
        assert count(influx, "deadletter", "park='p1'") == 1  # no new rejections

        # the operator edits the file instead: both processes follow it
        parks.write_text(PARKS + "      - {id: wind-2, role: wind}\n")
        await wait_for(
            lambda: metric(metrics_port, "lingtan_collector_registry_version") == 3.0,
            timeout_s=15,
            what="collector on registry version 3",
        )
        await publish_all(mosquitto.url, [(topic("wind-2"), {"ts": T0_S, "energy_kwh": 1.0})])
        await wait_for(
            lambda: count(influx, "reading", "device='wind-2'") == 1, what="wind-2 reading stored"
        )
        doc = (await api.get("/api/v1/registry")).json()
        assert (doc["version"], doc["source"]) == (3, "file")
        # the file did not know pv-new: its import removed it again, and the log says so
        assert [d["id"] for d in doc["parks"][0]["devices"]] == ["grid-main", "wind-2"]
        versions = (await api.get("/api/v1/registry/versions")).json()["items"]
        assert [v["changes"] for v in versions[:2]] == [
            {
                "parks_changed": ["p1"],
                "devices_added": ["p1/wind-2"],
                "devices_removed": ["p1/pv-new"],
            },
            {"parks_changed": ["p1"], "devices_added": ["p1/pv-new"]},
        ]
        audit = (await api.get("/api/v1/audit", params={"verify": "true"})).json()
        assert audit["problems"] == []
        puts = [e for e in audit["items"] if e["action"] == "registry.put"]
        assert [e["actor"] for e in puts] == ["registry-file", "bootstrap", "registry-file"]
    for p in processes:
        p.send_signal(signal.SIGTERM)
    for p in processes:
        assert p.wait(timeout=20) == 0
    assert (
        "replaces version 2"
        in (tmp_path / "collect.log").read_text() + (tmp_path / "api.log").read_text()
    )


async def test_lingtan_up_shares_one_registry_between_api_and_collector(
    mosquitto: MosquittoServer, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS)
    port = free_port()
    env = {
        "LINGTAN_MQTT_URL": mosquitto.url,
        "LINGTAN_PARKS": str(parks),
        "LINGTAN_DATA_DIR": str(tmp_path / "data"),  # embedded store and ledger
        "LINGTAN_API_PORT": str(port),
        "LINGTAN_METRICS_PORT": "0",
        "LINGTAN_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "LINGTAN_BATCH_MAX_WAIT_MS": "20",
    }
    processes.append(start("up", env, tmp_path / "up.log"))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5
    ) as api:
        await wait_for(lambda: serving(api), what="lingtan up serving")
        r = await api.put("/api/v1/parks/p1/devices/pv-new", json={"role": "pv"})
        assert r.status_code == 201, r.text
        day = {
            "start": "2026-11-20T00:00:00+08:00",
            "end": "2026-11-21T00:00:00+08:00",
            "every": "1d",
        }
        # the settled day is asked for (and cached) before its readings exist
        before = await api.get("/api/v1/parks/p1/balance", params=day)
        assert before.status_code == 200 and before.json()["total"]["renewable_kwh"] == 0.0
        # no polling involved: the collector in the same process switched with the API
        await publish_all(mosquitto.url, [(topic("pv-new"), pv(k)) for k in range(16)])
        params = {
            "device": "pv-new",
            "start": "2026-11-20T00:00:00+08:00",
            "end": "2026-11-21T00:00:00+08:00",
        }

        async def stored() -> bool:
            r = await api.get("/api/v1/parks/p1/readings", params=params)
            return r.status_code == 200 and len(r.json()["items"]) == 16

        await wait_for(stored, what="pv-new readings through the API")

        async def balanced() -> bool:
            r = await api.get("/api/v1/parks/p1/balance", params=day)
            return r.status_code == 200 and r.json()["total"]["renewable_kwh"] == 30.0

        # the interval [00:00, 00:15) holds 30 kWh once the minute-15 reading closed it;
        # the cached empty day must not hide it (docs/storage.md, "Change markers")
        await wait_for(balanced, what="the day's PV in /balance", timeout_s=10)


async def test_an_edited_device_continues_from_stored_history_without_a_gap(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """The engine forgets an edited device and reseeds it from storage: intervals across the
    switch are exact, those rewritten after a role change carry the new role, and the
    accounting counts each interval once under the registry role."""
    from app.accounting import interval_totals
    from app.registry import parse_registry
    from app.registry.holder import RegistryHolder
    from app.storage.influx import InfluxStorage
    from collectors.service import start_collector
    from tests.ingest_support import make_settings

    influx = fresh_influx_db
    settings = make_settings(tmp_path, mosquitto.url, influx.url, influx.database)
    text = PARKS + "      - {id: meter-x, role: load, included_in: grid-main}\n"
    holder = RegistryHolder(parse_registry(text), version=1)
    service = await start_collector(settings, serve_metrics=False, registry=holder)

    def meter(minute: int) -> dict[str, float]:
        return {"ts": T0_S + MINUTE_S * minute, "energy_import_kwh": 100.0 + 2.0 * minute}

    def stored(role: str) -> list[float]:
        where = f"device='meter-x' AND role='{role}'"
        q = f"SELECT energy_import_kwh FROM interval_energy WHERE {where}"
        return [r["energy_import_kwh"] for r in influx.points(q)]

    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await publish_all(mosquitto.url, [(topic("meter-x"), meter(k)) for k in range(23)])
        # minute 0–15 whole, 15–22 so far
        await wait_for(lambda: stored("load") == [30.0, 14.0], what="the first intervals")
        # mid-interval, the meter turns out to be an EV charger
        new = parse_registry(text.replace("role: load", "role: ev_charger"))
        holder.replace(new, 2)
        await publish_all(mosquitto.url, [(topic("meter-x"), meter(k)) for k in range(23, 61)])
        await wait_for(lambda: stored("ev_charger") == [30.0] * 3, what="the later intervals")
    finally:
        await service.stop()
    # the interval in progress at the switch was recomputed whole from stored readings (not
    # from the switch on) under the new role tag; the old partial row stays beside it
    assert stored("load") == [30.0, 14.0]
    storage = InfluxStorage(influx.url, database=influx.database)
    try:
        rows = await storage.intervals("p1", 0, 2**62, "meter-x")
    finally:
        await storage.close()
    park = new.park("p1")
    assert park is not None
    totals = interval_totals(rows, park)
    # every interval once, whole, under the registry role: 4 × 30 kWh
    assert [t.submeter_kwh for t in totals] == [{"ev_charger": 30.0}] * 4
