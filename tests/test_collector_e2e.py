"""End-to-end ingest: real Mosquitto → collector → real influxd, including outages and crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import (
    N_METERS,
    T0_NS,
    T0_S,
    make_settings,
    meter_reading,
    publish_all,
    topic,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
INTERVAL_NS = 15 * 60 * 10**9


def count(influx: InfluxServer, measurement: str, where: str = "") -> int:
    rows = influx.points(f'SELECT count(*) FROM "{measurement}" {where}')
    if not rows:
        return 0
    return max(int(v) for k, v in rows[0].items() if k.startswith("count_"))


def interval_values(
    influx: InfluxServer, device: str, field: str = "energy_import_kwh"
) -> list[float]:
    rows = influx.points(
        f"SELECT \"{field}\" FROM interval_energy WHERE park='p1' AND device='{device}'"
    )
    return [row[field] for row in rows]


async def test_thousands_of_readings_single_and_array_land_once(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        messages: list[tuple[str, object]] = []
        minutes = 61  # minute 0..60 of each meter
        for i in range(N_METERS):
            readings = [meter_reading(k, base=100.0 * i) for k in range(minutes)]
            if i % 2:
                # odd meters: a gateway flushing arrays of 10
                messages += [(topic(f"m{i}"), readings[j : j + 10]) for j in range(0, minutes, 10)]
            else:
                messages += [(topic(f"m{i}"), r) for r in readings]
        # and every message twice: QoS 1 redelivery must not duplicate anything
        await publish_all(mosquitto.url, messages + messages)
        total = N_METERS * minutes
        await wait_for(
            lambda: service.metrics.readings._value.get() >= 2 * total, what="all readings"
        )
    finally:
        await service.stop()
    assert count(fresh_influx_db, "reading") == total
    # 1 kWh a minute: each full 15-min interval of local time holds exactly 15 kWh
    # (segments minute 0→1 … 14→15), minutes 0..60 fill the four intervals of the first hour
    for i in (0, 1, N_METERS - 1):
        assert interval_values(fresh_influx_db, f"m{i}") == [15.0, 15.0, 15.0, 15.0]
    rows = fresh_influx_db.points("SELECT energy_import_kwh FROM interval_energy WHERE device='m0'")
    assert [r["time"] for r in rows] == [T0_NS + k * INTERVAL_NS for k in range(4)]


async def test_bad_payloads_dead_lettered_and_collector_keeps_going(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    service = await start_collector(settings, serve_metrics=False)
    bad: list[tuple[str, object]] = [
        (topic("m0"), b"{not json"),
        (topic("m0"), b'{"ts": 1795000000, "energy_import_kwh": "12"}'),
        (topic("m0"), b'{"ts": 1795000000, "power_kw": NaN}'),
        (topic("m0"), b'{"ts": 1795000000, "energy_import_kwh": -5}'),
        (topic("ghost"), b'{"ts": 1795000000, "power_kw": 1}'),
        (topic("m0", park="nopark"), b'{"ts": 1795000000, "power_kw": 1}'),
        (topic("m0"), b'{"ts": 4000000000, "power_kw": 1}'),  # 2096: in the future
    ]
    expected_reasons = sorted(
        [
            "invalid_json",
            "invalid_reading",
            "non_finite",
            "out_of_range",
            "unknown_device",
            "unknown_park",
            "future_timestamp",
        ]
    )
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await publish_all(mosquitto.url, [*bad, (topic("m1"), meter_reading(0))])
        await wait_for(
            lambda: service.metrics.messages._value.get() >= len(bad) + 1, what="messages"
        )
        await wait_for(lambda: count(fresh_influx_db, "reading") == 1, what="the good reading")
    finally:
        await service.stop()
    rows = fresh_influx_db.points("SELECT * FROM deadletter")
    assert sorted(r["reason"] for r in rows) == expected_reasons
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["invalid_json"]["raw_len"] == len(b"{not json")
    assert by_reason["unknown_device"]["topic"] == topic("ghost")
    assert "not registered" in by_reason["unknown_device"]["detail"]
    counted = {
        s.labels["reason"]: s.value
        for m in service.metrics.rejected.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert counted == dict.fromkeys(expected_reasons, 1.0)


async def test_influxdb_outage_under_load_loses_and_duplicates_nothing(
    mosquitto: MosquittoServer, influx_restartable: InfluxServer, tmp_path: Path
) -> None:
    influx = influx_restartable
    settings = make_settings(tmp_path, mosquitto.url, influx.url, influx.database)
    service = await start_collector(settings, serve_metrics=False)
    minutes = 121  # two hours of 1-minute readings per meter
    meters = 10
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        first = [(topic(f"m{i}"), meter_reading(k)) for k in range(0, 40) for i in range(meters)]
        rest = [
            (topic(f"m{i}"), meter_reading(k)) for k in range(40, minutes) for i in range(meters)
        ]
        await publish_all(mosquitto.url, first)
        await wait_for(lambda: count(influx, "reading") == len(first), what="first part stored")
        influx.stop()
        publisher = asyncio.create_task(publish_all(mosquitto.url, rest))
        await wait_for(
            lambda: service.writer.spool_depth > 0, what="spooling while InfluxDB is down"
        )
        await asyncio.sleep(3)
        await publisher
        influx.start()
        await wait_for(
            lambda: (
                service.writer.spool_depth == 0 and count(influx, "reading") == meters * minutes
            ),
            timeout_s=60,
            what="spool replayed",
        )
        assert service.metrics.spooled._value.get() > 0
    finally:
        await service.stop()
    # 8 full intervals of 15 kWh in two hours; a lost or misordered batch would show here
    for i in range(meters):
        assert interval_values(influx, f"m{i}") == [15.0] * 8
    assert count(influx, "reading") == meters * minutes


def _collector_process(settings_env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env}
    with log.open("ab") as out:  # a file, not a pipe: a chatty child must never block
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", "collect"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_collector_sigkill_midstream_loses_nothing(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    settings = make_settings(tmp_path, mosquitto.url, influx.url, influx.database)
    env = {
        "LINGTAN_MQTT_URL": mosquitto.url,
        "LINGTAN_INFLUX_URL": influx.url,
        "LINGTAN_INFLUX_DB": influx.database,
        "LINGTAN_PARKS": str(settings.parks),
        "LINGTAN_DATA_DIR": str(settings.data_dir),
        "LINGTAN_METRICS_PORT": "0",
        "LINGTAN_CLIENT_ID": "crash-test",
        "LINGTAN_BATCH_MAX_WAIT_MS": "20",
    }
    meters, minutes = 20, 91
    messages = [(topic(f"m{i}"), meter_reading(k)) for k in range(minutes) for i in range(meters)]
    log = tmp_path / "collector.log"
    proc = _collector_process(env, log)

    async def paced() -> None:
        # a gateway fleet publishing steadily, so the kill lands in the middle of the stream
        for k in range(0, len(messages), 100):
            await publish_all(mosquitto.url, messages[k : k + 100])
            await asyncio.sleep(0.05)

    total = meters * minutes
    try:
        # the first start creates the persistent session; publish while it runs
        await wait_for(lambda: "crash-test" in mosquitto.log(), what="collector connected")
        publisher = asyncio.create_task(paced())
        await wait_for(lambda: count(influx, "reading") > 200, what="some readings stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored_at_kill = count(influx, "reading")
        assert stored_at_kill < total, "the kill must land mid-stream"
        await publisher  # the broker keeps queuing for the persistent session meanwhile
        proc = _collector_process(env, log)
        await wait_for(
            lambda: count(influx, "reading") == total and log.read_text().count("subscribed") == 2,
            timeout_s=60,
            what="all readings after the restart",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, log.read_text()
    for i in range(meters):
        assert interval_values(influx, f"m{i}") == [15.0] * 6


async def test_lagging_collector_gets_every_queued_message_across_a_broker_restart(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """With the shipped queue sizing, a collector that is away gets everything on return."""
    influx = fresh_influx_db
    settings = make_settings(tmp_path, mosquitto.url, influx.url, influx.database)
    service = await start_collector(settings, serve_metrics=False)
    await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
    await service.stop()  # persistent session stays on the broker
    n = 5000  # five times Mosquitto's default queue of 1000
    messages = [
        (topic(f"m{k % N_METERS}"), {"ts": T0_S + k, "power_kw": float(k)}) for k in range(n)
    ]
    await publish_all(mosquitto.url, messages)
    mosquitto.restart()  # queued QoS 1 messages survive in the broker's persistence file
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(lambda: count(influx, "reading") == n, timeout_s=60, what="queued messages")
    finally:
        await service.stop()


async def test_default_queue_limit_would_drop_messages(tmp_path: Path) -> None:
    """Control for the test above: Mosquitto's default max_queued_messages loses most of them."""
    broker = MosquittoServer(tmp_path / "mq", extra_conf="max_queued_messages 1000")
    broker.start()
    try:
        from collectors.mqtt import GmqttSubscriber, MqttEndpoint

        got: list[bytes] = []

        async def handler(_t: str, payload: bytes) -> None:
            got.append(payload)

        sub = GmqttSubscriber(MqttEndpoint.parse(broker.url), "lingtan/v1/+/+/telemetry", "lag")
        task = asyncio.create_task(sub.run(handler))
        await wait_for(sub.connected.is_set, what="connection")
        await sub.stop()
        await task
        await publish_all(
            broker.url, [(topic("m0"), json.dumps({"k": k}).encode()) for k in range(5000)]
        )
        sub = GmqttSubscriber(MqttEndpoint.parse(broker.url), "lingtan/v1/+/+/telemetry", "lag")
        task = asyncio.create_task(sub.run(handler))
        await asyncio.sleep(2)
        await sub.stop()
        await task
    finally:
        broker.stop()
    assert len(got) <= 1000 + 20  # queue limit plus what was in flight


