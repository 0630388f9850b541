"""Gateway formats end to end: real Mosquitto → collector → real influxd (docs/gateways.md).

Sparkplug B births and alias-only DATA become interval energies; an unknown alias is dead
lettered and the edge node is asked for a rebirth (seen by a subscriber of our own); a Neuron
group of 20 meters with two tags in error gives 18 readings and two dead letters; a registry
edit adds a format to a running collector, which subscribes to its topics.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd, NData

from app.config import Settings
from app.registry import parse_registry
from app.registry.holder import RegistryHolder
from app.telemetry.models import Reading
from collectors.live_feed import live_subscriber
from collectors.mqtt import GmqttSubscriber, MqttEndpoint
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import T0_S, publish_all, wait_for

T0_MS = T0_S * 1000  # local midnight 2026-11-20 in Shanghai: intervals start here
INTERVAL_NS = 15 * 60 * 10**9

SPB_YAML = """
parks:
  - id: p1
    timezone: Asia/Shanghai
    devices:
      - id: grid-main
        role: grid
        max_kw: 5000
        source:
          format: sparkplug
          group: park
          edge: edge1
          quantities:
            energy_import_kwh: {metric: "Grid/EP_IMP", scale: 0.001}
      - id: pv-1
        role: pv
        max_kw: 500
        source:
          format: sparkplug
          group: park
          edge: edge1
          device: inv1
          quantities:
            energy_kwh: {metric: "Inverter/E_TOTAL", scale: 0.001}
            power_kw: {metric: "Inverter/P"}
