"""A meter stops publishing and comes back, with two `lingtan api` replicas on one ledger
database, real Mosquitto and a local webhook receiver: `device_offline` fires within the
meter's cadence + 60 s, resolves when it resumes, each event reaches the receiver exactly
once (retried across a receiver outage), and acknowledge/resolve are in the audit log."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from app.ledgers import LedgerStore
from collectors.mqtt import GmqttPublisher, MqttEndpoint
from tests.alarm_support import Receiver, children, serving, start  # noqa: F401
from tests.fixtures.mosquitto import MosquittoServer, free_port
from tests.ingest_support import topic, wait_for

ADMIN_KEY = "alarms-e2e-admin-key-0123456789abcdef"
CADENCE_S = 1.0


def parks_yaml(hook: str) -> str:
    return f"""
parks:
  - id: p1
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {{id: grid-main, role: grid}}
      - {{id: m1, role: load, included_in: grid-main}}
    alarms:
      offline_grace_s: 3
      channels:
        - {{kind: webhook, url: "{hook}", lang: en}}
"""


async def test_meter_silence_fires_and_resolves_once_across_replicas(
    mosquitto: MosquittoServer,
    tmp_path: Path,
    children: list,  # noqa: F811
) -> None:
    receiver = Receiver()
    receiver.start()
    parks = tmp_path / "parks.yaml"
    parks.write_text(parks_yaml(receiver.url))
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        env = {
            "LINGTAN_MQTT_URL": mosquitto.url,
            "LINGTAN_PARKS": str(parks),
            "LINGTAN_DB_URL": db_url,
            "LINGTAN_DATA_DIR": str(tmp_path / f"api{i}"),
            "LINGTAN_API_PORT": str(port),
            "LINGTAN_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "LINGTAN_ALARM_TICK_S": "0.5",
            "LINGTAN_ALARM_BACKOFF_S": "0.5",
            "LINGTAN_ALARM_LEASE_S": "5",
        }
        children.append(start("api", env, tmp_path / f"api{i}.log"))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    apis = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=admin, timeout=5) for p in ports
    ]
    pub = GmqttPublisher(MqttEndpoint.parse(mosquitto.url))
    try:
        for api in apis:
            await wait_for(lambda api=api: serving(api), timeout_s=60, what="API up")
        await asyncio.sleep(1.0)  # the live subscribers are connected
        await pub.connect()
        counter = [1000.0]

        async def publish(devices: tuple[str, ...], seconds: float) -> float:
            """Every device once per CADENCE_S for `seconds`; the wall time of the last one."""
            last = time.time()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                counter[0] += 0.5
                now = time.time()
                for d in devices:
                    body = {"ts": round(now, 3), "energy_import_kwh": counter[0]}
                    await pub.publish(topic(d), json.dumps(body).encode(), qos=1)
                last = now
                await asyncio.sleep(CADENCE_S)
            return last

        # both meters report for a while: the engines learn a 1 s cadence
        await publish(("grid-main", "m1"), 6)
        # m1 goes silent; grid-main keeps reporting
        silent_from = await publish(("grid-main", "m1"), 0.1)
        grid = asyncio.create_task(publish(("grid-main",), 600))

        async def fired() -> bool:
            return ("firing", "device_offline", "m1") in receiver.events()

        await wait_for(fired, timeout_s=CADENCE_S + 60, what="device_offline fired")
        fired_after = time.time() - silent_from
        print(f"device_offline delivered {fired_after:.1f} s after the meter's last reading")
        assert fired_after <= CADENCE_S + 60

        # visible on both replicas: the list, CSV, /live
        for api in apis:
            active = (await api.get("/api/v1/parks/p1/alarms?state=active")).json()["items"]
            assert [(a["rule"], a["subject"], a["state"]) for a in active] == [
                ("device_offline", "m1", "firing")
            ]

        async def on_live(api: httpx.AsyncClient) -> bool:
            doc = (await api.get("/api/v1/parks/p1/live")).json()
            return [a["subject"] for a in doc["alarms"]] == ["m1"]

        for api in apis:
            await wait_for(lambda api=api: on_live(api), timeout_s=10, what="alarm on /live")
        csv_text = (await apis[1].get("/api/v1/parks/p1/alarms?format=csv")).text
        assert csv_text.splitlines()[0].startswith("id,rule,subject,severity,state")
        assert ",device_offline,m1,critical,firing," in csv_text.splitlines()[1]
        alarm_id = active[0]["id"]

        # acknowledging needs a manager key
        viewer = (await apis[0].post("/api/v1/keys", json={"role": "viewer", "label": "t"})).json()[
            "key"
        ]
        denied = await apis[0].post(
            f"/api/v1/parks/p1/alarms/{alarm_id}/ack",
            json={"reason": "x"},
            headers={"Authorization": f"Bearer {viewer}"},
        )
        assert denied.status_code == 403
        acked = await apis[1].post(
            f"/api/v1/parks/p1/alarms/{alarm_id}/ack", json={"reason": "meter swap planned"}
        )
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "acknowledged"

        # the receiver goes down; m1 comes back: the resolution waits for the receiver
        receiver.stop()
        resumed = asyncio.create_task(publish(("m1",), 600))

        async def resolved_in_log() -> bool:
            r = await apis[0].get("/api/v1/parks/p1/alarms?state=history")
            return any(a["id"] == alarm_id for a in r.json()["items"])

        await wait_for(resolved_in_log, timeout_s=30, what="alarm resolved")
        await asyncio.sleep(2.0)  # a few failed attempts against the dead receiver
        receiver.start()

        async def resolution_delivered() -> bool:
            return ("resolved", "device_offline", "m1") in receiver.events()

        await wait_for(resolution_delivered, timeout_s=30, what="resolution delivered")
        await asyncio.sleep(2.0)  # nothing more arrives
        assert receiver.events() == [
            ("firing", "device_offline", "m1"),
            ("resolved", "device_offline", "m1"),
        ]
        grid.cancel()
        resumed.cancel()
    finally:
        await pub.close()
        for api in apis:
            await api.aclose()
        receiver.stop()

    with LedgerStore(db_url) as ledgers:
        entries = [e for e in ledgers.list_audit() if e.action.startswith("alarm.")]
        assert [(e.action, e.object) for e in entries] == [
            ("alarm.fire", f"park/p1/alarm/{alarm_id}"),
            ("alarm.ack", f"park/p1/alarm/{alarm_id}"),
            ("alarm.resolve", f"park/p1/alarm/{alarm_id}"),
        ]
        assert entries[1].details["reason"] == "meter swap planned"
        assert entries[1].actor != "system"
        assert ledgers.verify_audit() == []
