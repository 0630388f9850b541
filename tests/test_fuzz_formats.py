"""The decoder fuzz of tests/test_fuzz_decoder.py, extended to the gateway formats: Sparkplug B
(births, aliased data, deaths, hostile bytes), Neuron uploads and mapped JSON never crash the
decoder or the collector, and every reading and dead letter the collector counts is in influxd."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pysparkplug._protobuf import Payload

from app.config import Settings
from app.registry import parse_registry
from app.telemetry.formats import GatewayDecoder
from app.telemetry.models import RejectReason
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import publish_all, wait_for
from tests.test_fuzz_decoder import BASE_TS_S, NOW_NS, json_values, points, rejected_total

PARKS_YAML = """
parks:
  - id: fz
    timezone: Asia/Shanghai
    devices:
      - {id: d0, role: load}
      - id: n0
        role: load
        source:
          format: neuron
          node: n
          group: g
          quantities:
            energy_import_kwh: {tag: t0, scale: 0.001}
            power_kw: {tag: p0}
      - id: n1
        role: load
        source:
          format: neuron
          node: n
          group: g
          quantities:
            energy_import_kwh: {tag: t1}
      - id: s0
        role: load
        source:
          format: sparkplug
          group: G
          edge: E
          quantities:
            energy_import_kwh: {metric: e, scale: 0.001}
      - id: s1
        role: load
        source:
          format: sparkplug
          group: G
          edge: E
          device: D1
          quantities:
            energy_import_kwh: {metric: e}
            power_kw: {metric: p, scale: 40}
      - id: j0
        role: load
        source:
          format: json
          topic: v/up
          match: {"/id": "j0"}
          ts: ts
          ts_format: epoch_ms
          quantities:
            energy_import_kwh: {path: /e}
      - id: j1
        role: load
        source:
          format: json
          topic: v/rec
          layout: records
          quantities:
            energy_import_kwh: {tag: j1.e}
            power_kw: {tag: j1.p}