async def test_shared_subscription_splits_the_load_and_everything_lands_once(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    services = []
    for i in range(2):
        settings = make_settings(
            tmp_path / f"c{i}",
            mosquitto.url,
            influx.url,
            influx.database,
            share_group="fleet",
            client_id=f"collector-{i}",
        )
        services.append(await start_collector(settings, serve_metrics=False))
    try:
        for s in services:
            await wait_for(s.subscriber.connected.is_set, what="MQTT connection")
        n = 2000
        messages = [
            (topic(f"m{k % N_METERS}"), {"ts": T0_S + k, "power_kw": 1.0}) for k in range(n)
        ]
        await publish_all(mosquitto.url, messages)
        await wait_for(lambda: count(influx, "reading") == n, what="all readings")
    finally:
        for s in services:
            await s.stop()
    # read after stop: a collector counts a batch once its write has returned, which can be
    # a moment after influxd already shows the readings
    per_collector = [s.metrics.readings._value.get() for s in services]
    # each message went to exactly one member of the group, and both took a share
    assert sum(per_collector) == n
    assert min(per_collector) > 0


async def test_metrics_endpoint_serves_collector_counters(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    import httpx

    from tests.fixtures.mosquitto import free_port

    port = free_port()
    settings = make_settings(
        tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database, metrics_port=port
    )
    service = await start_collector(settings)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        async with httpx.AsyncClient() as client:
            before = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        published_s = time.time()
        await publish_all(
            mosquitto.url, [(topic("m0"), meter_reading(0)), (topic("m0"), b"{broken")]
        )
        # counted once durable: wait on the counters asserted below, not on arrival
        await wait_for(
            lambda: (
                service.metrics.readings._value.get() >= 1
                and service.metrics.rejected.labels("invalid_json")._value.get() >= 1
            ),
            what="both messages made durable",
        )
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await service.stop()
    assert "lingtan_collector_readings_total 1.0" in body
    assert 'lingtan_collector_rejected_total{reason="invalid_json"} 1.0' in body
    assert "lingtan_collector_mqtt_connected 1.0" in body
    assert "lingtan_collector_spool_depth 0.0" in body
    # when the last batch was made durable: none before the first, then after the publish
    assert "lingtan_collector_last_durable_timestamp_seconds 0.0" in before
    last = [ln for ln in body.splitlines() if ln.startswith("lingtan_collector_last_durable_")]
    assert published_s <= float(last[0].split()[1]) <= time.time()


async def test_a_batch_that_cannot_be_made_durable_is_redelivered_not_lost(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """E.g. the spool's disk is full: nothing is acked, the collector reconnects, the broker
    redelivers, and the readings land once the write succeeds."""
    from app.storage.base import WriteBatch
    from app.storage.spool import DurableWriter

    failures = {"left": 1}
    original = DurableWriter.write

    async def flaky_write(self: DurableWriter, batch: WriteBatch) -> None:
        if failures["left"] and batch.readings:
            failures["left"] -= 1
            raise OSError(28, "No space left on device")
        await original(self, batch)

    settings = make_settings(tmp_path, mosquitto.url, fresh_influx_db.url, fresh_influx_db.database)
    DurableWriter.write = flaky_write  # type: ignore[method-assign]
    try:
        service = await start_collector(settings, serve_metrics=False)
        try:
            await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
            messages = [(topic(f"m{k}"), meter_reading(0)) for k in range(20)]
            await publish_all(mosquitto.url, messages)
            await wait_for(
                lambda: count(fresh_influx_db, "reading") == 20, timeout_s=30, what="redelivery"
            )
        finally:
            await service.stop()
    finally:
        DurableWriter.write = original  # type: ignore[method-assign]
    assert failures["left"] == 0