"""


def _settings(tmp: Path, yaml: str, mqtt: str, influx: InfluxServer, **kw: object) -> Settings:
    parks = tmp / "parks.yaml"
    parks.write_text(yaml)
    return Settings(
        mqtt_url=mqtt,
        influx_url=influx.url,
        influx_db=influx.database,
        parks=parks,
        data_dir=tmp / "data",
        metrics_port=0,
        batch_max_wait_ms=20,
        **kw,  # type: ignore[arg-type]
    )


def _metric(name: str | None, value: object, dtype: DataType, alias: int) -> Metric:
    return Metric(timestamp=None, name=name, datatype=dtype, value=value, alias=alias)  # type: ignore[arg-type]


def sparkplug_hour() -> list[tuple[str, bytes]]:
    """An edge node's hour: NBIRTH and DBIRTH at minute 0, then alias-only DATA each minute.

    Grid import rises 2 kWh a minute (sent in Wh), PV generation 1 kWh a minute (in Wh).
    """
    grid_wh = lambda k: 5_000_000 + 2000 * k  # noqa: E731
    pv_wh = lambda k: 800_000 + 1000 * k  # noqa: E731
    msgs = [
        (
            "spBv1.0/park/NBIRTH/edge1",
            NBirth(
                timestamp=T0_MS,
                seq=0,
                metrics=(
                    Metric(timestamp=None, name="bdSeq", datatype=DataType.INT64, value=0),
                    _metric("Grid/EP_IMP", grid_wh(0), DataType.UINT64, 1),
                ),
            ).encode(include_dtypes=True),
        ),
        (
            "spBv1.0/park/DBIRTH/edge1/inv1",
            DBirth(
                timestamp=T0_MS,
                seq=1,
                metrics=(
                    _metric("Inverter/E_TOTAL", pv_wh(0), DataType.UINT64, 11),
                    _metric("Inverter/P", 60.0, DataType.FLOAT, 12),
                ),
            ).encode(include_dtypes=True),
        ),
    ]
    seq = 2
    for k in range(1, 61):
        ts = T0_MS + 60_000 * k
        msgs.append(
            (
                "spBv1.0/park/NDATA/edge1",
                NData(
                    timestamp=ts,
                    seq=seq % 256,
                    metrics=(_metric(None, grid_wh(k), DataType.UINT64, 1),),
                ).encode(),
            )
        )
        msgs.append(
            (
                "spBv1.0/park/DDATA/edge1/inv1",
                DData(
                    timestamp=ts,
                    seq=(seq + 1) % 256,
                    metrics=(
                        _metric(None, pv_wh(k), DataType.UINT64, 11),
                        _metric(None, 60.0, DataType.FLOAT, 12),
                    ),
                ).encode(),
            )
        )
        seq += 2
    return msgs


def intervals(influx: InfluxServer, device: str, field: str) -> list[tuple[int, float]]:
    rows = influx.points(
        f"SELECT \"{field}\" FROM interval_energy WHERE park='p1' AND device='{device}'"
    )
    return [(row["time"], row[field]) for row in rows]


async def test_sparkplug_births_and_aliased_data_to_interval_energies_and_rebirth(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    # in a share group: BIRTHs reach every member, DATA is split (docs/gateways.md)
    settings = _settings(tmp_path, SPB_YAML, mosquitto.url, influx, share_group="lingtan")
    service = await start_collector(settings, serve_metrics=False)
    commands: list[tuple[str, bytes]] = []
    watcher = GmqttSubscriber(
        MqttEndpoint.parse(mosquitto.url), "spBv1.0/park/NCMD/#", "ncmd-watch", persistent=False
    )

    async def seen(topic: str, payload: bytes) -> None:
        commands.append((topic, payload))

    watch = asyncio.create_task(watcher.run(seen))
    try:
        await wait_for(service.subscriber.connected.is_set, what="collector connection")
        await wait_for(watcher.connected.is_set, what="watcher connection")
        hour = sparkplug_hour()
        await publish_all(mosquitto.url, hour)
        await wait_for(
            lambda: service.metrics.readings._value.get() >= 122, what="122 readings stored"
        )
        assert commands == []  # every alias was announced: no rebirth asked
        # a DDATA with an alias no BIRTH announced
        bad = DData(
            timestamp=T0_MS + 3_700_000,
            seq=122,  # next in sequence after the hour (0 … 121)
            metrics=(_metric(None, 1.0, DataType.DOUBLE, 77),),
        ).encode()
        await publish_all(mosquitto.url, [("spBv1.0/park/DDATA/edge1/inv1", bad)])
        await wait_for(lambda: bool(commands), what="a rebirth request")
        await wait_for(
            lambda: bool(influx.points("SELECT * FROM deadletter")), what="the dead letter"
        )
    finally:
        await service.stop()
        await watcher.stop()
        await watch
    # PV 1 kWh/min and grid 2 kWh/min: each 15-min interval of the hour holds 15 and 30 kWh
    starts = [T0_S * 10**9 + k * INTERVAL_NS for k in range(4)]
    assert intervals(influx, "pv-1", "energy_kwh") == [(t, 15.0) for t in starts]
    assert intervals(influx, "grid-main", "energy_import_kwh") == [(t, 30.0) for t in starts]
    # raw readings as received, scaled: minute 60 of PV = 800,000 + 60,000 Wh = 860 kWh
    last = influx.points(
        "SELECT energy_kwh, power_kw FROM reading WHERE device='pv-1' ORDER BY time DESC LIMIT 1"
    )
    assert (last[0]["energy_kwh"], last[0]["power_kw"]) == (860.0, 60.0)
    [dl] = influx.points("SELECT * FROM deadletter")
    assert dl["reason"] == "unknown_alias"
    assert dl["topic"] == "spBv1.0/park/DDATA/edge1/inv1"
    assert dl["raw_len"] == len(bad)
    [(topic, payload)] = commands
    assert topic == "spBv1.0/park/NCMD/edge1"
    request = NCmd.decode(payload)
    assert [(m.name, m.value) for m in request.metrics] == [("Node Control/Rebirth", True)]
    fm = service.collector.format_metrics
    assert fm.messages.labels("sparkplug")._value.get() == len(hour) + 1
    assert fm.readings.labels("sparkplug")._value.get() == 122
    assert fm.rejected.labels("sparkplug", "unknown_alias")._value.get() == 1
    assert fm.rebirths._value.get() == 1
    assert fm.seq_gaps._value.get() == 0


def neuron_yaml(n: int) -> str:
    meters = "".join(
        f"""
      - id: m{i:02d}
        role: load
        source:
          format: neuron
          node: dlt645-1
          group: meters
          quantities:
            energy_import_kwh: {{tag: "M{i:02d}.EP_IMP", scale: 0.001}}"""
        for i in range(n)
    )
    return f"""
parks:
  - id: p1
    timezone: Asia/Shanghai
    devices:
      - {{id: grid-main, role: grid}}{meters}
