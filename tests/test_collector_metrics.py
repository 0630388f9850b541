"""The collector's Prometheus metrics tell the truth: spool figures are current at each scrape,
replays, storage errors and the quarantine are exported (real Mosquitto and influxd)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer, free_port
from tests.ingest_support import make_settings, meter_reading, publish_all, topic, wait_for


async def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of one scrape of the collector's /metrics."""
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def stored_readings(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("energy_import_kwh") FROM reading')
    return int(rows[0]["count"]) if rows else 0


async def test_spool_gauges_return_to_zero_after_replay_without_a_new_message(
    mosquitto: MosquittoServer, influx_restartable: InfluxServer, tmp_path: Path
) -> None:
    influx = influx_restartable
    port = free_port()
    settings = make_settings(
        tmp_path, mosquitto.url, influx.url, influx.database, metrics_port=port
    )
    service = await start_collector(settings)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        before = await scrape(port)
        assert before["lingtan_collector_spool_depth"] == 0
        assert before["lingtan_collector_replayed_batches_total"] == 0
        assert before["lingtan_collector_storage_errors_total"] == 0
        influx.stop()
        await publish_all(mosquitto.url, [(topic(f"m{i}"), meter_reading(0)) for i in range(10)])
        spooling: dict[str, float] = {}

        async def spooled() -> bool:
            spooling.update(await scrape(port))
            return spooling["lingtan_collector_spool_depth"] > 0

        await wait_for(spooled, what="spool depth > 0 while influxd is down")
        assert spooling["lingtan_collector_spool_bytes"] > 0
        assert spooling["lingtan_collector_storage_errors_total"] >= 1
        # nothing is published from here on: only the replay can move the gauges
        influx.start()
        after: dict[str, float] = {}

        async def drained() -> bool:
            after.update(await scrape(port))
            return after["lingtan_collector_spool_depth"] == 0

        await wait_for(drained, timeout_s=60, what="spool depth back to 0 on its own")
        assert after["lingtan_collector_spool_bytes"] == 0
        assert after["lingtan_collector_replayed_batches_total"] >= 1
        assert after["lingtan_collector_messages_total"] == 10
        assert stored_readings(influx) == 10
    finally:
        await service.stop()


async def test_a_refused_point_shows_in_the_quarantine_gauge(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """raw_len already stored as a string in this week's shard of dead letters: influxd
    refuses the next dead letter's float (field type conflict), that point is quarantined,
    the reading in the same batch is written."""
    influx = fresh_influx_db
    now_ns = time.time_ns()
    line = f'deadletter,park=p1,reason=invalid_json raw_len="text" {now_ns}'
    assert influx.write_lines(line).is_success
    port = free_port()
    settings = make_settings(
        tmp_path, mosquitto.url, influx.url, influx.database, metrics_port=port
    )
    service = await start_collector(settings)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        assert (await scrape(port))["lingtan_collector_quarantined"] == 0
        await publish_all(
            mosquitto.url, [(topic("m0"), b"{broken"), (topic("m1"), meter_reading(0))]
        )
        seen: dict[str, float] = {}

        async def quarantined() -> bool:
            seen.update(await scrape(port))
            return seen["lingtan_collector_quarantined"] > 0

        await wait_for(quarantined, what="the refused point quarantined")
        assert seen["lingtan_collector_quarantined"] == 1
        assert seen["lingtan_collector_storage_errors_total"] >= 1
        assert seen["lingtan_collector_spool_depth"] == 0
        assert stored_readings(influx) == 1
    finally:
        await service.stop()
