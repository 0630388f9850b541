"""Fuzzing the payload decoder (docs/gateway-contract.md): it never raises, and every element is
either a reading or a dead letter — in the pure decoder and through the real collector
(Mosquitto → influxd)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.registry import parse_registry
from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES
from app.telemetry.decode import DecodeLimits, TelemetryDecoder
from app.telemetry.models import RejectReason
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import publish_all, wait_for

N_DEVICES = 6
PARKS_YAML = "parks:\n  - id: fz\n    timezone: Asia/Shanghai\n    devices:\n" + "".join(
    f"      - {{id: d{i}, role: load}}\n" for i in range(N_DEVICES)
)
REGISTRY = parse_registry(PARKS_YAML)
NOW_NS = 1_795_392_000 * 10**9  # 2026-11-24T00:00:00Z
#: Valid, distinct epoch seconds for the pipeline fuzz: 2026-11-20T00:00:00Z onwards.
BASE_TS_S = 1_795_046_400
DEC = TelemetryDecoder(REGISTRY)
LIMITS = DecodeLimits()

KNOWN_NAMES = sorted(COUNTER_QUANTITIES | INSTANT_QUANTITIES)
keys = st.one_of(
    st.sampled_from([*KNOWN_NAMES, "ts", "reset", "time", "park", "x_y"]),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them as literals
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=25,
)
# plausible readings: the fields of the contract with values of any JSON type
reading_like = st.dictionaries(
    st.sampled_from([*KNOWN_NAMES, "ts", "reset", "extra_kw"]), json_values, max_size=6
)
elements = st.one_of(reading_like, json_values)
topics = st.one_of(
    st.sampled_from([f"lingtan/v1/fz/d{i}/telemetry" for i in range(N_DEVICES)]),
    st.sampled_from(["lingtan/v1/fz/ghost/telemetry", "lingtan/v1/nopark/d0/telemetry"]),
    st.builds(
        "lingtan/v1/{}/{}/telemetry".format,
        st.text(max_size=70),
        st.text(max_size=70),
    ),
    st.text(max_size=80),
)


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


payloads = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: json.dumps(v).encode(), elements),
    st.builds(lambda v: json.dumps(v).encode(), st.lists(elements, min_size=1, max_size=20)),
    st.builds(nested, st.integers(min_value=1, max_value=5000)),
    st.builds(lambda d: b'{"a":' * d + b"1" + b"}" * d, st.integers(min_value=1, max_value=5000)),
)


def expected_outcomes(topic: str, payload: bytes) -> tuple[int, bool]:
    """Readings + dead letters the decoder owes: one per array element, else exactly one;
    and whether they are array elements (whose dead letters hold the element, not the payload)."""
    parts = topic.split("/")
    known = (
        len(parts) == 5
        and parts[:3] == ["lingtan", "v1", "fz"]
        and parts[4] == "telemetry"
        and parts[3] in {f"d{i}" for i in range(N_DEVICES)}
    )
    if not known or len(payload) > LIMITS.max_payload_bytes:
        return 1, False
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return 1, False
    if isinstance(doc, list) and 0 < len(doc) <= LIMITS.max_array_len:
        return len(doc), True
    return 1, False


def check_decoded(topic: str, payload: bytes) -> int:
    out = DEC.decode(topic, payload, NOW_NS)  # must not raise, whatever the input
    n, elements = expected_outcomes(topic, payload)
    assert len(out.readings) + len(out.deadletters) == n
    for r in out.readings:
        assert (r.park, r.device) == tuple(topic.split("/")[2:4])
        assert r.values or r.reset
        assert all(math.isfinite(v) and abs(v) <= 1e12 for v in r.values.values())
    for d in out.deadletters:
        assert isinstance(d.reason, RejectReason)
        assert d.detail and d.topic == topic
        if not elements:
            assert d.raw == payload  # the exact bytes, for whoever investigates
    return len(out.readings)


@settings(max_examples=300, deadline=None)
@given(topic=topics, payload=payloads)
def test_decoder_never_raises_and_accounts_for_every_element(topic: str, payload: bytes) -> None:
    check_decoded(topic, payload)


@settings(max_examples=200, deadline=None)
@given(device=st.integers(0, N_DEVICES - 1), items=st.lists(elements, min_size=1, max_size=30))
def test_array_elements_each_become_a_reading_or_a_dead_letter(
    device: int, items: list[Any]
) -> None:
    check_decoded(f"lingtan/v1/fz/d{device}/telemetry", json.dumps(items).encode())


def test_good_neighbours_survive_a_bad_element() -> None:
    # hand-made: the fuzz counts outcomes; this pins which element is which
    items = [{"ts": BASE_TS_S, "power_kw": 1.5}, "[" * 3, {"power_kw": float("nan")}]
    out = DEC.decode("lingtan/v1/fz/d0/telemetry", json.dumps(items).encode(), NOW_NS)
    assert [r.values for r in out.readings] == [{"power_kw": 1.5}]
    assert [d.reason for d in out.deadletters] == [
        RejectReason.INVALID_READING,
        RejectReason.NON_FINITE,
    ]


# -- pipeline level: the real collector between a real broker and a real influxd ---------------

# A value for `ts` that can never be a valid time (so it never collides with the unique ones):
# not a number in [2000-01-01, now + 300 s] and not a parseable RFC 3339 string (null would
# make the collector stamp it, so it is left out).
bad_ts = st.one_of(
    st.booleans(),
    st.integers(max_value=946_684_799),
    st.floats(max_value=946_684_799.0) | st.just(float("nan")) | st.just(float("inf")),
    st.integers(min_value=10**14),
    st.text(alphabet="xyz:+-TZ ", max_size=10),
    st.lists(st.integers(), max_size=2),
)


# readings a gateway would send, so that the stored path is exercised as much as the rejections
valid_readings = st.fixed_dictionaries(
    {"power_kw": st.floats(min_value=-1e6, max_value=1e6)},
    optional={
        "energy_import_kwh": st.floats(min_value=0, max_value=1e9),
        "soc_pct": st.floats(min_value=0, max_value=100),
        "reset": st.booleans(),
        "extra_kw": st.integers(-1000, 1000),
    },
)
mixed = st.one_of(valid_readings, elements)

#: Unique valid timestamps handed out to drawn readings, across every draw of the session.
_TS_OFFSETS = itertools.count()


@st.composite
def pipeline_messages(draw: st.DrawFn) -> list[tuple[str, bytes, int]]:
    """(topic, payload, elements) messages; every dict reading gets a unique or never-valid ts,
    so a stored reading cannot overwrite another (same device and ts are idempotent)."""
    counter = _TS_OFFSETS

    def with_ts(value: Any, top: bool = True) -> Any:
        if top and isinstance(value, list):  # a drawn list sent alone is an array payload
            return [with_ts(v, top=False) for v in value]
        if isinstance(value, dict):
            value = dict(value)
            if draw(st.booleans()) or "ts" not in value:
                value["ts"] = BASE_TS_S + next(counter)
            elif value["ts"] is None or isinstance(value["ts"], int | float | str):
                value["ts"] = draw(bad_ts)
        return value

    messages: list[tuple[str, bytes, int]] = []
    for _ in range(draw(st.integers(min_value=8, max_value=15))):
        device = draw(st.integers(0, N_DEVICES - 1))
        topic = f"lingtan/v1/fz/d{device}/telemetry"
        kind = draw(st.sampled_from(["one", "array", "bytes", "deep"]))
        if kind == "one":
            value = with_ts(draw(mixed))
            # a drawn list is itself an array payload: one outcome per element
            n = len(value) if isinstance(value, list) and value else 1
            messages.append((topic, json.dumps(value).encode(), n))
        elif kind == "array":
            items = [with_ts(v) for v in draw(st.lists(mixed, min_size=1, max_size=8))]
            messages.append((topic, json.dumps(items).encode(), len(items)))
        elif kind == "bytes":
            messages.append((topic, draw(st.binary(min_size=1, max_size=100)), 1))
        else:
            messages.append((topic, nested(draw(st.integers(900, 3000))), 1))
    return messages


def points(influx: InfluxServer, measurement: str) -> int:
    # rows, not count(*): readings share no field that every point carries
    return len(influx.points(f'SELECT * FROM "{measurement}"'))


def rejected_total(service: Any) -> int:
    return int(
        sum(
            s.value
            for m in service.metrics.rejected.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )
    )


async def test_collector_survives_fuzzed_payloads_and_stores_or_dead_letters_each(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    messages: list[tuple[str, bytes, int]] = []

    # hypothesis only generates here: forty small draws, concatenated into a few hundred
    # messages for one running collector. Small draws: a draw of 40+ fuzzed messages overruns
    # hypothesis's per-example data budget and most such draws are discarded
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(pipeline_messages())
    def draw(drawn: list[tuple[str, bytes, int]]) -> None:
        messages.extend(drawn)

    draw()
    assert len(messages) >= 300
    elements_published = sum(n for _, _, n in messages)
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
    final_ts = BASE_TS_S - 1  # the drawn readings' timestamps are all later
    final = ("lingtan/v1/fz/d0/telemetry", {"ts": final_ts, "power_kw": 42.0})
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        await publish_all(mosquitto.url, [(t, p) for t, p, _ in messages])
        await wait_for(
            lambda: service.metrics.messages._value.get() >= len(messages),
            what="every fuzzed message",
        )
        # still alive: a valid reading after the fuzz lands
        await publish_all(mosquitto.url, [final])
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
    assert accepted + rejected == elements_published + 1
    # what the counters say is what influxd holds: no reading overwrote another, none lost
    assert points(fresh_influx_db, "reading") == accepted
    assert points(fresh_influx_db, "deadletter") == rejected
    assert rejected > 0 and accepted > 1  # the fuzz exercised both paths
