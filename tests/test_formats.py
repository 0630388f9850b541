"""Gateway formats, pure (no broker): Sparkplug B, Neuron and mapped JSON into readings and
dead letters, with scaling exact to the decimal (docs/gateways.md)."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysparkplug import DataType, DBirth, DData, DDeath, Metric, NBirth, NCmd, NData, NDeath

from app.registry import RegistryError, parse_registry
from app.telemetry.formats import GatewayDecoder
from app.telemetry.formats.base import scaled, topic_matches
from app.telemetry.models import RejectReason

NOW_NS = 1_795_392_000 * 10**9  # 2026-11-24T00:00:00Z
T_MS = 1_795_046_400_000  # 2026-11-19T00:00:00Z (08:00 in Shanghai)


def neuron_registry(n: int = 20) -> str:
    meters = "".join(
        f"""
      - id: m{i:02d}
        role: load
        source:
          format: neuron
          node: dlt645-1
          group: meters
          quantities:
            energy_import_kwh: {{tag: "M{i:02d}.EP_IMP", scale: 0.001}}
            power_kw: {{tag: "M{i:02d}.P"}}"""
        for i in range(n)
    )
    return f"""
parks:
  - id: p1
    timezone: Asia/Shanghai
    devices:{meters}
"""


SPB_YAML = """
parks:
  - id: p1
    timezone: Asia/Shanghai
    devices:
      - id: grid-main
        role: grid
        source:
          format: sparkplug
          group: park
          edge: edge1
          quantities:
            energy_import_kwh: {metric: "Grid/EP_IMP", scale: 0.001}
            power_kw: {metric: "Grid/P"}
      - id: pv-1
        role: pv
        source:
          format: sparkplug
          group: park
          edge: edge1
          device: inv1
          quantities:
            energy_kwh: {metric: "Energy", scale: 1000}
            power_kw: {metric: "Power"}