"""
REGISTRY = parse_registry(PARKS_YAML)
DEVICES = {d.id for d in REGISTRY.parks[0].devices}
TAGS = ["t0", "p0", "t1", "x"]
METRICS = ["e", "p", "bdSeq", "other"]

# -- Sparkplug payloads: real protobuf with drawn fields ------------------------------------

_VALUE_FIELDS = st.sampled_from(
    [
        ("int_value", st.integers(0, 2**32 - 1)),
        ("long_value", st.integers(0, 2**64 - 1)),
        ("float_value", st.floats(width=32)),
        ("double_value", st.floats()),
        ("boolean_value", st.booleans()),
        ("string_value", st.text(max_size=8)),
        ("bytes_value", st.binary(max_size=8)),
    ]
)


@st.composite
def spb_metric(draw: st.DrawFn, named: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"alias": draw(st.integers(0, 6))}
    if named or draw(st.booleans()):
        out["name"] = draw(st.sampled_from(METRICS))
    if draw(st.booleans()):
        out["datatype"] = draw(st.integers(0, 34))
    if draw(st.integers(0, 9)) == 0:
        out["is_null"] = True
    else:
        field, values = draw(_VALUE_FIELDS)
        out[field] = draw(values)
    if draw(st.integers(0, 4)) == 0:
        out["timestamp"] = draw(st.integers(0, 2**64 - 1))
    return out


@st.composite
def spb_message(draw: st.DrawFn, ts_ms: int | None) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"]))
    device = kind.startswith("D")
    topic = f"spBv1.0/G/{kind}/E" + (f"/{draw(st.sampled_from(['D1', 'D2']))}" if device else "")
    if draw(st.integers(0, 9)) == 0:
        return topic, draw(st.binary(max_size=60))  # hostile bytes
    msg = Payload()
    if ts_ms is not None:
        msg.timestamp = ts_ms
    if draw(st.booleans()):
        msg.seq = draw(st.integers(0, 300))
    for fields in draw(st.lists(spb_metric("BIRTH" in kind), max_size=5)):
        metric = msg.metrics.add()
        for key, value in fields.items():
            setattr(metric, key, value)
    return topic, msg.SerializeToString()


neuron_docs = st.fixed_dictionaries(
    {
        "node": st.sampled_from(["n", "n", "other"]),
        "group": st.just("g"),
        "values": st.dictionaries(st.sampled_from(TAGS), json_values | st.floats(0, 1e6)),
    },
    optional={
        "errors": st.dictionaries(st.sampled_from(TAGS), json_values),
        "tags": json_values,
        "timestamp": json_values,
    },
)
json_objects = st.fixed_dictionaries(
    {"id": st.sampled_from(["j0", "j0", "zz"]), "e": json_values | st.floats(0, 1e6)},
    optional={"ts": json_values},
)
json_records = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["j1.e", "j1.p", "nope"]), "value": json_values},
        optional={"ts": json_values},
    ),
    max_size=6,
)


@st.composite
def any_message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["spb", "neuron", "json", "records", "junk"]))
    if kind == "spb":
        return draw(spb_message(draw(st.none() | st.integers(0, 2**64 - 1))))
    if kind == "neuron":
        return "/neuron/app/n/g", json.dumps(draw(neuron_docs)).encode()
    if kind == "json":
        return "v/up", json.dumps(draw(json_objects | st.lists(json_objects))).encode()
    if kind == "records":
        return "v/rec", json.dumps(draw(json_records)).encode()
    topic = draw(st.sampled_from(["spBv1.0/G/DDATA/E", "spBv1.0//NDATA/E", "/neuron/x", "v/up"]))
    return topic, draw(st.binary(max_size=80))


DEC = GatewayDecoder(REGISTRY)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(any_message(), min_size=1, max_size=8))
def test_formats_never_raise_and_keep_raw_bytes(messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        out = DEC.decode(topic, payload, NOW_NS)  # must not raise, whatever the input
        for r in out.readings:
            assert r.park == "fz" and r.device in DEVICES
            assert r.values or r.reset
            assert all(math.isfinite(v) and abs(v) <= 1e12 for v in r.values.values())
        for d in out.deadletters:
            assert isinstance(d.reason, RejectReason)
            assert d.detail and d.topic == topic
            assert d.raw == payload  # gateway formats keep the whole message
        for cmd in out.commands:
            assert cmd.topic == "spBv1.0/G/NCMD/E"


# -- pipeline level: the real collector between a real broker and a real influxd ---------------

#: Unique valid epoch ms for drawn messages, so a stored reading cannot overwrite another.
_TS = itertools.count()


def _unique_ms() -> int:
    return (BASE_TS_S + next(_TS)) * 1000


@st.composite
def pipeline_message(draw: st.DrawFn) -> tuple[str, bytes]:
    """A drawn message whose timestamps, where valid, are unique across the whole run."""
    kind = draw(st.sampled_from(["spb", "neuron", "json", "records", "junk"]))
    ts = _unique_ms()
    if kind == "spb":
        topic, payload = draw(spb_message(ts))
        msg = Payload()
        try:
            msg.ParseFromString(payload)
        except Exception:
            return topic, payload
        for metric in msg.metrics:  # a metric's own timestamp would collide across messages
            metric.ClearField("timestamp")
        return topic, msg.SerializeToString()
    if kind == "neuron":
        doc = draw(neuron_docs)
        doc["timestamp"] = ts
        return "/neuron/app/n/g", json.dumps(doc).encode()
    if kind == "json":
        obj = draw(json_objects)
        obj["ts"] = ts
        return "v/up", json.dumps(obj).encode()
    if kind == "records":
        rows = draw(json_records)
        for row in rows:  # one message = one instant per device
            row["ts"] = ts
        return "v/rec", json.dumps(rows).encode()
    return draw(st.sampled_from(["spBv1.0/G/NDATA/E", "/neuron/x", "v/up"])), draw(
        st.binary(max_size=80)
    )


async def test_collector_survives_fuzzed_gateway_messages(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    messages: list[tuple[str, bytes]] = []

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(pipeline_message(), min_size=5, max_size=10))
    def draw(drawn: list[tuple[str, bytes]]) -> None:
        messages.extend(drawn)

    draw()
    assert len(messages) >= 200
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS_YAML)
    config = Settings(
        mqtt_url=mosquitto.url,
        influx_url=fresh_influx_db.url,
        influx_db=fresh_influx_db.database,
        parks=parks,
        data_dir=tmp_path / "data",
        metrics_port=0,
        batch_max_wait_ms=20,
    )
    service = await start_collector(config, serve_metrics=False)
    final_ts = BASE_TS_S - 1
    final = json.dumps(
        {"timestamp": final_ts * 1000, "node": "n", "group": "g", "values": {"p0": 42}}
    )
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await publish_all(mosquitto.url, list(messages))
        await wait_for(
            lambda: service.metrics.messages._value.get() >= len(messages),
            what="every fuzzed message",
        )
        # still alive: a valid Neuron upload after the fuzz lands
        await publish_all(mosquitto.url, [("/neuron/app/n/g", final.encode())])
        await wait_for(
            lambda: bool(
                fresh_influx_db.points(f"SELECT power_kw FROM reading WHERE time = {final_ts}s")
            ),
            what="the final valid reading",
        )
    finally:
        await service.stop()
    accepted = int(service.metrics.readings._value.get())
    rejected = rejected_total(service)
    # what the counters say is what influxd holds: no reading overwrote another, none lost
    assert points(fresh_influx_db, "reading") == accepted
    assert points(fresh_influx_db, "deadletter") == rejected
    assert rejected > 0 and accepted > 1  # the fuzz exercised both paths
    fm = service.collector.format_metrics
    per_format = {
        name: int(fm.messages.labels(name)._value.get()) for name in ("sparkplug", "neuron", "json")
    }
    assert sum(per_format.values()) == len(messages) + 1  # none fell to the native decoder
    assert all(per_format.values())
