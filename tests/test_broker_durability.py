"""The shipped broker config on real Mosquitto: what it PUBACKed survives a SIGKILL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.telemetry.decode import DecodeLimits
from collectors.service import start_collector
from lingtan.broker import _mosquitto_conf
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import SHIPPED_CONF, MosquittoServer
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


def _settings(conf: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out[key] = value
    return out


def test_lingtan_ups_own_mosquitto_has_the_shipped_durability_and_size_settings(
    tmp_path: Path,
) -> None:
    """`lingtan up` writes its own broker config: same crash window and size limit (it used to
    autosave every 30 min and disconnect a gateway over ~1 MiB with `max_packet_size`)."""
    shipped = _settings(SHIPPED_CONF.read_text())
    up = _settings(_mosquitto_conf(tmp_path, 1883).read_text())
    keys = ("persistence", "autosave_interval", "message_size_limit", "max_queued_messages")
    assert {k: up.get(k) for k in keys} == {k: shipped[k] for k in keys}
    assert shipped["autosave_interval"] == "1" and "autosave_on_changes" not in shipped
    assert "max_packet_size" not in up and "max_packet_size" not in shipped
    # the broker's size limit sits above the collector's, so the collector sees oversized ones
    assert int(shipped["message_size_limit"]) == 4 * DecodeLimits().max_payload_bytes