"""


# -- scaling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [
        (8765432109, 0.001, 8765432.109),  # Wh → kWh; float multiplication: 8765432.109000001
        (123456789012, 0.001, 123456789.012),  # float: 123456789.01200001
        (5.1, 0.001, 0.0051),  # float: 0.0050999999999999995
        (0.1234, 4000, 493.6),  # CT 200/5 × PT 10 kV/100 V; float: 493.59999999999997
        (2.5, 1000, 2500.0),  # MWh → kWh
        (1.1, 3, 3.3),  # float: 3.3000000000000003
    ],
)
def test_scale_is_exact_to_the_decimal(value: float, scale: float, expected: float) -> None:
    assert scaled(value, scale) == expected


def test_scale_leaves_non_numbers_for_validation() -> None:
    assert scaled("12", 0.001) == "12"
    assert scaled(True, 0.001) is True
    assert scaled(None, 0.001) is None


def test_topic_filters() -> None:
    assert topic_matches("/neuron/#", "/neuron/app/dlt/meters")
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/c/d")
    assert not topic_matches("a/b", "a")


# -- Neuron ----------------------------------------------------------------------------------


def neuron_message(n: int, errors: dict[int, int]) -> dict[str, object]:
    values: dict[str, object] = {}
    errs: dict[str, int] = {}
    for i in range(n):
        if i in errors:
            errs[f"M{i:02d}.EP_IMP"] = errors[i]
        else:
            values[f"M{i:02d}.EP_IMP"] = 1_000_000 + i * 1001  # Wh
        values[f"M{i:02d}.P"] = 10.5 + i if i not in errors else 0.0
    values["CABINET.TEMP"] = 31.5  # a tag nobody maps
    return {
        "timestamp": T_MS,
        "node": "dlt645-1",
        "group": "meters",
        "values": values,
        "errors": errs,
        "metas": {},
    }


def test_neuron_group_of_20_meters_two_in_error() -> None:
    dec = GatewayDecoder(parse_registry(neuron_registry()))
    # error codes as Neuron reports them (e.g. 3011: DL/T 645 read timeout)
    msg = neuron_message(20, {4: 3011, 17: 2014})
    raw = json.dumps(msg).encode()
    out = dec.decode("/neuron/lingtan/dlt645-1/meters", raw, NOW_NS)
    assert out.format == "neuron"
    by_device = {r.device: r for r in out.readings}
    assert len(by_device) == 20  # the two in error still report power
    with_energy = {d for d, r in by_device.items() if "energy_import_kwh" in r.values}
    assert with_energy == {f"m{i:02d}" for i in range(20)} - {"m04", "m17"}
    # 1,000,000 + 7 × 1001 Wh = 1,007,007 Wh = 1007.007 kWh, exactly
    assert by_device["m07"].values == {"energy_import_kwh": 1007.007, "power_kw": 17.5}
    assert by_device["m07"].ts_ns == T_MS * 1_000_000
    assert sorted((d.device, d.reason) for d in out.deadletters) == [
        ("m04", RejectReason.GATEWAY_ERROR),
        ("m17", RejectReason.GATEWAY_ERROR),
    ]
    dl = {d.device: d for d in out.deadletters}
    assert "3011" in dl["m04"].detail and "M04.EP_IMP" in dl["m04"].detail
    assert dl["m17"].raw == raw  # the whole gateway message, for whoever investigates
    assert out.ignored_fields == 1  # CABINET.TEMP


def test_neuron_tags_format_and_old_key_names_read_the_same() -> None:
    dec = GatewayDecoder(parse_registry(neuron_registry(2)))
    msg = {
        "timestamp": T_MS,
        "node_name": "dlt645-1",
        "group_name": "meters",
        "tags": [
            {"name": "M00.EP_IMP", "value": 5100},
            {"name": "M01.EP_IMP", "error": 3011},
        ],
    }
    out = dec.decode("/neuron/x", json.dumps(msg).encode(), NOW_NS)
    assert [(r.device, r.values) for r in out.readings] == [("m00", {"energy_import_kwh": 5.1})]
    assert [(d.device, d.reason) for d in out.deadletters] == [("m01", RejectReason.GATEWAY_ERROR)]


def test_neuron_bad_values_get_the_native_reasons() -> None:
    dec = GatewayDecoder(parse_registry(neuron_registry(3)))
    msg = {
        "timestamp": T_MS,
        "node": "dlt645-1",
        "group": "meters",
        "values": {"M00.EP_IMP": "12", "M01.EP_IMP": -5, "M02.EP_IMP": 7000},
    }
    out = dec.decode("/neuron/x", json.dumps(msg).encode(), NOW_NS)
    assert [r.device for r in out.readings] == ["m02"]
    assert sorted((d.device, d.reason) for d in out.deadletters) == [
        ("m00", RejectReason.INVALID_READING),
        ("m01", RejectReason.OUT_OF_RANGE),
    ]
    assert all(d.topic == "/neuron/x" for d in out.deadletters)


def test_neuron_unknown_group_heartbeat_and_junk() -> None:
    dec = GatewayDecoder(parse_registry(neuron_registry(1)))
    unknown = {"timestamp": T_MS, "node": "other", "group": "g", "values": {"a": 1}}
    out = dec.decode("/neuron/x", json.dumps(unknown).encode(), NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.UNKNOWN_DEVICE]
    beat = {"timestamp": T_MS, "states": [{"node": "dlt645-1", "link": 2, "running": 3}]}
    out = dec.decode("/neuron/x/heartbeat", json.dumps(beat).encode(), NOW_NS)
    assert out.unmapped and not out.readings and not out.deadletters
    out = dec.decode("/neuron/x", b"\xff{", NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.INVALID_JSON]
    assert out.deadletters[0].raw == b"\xff{"


# -- Sparkplug B -----------------------------------------------------------------------------


def m(name: str | None, value: Any, dtype: DataType, alias: int | None = None) -> Metric:
    return Metric(timestamp=None, name=name, datatype=dtype, value=value, alias=alias)


def nbirth(seq: int = 0, bd_seq: int = 7) -> bytes:
    return NBirth(
        timestamp=T_MS,
        seq=seq,
        metrics=(
            m("bdSeq", bd_seq, DataType.INT64),
            m("Node Control/Rebirth", False, DataType.BOOLEAN),
            m("Grid/EP_IMP", 2_000_000, DataType.UINT64, alias=1),
            m("Grid/P", -120, DataType.INT32, alias=2),
        ),
    ).encode(include_dtypes=True)


def dbirth(seq: int) -> bytes:
    return DBirth(
        timestamp=T_MS,
        seq=seq,
        metrics=(
            m("Energy", 1.25, DataType.DOUBLE, alias=10),
            m("Power", 80.5, DataType.FLOAT, alias=11),
            m("Status", "ok", DataType.STRING, alias=12),
        ),
    ).encode(include_dtypes=True)


def ddata(seq: int, energy: float, power: float, alias_energy: int = 10) -> bytes:
    return DData(
        timestamp=T_MS + 60_000,
        seq=seq,
        metrics=(
            m(None, energy, DataType.DOUBLE, alias=alias_energy),
            m(None, power, DataType.FLOAT, alias=11),
        ),
    ).encode(include_dtypes=False)  # DATA messages usually leave datatypes to the BIRTH


def test_sparkplug_births_and_data_through_aliases() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    out = dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(), NOW_NS)
    # the node's own metrics feed grid-main: 2,000,000 Wh = 2000 kWh; Int32 -120 stays signed
    assert [(r.device, r.values, r.ts_ns) for r in out.readings] == [
        ("grid-main", {"energy_import_kwh": 2000.0, "power_kw": -120.0}, T_MS * 10**6)
    ]
    assert out.ignored_fields == 2  # bdSeq and the rebirth control
    out = dec.decode("spBv1.0/park/DBIRTH/edge1/inv1", dbirth(1), NOW_NS)
    # MWh → kWh; a float32 80.5 is exactly 80.5
    assert [(r.device, r.values) for r in out.readings] == [
        ("pv-1", {"energy_kwh": 1250.0, "power_kw": 80.5})
    ]
    out = dec.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(2, 1.2561, 71.3), NOW_NS)
    # 1.2561 MWh = 1256.1 kWh; float32 71.3 read back as 71.3, not 71.30000305175781
    assert [(r.device, r.values, r.ts_ns) for r in out.readings] == [
        ("pv-1", {"energy_kwh": 1256.1, "power_kw": 71.3}, (T_MS + 60_000) * 10**6)
    ]
    assert out.seq_gaps == 0 and not out.deadletters and not out.commands


def test_sparkplug_unknown_alias_is_dead_lettered_and_asks_for_a_rebirth() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(), NOW_NS)
    dec.decode("spBv1.0/park/DBIRTH/edge1/inv1", dbirth(1), NOW_NS)
    raw = ddata(2, 1.3, 70.0, alias_energy=99)
    out = dec.decode("spBv1.0/park/DDATA/edge1/inv1", raw, NOW_NS)
    # the known alias still counts
    assert [(r.device, r.values) for r in out.readings] == [("pv-1", {"power_kw": 70.0})]
    assert [(d.reason, d.device, d.raw) for d in out.deadletters] == [
        (RejectReason.UNKNOWN_ALIAS, "pv-1", raw)
    ]
    assert "99" in out.deadletters[0].detail
    [cmd] = out.commands
    assert cmd.topic == "spBv1.0/park/NCMD/edge1"
    request = NCmd.decode(cmd.payload)
    assert [(x.name, x.value) for x in request.metrics] == [("Node Control/Rebirth", True)]
    # held off: a second unknown alias right after does not ask again
    again = dec.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(3, 1.3, 70.0, 99), NOW_NS + 10**9)
    assert [d.reason for d in again.deadletters] == [RejectReason.UNKNOWN_ALIAS]
    assert again.commands == []
    later = dec.decode(
        "spBv1.0/park/DDATA/edge1/inv1", ddata(4, 1.3, 70.0, 99), NOW_NS + 11 * 10**9
    )
    assert len(later.commands) == 1


def test_sparkplug_data_before_any_birth_asks_for_a_rebirth() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    out = dec.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(5, 1.3, 70.0), NOW_NS)
    assert not out.readings
    assert [d.reason for d in out.deadletters] == [RejectReason.UNKNOWN_ALIAS]
    assert [c.topic for c in out.commands] == ["spBv1.0/park/NCMD/edge1"]


def test_sparkplug_seq_gaps_counted_with_wraparound() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(seq=0), NOW_NS)
    assert dec.decode("spBv1.0/park/DBIRTH/edge1/inv1", dbirth(1), NOW_NS).seq_gaps == 0
    assert dec.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(5, 1.3, 7.0), NOW_NS).seq_gaps == 3
    # a redelivery of the same seq is not a gap
    assert dec.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(5, 1.3, 7.0), NOW_NS).seq_gaps == 0
    data = NData(timestamp=T_MS, seq=254, metrics=(m(None, 1, DataType.INT32, alias=2),))
    assert dec.decode("spBv1.0/park/NDATA/edge1", data.encode(), NOW_NS).seq_gaps == 248
    wrap = NData(timestamp=T_MS, seq=1, metrics=(m(None, 1, DataType.INT32, alias=2),))
    assert dec.decode("spBv1.0/park/NDATA/edge1", wrap.encode(), NOW_NS).seq_gaps == 2


def test_sparkplug_death_marks_offline_and_forgets_aliases() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    spb = dec.formats["sparkplug"]
    assert sorted(spb.offline()) == [("p1", "grid-main"), ("p1", "pv-1")]  # type: ignore[attr-defined]
    dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(bd_seq=7), NOW_NS)
    dec.decode("spBv1.0/park/DBIRTH/edge1/inv1", dbirth(1), NOW_NS)
    assert spb.offline() == []  # type: ignore[attr-defined]
    dd = DDeath(timestamp=T_MS, seq=2).encode()
    dec.decode("spBv1.0/park/DDEATH/edge1/inv1", dd, NOW_NS)
    assert spb.offline() == [("p1", "pv-1")]  # type: ignore[attr-defined]
    # an older session's will (bdSeq 6) changes nothing
    stale = NDeath(timestamp=T_MS, bd_seq_metric=m("bdSeq", 6, DataType.INT64)).encode()
    dec.decode("spBv1.0/park/NDEATH/edge1", stale, NOW_NS)
    assert spb.offline() == [("p1", "pv-1")]  # type: ignore[attr-defined]
    death = NDeath(timestamp=T_MS, bd_seq_metric=m("bdSeq", 7, DataType.INT64)).encode()
    out = dec.decode("spBv1.0/park/NDEATH/edge1", death, NOW_NS)
    assert not out.readings and not out.deadletters
    assert sorted(spb.offline()) == [("p1", "grid-main"), ("p1", "pv-1")]  # type: ignore[attr-defined]
    data = NData(timestamp=T_MS, seq=3, metrics=(m(None, 1, DataType.INT32, alias=2),))
    out = dec.decode("spBv1.0/park/NDATA/edge1", data.encode(), NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.UNKNOWN_ALIAS]


def test_sparkplug_unmapped_device_is_counted_not_dead_lettered() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(), NOW_NS)
    out = dec.decode("spBv1.0/park/DBIRTH/edge1/pump7", dbirth(1), NOW_NS)
    assert out.unmapped and not out.readings and not out.deadletters
    # an edge node nobody maps: counted, and no state kept for it
    out = dec.decode("spBv1.0/park/NBIRTH/edge9", nbirth(), NOW_NS)
    assert out.unmapped and not out.readings and not out.deadletters
    assert ("park", "edge9") not in dec.formats["sparkplug"].nodes  # type: ignore[attr-defined]


def test_sparkplug_bad_topic_and_bytes() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    out = dec.decode("spBv1.0/park/DDATA/edge1", ddata(1, 1.0, 1.0), NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.BAD_TOPIC]
    out = dec.decode("spBv1.0/park/NDATA/edge1", b"\xff\xff\xff", NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.INVALID_READING]
    assert out.deadletters[0].raw == b"\xff\xff\xff"


# -- mapped JSON -----------------------------------------------------------------------------

JSON_YAML = """
parks:
  - id: p1
    timezone: Asia/Shanghai
    devices:
      - id: m7
        role: load
        source:
          format: json
          topic: vendor/gw1/up
          match: {"/meter": "M-07"}
          ts: time
          ts_format: "%Y-%m-%d %H:%M:%S"
          quantities:
            energy_import_kwh: {path: /data/EP_IMP, scale: 0.001}
      - id: m8
        role: load
        source:
          format: json
          topic: vendor/gw1/up
          match: {"/meter": "M-08"}
          ts: time
          ts_format: "%Y-%m-%d %H:%M:%S"
          quantities:
            energy_import_kwh: {path: data.EP_IMP, scale: 0.001}
      - id: b1
        role: load
        source:
          format: json
          topic: vendor/+/records
          layout: records
          records_path: /d
          ts_format: epoch_ms
          quantities:
            energy_import_kwh: {tag: "B1.EP"}
            power_kw: {tag: "B1.P", scale: 4000}