"""


def neuron_upload(n: int, errors: dict[int, int]) -> bytes:
    values = {f"M{i:02d}.EP_IMP": 1_000_000 + 1001 * i for i in range(n) if i not in errors}
    errs = {f"M{i:02d}.EP_IMP": code for i, code in errors.items()}
    doc = {"timestamp": T0_MS, "node": "dlt645-1", "group": "meters", "values": values}
    return json.dumps({**doc, "errors": errs, "metas": {}}).encode()


async def test_neuron_group_of_20_meters_two_in_error(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    service = await start_collector(
        _settings(tmp_path, neuron_yaml(20), mosquitto.url, influx), serve_metrics=False
    )
    upload = neuron_upload(20, {4: 3011, 17: 2014})
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        # Neuron ≥ 2.4's default upload topic; sent twice: QoS 1 redelivery stores nothing twice
        topic = "/neuron/lingtan/dlt645-1/meters"
        await publish_all(mosquitto.url, [(topic, upload), (topic, upload)])
        await wait_for(lambda: service.metrics.messages._value.get() >= 2, what="both messages")
        await wait_for(
            lambda: len(influx.points("SELECT * FROM deadletter")) >= 4, what="dead letters"
        )
    finally:
        await service.stop()
    readings = influx.points('SELECT * FROM "reading"')
    assert len(readings) == 18
    assert {r["device"] for r in readings} == {f"m{i:02d}" for i in range(20)} - {"m04", "m17"}
    by_device = {r["device"]: r["energy_import_kwh"] for r in readings}
    # 1,000,000 + 1001 i Wh, in kWh exactly: 1007.007 for m07, 1019.019 for m19
    assert by_device["m07"] == 1007.007 and by_device["m19"] == 1019.019
    assert {r["time"] for r in readings} == {T0_S * 10**9}
    dls = influx.points("SELECT * FROM deadletter")
    # each delivery dead-letters its two errored tags (a dead letter records a receipt)
    assert sorted((d["device"], d["reason"]) for d in dls) == [
        ("m04", "gateway_error"),
        ("m04", "gateway_error"),
        ("m17", "gateway_error"),
        ("m17", "gateway_error"),
    ]
    assert all("error code" in d["detail"] for d in dls)
    assert all(d["raw_len"] == len(upload) for d in dls)


async def test_registry_edit_adds_a_format_to_a_running_collector(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    plain = "parks:\n  - id: p1\n    timezone: Asia/Shanghai\n    devices:\n"
    plain += "      - {id: m00, role: load}\n"
    holder = RegistryHolder(parse_registry(plain), version=1)
    settings = _settings(tmp_path, plain, mosquitto.url, influx)
    service = await start_collector(settings, serve_metrics=False, registry=holder)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        holder.replace(parse_registry(neuron_yaml(1)), version=2)
        # the new subscription is in place once a message on it arrives; publish until then
        upload = neuron_upload(1, {})

        async def arrived() -> bool:
            await publish_all(mosquitto.url, [("/neuron/app/dlt645-1/meters", upload)])
            await asyncio.sleep(0.2)
            return bool(influx.points("SELECT * FROM reading"))

        await wait_for(arrived, what="a Neuron reading after the edit")
    finally:
        await service.stop()
    [row] = influx.points("SELECT energy_import_kwh FROM reading WHERE device='m00'")
    assert row["energy_import_kwh"] == 1000.0


async def test_sparkplug_aliases_survive_a_collector_restart(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    """DATA queued by the broker while the collector was down is read with the aliases of
    the BIRTHs it received before, not dead-lettered."""
    influx = fresh_influx_db
    settings = _settings(tmp_path, SPB_YAML, mosquitto.url, influx, client_id="spb-restart")
    hour = sparkplug_hour()
    births, data = hour[:2], hour[2:]
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await publish_all(mosquitto.url, births)
        await wait_for(lambda: service.metrics.readings._value.get() >= 2, what="the births")
    finally:
        await service.stop()
    assert (tmp_path / "data" / "gateway-state.json").exists()
    # the broker queues the hour's DATA for the persistent session meanwhile
    await publish_all(mosquitto.url, data)
    service = await start_collector(settings, serve_metrics=False)
    try:
        await wait_for(
            lambda: service.metrics.readings._value.get() >= len(data), what="the queued data"
        )
    finally:
        await service.stop()
    assert influx.points("SELECT * FROM deadletter") == []
    starts = [T0_S * 10**9 + k * INTERVAL_NS for k in range(4)]
    assert intervals(influx, "pv-1", "energy_kwh") == [(t, 15.0) for t in starts]


async def test_live_feed_reads_gateway_formats(mosquitto: MosquittoServer) -> None:
    """The API's live view follows devices behind a gateway format as it follows native ones."""
    holder = RegistryHolder(parse_registry(neuron_yaml(3)), version=1)
    seen: list[Reading] = []
    sub, handle = live_subscriber(mosquitto.url, holder, seen.extend)
    task = asyncio.create_task(sub.run(handle))
    try:
        await wait_for(sub.connected.is_set, what="live feed connection")
        upload = neuron_upload(3, {1: 3011})

        async def arrived() -> bool:  # QoS 0, clean session: publish until it is seen
            await publish_all(mosquitto.url, [("/neuron/app/dlt645-1/meters", upload)])
            await asyncio.sleep(0.2)
            return bool(seen)

        await wait_for(arrived, what="live readings")
    finally:
        await sub.stop()
        await task
    assert {(r.device, r.values["energy_import_kwh"]) for r in seen} == {
        ("m00", 1000.0),
        ("m02", 1002.002),
    }
