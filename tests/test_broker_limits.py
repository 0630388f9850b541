"""What the shipped broker config lets through to the collector on real Mosquitto: payloads
over the collector's own size limit, and topics beside the telemetry filter, end as dead
letters (with raw bytes, counted), and the same gateway's next messages are stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from collectors.mqtt import GmqttPublisher, MqttEndpoint
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import make_settings, meter_reading, topic, wait_for

MIB = 1 << 20


def stored_readings(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("energy_import_kwh") FROM reading')
    return int(rows[0]["count"]) if rows else 0


async def publish_from_one_gateway(url: str, messages: list[tuple[str, bytes]]) -> None:
    """One connection, in order, as a gateway does; raises unless the broker PUBACKed all."""
    pub = GmqttPublisher(MqttEndpoint.parse(url))
    await pub.connect()
    try:
        for t, payload in messages:
            await pub.publish(t, payload, qos=1)
        await pub.drain(timeout_s=30)
    finally:
        await pub.close()


async def test_an_oversized_payload_is_dead_lettered_and_the_gateway_goes_on(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    # 1 MiB + 1 byte: over the collector's limit (1 MiB), under the broker's (4 MiB)
    oversized = b"[" + b" " * (MIB - 1) + b"]"
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        following = [(topic("m0"), json.dumps(meter_reading(k)).encode()) for k in range(5)]
        await publish_from_one_gateway(mosquitto.url, [(topic("m0"), oversized), *following])
        await wait_for(lambda: stored_readings(fresh_influx_db) == 5, what="5 following readings")
        rejected = service.metrics.rejected.labels("too_large")
        await wait_for(lambda: rejected._value.get() == 1, what="too_large counted")
    finally:
        await service.stop()
    rows = fresh_influx_db.points("SELECT * FROM deadletter")
    assert [(r["reason"], r["park"], r["device"]) for r in rows] == [("too_large", "p1", "m0")]
    assert rows[0]["raw_len"] == MIB + 1
    assert base64.b64decode(rows[0]["raw_b64"]) == oversized


async def test_topics_beside_the_telemetry_filter_are_dead_lettered_as_bad_topic(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    off_filter = [
        ("lingtan/v1/p1/m0/status", b"online"),
        ("lingtan/v1/p1/m0/telemetri", b'{"ts": 1795000000, "power_kw": 1}'),
        ("lingtan/v2/p1/m0/telemetry", b"\xff\x00binary"),
    ]
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        good = (topic("m0"), json.dumps(meter_reading(0)).encode())
        await publish_from_one_gateway(mosquitto.url, [*off_filter, good])
        await wait_for(lambda: stored_readings(fresh_influx_db) == 1, what="the good reading")
        rejected = service.metrics.rejected.labels("bad_topic")
        await wait_for(lambda: rejected._value.get() == 3, what="3 bad_topic counted")
    finally:
        await service.stop()
    rows = fresh_influx_db.points("SELECT * FROM deadletter")
    got = sorted((r["topic"], base64.b64decode(r["raw_b64"]), r["reason"]) for r in rows)
    assert got == sorted((t, raw, "bad_topic") for t, raw in off_filter)


async def test_a_retained_off_filter_message_is_dead_lettered_once_across_restarts(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """Gateways often keep a retained status topic (birth / last will); the persistent
    session's subscription already exists at a reconnect, so it is not delivered again."""
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    pub = GmqttPublisher(MqttEndpoint.parse(mosquitto.url))
    await pub.connect()
    pub._client.publish("lingtan/v1/p1/gw/status", b"online", qos=1, retain=True)
    await pub.drain()
    await pub.close()
    for minute in range(3):
        service = await start_collector(settings, serve_metrics=False)
        try:
            await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
            good = (topic("m0"), json.dumps(meter_reading(minute)).encode())
            await publish_from_one_gateway(mosquitto.url, [good])
            expected = minute + 1
            await wait_for(lambda n=expected: stored_readings(fresh_influx_db) == n, what="reading")
        finally:
            await service.stop()
    rows = fresh_influx_db.points("SELECT * FROM deadletter")
    assert [(r["topic"], r["reason"]) for r in rows] == [("lingtan/v1/p1/gw/status", "bad_topic")]