"""


def test_json_flat_objects_with_match_and_local_time() -> None:
    dec = GatewayDecoder(parse_registry(JSON_YAML))
    msg = [
        {"meter": "M-07", "time": "2026-11-19 08:00:00", "data": {"EP_IMP": 8765432109}},
        {"meter": "M-08", "time": "2026-11-19 08:00:00", "data": {"EP_IMP": 5100}},
        {"meter": "M-09", "time": "2026-11-19 08:00:00", "data": {"EP_IMP": 1}},
    ]
    out = dec.decode("vendor/gw1/up", json.dumps(msg).encode(), NOW_NS)
    assert out.format == "json"
    # 08:00 in Shanghai is 00:00 UTC
    assert [(r.device, r.values, r.ts_ns) for r in out.readings] == [
        ("m7", {"energy_import_kwh": 8765432.109}, T_MS * 10**6),
        ("m8", {"energy_import_kwh": 5.1}, T_MS * 10**6),
    ]
    assert [d.reason for d in out.deadletters] == [RejectReason.UNKNOWN_DEVICE]
    assert "element 2" in out.deadletters[0].detail


def test_json_records_shape() -> None:
    dec = GatewayDecoder(parse_registry(JSON_YAML))
    msg = {
        "d": [
            {"name": "B1.EP", "value": 1234.5, "ts": T_MS},
            {"name": "B1.P", "value": 0.1234, "ts": T_MS},
            {"name": "B1.EP", "value": 1235.0, "ts": T_MS + 60_000},
            {"name": "OTHER", "value": 1, "ts": T_MS},
        ]
    }
    out = dec.decode("vendor/gw9/records", json.dumps(msg).encode(), NOW_NS)
    assert [(r.values, r.ts_ns) for r in out.readings] == [
        ({"energy_import_kwh": 1234.5, "power_kw": 493.6}, T_MS * 10**6),
        ({"energy_import_kwh": 1235.0}, (T_MS + 60_000) * 10**6),
    ]
    assert out.ignored_fields == 1 and not out.deadletters


def test_native_topics_still_native() -> None:
    dec = GatewayDecoder(parse_registry(JSON_YAML))
    out = dec.decode("lingtan/v1/p1/m7/telemetry", b'{"ts": 1795046400, "power_kw": 1}', NOW_NS)
    assert out.format == "native" and len(out.readings) == 1
    out = dec.decode("somewhere/else", b"{}", NOW_NS)
    assert [d.reason for d in out.deadletters] == [RejectReason.BAD_TOPIC]


def test_filters_follow_the_registry() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    got = dec.filters()
    assert "lingtan/#" in got.shared  # the native format reads everything under lingtan/
    assert "spBv1.0/park/DDATA/#" in got.shared
    assert "spBv1.0/park/NBIRTH/#" in got.unshared
    dec.registry = parse_registry(neuron_registry(1))
    got = dec.filters()
    assert set(got.shared) == {"lingtan/#", "/neuron/#"}
    assert got.unshared == ()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{format: neuron, node: n, quantities: {power_kw: {tag: a}}}", "needs 'group'"),
        ("{format: sparkplug, group: g, edge: e, quantities: {power_kw: {tag: a}}}", "'metric'"),
        ("{format: json, quantities: {power_kw: {path: /a}}}", "needs 'topic'"),
        (
            "{format: json, topic: t, quantities: {power_kw: {path: /a, scale: 0}}}",
            "non-zero",
        ),
        (
            "{format: sparkplug, group: g/x, edge: e, quantities: {p_kw: {metric: a}}}",
            "may not contain",
        ),
    ],
)
def test_registry_rejects_incomplete_sources(source: str, message: str) -> None:
    yaml = f"parks:\n  - id: p1\n    devices:\n      - {{id: d, role: load, source: {source}}}\n"
    with pytest.raises(RegistryError, match=message):
        parse_registry(yaml)


def test_sparkplug_state_round_trips() -> None:
    dec = GatewayDecoder(parse_registry(SPB_YAML))
    dec.decode("spBv1.0/park/NBIRTH/edge1", nbirth(), NOW_NS)
    dec.decode("spBv1.0/park/DBIRTH/edge1/inv1", dbirth(1), NOW_NS)
    state = json.loads(json.dumps(dec.formats["sparkplug"].export_state()))  # type: ignore[attr-defined]
    fresh = GatewayDecoder(parse_registry(SPB_YAML))
    fresh.formats["sparkplug"].import_state(state)  # type: ignore[attr-defined]
    out = fresh.decode("spBv1.0/park/DDATA/edge1/inv1", ddata(2, 1.2561, 71.3), NOW_NS)
    assert [(r.device, r.values) for r in out.readings] == [
        ("pv-1", {"energy_kwh": 1256.1, "power_kw": 71.3})
    ]
    assert out.seq_gaps == 0 and not out.deadletters


@settings(max_examples=300, deadline=None)
@given(
    value=st.integers(-(10**18), 10**18) | st.floats(-1e15, 1e15),
    scale=st.sampled_from([0.001, 1000, 4000, 0.1, 1e-6, 0.5, -1, 0.3, 2.5, 40.0]),
)
def test_scale_matches_decimal_arithmetic(value: float, scale: float) -> None:
    # the reference: exact decimal product of the two written numbers, rounded once
    with localcontext() as ctx:
        ctx.prec = 100
        expected = float(Decimal(repr(value)) * Decimal(repr(scale)))
    assert scaled(value, scale) == expected
