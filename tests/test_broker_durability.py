"""The shipped broker config on real Mosquitto: what it PUBACKed survives a SIGKILL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import (
    N_METERS,
    make_settings,
    meter_reading,
    publish_all,
    topic,
    wait_for,
)


def stored_readings(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("energy_import_kwh") FROM reading')
    return int(rows[0]["count"]) if rows else 0


async def test_sigkill_3s_after_the_last_puback_loses_nothing(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """Collector away (persistent session, QoS 1); 2,000 messages PUBACKed by the broker;
    3 s later the broker is SIGKILLed and restarted on the same config and data directory;
    the collector comes back and stores every reading."""
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    # a first run registers the collector's persistent session, then it goes away
    service = await start_collector(settings, serve_metrics=False)
    await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
    await service.stop()
    minutes = 50
    messages: list[tuple[str, object]] = [
        (topic(f"m{i}"), meter_reading(k)) for k in range(minutes) for i in range(N_METERS)
    ]
    assert len(messages) == 2000
    await publish_all(mosquitto.url, messages)  # returns once every message is PUBACKed
    await asyncio.sleep(3)
    mosquitto.kill()
    mosquitto.start()
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(
            lambda: stored_readings(fresh_influx_db) == 2000,
            timeout_s=60,
            what="2,000 readings stored",
        )
    finally:
        await service.stop()
